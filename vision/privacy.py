"""Faces and licence plates: find them in a photo and blur them beyond recovery.

Finding is generous on purpose: a false blur hides a bit of wall, a missed face exposes a
person. Faces: MTCNN (facenet-pytorch, MIT, weights inside its wheel) when torch is installed,
always joined with OpenCV's Haar cascades (frontal, frontal-alt2, profile both ways, and frontal
on the photo turned by +-25 deg), which run without torch. Plates: OpenCV's two plate cascades
plus a character-row finder (a row of four or more glyph-sized blobs of one height, either
polarity), which finds plates of any country's colours that the Russian-trained cascades miss.

Blurring pixelates each padded region into a few blocks, then smooths it with a Gaussian as wide
as a block: what was there cannot be read back, however the public copy is sharpened.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Detection runs on a copy whose long side lies in this range: small photos are enlarged so a
# 14 px face reaches the cascades' 20 px window, large ones shrunk to bound the CPU cost.
WORK_MIN_LONG_SIDE = 960
WORK_MAX_LONG_SIDE = 1280
HAAR_SCALE_STEP = 1.15
FACE_PAD = 0.3  # of the face box's size, each side: hair, ears, chin
PLATE_PAD_X = 0.15
PLATE_PAD_Y = 0.35
FACE_ROTATIONS_DEG = (-25.0, 25.0)  # tilted heads, for the frontal cascade
DEFAULT_PLATE_FINDERS = ("cascade_ru", "cascade_ru16", "char_rows")
# The default: MTCNN (when installed), the frontal cascade, the profile cascade both ways. The
# frontal-alt2 cascade and tilted frontal passes cost as much again (bench/privacy.py).
DEFAULT_FACE_FINDERS = ("mtcnn", "haar_frontal", "haar_profile")


@dataclass(frozen=True)
class PrivateRegions:
    """Faces and plates found in one photo, as (N, 4) float xyxy boxes in its pixels."""

    faces_xyxy: np.ndarray
    plates_xyxy: np.ndarray
    face_method: str  # the face finders that ran, e.g. "mtcnn+haar_frontal+haar_profile"

    @property
    def count(self) -> int:
        """How many regions will be blurred."""
        return len(self.faces_xyxy) + len(self.plates_xyxy)

    def blur_boxes(self, shape: tuple[int, ...]) -> np.ndarray:
        """The padded, clipped integer boxes that blurring covers, for an image of `shape`."""
        h, w = shape[:2]
        boxes = [_pad(b, FACE_PAD, FACE_PAD) for b in self.faces_xyxy]
        boxes += [_pad(b, PLATE_PAD_X, PLATE_PAD_Y) for b in self.plates_xyxy]
        out = np.zeros((len(boxes), 4), dtype=np.int64)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            out[i] = (
                max(0, math.floor(x0)),
                max(0, math.floor(y0)),
                min(w, math.ceil(x1)),
                min(h, math.ceil(y1)),
            )
        return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean (H, W) mask of the pixels blurring changes."""
        m = np.zeros(shape[:2], dtype=bool)
        for x0, y0, x1, y1 in self.blur_boxes(shape):
            m[y0:y1, x0:x1] = True
        return m


def _pad(box: np.ndarray, fx: float, fy: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * fx, (y1 - y0) * fy
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def _boxes(rows: list[Any] | np.ndarray) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return arr


def _work_scale(h: int, w: int) -> float:
    long_side = max(h, w)
    if long_side < WORK_MIN_LONG_SIDE:
        return WORK_MIN_LONG_SIDE / long_side
    if long_side > WORK_MAX_LONG_SIDE:
        return WORK_MAX_LONG_SIDE / long_side
    return 1.0


def _resize(img: np.ndarray, s: float) -> np.ndarray:
    if s == 1.0:
        return img
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=interp)


_local = threading.local()
_MTCNN_LOCK = threading.Lock()


def _cascade(name: str) -> cv2.CascadeClassifier:
    # One per thread: a CascadeClassifier keeps scratch buffers and is not safe to share
    # between the API's worker threads.
    cache = _local.__dict__.setdefault("cascades", {})
    c = cache.get(name)
    if c is None:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if c.empty():
            raise RuntimeError(f"OpenCV cascade {name} is missing from {cv2.data.haarcascades}")
        cache[name] = c
    return c


def _xywh_to_xyxy(found: Any) -> list[list[float]]:
    return [[x, y, x + w, y + h] for (x, y, w, h) in np.asarray(found).reshape(-1, 4)]


def _haar(name: str, gray: np.ndarray, neighbours: int, flip: bool = False) -> list[list[float]]:
    img = cv2.flip(gray, 1) if flip else gray
    found = _xywh_to_xyxy(
        _cascade(name).detectMultiScale(img, HAAR_SCALE_STEP, neighbours, minSize=(20, 20))
    )
    if not flip:
        return found
    w = gray.shape[1]
    return [[w - x1, y0, w - x0, y1] for x0, y0, x1, y1 in found]


def _haar_frontal(gray: np.ndarray, rgb: np.ndarray) -> list[list[float]]:
    return _haar("haarcascade_frontalface_default.xml", gray, 4)


def _haar_alt2(gray: np.ndarray, rgb: np.ndarray) -> list[list[float]]:
    return _haar("haarcascade_frontalface_alt2.xml", gray, 3)


def _haar_profile(gray: np.ndarray, rgb: np.ndarray) -> list[list[float]]:
    name = "haarcascade_profileface.xml"
    return _haar(name, gray, 3) + _haar(name, gray, 3, flip=True)


def _haar_tilted(gray: np.ndarray, rgb: np.ndarray) -> list[list[float]]:
    """Frontal faces on the photo turned each way; boxes mapped back as their bounding boxes."""
    h, w = gray.shape
    centre = (w / 2, h / 2)
    out: list[list[float]] = []
    for deg in FACE_ROTATIONS_DEG:
        rot = cv2.getRotationMatrix2D(centre, deg, 1.0)
        turned = cv2.warpAffine(gray, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(rot)
        for x0, y0, x1, y1 in _haar("haarcascade_frontalface_default.xml", turned, 4):
            corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], float)
            pts = corners @ back.T
            out.append([*pts.min(axis=0), *pts.max(axis=0)])
    return out


def _mtcnn_faces(gray: np.ndarray, rgb: np.ndarray) -> list[list[float]]:
    model = _mtcnn()
    if model is None:
        raise RuntimeError("MTCNN needs torch and facenet-pytorch: pip install streetlens[train]")
    import torch

    # Scoped, not torch.set_grad_enabled(False): that switched autograd off for the rest of the
    # calling thread, and a training run after it (in the test suite) failed with "element 0
    # of tensors does not require grad".
    with _MTCNN_LOCK, torch.inference_mode():  # one model per process; torch uses the cores
        found, _probs = model.detect(np.ascontiguousarray(rgb))
    return [] if found is None else [list(map(float, b)) for b in found]


FACE_FINDERS = {
    "haar_frontal": _haar_frontal,
    "haar_alt2": _haar_alt2,
    "haar_profile": _haar_profile,
    "haar_tilted": _haar_tilted,
    "mtcnn": _mtcnn_faces,
}


@functools.cache
def _mtcnn() -> Any:
    """facenet-pytorch's MTCNN, or None when torch or the package is not installed."""
    try:
        from facenet_pytorch import MTCNN  # imports torch
    except ImportError:
        return None
    # Low stage thresholds: a false face costs a blurred patch, a missed one a person.
    return MTCNN(keep_all=True, device="cpu", min_face_size=18, thresholds=[0.5, 0.6, 0.6])


def mtcnn_available() -> bool:
    """True when MTCNN (torch + facenet-pytorch) can run here."""
    return _mtcnn() is not None


def face_finders(use_mtcnn: bool | None = None) -> tuple[str, ...]:
    """The face finders to run: MTCNN when asked (None: when installed) plus Haar cascades."""
    names = tuple(n for n in DEFAULT_FACE_FINDERS if n != "mtcnn")
    if use_mtcnn or (use_mtcnn is None and mtcnn_available()):
        names = ("mtcnn", *names)
    return names


def find_faces(
    rgb: np.ndarray, *, use_mtcnn: bool | None = None, finders: tuple[str, ...] | None = None
) -> tuple[np.ndarray, str]:
    """Face boxes (N, 4) xyxy in `rgb`'s pixels and the finders that ran (joined by '+')."""
    names = finders or face_finders(use_mtcnn)
    s = _work_scale(*rgb.shape[:2])
    work = _resize(rgb, s)
    gray = cv2.equalizeHist(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY))
    boxes: list[list[float]] = []
    for name in names:
        boxes += FACE_FINDERS[name](gray, work)
    return _boxes(boxes) / s, "+".join(names)


def _plate_cascade_ru(gray: np.ndarray) -> list[list[float]]:
    found = _cascade("haarcascade_russian_plate_number.xml").detectMultiScale(
        cv2.equalizeHist(gray), 1.1, 3, minSize=(30, 10)
    )
    return _xywh_to_xyxy(found)


def _plate_cascade_ru16(gray: np.ndarray) -> list[list[float]]:
    found = _cascade("haarcascade_license_plate_rus_16stages.xml").detectMultiScale(
        cv2.equalizeHist(gray), 1.1, 3, minSize=(30, 10)
    )
    return _xywh_to_xyxy(found)


def _glyphs(binary: np.ndarray, img_h: int) -> np.ndarray:
    """Connected components shaped like plate characters: (N, 4) x, y, w, h."""
    n, _labels, stats, _c = cv2.connectedComponentsWithStats(binary, connectivity=8)
    st = stats[1:n]
    x, y, w, h, area = (st[:, i] for i in range(5))
    fill = area / np.maximum(1, w * h)
    keep = (
        (h >= 7)
        & (h <= img_h * 0.12)
        & (w >= 2)
        & (h >= w * 0.9)
        & (h <= w * 8)
        & (fill > 0.15)
        & (fill < 0.95)
    )
    return np.stack([x, y, w, h], axis=1)[keep]


def _rows_of_glyphs(g: np.ndarray, min_glyphs: int = 4) -> list[list[float]]:
    """Group glyphs into rows (same height, same line, close together); rows become boxes."""
    if len(g) < min_glyphs:
        return []
    order = np.argsort(g[:, 0])
    g = g[order].astype(np.float64)
    parent = list(range(len(g)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    cy = g[:, 1] + g[:, 3] / 2
    right = g[:, 0] + g[:, 2]
    for i in range(len(g)):
        for j in range(i + 1, len(g)):
            hmax = max(g[i, 3], g[j, 3])
            gap = g[j, 0] - right[i]
            if gap > 1.5 * hmax:
                break  # sorted by x: every later glyph is farther still
            if (
                gap > -0.3 * hmax
                and abs(cy[i] - cy[j]) < 0.3 * hmax
                and abs(g[i, 3] - g[j, 3]) < 0.3 * hmax
            ):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(g)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        if not min_glyphs <= len(members) <= 12:
            continue
        m = g[members]
        x0, y0 = m[:, 0].min(), m[:, 1].min()
        x1, y1 = (m[:, 0] + m[:, 2]).max(), (m[:, 1] + m[:, 3]).max()
        if (x1 - x0) < 2.0 * (y1 - y0):
            continue
        # The plate is wider and taller than its characters.
        hh = y1 - y0
        out.append([x0 - 0.15 * hh, y0 - 0.35 * hh, x1 + 0.15 * hh, y1 + 0.35 * hh])
    return out


def _character_rows(gray: np.ndarray) -> list[list[float]]:
    """Plate-like rows of characters, dark on light and light on dark."""
    out: list[list[float]] = []
    h = gray.shape[0]
    for polarity in (cv2.THRESH_BINARY_INV, cv2.THRESH_BINARY):
        binary = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, polarity, 31, 12)
        out += _rows_of_glyphs(_glyphs(binary, h))
    return out


PLATE_FINDERS = {
    "cascade_ru": _plate_cascade_ru,
    "cascade_ru16": _plate_cascade_ru16,
    "char_rows": _character_rows,
}


def find_plates(rgb: np.ndarray, *, finders: tuple[str, ...] | None = None) -> np.ndarray:
    """Licence-plate boxes (N, 4) xyxy in `rgb`'s pixels (cascades + character rows)."""
    s = _work_scale(*rgb.shape[:2])
    gray = cv2.cvtColor(_resize(rgb, s), cv2.COLOR_RGB2GRAY)
    boxes: list[list[float]] = []
    for name in finders or DEFAULT_PLATE_FINDERS:
        boxes += PLATE_FINDERS[name](gray)
    return _boxes(boxes) / s


def find_private(rgb: np.ndarray, *, use_mtcnn: bool | None = None) -> PrivateRegions:
    """Every face and plate in an RGB photo."""
    faces, method = find_faces(rgb, use_mtcnn=use_mtcnn)
    return PrivateRegions(faces_xyxy=faces, plates_xyxy=find_plates(rgb), face_method=method)


def blur_boxes(rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """A copy of `rgb` with each integer xyxy box pixelated, then Gaussian-smoothed."""
    out = rgb.copy()
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        w, h = int(x1 - x0), int(y1 - y0)
        if w <= 0 or h <= 0:
            continue
        # About six blocks across the short side, never more than ten along the long one.
        block = max(2, math.ceil(min(w, h) / 6), math.ceil(max(w, h) / 10))
        roi = out[y0:y1, x0:x1]
        small = cv2.resize(
            roi, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA
        )
        pix = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(pix, (0, 0), block / 1.5)
    return out


def anonymize(
    rgb: np.ndarray, *, use_mtcnn: bool | None = None
) -> tuple[np.ndarray, PrivateRegions]:
    """The photo with every face and plate blurred, and what was found."""
    regions = find_private(rgb, use_mtcnn=use_mtcnn)
    return blur_boxes(rgb, regions.blur_boxes(rgb.shape)), regions
