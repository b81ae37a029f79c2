"""A training pack (`streetlens train --pack`, trained on elsewhere by `python -m
vision.train_pack`): each photo once, shrunk to the training size; unpacked, the same listings
with the same labels as the build; a broken pack is refused by name; without polars the
trainer still stores its curves in the checkpoint."""

from __future__ import annotations

import csv
import gzip
import json
import os
import sys
from pathlib import Path

import cv2
import pytest
import yaml
from toydata import make_toy_source

from pipeline.modelcard import _where
from vision.dataset import build_dataset, load_sources
from vision.errors import DatasetError
from vision.pack import INDEX, pack_dataset, unpack


def _built(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    make_toy_source(data / "toy", n_train=3, n_val=2, size=200)
    toy = {"name": "toy", "path": "toy", "map": {0: 0}, "licence": "generated", "repeat": 2}
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"classes": ["pothole"], "sources": [toy]}))
    classes, sources = load_sources(manifest, data)
    return build_dataset(classes, sources, tmp_path / "built").yaml_path


def _labels(root: Path, split: str) -> dict[str, str]:
    return {p.stem: p.read_text() for p in (root / "labels" / split).glob("*.txt")}


def test_pack_then_unpack_gives_the_same_listings(tmp_path: Path) -> None:
    built = _built(tmp_path)
    s = pack_dataset(built, tmp_path / "pack", imgsz=64)
    assert s.photos == 5  # 3 train + 2 val photos, each once
    assert s.listings == {"train": 6, "val": 2}  # the train photos listed twice
    photos = sorted((tmp_path / "pack" / "photos").iterdir())
    assert len(photos) == 5
    for p in photos:  # shrunk to the training size (200 px -> 64 px)
        assert max(cv2.imread(str(p)).shape[:2]) == 64

    data_yaml, imgsz = unpack(tmp_path / "pack", tmp_path / "there")
    assert imgsz == 64
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == {0: "pothole"} and data["train"] == "images/train"
    for split in ("train", "val"):
        assert _labels(tmp_path / "there", split) == _labels(built.parent, split)
        listed = sorted((tmp_path / "there" / "images" / split).iterdir())
        assert [p.stem for p in listed] == sorted(_labels(built.parent, split))
        assert all(p.resolve().parent == (tmp_path / "pack" / "photos").resolve() for p in listed)
    # Both listings of a repeated photo show the one packed file.
    train = tmp_path / "there" / "images" / "train"
    assert os.path.realpath(train / "toy__toy1.webp") == os.path.realpath(
        train / "toy__toy1__w1.webp"
    )
    # Unpacking again replaces what was there (no listing left over).
    unpack(tmp_path / "pack", tmp_path / "there")
    assert len(list(train.iterdir())) == 6


def test_a_broken_pack_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a training pack"):
        unpack(tmp_path, tmp_path / "there")
    pack_dataset(_built(tmp_path), tmp_path / "pack", imgsz=64)
    victim = sorted((tmp_path / "pack" / "photos").iterdir())[0]
    victim.unlink()
    with pytest.raises(DatasetError, match=f"photo {victim.name} of listing .* is missing"):
        unpack(tmp_path / "pack", tmp_path / "there")
    with gzip.open(tmp_path / "pack" / INDEX, "rt") as f:
        index = json.load(f)
    index["format"] = 99
    with gzip.open(tmp_path / "pack" / INDEX, "wt") as f:
        json.dump(index, f)
    with pytest.raises(DatasetError, match="pack format 99; this code reads 1"):
        unpack(tmp_path / "pack", tmp_path / "there")


def test_an_unreadable_photo_is_named(tmp_path: Path) -> None:
    built = _built(tmp_path)
    first = sorted((built.parent / "images" / "train").iterdir())[0]
    Path(os.path.realpath(first)).write_bytes(b"not a photo")
    with pytest.raises(DatasetError, match="not a photo OpenCV can read"):
        pack_dataset(built, tmp_path / "pack", imgsz=64)


def test_without_polars_the_checkpoint_still_gets_the_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ultralytics.engine.trainer import BaseTrainer

    from vision.train_pack import _polars_or_csv

    monkeypatch.setattr(BaseTrainer, "read_results_csv", BaseTrainer.read_results_csv)
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars now fails
    assert _polars_or_csv() is False  # no plots
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "metrics/mAP50(M)"])
        w.writerows([[1, 0.25], [2, 0.5]])

    class Run:
        csv = results

    assert BaseTrainer.read_results_csv(Run()) == {
        "epoch": [1.0, 2.0],
        "metrics/mAP50(M)": [0.25, 0.5],
    }
    Run.csv = tmp_path / "none.csv"
    assert BaseTrainer.read_results_csv(Run()) == {}


def test_the_card_says_where_it_trained() -> None:
    assert _where({"device": "cpu"}) == "on CPU"
    assert _where({}) == "on CPU"
    assert _where({"device": "0"}).startswith("on GPU 0 (`python -m vision.train_pack`")


def test_a_run_made_elsewhere_is_calibrated_on_the_set_built_here(tmp_path: Path) -> None:
    from pipeline.modelcard import calibration_set
    from pipeline.train_cli import dataset_dir

    own = tmp_path / "own.yaml"
    own.write_text("names: {}\n")
    assert calibration_set({"data": str(own)}, tmp_path / "cache") == own
    elsewhere = {"data": "/tmp/work-on-the-gpu-machine/dataset/data.yaml"}
    assert calibration_set(elsewhere, tmp_path / "cache") is None  # nothing built here
    here = dataset_dir(tmp_path / "cache") / "data.yaml"
    here.parent.mkdir(parents=True)
    here.write_text("names: {}\n")
    assert calibration_set(elsewhere, tmp_path / "cache") == here


def test_streetlens_train_pack_builds_packs_and_records_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main as cli

    data = tmp_path / "data"
    make_toy_source(data / "toy", n_train=3, n_val=2, size=200)
    toy = {"name": "toy", "path": "toy", "map": {0: 0}, "licence": "generated", "repeat": 2}
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"classes": ["pothole"], "sources": [toy]}))
    monkeypatch.setenv("STREETLENS_DATA_DIR", str(data))
    monkeypatch.setenv("STREETLENS_HOME", str(tmp_path / "home"))
    pack = tmp_path / "pack"
    argv = ["train", "--pack", str(pack), "--sources", str(manifest), "--imgsz", "96"]
    assert cli([*argv, "--init", "models/detector/vX/weights.pt"]) == 0
    out = capsys.readouterr().out
    assert "packed 5 photos (train 6, val 2 listings)" in out
    assert "python -m vision.train_pack" in out and "--init models/detector/vX/weights.pt" in out
    record = yaml.safe_load((pack / "streetlens-run.yaml").read_text())
    assert record["init_weights"] == "models/detector/vX/weights.pt"
    assert record["source_weights"] == {"toy": {"repeat": 2, "negatives_repeat": 1}}
    assert not (tmp_path / "home" / "cache" / "runs").exists()  # nothing trained here
    assert unpack(pack, tmp_path / "there")[1] == 96
