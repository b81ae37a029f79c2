"""Source weights in the combined training set: `repeat` lists a source's train photos N times,
`negatives_repeat` its photos with nothing of ours on them; val is listed once; a rebuild
drops what an earlier build listed; a bad weight is refused with the source's name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from toydata import make_toy_source

from vision.dataset import build_dataset, load_sources
from vision.errors import DatasetError


def _manifest(path: Path, **weights: object) -> Path:
    toy = {"name": "toy", "path": "toy", "map": {0: 0}, "licence": "generated", **weights}
    path.write_text(yaml.safe_dump({"classes": ["pothole"], "sources": [toy]}))
    return path


def _listed(out: Path, split: str) -> list[str]:
    return sorted(p.name for p in (out / "images" / split).iterdir())


def test_repeat_and_negatives_repeat(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_toy_source(data / "toy", n_train=4, n_val=2)
    # toy0's only object is a class we do not map: a hard negative once converted.
    (data / "toy" / "labels" / "train" / "toy0.txt").write_text("1 0.1 0.1 0.3 0.1 0.3 0.3\n")
    classes, sources = load_sources(
        _manifest(tmp_path / "m.yaml", repeat=2, negatives_repeat=3), data
    )
    out = tmp_path / "combined"
    summary = build_dataset(classes, sources, out)
    train = _listed(out, "train")
    assert sum(n.startswith("toy__toy0") for n in train) == 3  # the negative: max(2, 3)
    assert sum(n.startswith("toy__toy1") for n in train) == 2
    assert len(train) == 3 + 3 * 2
    assert len(_listed(out, "val")) == 2  # never repeated
    assert summary.images["toy"] == {"train": 4, "val": 2}  # distinct photos
    assert summary.extra_listings["toy"] == 2 + 3 * 1
    # Every listing has its label file, the same labels as the photo's first listing.
    labels = out / "labels" / "train"
    assert (labels / "toy__toy1__w1.txt").read_text() == (labels / "toy__toy1.txt").read_text()
    assert (labels / "toy__toy0__w2.txt").read_text() == ""

    # Weights lowered: the rebuild lists each photo once, nothing stale left behind.
    classes, sources = load_sources(_manifest(tmp_path / "m.yaml"), data)
    summary = build_dataset(classes, sources, out)
    assert _listed(out, "train") == [f"toy__toy{i}.jpg" for i in range(4)]
    assert len(list(labels.iterdir())) == 4 and summary.extra_listings == {}


@pytest.mark.parametrize("bad", [0, 11, 1.5, "3", True])
def test_bad_weight_is_refused(tmp_path: Path, bad: object) -> None:
    make_toy_source(tmp_path / "data" / "toy", n_train=1, n_val=1)
    with pytest.raises(DatasetError, match="'toy': repeat must be a whole number 1-10"):
        load_sources(_manifest(tmp_path / "m.yaml", repeat=bad), tmp_path / "data")
