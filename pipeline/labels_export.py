"""`streetlens dataset export-verified`: the city's labelled photos as a YOLO training set.

Each photo's newest label set (pipeline/labels.py) becomes an image and a label file:
- the image is the photo's public variant (faces and plates blurred, no EXIF, long side
  capped; pipeline/public_media.py), never the private original: a training set is handed
  around, and a detector learns potholes as well from a blurred face;
- the labels are the outlines as YOLO segmentation polygons, normalised to the photo (so the
  variant's smaller size does not matter), classes numbered as datasets/sources/detector.yaml;
  an empty label set writes an empty file: a hard negative;
- a photo labelled in two cases (the same upload twice) is written once, with its newest set;
- train or val by a hash of the case's duplicate root: every report of one pothole (other
  angles, other days) lands on the same side, so val never shows the model a pothole it
  trained on.
`source.yaml` records where it came from, under which terms, and the counts; `data.yaml` makes
the folder a dataset `streetlens evaluate` and `streetlens train --add-source` read.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from sqlalchemy import select

from pipeline.db import aware
from pipeline.duplicates import root_case
from pipeline.errors import ConfigError, StreetLensError
from pipeline.labels import PhotoLabelRow, detector_classes

if TYPE_CHECKING:
    from pipeline.context import Context

SOURCE_FILE = "source.yaml"
SOURCE_NAME = "crew-verified"  # the source's name in a model card: crew-verified-<city slug>


@dataclass
class ExportSummary:
    """What an export wrote."""

    out_dir: Path
    images: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    negatives: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    objects: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def split_hash(group: str) -> float:
    """The group's place in [0, 1): its split, stable as more labels arrive."""
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big") / 2.0**64


def split_of(group: str, val_fraction: float) -> str:
    """train or val, decided by the group's hash."""
    return "val" if split_hash(group) < val_fraction else "train"


def newest_label_sets(ctx: Context) -> list[PhotoLabelRow]:
    """The newest label set of each labelled photo, one per stored photo, oldest first."""
    with ctx.store.session() as s:
        rows = list(s.scalars(select(PhotoLabelRow).order_by(PhotoLabelRow.id)))
    by_photo = {(r.case_id, r.photo): r for r in rows}
    by_sha = {r.sha256: r for r in sorted(by_photo.values(), key=lambda r: r.id)}
    return sorted(by_sha.values(), key=lambda r: r.id)


def _prepare(out: Path) -> None:
    """An empty folder, or one an earlier export wrote (its images and labels are replaced);
    any other folder with files in it is refused rather than overwritten."""
    if out.exists() and any(out.iterdir()) and not (out / SOURCE_FILE).is_file():
        raise ConfigError(
            f"{out} has files and is not an earlier export (no {SOURCE_FILE}): choose an empty "
            "or new folder"
        )
    for sub in ("images", "labels"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)


def label_lines(row: PhotoLabelRow, classes: tuple[str, ...]) -> list[str]:
    """The label set as YOLO segmentation lines (class x1 y1 x2 y2 ..., normalised)."""
    w, h = row.width_px, row.height_px
    lines = []
    for obj in row.objects:
        if obj["class_name"] not in classes:  # a class the detector no longer learns
            continue
        coords = " ".join(
            f"{min(max(x / w, 0.0), 1.0):.6f} {min(max(y / h, 0.0), 1.0):.6f}"
            for x, y in obj["polygon_px"]
        )
        lines.append(f"{classes.index(obj['class_name'])} {coords}")
    return lines


def export_verified(
    ctx: Context, out: Path, *, val_fraction: float = 0.2, progress: bool = False
) -> ExportSummary:
    """Write every labelled photo's newest label set under `out` (see the module's text)."""
    from tqdm import tqdm

    from pipeline import case_photos

    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    _prepare(out)
    classes = detector_classes()
    summary = ExportSummary(out_dir=out, objects=dict.fromkeys(classes, 0))
    rows = newest_label_sets(ctx)
    first = last = None
    for row in tqdm(rows, desc="labelled photos", unit="photo", disable=not progress):
        try:
            jpeg = case_photos.public_copy(ctx, row.case_id, row.photo)
        except StreetLensError as exc:  # a photo gone from the store: say so, go on
            summary.skipped.append(f"{row.case_id} photo {row.photo}: {exc}")
            continue
        split = split_of(root_case(ctx, row.case_id), val_fraction)
        stem = f"{row.case_id}-{row.photo}"
        (out / "images" / split / f"{stem}.jpg").write_bytes(jpeg)
        lines = label_lines(row, classes)
        (out / "labels" / split / f"{stem}.txt").write_text(
            "\n".join(lines) + ("\n" if lines else "")
        )
        summary.images[split] += 1
        summary.negatives[split] += not lines
        for obj in row.objects:
            if obj["class_name"] in summary.objects:
                summary.objects[obj["class_name"]] += 1
        at = aware(row.at)
        first = at if first is None or at < first else first
        last = at if last is None or at > last else last
    city = ctx.city.name
    source = {
        "name": f"{SOURCE_NAME}-{ctx.city.slug}",
        "classes": list(classes),
        "map": {i: i for i in range(len(classes))},
        "licence": (
            f"{city}'s own records: residents' photos under its terms of use; share only as "
            "its open-data policy allows"
        ),
        "attribution": (
            f"photos reported to {city} through StreetLens, labelled by its crews and analysts "
            "(faces and plates blurred, metadata removed)"
        ),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labelled_between": [
            first.isoformat(timespec="seconds") if first else None,
            last.isoformat(timespec="seconds") if last else None,
        ],
        "val_fraction": val_fraction,
        "images": summary.images,
        "negatives": summary.negatives,
        "objects": summary.objects,
        "skipped": summary.skipped,
    }
    (out / SOURCE_FILE).write_text(yaml.safe_dump(source, sort_keys=False))
    data = {
        "path": str(out.resolve()),
        "names": dict(enumerate(classes)),
        "train": "images/train",
        "val": "images/val",
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return summary
