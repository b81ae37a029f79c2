"""Fixtures for the vision tests."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

CACHE = Path("/root/.cache/streetlens")
RUN_WEIGHTS = CACHE / "runs" / "detector-v1" / "weights"


@pytest.fixture(scope="session")
def ultralytics_ready() -> None:
    """ultralytics set up offline (call before importing it); skip where it is not installed."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics (the 'train' extra) is not installed")
    from vision.train import prepare_ultralytics

    prepare_ultralytics(CACHE / "ultralytics")


@pytest.fixture(scope="session")
def served_model(ultralytics_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEMPORARY until tests/conftest.py defines it: the detector as served (dir with
    weights.pt, model.onnx, meta.yaml), built from the training run in the local cache."""
    candidates = [RUN_WEIGHTS / "best.pt", RUN_WEIGHTS / "last.pt"]
    weights = next((p for p in candidates if p.exists()), None)
    if weights is None:
        pytest.skip(f"no trained detector in {RUN_WEIGHTS}: train one first")
    from vision.train import export_onnx

    out = tmp_path_factory.mktemp("served_model")
    # A snapshot: training rewrites last.pt every epoch.
    shutil.copyfile(weights, out / "weights.pt")
    export_onnx(out / "weights.pt", 416, out / "model.onnx")
    meta = {"class_names": ["pothole", "graffiti"], "imgsz": 416}
    (out / "meta.yaml").write_text(yaml.safe_dump(meta))
    return out
