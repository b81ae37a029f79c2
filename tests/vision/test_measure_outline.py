"""A drawn box becomes the object's outline (GrabCut); hopeless boxes stay boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.errors import InvalidArgument
from vision.measure_outline import refine_box


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Grey textured ground with a dark ellipse; its true outline."""
    rng = np.random.default_rng(0)
    img = rng.normal(150, 12, (600, 800, 3)).clip(0, 255).astype(np.uint8)
    truth = cv2.ellipse2Poly((400, 300), (150, 90), 20, 0, 360, 5)
    cv2.fillPoly(img, [truth], (60, 55, 50))
    return img, truth.astype(float)


def test_box_is_refined_to_the_dark_blob() -> None:
    img, truth = scene()
    poly = refine_box(img, np.array([220, 170, 580, 430]))
    area = cv2.contourArea(poly.astype(np.float32))
    assert area == pytest.approx(cv2.contourArea(truth.astype(np.float32)), rel=0.08)
    assert len(poly) > 8


def test_flat_or_tiny_boxes_come_back_as_boxes_and_bad_boxes_are_refused() -> None:
    flat = np.full((100, 100, 3), 90, np.uint8)
    out = refine_box(flat, np.array([10, 10, 60, 60]))
    assert cv2.contourArea(out.astype(np.float32)) == pytest.approx(2500, rel=0.3)
    assert len(refine_box(flat, np.array([10, 10, 12, 12]))) == 4
    with pytest.raises(InvalidArgument):
        refine_box(flat, np.array([50, 50, 10, 10]))
    with pytest.raises(InvalidArgument):
        refine_box(flat[..., 0], np.array([10, 10, 60, 60]))
