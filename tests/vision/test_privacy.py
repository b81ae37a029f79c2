"""Blurring removes what it must: a real face and a rendered plate, found and made unreadable.

The face is skimage's `astronaut` (public domain, NASA) composited on a generated street-like
texture; the plate is rendered by vision.privacy_synth. Detection here runs the torch-free
default (Haar cascades + plate finders), which every install has.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import require

from vision import privacy as P
from vision.privacy_synth import (
    FACE_SOURCES,
    composite_face,
    composite_plate,
    covered_fraction,
    jpeg_roundtrip,
    load_face_source,
    polygon_mask,
)


def _background(seed: int, h: int = 420, w: int = 560) -> np.ndarray:
    """A wall-like texture: smooth shading, brick-ish rows, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 110 + 40 * np.sin(x / 37.0) * np.cos(y / 53.0) + 12 * ((y // 18) % 2)
    img = base[..., None] + rng.normal(0, 6, (h, w, 3)) + np.array([20, 5, -10])
    return np.clip(img, 0, 255).astype(np.uint8)


def _detail(rgb: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency energy inside a mask (variance of the Laplacian)."""
    lap = cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F)
    return float(lap[mask].var())


@pytest.fixture(scope="module")
def face_photo() -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("skimage", reason="scikit-image (the test extra) ships the face photo")
    src = FACE_SOURCES[0]
    bg = _background(1)
    poly = composite_face(
        bg,
        load_face_source(src),
        src.face_xyxy,
        face_width_px=90,
        angle_deg=0,
        flip=False,
        rng=np.random.default_rng(0),
    )
    return jpeg_roundtrip(bg), poly


@pytest.fixture(scope="module")
def plate_photo() -> tuple[np.ndarray, np.ndarray]:
    bg = _background(2)
    poly = composite_plate(bg, "eu", plate_width_px=150, rng=np.random.default_rng(3))
    return jpeg_roundtrip(bg), poly


def test_a_face_is_found_and_blurred_beyond_recognition(face_photo) -> None:
    rgb, poly = face_photo
    out, regions = P.anonymize(rgb, use_mtcnn=False)
    assert regions.face_method == "haar_frontal+haar_profile"
    mask = regions.mask(rgb.shape)
    assert covered_fraction(mask, poly) >= 0.8
    face = polygon_mask(rgb.shape, poly)
    before, after = _detail(rgb, face), _detail(out, face)
    assert after < 0.05 * before, (before, after)
    # The frontal cascade that found it finds nothing there any more.
    gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    again = P.find_faces(out, finders=("haar_frontal", "haar_profile"))[0]
    x0, y0 = poly.min(axis=0)
    x1, y1 = poly.max(axis=0)
    inside = [b for b in again if b[0] < x1 and b[2] > x0 and b[1] < y1 and b[3] > y0]
    assert not inside, inside
    assert gray.shape == rgb.shape[:2]
    # Outside the blurred boxes the photo is untouched.
    assert np.array_equal(out[~mask], rgb[~mask])


def test_mtcnn_finds_the_face_where_installed(face_photo) -> None:
    # MTCNN comes with the `train` extra (scripts/setup.sh installs facenet-pytorch --no-deps).
    pytest.importorskip("torch", reason="the `train` extra is not installed")
    require(P.mtcnn_available(), "facenet-pytorch is not installed (scripts/setup.sh train)")
    rgb, poly = face_photo
    out, regions = P.anonymize(rgb, use_mtcnn=True)
    assert regions.face_method.startswith("mtcnn")
    mask = regions.mask(rgb.shape)
    assert covered_fraction(mask, poly) >= 0.8
    face = polygon_mask(rgb.shape, poly)
    assert _detail(out, face) < 0.05 * _detail(rgb, face)


def test_a_plate_is_found_and_its_characters_are_gone(plate_photo) -> None:
    rgb, poly = plate_photo
    out, regions = P.anonymize(rgb, use_mtcnn=False)
    mask = regions.mask(rgb.shape)
    assert covered_fraction(mask, poly) >= 0.8
    plate = polygon_mask(rgb.shape, poly)
    before, after = _detail(rgb, plate), _detail(out, plate)
    assert after < 0.05 * before, (before, after)
    # The character-row finder that found it cannot find a row of characters there now.
    rows = P.find_plates(out, finders=("char_rows",))
    x0, y0 = poly.min(axis=0)
    x1, y1 = poly.max(axis=0)
    assert not [b for b in rows if b[0] < x1 and b[2] > x0 and b[1] < y1 and b[3] > y0]


def test_blurring_pixelates_each_box_into_a_few_blocks() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    box = np.array([[40, 50, 160, 110]])
    out = P.blur_boxes(img, box)
    region = out[50:110, 40:160].astype(np.float64)
    # Random noise has no structure to keep: what is left is a smooth field near the mean.
    assert region.std() < 0.15 * img[50:110, 40:160].std()
    assert np.array_equal(out[:50], img[:50]) and np.array_equal(out[:, 160:], img[:, 160:])


def test_boxes_are_padded_and_clipped_to_the_photo() -> None:
    regions = P.PrivateRegions(
        faces_xyxy=np.array([[-10.0, -10.0, 30.0, 30.0]]),
        plates_xyxy=np.array([[90.0, 40.0, 130.0, 50.0], [500.0, 500.0, 600.0, 600.0]]),
        face_method="test",
    )
    boxes = regions.blur_boxes((60, 120, 3))
    assert boxes.tolist() == [[0, 0, 42, 42], [84, 36, 120, 54]]  # off-photo plate dropped
    assert regions.mask((60, 120, 3)).sum() == 42 * 42 + 36 * 18


def test_finders_without_torch_are_the_haar_cascades() -> None:
    assert P.face_finders(use_mtcnn=False) == ("haar_frontal", "haar_profile")
    if P.mtcnn_available():
        assert P.face_finders() == ("mtcnn", "haar_frontal", "haar_profile")
    empty = np.full((120, 160, 3), 128, np.uint8)
    regions = P.find_private(empty, use_mtcnn=False)
    assert regions.count == 0
