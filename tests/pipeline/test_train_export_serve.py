"""The whole retraining path on a generated dataset: build, train one tiny epoch, export to
ONNX, register, serve through the pipeline's registry, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from toydata import make_toy_source

pytest.importorskip("ultralytics", reason="the `train` extra is not installed")

from pipeline.modelcard import register_run
from pipeline.registry import served_detector
from vision.dataset import Source, build_dataset
from vision.detector import OnnxSegDetector
from vision.train import prepare_ultralytics, train_detector


@pytest.mark.slow
def test_train_one_epoch_export_register_serve(tmp_path: Path) -> None:
    toy = make_toy_source(tmp_path / "toy")
    sources = [Source(name="toy", path=toy, class_map={0: 0, 1: 1}, licence="generated")]
    classes = ["pothole", "graffiti"]
    summary = build_dataset(classes, sources, tmp_path / "combined")
    assert summary.images["toy"] == {"train": 8, "val": 4}
    prepare_ultralytics(tmp_path / "ultralytics")
    run = tmp_path / "runs" / "toy"
    best = train_detector(summary.yaml_path, run, epochs=1, imgsz=64, batch=4, workers=0)
    assert best.exists()

    models = tmp_path / "models"
    out = register_run(
        run_dir=run, version="t1", models_dir=models, cache_dir=tmp_path / "cache",
        classes=classes, sources=sources, imgsz=64, serve=True,
    )  # fmt: skip
    reg = yaml.safe_load((models / "registry.yaml").read_text())
    assert reg["detector"]["served"] == "t1"
    assert reg["detector"]["versions"]["t1"]["training_data"] == [
        {"name": "toy", "licence": "generated"}
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["toy"]) >= {"box_map50", "mask_map50", "box_map50_95"}
    assert "Detector t1" in (out / "card.md").read_text()

    served = served_detector(models)
    assert served.imgsz == 64 and served.class_names == ("pothole", "graffiti")
    det = OnnxSegDetector(served.onnx, served.class_names, conf=0.0)
    rgb = np.full((64, 64, 3), 140, np.uint8)
    found = det.detect(rgb)
    assert len(found) == len(found.polygons)  # runs end to end and yields well-formed output
