"""The registry's charts: a run's curves from ultralytics' results.csv, every version's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the charts need the train extra")

from pipeline.model_charts import (
    history_chart,
    history_series,
    read_results,
    redraw_history,
    training_chart,
)
from pipeline.registry import save_registry

# ultralytics pads its column names; a metric it could not compute is left empty
RESULTS = "\n".join(
    [
        "  epoch, train/box_loss, train/seg_loss, metrics/mAP50(B), metrics/mAP50(M), val/seg_loss",
        "      1,           1.9,           3.1,            0.20,            0.25,         2.9",
        "      2,           1.8,           2.9,            0.30,                ,         2.7",
        "      3,           1.7,           2.8,            0.35,            0.39,         2.6",
    ]
)


def _registry(**metrics_by_version: dict[str, float]) -> dict:
    versions = {v: {"path": f"detector/{v}", "metrics": m} for v, m in metrics_by_version.items()}
    return {"detector": {"versions": versions, "served": "v10"}}


def test_read_results_strips_padding_and_keeps_gaps(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text(RESULTS)
    cols = read_results(tmp_path)
    assert cols["epoch"] == [1.0, 2.0, 3.0]
    assert cols["metrics/mAP50(B)"] == [0.2, 0.3, 0.35]
    m = cols["metrics/mAP50(M)"]
    assert m[0] == 0.25 and math.isnan(m[1]) and m[2] == 0.39
    assert read_results(tmp_path / "nowhere") == {}


def test_history_series_in_version_order_skipping_gaps() -> None:
    reg = _registry(
        v10={"potholes-seg.mask_map50": 0.5, "graffiti-det.box_map50": 0.47},
        v2={"potholes-seg.mask_map50": 0.1},
        v9={"graffiti-det.box_map50": 0.4},
    )
    series = history_series(reg)
    # v10 after v9 (numbers, not strings); a version without a number is left out of that line
    assert series["potholes-seg.mask_map50"] == [("v2", 0.1), ("v10", 0.5)]
    assert series["graffiti-det.box_map50"] == [("v9", 0.4), ("v10", 0.47)]
    assert "stereo-potholes-uk.mask_map50" not in series
    assert history_series({}) == {}
    # a city's own source: one line, its mask mAP50 rather than its box mAP50
    reg["detector"]["versions"]["v11"] = {
        "metrics": {"crew-2027.box_map50": 0.3, "crew-2027.mask_map50": 0.2}
    }
    series = history_series(reg)
    assert series["crew-2027.mask_map50"] == [("v11", 0.2)] and "crew-2027.box_map50" not in series


def test_charts_are_drawn_as_pngs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert training_chart(run, tmp_path / "t.png", "no run") is None  # nothing to draw
    (run / "results.csv").write_text(RESULTS)
    png = training_chart(run, tmp_path / "charts" / "t.png", "Detector t: training run")
    img = cv2.imread(str(png))
    assert img.shape == (360, 1000, 3)
    assert (img < 250).any(axis=2).mean() > 0.02  # lines and text, not a blank canvas

    assert history_chart({}, tmp_path / "h.png") is None
    reg = _registry(v1={"potholes-seg.mask_map50": 0.1}, v10={"potholes-seg.mask_map50": 0.5})
    img = cv2.imread(str(history_chart(reg, tmp_path / "h.png")))
    assert img.shape == (400, 1000, 3)
    # the served version is marked: the same numbers with nothing served draw otherwise
    reg["detector"]["served"] = None
    unmarked = cv2.imread(str(history_chart(reg, tmp_path / "h2.png")))
    assert (np.abs(img.astype(int) - unmarked).max(axis=2) > 10).mean() > 0.003

    models = tmp_path / "models"
    models.mkdir()
    save_registry(models, reg)
    assert redraw_history(models) == models / "detector" / "history.png"
    assert (models / "detector" / "history.png").stat().st_size > 5_000
