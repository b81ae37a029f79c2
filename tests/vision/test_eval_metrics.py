"""The numpy evaluation engine: known answers, and agreement with ultralytics' own code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vision.eval_metrics import (
    IOU_THRESHOLDS,
    ap_per_class,
    box_iou,
    image_stats,
    match,
    summarize,
)
from vision.evaluate import EvalSet, collect, folder_set, ground_truth, report
from vision.types import Detections

NAMES = ["pothole", "graffiti"]
PERFECT = 0.995


def square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def one_image(gt: list[tuple[int, np.ndarray]], dets: list[tuple[int, float, np.ndarray]]):
    gt_cls = np.array([c for c, _ in gt], np.int64)
    det_cls = np.array([c for c, _, _ in dets], np.int64)
    conf = np.array([s for _, s, _ in dets], np.float64)
    polys = [p for _, _, p in dets]
    xyxy = np.array([[*p.min(0), *p.max(0)] for p in polys]).reshape(-1, 4)
    return image_stats("s", (200, 200), gt_cls, [p for _, p in gt], det_cls, conf, xyxy, polys)


def test_perfect_and_missed_detections() -> None:
    a, b = square(10, 10, 60, 60), square(100, 100, 180, 150)
    perfect = one_image([(0, a), (1, b)], [(0, 0.9, a), (1, 0.8, b)])
    empty = one_image([], [])
    m = summarize([perfect, empty], NAMES, conf=0.5)
    # ultralytics 8.4's AP drops to 0 right at the last recall: a perfect score is 0.995.
    assert m["box_map50"] == pytest.approx(PERFECT) and m["mask_map50_95"] == pytest.approx(PERFECT)
    assert m["classes"]["pothole"]["image"] == {
        "tp": 1, "fp": 0, "fn": 0, "tn": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0
    }  # fmt: skip
    assert m["false_alarm_rate"] == 0.0 and m["negative_images"] == 1
    # A detection of the wrong class counts for nothing; one on a negative photo is a false
    # alarm at the threshold, not below it.
    wrong = one_image([(0, a)], [(1, 0.9, a)])
    alarm = one_image([], [(0, 0.7, b)])
    m = summarize([wrong, alarm], NAMES, conf=0.5)
    assert m["classes"]["pothole"]["box_map50"] == 0.0
    assert m["classes"]["graffiti"]["image"]["fp"] == 1
    assert m["false_alarm_rate"] == 1.0
    assert summarize([alarm], NAMES, conf=0.8)["false_alarm_rate"] == 0.0


def test_mask_iou_differs_from_box_iou() -> None:
    # Same box, but the mask is a thin L: box mAP50 is 1, mask mAP50 is 0.
    full = square(0, 0, 100, 100)
    ell = np.array([[0, 0], [10, 0], [10, 90], [100, 90], [100, 100], [0, 100]], np.float64)
    m = summarize([one_image([(0, full)], [(0, 0.9, ell)])], NAMES, conf=0.5)
    assert m["classes"]["pothole"]["box_map50"] == pytest.approx(PERFECT)
    assert m["classes"]["pothole"]["mask_map50"] == 0.0


@pytest.mark.slow
def test_matching_and_ap_agree_with_ultralytics(ultralytics_ready: None) -> None:
    """The same true positives and AP as ultralytics' match_predictions / ap_per_class."""
    import torch
    from ultralytics.models.yolo.detect.val import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class as ul_ap

    rng = np.random.default_rng(0)
    v = DetectionValidator()
    v.iouv = torch.tensor(IOU_THRESHOLDS, dtype=torch.float32)
    tps, confs, dcls, gcls = [], [], [], []
    for _ in range(30):
        g = rng.uniform(0, 150, (rng.integers(0, 5), 2))
        gt = np.c_[g, g + rng.uniform(10, 50, g.shape)]
        d = (
            np.r_[gt + rng.normal(0, 4, gt.shape), rng.uniform(0, 200, (3, 4))]
            if len(gt)
            else (rng.uniform(0, 150, (2, 4)))
        )
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        gc, dc = rng.integers(0, 2, len(gt)), rng.integers(0, 2, len(d))
        ours = match(box_iou(gt, d), gc, dc)
        theirs = v.match_predictions(
            torch.tensor(dc), torch.tensor(gc), torch.tensor(box_iou(gt, d), dtype=torch.float32)
        ).numpy()
        np.testing.assert_array_equal(ours, theirs)
        tps.append(ours)
        confs.append(rng.uniform(0, 1, len(d)))
        dcls.append(dc)
        gcls.append(gc)
    tp, conf, dc, gc = (np.concatenate(x) for x in (tps, confs, dcls, gcls))
    ours = ap_per_class(tp, conf, dc, gc)
    ref = ul_ap(tp, conf, dc, gc)
    ap_ref, classes = ref[5], ref[6]
    for i, c in enumerate(classes):
        np.testing.assert_allclose(ours.ap[int(c)], ap_ref[i], atol=1e-6)


def test_folders_and_labels(tmp_path: Path) -> None:
    """A YOLO folder maps classes by name; a plain folder is all negatives; boxes become
    rectangles in pixels."""
    root = tmp_path / "yolo"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(root / "images" / "val" / "a.jpg")
    (root / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.5 0.2\n0 0.1 0.1 0.2 0.1 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"names": {0: "crack", 1: "Pothole"}}))
    s = folder_set(root, NAMES)
    assert s.class_map == {1: 0} and len(s.items) == 1
    cls, polys = ground_truth(s.items[0][1], s, (100, 200))
    assert cls.tolist() == [0]
    np.testing.assert_allclose(polys[0], square(50, 40, 150, 60))
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(plain / "sub" / "x.png")
    (plain / "notes.txt").write_text("not a photo")
    p = folder_set(plain, NAMES)
    assert p.class_map == {} and [i[0].name for i in p.items] == ["x.png"]


class NothingBut:
    """A detector that reports one fixed pothole everywhere (a stand-in with a known answer)."""

    class_names = tuple(NAMES)

    def detect(self, rgb: np.ndarray) -> Detections:
        box = np.array([[0, 0, rgb.shape[1], rgb.shape[0]]], np.float32)
        return Detections(box, np.array([0.6], np.float32), np.array([0]), None, NAMES)


def test_collect_and_report_per_source(tmp_path: Path) -> None:
    for name in ("p", "n"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (50, 40)).save(tmp_path / name / "a.png")
    (tmp_path / "p" / "a.txt").write_text("0 0.5 0.5 1.0 1.0\n")
    sets = [
        EvalSet("p", ((tmp_path / "p" / "a.png", tmp_path / "p" / "a.txt"),), {0: 0}),
        EvalSet("n", ((tmp_path / "n" / "a.png", None),), {}),
    ]
    r = report(collect(NothingBut(), sets, progress=False), NAMES, conf=0.5)
    assert r["sources"]["p"]["box_map50"] == pytest.approx(PERFECT)
    assert r["sources"]["n"]["false_alarm_rate"] == 1.0
    assert r["all"]["classes"]["pothole"]["image"]["precision"] == 0.5
    assert "numpy" in r["engine"]
