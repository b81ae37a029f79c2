"""A built training set packed small enough to travel to another machine (an accelerator)
and unpacked there into the layout ultralytics reads.

`build_dataset` writes symlinks into the data directory and lists a weighted source's train
photos several times; neither travels well. A pack holds each photo once, shrunk to the
training size (ultralytics loads every photo with its long side at `imgsz` anyway, so a
larger original adds bytes and nothing else) and re-encoded as WebP, and one JSON index that
says, per split, which listing shows which photo with which label text. `unpack` writes the
symlinks and labels back out.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import yaml

from vision.errors import DatasetError

INDEX = "index.json.gz"
PACK_FORMAT = 1


@dataclass(frozen=True)
class PackSummary:
    """What a pack holds: photos (each once), listings per split, bytes on disk."""

    photos: int
    listings: dict[str, int]
    bytes: int


def pack_dataset(
    data_yaml: Path, out: Path, *, imgsz: int = 416, quality: int = 75, progress: bool = False
) -> PackSummary:
    """Pack the set `build_dataset` wrote (its data.yaml) into `out` (emptied first)."""
    data = yaml.safe_load(Path(data_yaml).read_text())
    root = Path(data["path"])
    if out.exists():
        shutil.rmtree(out)
    (out / "photos").mkdir(parents=True)
    index: dict = {"format": PACK_FORMAT, "imgsz": imgsz, "names": data["names"], "splits": {}}
    photo_of: dict[str, str] = {}  # the original's real path -> its name in the pack
    splits = [s for s in ("train", "val") if s in data]
    listings = {s: sorted((root / data[s]).iterdir()) for s in splits}
    bar = _bar(sum(len(v) for v in listings.values()), progress)
    for split in splits:
        rows = []
        for listing in listings[split]:
            real = os.path.realpath(listing)
            name = photo_of.get(real)
            if name is None:
                name = f"{len(photo_of):05d}.webp"
                _shrink(Path(real), out / "photos" / name, imgsz, quality)
                photo_of[real] = name
            label = root / "labels" / split / f"{listing.stem}.txt"
            rows.append([listing.stem, name, label.read_text() if label.exists() else ""])
            bar.update(1)
        index["splits"][split] = rows
    bar.close()
    with gzip.open(out / INDEX, "wt") as f:
        json.dump(index, f)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return PackSummary(len(photo_of), {s: len(r) for s, r in index["splits"].items()}, size)


def _shrink(src: Path, dst: Path, imgsz: int, quality: int) -> None:
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{src}: not a photo OpenCV can read")
    h, w = img.shape[:2]
    r = imgsz / max(h, w)
    if r < 1:
        img = cv2.resize(img, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise DatasetError(f"{src}: could not be encoded as WebP")
    dst.write_bytes(buf.tobytes())


def unpack(pack: Path, dest: Path) -> tuple[Path, int]:
    """Write the pack's listings (symlinks to its photos) and labels under `dest`; return the
    data.yaml to train on and the training size the photos were shrunk to."""
    index_path = pack / INDEX
    if not index_path.is_file():
        raise DatasetError(f"{pack} is not a training pack (no {INDEX})")
    with gzip.open(index_path, "rt") as f:
        index = json.load(f)
    if index.get("format") != PACK_FORMAT:
        got = index.get("format")
        raise DatasetError(f"{pack}: pack format {got}; this code reads {PACK_FORMAT}")
    photos = (pack / "photos").resolve()
    # JSON keys are strings: the class ids go back to integers, as build_dataset wrote them.
    names = {int(k): v for k, v in index["names"].items()}
    data = {"path": str(dest.resolve()), "names": names}
    for split, rows in index["splits"].items():
        img_dir, lbl_dir = dest / "images" / split, dest / "labels" / split
        for d in (img_dir, lbl_dir):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        (dest / "labels" / f"{split}.cache").unlink(missing_ok=True)
        for stem, name, text in rows:
            if not (photos / name).is_file():
                raise DatasetError(f"{pack}: photo {name} of listing {stem} is missing")
            os.symlink(photos / name, img_dir / f"{stem}.webp")
            (lbl_dir / f"{stem}.txt").write_text(text)
        data[split] = f"images/{split}"
    data.setdefault("val", data.get("train"))
    out = dest / "data.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out, int(index["imgsz"])


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="packing", unit="photo", disable=not progress)
