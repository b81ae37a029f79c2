"""bf16 inference (OpenVINO on a CPU with bf16 units, what `auto` serves there): the served
model's f32 export computed in bf16 finds what f32 finds, nearly where and as sure. On a CPU
without bf16 units OpenVINO runs f32 (AVX2) or emulates bf16 (AVX-512, slower than f32): the
detector says which it runs (`precision`), and `auto` asks for bf16 only where it is native."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import yaml
from helpers import require
from test_detector import box_iou, parity_photos, parity_threshold

from vision.image import decode

# bf16 keeps 8 bits of mantissa. Measured with v3 on the parity photos (19 objects): worst box
# IoU 0.988, worst score change 0.006; on the frozen split mAP moved <= 0.005 (docs/operations.md).
MIN_BOX_IOU = 0.9
CONF_TOL = 0.05


def test_bf16_finds_what_f32_finds(served_model: Path) -> None:
    require(importlib.util.find_spec("openvino") is not None, "OpenVINO (the train extra)")
    from vision.detector_openvino import native_bf16
    from vision.detector_select import load_detector

    meta = yaml.safe_load((served_model / "meta.yaml").read_text())
    names = meta["class_names"]
    photos = parity_photos()
    rgbs = [decode(p.read_bytes()).rgb for p in photos]
    conf = parity_threshold(served_model / "model.onnx", names, rgbs)
    f32 = load_detector(served_model, names, backend="openvino", conf=conf)
    bf16 = load_detector(served_model, names, backend="openvino-bf16", conf=conf / 2)
    assert f32.precision == "f32"
    if native_bf16():
        assert bf16.precision == "bf16"
    assert bf16.backend == {"bf16": "openvino-bf16", "f32": "openvino"}[bf16.precision]
    auto = load_detector(served_model, names, backend="auto", conf=conf)
    assert auto.precision == ("bf16" if native_bf16() else "f32")
    compared = 0
    for p, rgb in zip(photos, rgbs, strict=True):
        ref, got = f32.detect(rgb), bf16.detect(rgb)
        for j in np.flatnonzero(ref.confidence >= conf):
            same = [i for i in range(len(got)) if got.class_id[i] == ref.class_id[j]]
            best = max(same, key=lambda i: box_iou(got.xyxy[i], ref.xyxy[j]), default=None)
            assert best is not None, f"{p.name}: bf16 loses {ref.xyxy[j]}"
            assert box_iou(got.xyxy[best], ref.xyxy[j]) >= MIN_BOX_IOU, p.name
            assert abs(got.confidence[best] - ref.confidence[j]) <= CONF_TOL, p.name
            compared += 1
    assert compared >= 5, f"only {compared} detections to compare at {conf}"
