"""The whole retraining path on a generated dataset: freeze a split, train one tiny epoch,
export to ONNX and OpenVINO, register, serve through the registry, `streetlens evaluate`, and
`streetlens models promote` refusing a worse version and accepting a forced or better one."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from toydata import make_toy_source

pytest.importorskip("ultralytics", reason="the `train` extra is not installed")

from pipeline.cli import main as cli
from pipeline.errors import ConfigError, PromotionRefused
from pipeline.frozen_split import drift, load_frozen_split, write_frozen_split
from pipeline.modelcard import RUN_RECORD, architecture, register_run, run_record_doc
from pipeline.promote import promote
from pipeline.registry import load_registry, save_registry, served_detector
from vision.dataset import Source, build_dataset, load_sources
from vision.detector_select import load_detector, openvino_installed
from vision.train import nncf_installed, prepare_ultralytics, train_detector

CLASSES = ["pothole", "graffiti"]


def make_negatives(root: Path, n: int = 4) -> Path:
    """Photos with nothing to find (val split, empty label files)."""
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(100, 200, (96, 96, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / split / f"neg{i}.jpg")
            (root / "labels" / split / f"neg{i}.txt").write_text("")
    return root


def write_manifest(path: Path) -> Path:
    manifest = {
        "classes": CLASSES,
        "sources": [
            {"name": "toy", "path": "toy", "map": {0: 0, 1: 1}, "licence": "generated"},
            {"name": "toy-negatives", "path": "neg", "map": {}, "licence": "generated"},
        ],
    }
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about a minute alone; far more when the CPUs are shared
def test_train_export_serve_evaluate_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    make_toy_source(data / "toy")
    make_negatives(data / "neg")
    manifest = write_manifest(tmp_path / "detector.yaml")
    classes, sources = load_sources(manifest, data)
    assert [s.name for s in sources] == ["toy", "toy-negatives"]
    models = tmp_path / "models"
    models.mkdir()
    frozen = write_frozen_split(models / "frozen-split.yaml", sources)
    assert {k: len(v) for k, v in frozen.files.items()} == {"toy": 4, "toy-negatives": 4}
    assert load_frozen_split(models / "frozen-split.yaml").digest == frozen.digest

    summary = build_dataset(classes, sources, tmp_path / "combined")
    assert summary.images["toy"] == {"train": 8, "val": 4}
    prepare_ultralytics(tmp_path / "ultralytics")
    run = tmp_path / "runs" / "toy"
    best = train_detector(
        summary.yaml_path, run, epochs=1, imgsz=64, batch=4, workers=0, plots=False
    )
    assert best.exists()
    # A fine-tune (`streetlens train --init W`) starts from every tensor of W, the class head's
    # last layers included: marked with a constant, they are still near it after an epoch (when
    # the model was built from the YAML first, they did not fit and started from random).
    init = _mark_class_head(best, tmp_path / "init.pt")
    tuned = train_detector(
        summary.yaml_path, tmp_path / "runs" / "tuned", epochs=1, imgsz=64, batch=4, workers=0,
        plots=False, init_weights=init,
    )  # fmt: skip
    for layer in _class_head(tuned):
        assert np.abs(layer.weight.detach().float().numpy() - HEAD_MARK).max() < 0.02
    # Its card names the network, not the weights it started from (what its args.yaml says).
    assert architecture(tuned, {"model": str(init)}) == "yolo11n-seg.yaml"
    # What `streetlens train --init W --add-source D` records: the card says both; the frozen
    # split and so the evaluation stay the manifest's.
    crew = Source("crew-verified-toy", tmp_path, {0: 0}, licence="the city's records")
    # The source weights the run trained with go on record too (today's manifest may differ).
    weighted = [
        dataclasses.replace(sources[0], repeat=2),
        dataclasses.replace(crew, negatives_repeat=3),
    ]
    (run / RUN_RECORD).write_text(
        run_record_doc(Path("models/detector/t0/weights.pt"), [crew], weighted)
    )

    out = register_run(
        run_dir=run, version="t1", models_dir=models, cache_dir=tmp_path / "cache",
        classes=classes, sources=sources, imgsz=64, serve=True,
    )  # fmt: skip
    reg = load_registry(models)
    assert reg["detector"]["served"] == "t1"
    entry = reg["detector"]["versions"]["t1"]
    assert entry["training_data"][0] == {"name": "toy", "licence": "generated", "repeat": 2}
    assert entry["training_data"][1] == {"name": "toy-negatives", "licence": "generated"}
    assert entry["training_data"][-1] == {
        "name": "crew-verified-toy",
        "licence": "the city's records",
        "negatives_repeat": 3,
    }
    assert (out / "model.onnx").is_file() and (out / "openvino" / "model.xml").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["sources"]["toy"]) >= {"box_map50", "mask_map50", "box_map50_95"}
    assert metrics["sources"]["toy-negatives"]["negative_images"] == 4
    assert metrics["evaluated_on"].startswith("frozen split")
    card = (out / "card.md").read_text()
    assert "Detector t1" in card and "toy-negatives" in card and "numpy" in card
    assert "**crew-verified-toy** — the city's records" in card
    assert "(weight in training: each train photo listed 2 times)" in card
    assert "(weight in training: train photos with nothing to find listed 3 times)" in card
    assert "fine-tuned from `models/detector/t0/weights.pt`" in card
    # The phone-photo augmentations really ran (ultralytics drops them without albumentations).
    assert "MotionBlur p=0.15" in card and "ImageCompression p=0.2" in card
    assert "crew-verified-toy" not in metrics["sources"]
    # Drawn for the analyst: the run's curves beside the card, every version's numbers.
    assert "![training curves](training.png)" in card
    assert cv2.imread(str(out / "training.png")).shape == (360, 1000, 3)
    assert cv2.imread(str(models / "detector" / "history.png")).shape == (400, 1000, 3)
    if nncf_installed():  # the 8-bit export, evaluated beside the float one
        assert (out / "openvino-int8" / "model.xml").is_file()
        assert "openvino-int8" in entry["exports"] and "## 8-bit export" in card
        int8 = json.loads((out / "metrics-int8.json").read_text())
        assert set(int8["sources"]["toy"]) >= {"box_map50", "mask_map50"}
        assert "!detector/t1/openvino-int8/" in (models / ".gitignore").read_text().splitlines()
        # Its own serving threshold, chosen on its own scores, served with its backend.
        conf8 = int8["_serving"]["conf"]
        assert yaml.safe_load((out / "meta.yaml").read_text())["conf_int8"] == conf8
        assert served_detector(models).serving_conf("openvino-int8") == conf8
        assert served_detector(models).serving_conf("auto") == metrics["_serving"]["conf"]
        assert f"own threshold, **{conf8}**" in card
    # Only the served version's weights are committed.
    ignore = (models / ".gitignore").read_text().splitlines()
    assert "detector/*/weights.pt" in ignore and "!detector/t1/weights.pt" in ignore

    served = served_detector(models)
    assert served.imgsz == 64 and served.class_names == ("pothole", "graffiti")
    for backend in ("onnx", *(["openvino"] if openvino_installed() else [])):
        det = load_detector(served.path, served.class_names, backend=backend, conf=0.0)
        assert det.backend == backend
        assert det.imgsz == (64, 64) and det.stride == 32  # exported to take any size
        for shape in ((64, 64, 3), (32, 64, 3), (64, 20, 3)):  # run at 64x64, 32x64, 64x32
            found = det.detect(np.full(shape, 140, np.uint8))
            assert len(found) == len(found.polygons)  # runs end to end, well-formed output

    # `streetlens evaluate` on a source and on a plain folder of photos (all negatives).
    monkeypatch.setenv("STREETLENS_MODELS_DIR", str(models))
    monkeypatch.setenv("STREETLENS_DATA_DIR", str(data))
    monkeypatch.setenv("STREETLENS_HOME", str(tmp_path / "home"))
    src = ["--sources", str(manifest)]
    report_path = tmp_path / "eval.json"
    assert cli(["evaluate", "t1", "toy", "--quiet", "--json", str(report_path), *src]) == 0
    shown = capsys.readouterr().out
    assert "image level" in shown and "toy" in shown
    result = json.loads(report_path.read_text())
    assert result["all"]["instances"] == sum(1 for _ in _labels(data / "toy", "val"))
    assert result["all"]["classes"]["pothole"]["instances"] == 4
    plain = data / "neg" / "images" / "val"
    assert cli(["evaluate", "t1", str(plain), "--quiet", "--json", str(report_path), *src]) == 0
    negs = json.loads(report_path.read_text())["all"]
    assert negs["negative_images"] == 4 and negs["instances"] == 0
    assert negs["false_alarm_rate"] is not None
    assert cli(["evaluate", "t1", str(tmp_path / "nowhere"), "--quiet", *src]) == 2
    # The training run's own weights (ultralytics predict) and its OpenVINO export.
    weights = str(run / "weights" / "best.pt")
    assert cli(["evaluate", weights, "toy", "--imgsz", "64", "--quiet", *src]) == 0
    assert "(ultralytics)" in capsys.readouterr().out
    if openvino_installed():
        assert cli(["evaluate", str(out / "openvino"), "toy", "--quiet", *src]) == 0
        assert "(openvino)" in capsys.readouterr().out

    # A worse candidate: the same network serving every detection (conf 0) raises its false
    # alarms on the negatives to 100%: refused, recorded, still t1 served.
    t2 = models / "detector" / "t2"
    shutil.copytree(out, t2)
    for f in ("metrics-frozen.json",):
        (t2 / f).unlink(missing_ok=True)
    meta = yaml.safe_load((t2 / "meta.yaml").read_text())
    (t2 / "meta.yaml").write_text(yaml.safe_dump(meta | {"conf": 0.0}))
    reg = load_registry(models)
    reg["detector"]["versions"]["t2"] = dict(entry, path="detector/t2", conf=0.0)
    save_registry(models, reg)
    with pytest.raises(PromotionRefused, match="false alarms"):
        promote(models, "t2", sources, progress=False)
    reg = load_registry(models)
    assert reg["detector"]["served"] == "t1"
    assert reg["detector"]["promotions"][-1]["decision"] == "refused"
    assert cli(["models", "promote", "t2", *src]) == 2  # the CLI says so with exit code 2
    assert "worse than the served t1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--reason"):
        promote(models, "t2", sources, force=True, progress=False)

    assert cli(["models", "promote", "t2", "--force", "--reason", "test", *src]) == 0
    reg = load_registry(models)
    assert reg["detector"]["served"] == "t2"
    assert reg["detector"]["promotions"][-1]["decision"] == "forced"
    assert "!detector/t2/model.onnx" in (models / ".gitignore").read_text()
    # Back to t1: better than t2, accepted without force.
    assert promote(models, "t1", sources, progress=False)["decision"] == "promoted"
    assert cli(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "* t1" in listing and "refused" in listing and "forced" in listing

    # The frozen split notices a changed label file, and promotion then refuses to compare.
    label = data / "toy" / "labels" / "val" / "toy0.txt"
    label.write_text(label.read_text() + "1 0.1 0.1 0.2 0.1 0.2 0.2\n")
    assert drift(load_frozen_split(models / "frozen-split.yaml"), sources) == [
        "toy/toy0.jpg: its labels changed"
    ]
    with pytest.raises(ConfigError, match="no longer matches the frozen split"):
        promote(models, "t2", sources, progress=False)


HEAD_MARK = 0.0123


def _class_head(weights: Path) -> list:
    """The detection head's last class convolutions (one per scale)."""
    from ultralytics import YOLO

    return [branch[-1] for branch in YOLO(str(weights)).model.model[-1].cv3]


def _mark_class_head(weights: Path, out: Path) -> Path:
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    for branch in ckpt["model"].model[-1].cv3:
        branch[-1].weight.data.fill_(HEAD_MARK)
    torch.save(ckpt, out)
    return out


def _labels(root: Path, split: str) -> list[str]:
    lines = []
    for f in sorted((root / "labels" / split).glob("*.txt")):
        lines += [ln for ln in f.read_text().splitlines() if ln.strip()]
    return lines
