"""Evaluate a detector on labelled photo sets and folders of negatives, with our own engine:
the detector's own outputs (the served runtime, or ultralytics weights) scored in numpy by
vision.eval_metrics. No torch is needed to evaluate an exported model."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from vision.dataset import IMAGE_SUFFIXES, Source, convert_label
from vision.detector import Detector
from vision.errors import DatasetError
from vision.eval_metrics import ImageStats, best_threshold, box_iou, image_stats, summarize
from vision.types import Detections

ENGINE = (
    "StreetLens numpy engine (vision/eval_metrics.py): the model's own detections at conf "
    ">= 0.001 with the serving NMS (IoU 0.5), COCO 101-point AP at IoU 0.50:0.95 with "
    "ultralytics' matching rules; masks compared as polygons on a 160 px grid"
)
EVAL_MIN_CONF = 0.001  # as ultralytics val: the whole precision-recall curve


@dataclass(frozen=True)
class EvalSet:
    """Photos to evaluate on: (image, label file or None) pairs and how labels map to ours."""

    name: str
    items: tuple[tuple[Path, Path | None], ...]
    class_map: dict[int, int]
    boxes: bool = False


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def source_set(src: Source, split: str = "val", only: Sequence[str] | None = None) -> EvalSet:
    """A source's split (optionally only the named files: a frozen split)."""
    img_dir = src.path / "images" / split
    if not img_dir.is_dir():
        raise DatasetError(f"source {src.name!r} has no {split} split at {img_dir}")
    images = _images(img_dir)
    if only is not None:
        wanted = set(only)
        images = [p for p in images if p.name in wanted]
        missing = wanted - {p.name for p in images}
        if missing:
            raise DatasetError(
                f"source {src.name!r}: {len(missing)} photo(s) of the frozen split are missing "
                f"from {img_dir} (e.g. {sorted(missing)[0]})"
            )
    items = tuple((p, src.path / "labels" / split / f"{p.stem}.txt") for p in images)
    return EvalSet(src.name, items, dict(src.class_map), src.boxes)


def folder_set(folder: Path, classes: Sequence[str], split: str = "val") -> EvalSet:
    """A YOLO dataset folder (images/[split]/ + labels/, classes matched by name through its
    data.yaml) or a plain folder of photos (unlabelled: every detection is a false alarm)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder, a source name or 'all'")
    img_root = folder / "images"
    if img_root.is_dir():
        img_dir = img_root / split if (img_root / split).is_dir() else img_root
        lbl_dir = folder / "labels" / img_dir.relative_to(img_root)
        class_map = _class_map_by_name(folder, classes)
        items = tuple((p, lbl_dir / f"{p.stem}.txt") for p in _images(img_dir))
    else:
        class_map = {}
        items = tuple((p, None) for p in sorted(folder.rglob("*")) if _is_image(p))
    if not items:
        raise DatasetError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return EvalSet(folder.name, items, class_map)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def _class_map_by_name(folder: Path, classes: Sequence[str]) -> dict[int, int]:
    spec = folder / "data.yaml"
    if not spec.exists():
        return {i: i for i in range(len(classes))}  # no names: assume our class ids
    names = yaml.safe_load(spec.read_text()).get("names") or {}
    if isinstance(names, list):
        names = dict(enumerate(names))
    ours = {n.lower(): i for i, n in enumerate(classes)}
    return {int(k): ours[str(v).lower()] for k, v in names.items() if str(v).lower() in ours}


def read_rgb(path: Path) -> np.ndarray:
    """The stored pixels as RGB (labels match the stored pixels, not an EXIF rotation)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise DatasetError(f"cannot read the photo {path}")
    return np.ascontiguousarray(bgr[..., ::-1])


def ground_truth(
    label: Path | None, eval_set: EvalSet, shape: tuple[int, int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Our class ids and pixel-frame polygons from a YOLO label file (boxes as rectangles)."""
    if label is None or not label.exists():
        return np.zeros(0, np.int64), []
    h, w = shape
    cls, polys = [], []
    for line in convert_label(label.read_text(), eval_set.class_map, eval_set.boxes):
        vals = line.split()
        pts = np.asarray(vals[1:], np.float64).reshape(-1, 2) * (w, h)
        cls.append(int(vals[0]))
        polys.append(pts)
    return np.asarray(cls, np.int64), polys


def collect(
    detector: Detector, sets: Sequence[EvalSet], *, progress: bool = True
) -> list[ImageStats]:
    """Run the detector on every photo and match its detections to the ground truth."""
    from tqdm import tqdm

    todo = [(s, img, lbl) for s in sets for img, lbl in s.items]
    stats = []
    bar = tqdm(todo, desc="evaluating", unit="photo", file=sys.stderr, disable=not progress)
    for eval_set, img, lbl in bar:
        rgb = read_rgb(img)
        shape = rgb.shape[:2]
        gt_cls, gt_polys = ground_truth(lbl, eval_set, shape)
        d = _detect(detector, rgb, gt_cls, gt_polys)
        cls = d.class_id.astype(np.int64)
        polys = list(d.polygons)
        stats.append(
            image_stats(eval_set.name, shape, gt_cls, gt_polys, cls, d.confidence, d.xyxy, polys)
        )
    return stats


def _detect(
    detector: Detector, rgb: np.ndarray, gt_cls: np.ndarray, gt_polys: list[np.ndarray]
) -> Detections:
    outlined = getattr(detector, "detect_outlined", None)
    if outlined is None:
        return detector.detect(rgb)
    gt_xyxy = np.array([[*p.min(0), *p.max(0)] for p in gt_polys]).reshape(-1, 4)

    def near_truth(xyxy: np.ndarray, cls: np.ndarray) -> np.ndarray:
        # Only a detection overlapping a ground truth of its class can match by mask IoU.
        same = cls[:, None] == gt_cls[None, :]
        return ((box_iou(xyxy.astype(np.float64), gt_xyxy) > 0) & same).any(1)

    return outlined(rgb, near_truth)


def report(stats: list[ImageStats], class_names: Sequence[str], conf: float) -> dict[str, Any]:
    """Per source and over all of them: mAP, P/R at `conf`, image-level counts."""
    names = list(class_names)
    by_source: dict[str, list[ImageStats]] = {}
    for s in stats:
        by_source.setdefault(s.source, []).append(s)
    return {
        "engine": ENGINE,
        "conf": conf,
        "sources": {k: summarize(v, names, conf) for k, v in by_source.items()},
        "all": summarize(stats, names, conf),
    }


def choose_threshold(stats: list[ImageStats], n_classes: int) -> tuple[float, float]:
    """Serving threshold: where mean box F1 peaks over all photos, negatives included;
    clamped to 0.05-0.5 (a young model's scores run low). (conf, F1 there)."""
    conf, f1 = best_threshold(stats, n_classes)
    return round(min(0.5, max(0.05, conf)), 3), f1


def _f(v: object) -> str:
    return "  —  " if v is None else f"{v:.3f}"


def format_table(result: dict[str, Any]) -> str:
    """A readable table of a report(): one row per source and class, then image-level."""
    head = (
        f"{'source':<24}{'class':<10}{'inst':>6}{'box50':>8}{'box50-95':>9}{'mask50':>8}"
        f"{'mask50-95':>10}{'P':>7}{'R':>7}"
    )
    lines = [f"at the serving threshold conf={result['conf']}", head, "-" * len(head)]
    scopes = [*result["sources"].items(), ("ALL", result["all"])]
    for name, m in scopes:
        for cls, c in m["classes"].items():
            if not c["instances"] and not c["detections"]:
                continue
            lines.append(
                f"{name:<24}{cls:<10}{c['instances']:>6}{_f(c.get('box_map50')):>8}"
                f"{_f(c.get('box_map50_95')):>9}{_f(c.get('mask_map50')):>8}"
                f"{_f(c.get('mask_map50_95')):>10}{_f(c.get('box_precision')):>7}"
                f"{_f(c.get('box_recall')):>7}"
            )
    lines += ["", "image level (is there one in the photo?)",
              f"{'source':<24}{'class':<10}{'TP':>5}{'FP':>5}{'FN':>5}{'TN':>5}"
              f"{'P':>7}{'R':>7}{'F1':>7}"]  # fmt: skip
    for name, m in scopes:
        for cls, c in m["classes"].items():
            i = c["image"]
            lines.append(
                f"{name:<24}{cls:<10}{i['tp']:>5}{i['fp']:>5}{i['fn']:>5}{i['tn']:>5}"
                f"{_f(i['precision']):>7}{_f(i['recall']):>7}{_f(i['f1']):>7}"
            )
    lines.append("")
    for name, m in scopes:
        if m["negative_images"]:
            lines.append(
                f"{name}: {m['negative_images']} photos with nothing to find, false alarms on "
                f"{m['false_alarm_rate']:.1%}"
            )
    return "\n".join(lines)
