"""The city's crew-verified photos as a training set: blurred copies, normalised outlines,
duplicates on one side of the split, provenance written, and `streetlens train` reading it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from labelkit import GRAFFITI, POTHOLE, UPRIGHT, finding, processed_case
from PIL import Image

from pipeline import labels, labels_export
from pipeline.cli import main
from pipeline.context import Context
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from vision.dataset import build_dataset, load_added_source
from vision.errors import DatasetError


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request: pytest.FixtureRequest, settings: Settings) -> Context:
    """The default store, and PostGIS: labels and their export work the same on both."""
    if request.param == "postgresql":
        settings = settings.model_copy(
            update={"database_url": request.getfixturevalue("pg_database")()}
        )
    return Context(settings)


def _label(ctx: Context, case_id: str, objects: list, by: str = "crew:1") -> None:
    labels.set_labels(ctx, case_id, 0, objects, by=by)


def _files(out: Path, split: str) -> list[str]:
    return sorted(p.stem for p in (out / "images" / split).iterdir())


def test_export_writes_blurred_copies_normalised_outlines_and_negatives(
    ctx: Context, tmp_path: Path
) -> None:
    a = processed_case(ctx, 11)
    b = processed_case(ctx, 12)
    _label(ctx, a, [{"from_finding": 0}, {"from_finding": 1}])
    _label(ctx, b, [])  # nothing there: a hard negative
    out = tmp_path / "verified"
    s = labels_export.export_verified(ctx, out, val_fraction=0.0)
    assert s.images == {"train": 2, "val": 0} and s.negatives == {"train": 1, "val": 0}
    assert s.objects == {"pothole": 1, "graffiti": 1} and not s.skipped
    assert _files(out, "train") == sorted([f"{a}-0", f"{b}-0"])
    # The image is the public copy: upright, no EXIF (no GPS, no device), the same pixels a
    # resident sees.
    jpeg = (out / "images" / "train" / f"{a}-0.jpg").read_bytes()
    img = Image.open(io.BytesIO(jpeg))
    assert img.size == UPRIGHT and not img.getexif()
    assert jpeg == ctx.media.get_public(f"{ctx.store.get(a).report.photo_sha256}-v1.jpg")
    lines = (out / "labels" / "train" / f"{a}-0.txt").read_text().splitlines()
    assert len(lines) == 2
    for line, (cls, poly) in zip(lines, [(0, POTHOLE), (1, GRAFFITI)], strict=True):
        parts = line.split()
        assert int(parts[0]) == cls
        xy = [float(v) for v in parts[1:]]
        want = [c / UPRIGHT[i % 2] for pt in poly for i, c in enumerate(pt)]
        assert xy == pytest.approx(want, abs=1e-6)
    assert (out / "labels" / "train" / f"{b}-0.txt").read_text() == ""
    src = yaml.safe_load((out / "source.yaml").read_text())
    assert src["name"] == f"crew-verified-{ctx.city.slug}"
    assert ctx.city.name in src["licence"] and "blurred" in src["attribution"]
    assert src["images"] == {"train": 2, "val": 0} and src["classes"] == ["pothole", "graffiti"]
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "pothole", 1: "graffiti"} and data["val"] == "images/val"


def test_reports_of_one_pothole_land_on_one_side_of_the_split(ctx: Context, tmp_path: Path) -> None:
    root = processed_case(ctx, 21)
    # Find a duplicate whose own id would fall on the other side: only grouping by the
    # original keeps them together.
    h = labels_export.split_hash
    dup = None
    for seed in range(22, 60):
        cand = processed_case(ctx, seed, duplicate_of=root)
        if abs(h(cand) - h(root)) > 0.05:
            dup = cand
            break
    assert dup is not None
    _label(ctx, root, [{"from_finding": 0}])
    _label(ctx, dup, [{"from_finding": 0}])
    frac = (h(root) + h(dup)) / 2  # their own ids would split them
    out = tmp_path / "split"
    labels_export.export_verified(ctx, out, val_fraction=frac)
    side = "val" if h(root) < frac else "train"
    assert set(_files(out, side)) == {f"{root}-0", f"{dup}-0"}
    assert _files(out, "train" if side == "val" else "val") == []


def test_the_newest_set_counts_and_one_photo_is_written_once(ctx: Context, tmp_path: Path) -> None:
    a = processed_case(ctx, 31)
    _label(ctx, a, [{"from_finding": 0}])
    _label(ctx, a, [{"from_finding": 0}, {"from_finding": 1}], by="analyst:2")
    # The same photo uploaded again as another report, labelled later: written once, newest.
    again = processed_case(ctx, 31, findings=[finding("pothole", POTHOLE)])
    assert ctx.store.get(again).report.photo_sha256 == ctx.store.get(a).report.photo_sha256
    _label(ctx, again, [])
    out = tmp_path / "once"
    s = labels_export.export_verified(ctx, out, val_fraction=0.0)
    assert s.images["train"] == 1 and s.negatives["train"] == 1
    assert _files(out, "train") == [f"{again}-0"]


def test_export_refuses_a_foreign_folder_and_replaces_its_own(ctx: Context, tmp_path: Path) -> None:
    a = processed_case(ctx, 41)
    _label(ctx, a, [{"from_finding": 0}])
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier export"):
        labels_export.export_verified(ctx, foreign)
    assert (foreign / "todo.txt").read_text() == "keep me"
    out = tmp_path / "again"
    labels_export.export_verified(ctx, out, val_fraction=0.0)
    (out / "images" / "train" / "stale.jpg").write_bytes(b"old")
    labels_export.export_verified(ctx, out, val_fraction=0.0)
    assert _files(out, "train") == [f"{a}-0"]
    with pytest.raises(ConfigError, match="val_fraction"):
        labels_export.export_verified(ctx, out, val_fraction=1.0)


def test_train_reads_the_export_as_a_source_with_its_provenance(
    ctx: Context, tmp_path: Path
) -> None:
    a = processed_case(ctx, 51)
    _label(ctx, a, [{"from_finding": 1}])
    out = tmp_path / "verified"
    labels_export.export_verified(ctx, out, val_fraction=0.0)
    src = load_added_source(out, ["pothole", "graffiti"])
    assert src.name.startswith("crew-verified-") and src.class_map == {0: 0, 1: 1}
    assert src.licence
    # Another model's class order is followed by name; a class it lacks is dropped.
    assert load_added_source(out, ["graffiti"]).class_map == {1: 0}
    summary = build_dataset(["pothole", "graffiti"], [src], tmp_path / "combined")
    assert summary.images[src.name] == {"train": 1, "val": 0}
    label = tmp_path / "combined" / "labels" / "train" / f"{src.name}__{a}-0.txt"
    assert label.read_text().startswith("1 ")
    (out / "source.yaml").unlink()
    with pytest.raises(DatasetError, match=r"source\.yaml"):
        load_added_source(out, ["pothole", "graffiti"])


def test_the_cli_exports_and_says_what_it_wrote(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    a = processed_case(ctx, 61)
    _label(ctx, a, [{"from_finding": 0}])
    s = ctx.settings
    env = {"HOME": s.home, "DATA_DIR": s.data_dir, "CACHE_DIR": s.cache_dir}
    for k, v in (env | {"DATABASE_URL": s.database_url}).items():
        monkeypatch.setenv(f"STREETLENS_{k}", str(v))
    out = tmp_path / "cli"
    assert main(["dataset", "export-verified", str(out), "--val-fraction", "0"]) == 0
    said = capsys.readouterr().out
    assert "train  1 photos (0 with nothing in them)" in said and "pothole 1" in said
    assert (out / "labels" / "train" / f"{a}-0.txt").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    assert main(["dataset", "export-verified", str(tmp_path / "other")]) == 2
