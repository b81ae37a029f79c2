"""Evaluate a detector per photo set: box and mask mAP, and false alarms on negatives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vision.dataset import IMAGE_SUFFIXES, Source, build_dataset


def evaluate_sources(
    weights: Path,
    classes: list[str],
    sources: list[Source],
    work_dir: Path,
    *,
    imgsz: int,
    conf: float = 0.25,
) -> dict[str, dict[str, Any]]:
    """Per source: mAP50 / mAP50-95 (box, mask) on its val split, or, for a source with
    no class we detect, the share of its val photos with any detection at `conf`."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    results: dict[str, dict[str, Any]] = {}
    for src in sources:
        val_dir = src.path / "images" / "val"
        if not val_dir.is_dir():
            continue
        if not src.class_map:
            photos = sorted(p for p in val_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            hits = 0
            for i in range(0, len(photos), 16):
                batch = [str(p) for p in photos[i : i + 16]]
                for r in model.predict(batch, imgsz=imgsz, conf=conf, device="cpu", verbose=False):
                    hits += int(len(r.boxes) > 0)
            results[src.name] = {
                "images": len(photos),
                "images_with_detections": hits,
                "false_alarm_rate": hits / max(1, len(photos)),
            }
            continue
        summary = build_dataset(classes, [src], work_dir / src.name, splits=("val",))
        m = model.val(
            data=str(summary.yaml_path), imgsz=imgsz, split="val", device="cpu",
            plots=False, verbose=False, project=str(work_dir / "val"), name=src.name, exist_ok=True,
        )  # fmt: skip
        results[src.name] = {
            "images": summary.images[src.name]["val"],
            "instances": summary.instances[src.name]["val"],
            "box_map50": float(m.box.map50),
            "box_map50_95": float(m.box.map),
            "box_precision": float(m.box.mp),
            "box_recall": float(m.box.mr),
            "mask_map50": float(m.seg.map50),
            "mask_map50_95": float(m.seg.map),
        }
    return results


def serving_threshold(
    weights: Path, classes: list[str], sources: list[Source], work_dir: Path, *, imgsz: int
) -> tuple[float, float]:
    """The confidence where box F1 (mean over classes) peaks on every source's val split
    together, negatives included so that false alarms count: (threshold, F1 there)."""
    import numpy as np
    from ultralytics import YOLO

    summary = build_dataset(classes, sources, work_dir / "_all", splits=("val",))
    m = YOLO(str(weights)).val(
        data=str(summary.yaml_path), imgsz=imgsz, split="val", device="cpu",
        plots=False, verbose=False, project=str(work_dir / "val"), name="_all", exist_ok=True,
    )  # fmt: skip
    f1 = np.asarray(m.box.f1_curve)
    if f1.size == 0:
        return 0.25, 0.0
    mean = f1.mean(0)
    i = int(mean.argmax())
    return float(np.asarray(m.box.px)[i]), float(mean[i])
