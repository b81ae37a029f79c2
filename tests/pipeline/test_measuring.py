"""The pipeline's measuring path: a detector-sized decode still finds the card and uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.measuring import find_card, measure_outline, pose_from
from vision.groundtruth import generate
from vision.image import decode


def test_detector_sized_decode_measures_on_the_card(data_dir: Path) -> None:
    c = generate(data_dir, 1, seed=3)[0]
    img = decode(c.jpeg, target_long_side=1280)  # as analyse() decodes for the detector
    card = find_card(img)
    assert card is not None
    m = measure_outline(img, c.polygon_px, surface="ground", pose=pose_from(None), card=card)
    assert m.method == "marker"
    assert m.area_m2 == pytest.approx(c.area_m2, rel=0.05)
    bare = measure_outline(img, c.polygon_px, surface="ground", pose=pose_from(None))
    assert bare.method == "ground-plane"  # the default pose: a guess, with a wide interval
    lo, hi = bare.area_m2_interval
    assert hi / lo > 2


def test_pose_from_device_readings_narrows_only_what_was_sent() -> None:
    p = pose_from({"pitch_deg": 40.0})
    assert (p.pitch_deg, p.pitch_sigma_deg, p.source) == (40.0, 5.0, "device")
    assert p.height_sigma_m == pose_from(None).height_sigma_m
