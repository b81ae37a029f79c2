"""Do two photos show the same thing? ORB features, a ratio test and a RANSAC homography."""

from __future__ import annotations

import cv2
import numpy as np

MAX_SIDE_PX = 640
N_FEATURES = 1500
RATIO = 0.75
RANSAC_PX = 6.0


def _gray(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = MAX_SIDE_PX / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def match_inliers(rgb_a: np.ndarray, rgb_b: np.ndarray) -> int:
    """Feature matches between the photos that one plane's homography explains (0: unrelated).

    A road surface or a wall is close to a plane, so two photos of the same pothole or tag
    from different angles and times share many such matches; different places share few."""
    orb = cv2.ORB_create(nfeatures=N_FEATURES)
    ka, da = orb.detectAndCompute(_gray(rgb_a), None)
    kb, db = orb.detectAndCompute(_gray(rgb_b), None)
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < 8:
        return 0
    src = np.float32([ka[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([kb[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
    return int(mask.sum()) if mask is not None else 0
