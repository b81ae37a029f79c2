"""Build one YOLO-segmentation training set from several labelled photo sets."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vision.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class Source:
    """One labelled photo set and how its classes map onto ours."""

    name: str
    path: Path
    class_map: dict[int, int]
    boxes: bool = False
    licence: str = ""
    attribution: str = ""
    # Training weight: each train photo is listed `repeat` times (a small set among large ones
    # is otherwise seen too rarely to be learnt), a train photo with nothing of ours on it
    # `negatives_repeat` times (hard negatives: crack-only roads). Val photos are listed once.
    repeat: int = 1
    negatives_repeat: int = 1


@dataclass
class BuildSummary:
    """What a build wrote, per source and split."""

    yaml_path: Path
    images: dict[str, dict[str, int]] = field(default_factory=dict)
    instances: dict[str, dict[str, int]] = field(default_factory=dict)
    # Train photos listed more than once (source weights): extra listings per source.
    extra_listings: dict[str, int] = field(default_factory=dict)


def load_sources(manifest: Path, data_dir: Path) -> tuple[list[str], list[Source]]:
    """Read a detector source manifest; paths resolve against the data directory."""
    spec = yaml.safe_load(manifest.read_text())
    sources = []
    for s in spec["sources"]:
        root = data_dir / s["path"]
        if not (root / "images").is_dir():
            raise DatasetError(f"source {s['name']!r}: no images/ folder under {root}")
        sources.append(
            Source(
                name=s["name"],
                path=root,
                class_map={int(k): int(v) for k, v in (s.get("map") or {}).items()},
                boxes=bool(s.get("boxes", False)),
                licence=s.get("licence", ""),
                attribution=s.get("attribution", ""),
                repeat=_repeat(s, "repeat"),
                negatives_repeat=_repeat(s, "negatives_repeat"),
            )
        )
    return list(spec["classes"]), sources


def _repeat(spec: dict, key: str) -> int:
    value = spec.get(key, 1)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
        raise DatasetError(
            f"source {spec['name']!r}: {key} must be a whole number 1-10, not {value!r}"
        )
    return value


def load_added_source(folder: Path, classes: list[str]) -> Source:
    """A labelled photo set outside the manifest (`streetlens train --add-source`): a folder
    with images/ and labels/ and a `source.yaml` saying its name, classes, licence and
    attribution, as `streetlens dataset export-verified` writes one. Its classes are mapped
    onto ours by name; a class we do not learn is dropped."""
    folder = Path(folder)
    meta_path = folder / "source.yaml"
    if not meta_path.is_file():
        raise DatasetError(
            f"{folder} has no source.yaml (name, classes, licence, attribution): a set without "
            "its provenance is not trained on"
        )
    meta = yaml.safe_load(meta_path.read_text()) or {}
    missing = [k for k in ("name", "classes", "licence") if not meta.get(k)]
    if missing:
        raise DatasetError(f"{meta_path} lacks {', '.join(missing)}")
    if not (folder / "images").is_dir():
        raise DatasetError(f"source {meta['name']!r}: no images/ folder under {folder}")
    theirs = list(meta["classes"])
    return Source(
        name=str(meta["name"]),
        path=folder.resolve(),
        class_map={i: classes.index(c) for i, c in enumerate(theirs) if c in classes},
        boxes=bool(meta.get("boxes", False)),
        licence=str(meta["licence"]),
        attribution=str(meta.get("attribution", "")),
    )


def convert_label(text: str, class_map: dict[int, int], boxes: bool) -> list[str]:
    """Map one YOLO label file's lines onto our classes, boxes becoming 4-point polygons."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        cls = int(float(parts[0]))
        if cls not in class_map:
            continue
        coords = [float(v) for v in parts[1:]]
        if boxes or len(coords) == 4:
            cx, cy, w, h = coords[:4]
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            coords = [x0, y0, x1, y0, x1, y1, x0, y1]
        if len(coords) < 6 or len(coords) % 2:
            continue
        coords = [min(1.0, max(0.0, c)) for c in coords]
        out.append(f"{class_map[cls]} " + " ".join(f"{c:.6f}" for c in coords))
    return out


def build_dataset(
    classes: list[str],
    sources: list[Source],
    out_dir: Path,
    splits: tuple[str, ...] = ("train", "val"),
) -> BuildSummary:
    """Write a combined dataset (image symlinks + converted labels) and its data.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = BuildSummary(yaml_path=out_dir / "data.yaml")
    for split in splits:
        img_out = out_dir / "images" / split
        lbl_out = out_dir / "labels" / split
        # A rebuild starts clean: a listing from an earlier build (a source since dropped, a
        # weight since lowered) would otherwise still be trained on.
        for stale in (img_out, lbl_out):
            if stale.is_dir():
                shutil.rmtree(stale)
        (out_dir / "labels" / f"{split}.cache").unlink(missing_ok=True)
        img_out.mkdir(parents=True, exist_ok=True)
        lbl_out.mkdir(parents=True, exist_ok=True)
        for src in sources:
            src_imgs = src.path / "images" / split
            if not src_imgs.is_dir():
                continue
            n_img = n_inst = 0
            for img in sorted(src_imgs.iterdir()):
                if img.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                label = src.path / "labels" / split / f"{img.stem}.txt"
                lines = (
                    convert_label(label.read_text(), src.class_map, src.boxes)
                    if label.exists()
                    else []
                )
                copies = 1
                if split == "train":
                    copies = src.repeat if lines else max(src.repeat, src.negatives_repeat)
                text = "\n".join(lines) + ("\n" if lines else "")
                for k in range(copies):  # the folders were emptied above: nothing to replace
                    stem = f"{src.name}__{img.stem}" + (f"__w{k}" if k else "")
                    os.symlink(img.resolve(), img_out / f"{stem}{img.suffix.lower()}")
                    (lbl_out / f"{stem}.txt").write_text(text)
                if copies > 1:
                    summary.extra_listings[src.name] = (
                        summary.extra_listings.get(src.name, 0) + copies - 1
                    )
                n_img += 1
                n_inst += len(lines)
            summary.images.setdefault(src.name, {})[split] = n_img
            summary.instances.setdefault(src.name, {})[split] = n_inst
    data = {"path": str(out_dir.resolve()), "names": dict(enumerate(classes))}
    for split in splits:
        data[split] = f"images/{split}"
    # ultralytics insists on both keys, even for an evaluation-only set.
    data.setdefault("train", data.get("val"))
    data.setdefault("val", data.get("train"))
    summary.yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return summary
