"""A box the person drew, refined to the object's outline with GrabCut."""

from __future__ import annotations

import cv2
import numpy as np

from vision.errors import InvalidArgument

WORK_SIDE_PX = 400  # GrabCut runs on the box's neighbourhood shrunk to about this size
MARGIN = 0.15  # context around the box: GrabCut learns the background from it
MIN_FILL = 0.05  # below this share of the box the cut found nothing; keep the box


def box_polygon(box: np.ndarray) -> np.ndarray:
    """The (4, 2) outline of an (x0, y0, x1, y1) box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def refine_box(rgb: np.ndarray, box: np.ndarray, *, iterations: int = 3) -> np.ndarray:
    """The object's outline (K, 2) inside a box, in rgb's continuous pixel frame."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidArgument(f"refine_box needs an (H, W, 3) uint8 image, got {rgb.shape}")
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, float).reshape(4))
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InvalidArgument(f"box {x0, y0, x1, y1} is not inside the {w}x{h} image")
    bw, bh = x1 - x0, y1 - y0
    if min(bw, bh) < 4:
        return box_polygon(np.array([x0, y0, x1, y1]))
    cx0, cy0 = int(max(0, x0 - MARGIN * bw)), int(max(0, y0 - MARGIN * bh))
    cx1, cy1 = int(min(w, x1 + MARGIN * bw + 1)), int(min(h, y1 + MARGIN * bh + 1))
    crop = rgb[cy0:cy1, cx0:cx1]
    s = min(1.0, WORK_SIDE_PX / max(crop.shape[:2]))
    small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else crop
    rect = (
        int((x0 - cx0) * s),
        int((y0 - cy0) * s),
        max(1, int(bw * s)),
        max(1, int(bh * s)),
    )
    mask = np.zeros(small.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(
            cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
            mask,
            rect,
            bgd,
            fgd,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:  # a flat box (one colour) leaves GrabCut nothing to learn from
        return box_polygon(np.array([x0, y0, x1, y1]))
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return box_polygon(np.array([x0, y0, x1, y1]))
    c = max(contours, key=cv2.contourArea)
    if cv2.contourArea(c) < MIN_FILL * rect[2] * rect[3]:
        return box_polygon(np.array([x0, y0, x1, y1]))
    c = cv2.approxPolyDP(c, 0.004 * cv2.arcLength(c, True), True).reshape(-1, 2)
    # Contour points are pixel indices: +0.5 for the pixel centre, then back to full size.
    return (c.astype(np.float64) + 0.5) / s + [cx0, cy0]
