"""Detection metrics in numpy: box and mask mAP (COCO 101-point, ultralytics' matching rules),
precision/recall at a threshold, and image-level "is there one" counts. No torch needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
MASK_GRID_PX = 160  # masks are compared on a grid this long (ultralytics: the 1/4-size protos)


@dataclass
class ImageStats:
    """One image's detections matched against its ground truth at the 10 IoU thresholds."""

    source: str
    gt_cls: np.ndarray  # (G,) int
    det_cls: np.ndarray  # (D,) int
    det_conf: np.ndarray  # (D,) float
    box_tp: np.ndarray  # (D, 10) bool
    mask_tp: np.ndarray  # (D, 10) bool


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (br - tl).clip(0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match(
    iou: np.ndarray, gt_cls: np.ndarray, det_cls: np.ndarray, det_conf: np.ndarray | None = None
) -> np.ndarray:
    """(G, D) IoU -> (D, 10) true positives: detections in descending confidence each claim
    the best unclaimed ground truth of their class, per threshold (ultralytics 8.4's
    match_predictions, the COCO rule)."""
    correct = np.zeros((len(det_cls), len(IOU_THRESHOLDS)), bool)
    if len(gt_cls) == 0 or len(det_cls) == 0:
        return correct
    iou = iou * (gt_cls[:, None] == det_cls[None, :])
    order = np.arange(len(det_cls)) if det_conf is None else np.argsort(-det_conf, kind="stable")
    claimed = np.zeros((len(gt_cls), len(IOU_THRESHOLDS)), bool)
    cols = np.arange(len(IOU_THRESHOLDS))
    for j in order:
        if not (iou[:, j] >= IOU_THRESHOLDS[0]).any():
            continue
        available = np.where(claimed, 0.0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, cols] >= IOU_THRESHOLDS
        claimed[k, cols] |= correct[j]
    return correct


def rasterize(polygons: list[np.ndarray], shape: tuple[int, int], scale: float) -> np.ndarray:
    """(K, h*w) float32 masks of pixel-frame polygons drawn on a grid `scale` times smaller."""
    h, w = max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
    out = np.zeros((len(polygons), h, w), np.uint8)
    for i, p in enumerate(polygons):
        pts = np.round(np.asarray(p, np.float64) * scale - 0.5).astype(np.int32)
        cv2.fillPoly(out[i], [pts], 1)
    return out.reshape(len(polygons), -1).astype(np.float32)


def image_stats(
    source: str,
    shape: tuple[int, int],
    gt_cls: np.ndarray,
    gt_polygons: list[np.ndarray],
    det_cls: np.ndarray,
    det_conf: np.ndarray,
    det_xyxy: np.ndarray,
    det_polygons: list[np.ndarray],
) -> ImageStats:
    """Match one image's detections (pixel frame) to its ground-truth polygons."""
    gt_xyxy = np.array([[*p.min(0), *p.max(0)] for p in gt_polygons], np.float64).reshape(-1, 4)
    biou = box_iou(gt_xyxy, det_xyxy.astype(np.float64))
    box_tp = match(biou, gt_cls, det_cls, det_conf)
    miou = np.zeros_like(biou)
    # Only a detection overlapping a ground truth of its class can match: draw just those.
    cand = np.nonzero(((biou > 0) & (gt_cls[:, None] == det_cls[None, :])).any(0))[0]
    if len(cand):
        scale = min(1.0, MASK_GRID_PX / max(shape))
        g = rasterize(gt_polygons, shape, scale)
        d = rasterize([det_polygons[i] for i in cand], shape, scale)
        inter = g @ d.T
        union = g.sum(1)[:, None] + d.sum(1)[None, :] - inter
        miou[:, cand] = inter / np.maximum(union, 1e-9)
    mask_tp = match(miou, gt_cls, det_cls, det_conf)
    return ImageStats(source, gt_cls, det_cls, det_conf, box_tp, mask_tp)


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, sampled at 101 recall points (COCO)."""
    # Precision drops to 0 right after the last recall reached (no credit beyond it).
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


@dataclass
class ClassCurves:
    """Per-class AP at the 10 IoU thresholds and P/R/F1 curves over confidence."""

    ap: dict[int, np.ndarray] = field(default_factory=dict)
    f1: dict[int, np.ndarray] = field(default_factory=dict)


CONF_GRID = np.linspace(0, 1, 1000)


def ap_per_class(tp: np.ndarray, conf: np.ndarray, det_cls: np.ndarray, gt_cls: np.ndarray):
    """AP per class that has ground truth, and its F1 curve over CONF_GRID (IoU 0.5)."""
    out = ClassCurves()
    order = np.argsort(-conf, kind="stable")
    tp, conf, det_cls = tp[order], conf[order], det_cls[order]
    for c in np.unique(gt_cls):
        n_gt = int((gt_cls == c).sum())
        sel = det_cls == c
        if not sel.any():
            out.ap[int(c)] = np.zeros(len(IOU_THRESHOLDS))
            out.f1[int(c)] = np.zeros(len(CONF_GRID))
            continue
        tpc = tp[sel].cumsum(0)
        fpc = (~tp[sel]).cumsum(0)
        recall = tpc / n_gt
        precision = tpc / (tpc + fpc)
        out.ap[int(c)] = np.array(
            [compute_ap(recall[:, k], precision[:, k]) for k in range(tp.shape[1])]
        )
        r = np.interp(-CONF_GRID, -conf[sel], recall[:, 0], left=0)
        p = np.interp(-CONF_GRID, -conf[sel], precision[:, 0], left=1)
        out.f1[int(c)] = 2 * p * r / (p + r + 1e-16)
    return out


def summarize(stats: list[ImageStats], class_names: list[str], conf: float) -> dict[str, Any]:
    """mAP (box, mask), P/R at `conf` per class, image-level P/R/F1 and false alarms."""
    nc = len(class_names)
    cat = np.concatenate
    gt_cls = cat([s.gt_cls for s in stats] or [np.zeros(0, int)]).astype(int)
    det_cls = cat([s.det_cls for s in stats] or [np.zeros(0, int)]).astype(int)
    det_conf = cat([s.det_conf for s in stats] or [np.zeros(0)])
    box_tp = cat([s.box_tp for s in stats] or [np.zeros((0, 10), bool)])
    mask_tp = cat([s.mask_tp for s in stats] or [np.zeros((0, 10), bool)])
    box, mask = (ap_per_class(t, det_conf, det_cls, gt_cls) for t in (box_tp, mask_tp))
    kept = det_conf >= conf
    out: dict[str, Any] = {"images": len(stats), "instances": len(gt_cls)}
    classes: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        n_gt = int((gt_cls == c).sum())
        sel = kept & (det_cls == c)
        m: dict[str, Any] = {"instances": n_gt, "detections": int(sel.sum())}
        if n_gt:
            m |= {
                "box_map50": float(box.ap[c][0]), "box_map50_95": float(box.ap[c].mean()),
                "mask_map50": float(mask.ap[c][0]), "mask_map50_95": float(mask.ap[c].mean()),
                "box_recall": float(box_tp[sel, 0].sum() / n_gt),
                "mask_recall": float(mask_tp[sel, 0].sum() / n_gt),
            }  # fmt: skip
        if sel.any():
            m["box_precision"] = float(box_tp[sel, 0].mean())
            m["mask_precision"] = float(mask_tp[sel, 0].mean())
        m["image"] = _image_level(stats, c, conf)
        classes[name] = m
    present = [c for c in range(nc) if c in box.ap]
    if present:
        for kind, curves in (("box", box), ("mask", mask)):
            out[f"{kind}_map50"] = float(np.mean([curves.ap[c][0] for c in present]))
            out[f"{kind}_map50_95"] = float(np.mean([curves.ap[c].mean() for c in present]))
        with_gt = [classes[class_names[c]] for c in present]
        out["box_precision"] = float(np.mean([m.get("box_precision", 0.0) for m in with_gt]))
        out["box_recall"] = float(np.mean([m["box_recall"] for m in with_gt]))
    negatives = [s for s in stats if len(s.gt_cls) == 0]
    hits = sum(bool((s.det_conf >= conf).any()) for s in negatives)
    out["negative_images"] = len(negatives)
    out["images_with_detections"] = sum(bool((s.det_conf >= conf).any()) for s in stats)
    out["false_alarm_rate"] = hits / len(negatives) if negatives else None
    out["classes"] = classes
    return out


def _image_level(stats: list[ImageStats], c: int, conf: float) -> dict[str, Any]:
    tp = fp = fn = tn = 0
    for s in stats:
        truth = bool((s.gt_cls == c).any())
        said = bool(((s.det_cls == c) & (s.det_conf >= conf)).any())
        tp += truth and said
        fp += said and not truth
        fn += truth and not said
        tn += not truth and not said
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else (0.0 if precision is not None and recall is not None else None)
    )
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": precision, "recall": recall, "f1": f1}  # fmt: skip


def best_threshold(stats: list[ImageStats], nc: int) -> tuple[float, float]:
    """The confidence where box F1 (mean over classes with ground truth) peaks: (conf, F1)."""
    cat = np.concatenate
    if not stats:
        return 0.25, 0.0
    curves = ap_per_class(
        cat([s.box_tp for s in stats]),
        cat([s.det_conf for s in stats]),
        cat([s.det_cls for s in stats]).astype(int),
        cat([s.gt_cls for s in stats]).astype(int),
    )
    if not curves.f1:
        return 0.25, 0.0
    mean = np.mean([curves.f1[c] for c in curves.f1 if c < nc], 0)
    i = int(mean.argmax())
    return float(CONF_GRID[i]), float(mean[i])
