"""The pinhole camera of `vision.measure`'s frames, as matrices: plane homographies and projection.

Same conventions as vision/measure.py: world X right, Y forward, Z up; camera at (0, 0, height);
pitch turns the optical axis below the horizon; positive roll dips the camera's right edge.
"""

from __future__ import annotations

import math

import numpy as np


def intrinsic_matrix(fx: float, cx: float, cy: float) -> np.ndarray:
    """K for square pixels and the principal point at (cx, cy)."""
    return np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])


def world_from_camera(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """R whose columns are the camera's x (right), y (down), z (optical axis) in world axes."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    cr, sr, cp, sp = math.cos(r), math.sin(r), math.cos(p), math.sin(p)
    # Undo roll in the image plane, then the levelled camera's axes in the world (measure.py).
    unroll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    level = np.array([[1.0, 0.0, 0.0], [0.0, -sp, cp], [0.0, -cp, -sp]])
    return level @ unroll


def project(
    points_xyz: np.ndarray, k: np.ndarray, r_wc: np.ndarray, centre: np.ndarray
) -> np.ndarray:
    """Pixels (N, 2) of world points (N, 3); points behind the camera come out non-finite."""
    cam = (np.asarray(points_xyz, float) - centre) @ r_wc  # R^T (P - C), row-wise
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = cam @ k.T
        z = np.where(cam[:, 2] > 1e-9, uvw[:, 2], np.nan)
        return uvw[:, :2] / z[:, None]


def plane_to_image(
    k: np.ndarray,
    r_wc: np.ndarray,
    centre: np.ndarray,
    origin: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    """Homography from plane coordinates (a, b) of the point origin + a*u + b*v to pixels."""
    rt = r_wc.T
    return k @ np.column_stack([rt @ u, rt @ v, rt @ (np.asarray(origin, float) - centre)])


def ground_to_image(fx: float, cx: float, cy: float, pitch: float, roll: float, height: float):
    """Homography from ground (X, Y) metres to pixels for a camera at (0, 0, height)."""
    return plane_to_image(
        intrinsic_matrix(fx, cx, cy),
        world_from_camera(pitch, roll),
        np.array([0.0, 0.0, height]),
        np.zeros(3),
        np.array([1.0, 0.0, 0.0]),
        np.array([0.0, 1.0, 0.0]),
    )


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 homography; points sent to infinity come out non-finite."""
    p = np.c_[np.asarray(pts, float).reshape(-1, 2), np.ones(len(pts))] @ h.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:3]
