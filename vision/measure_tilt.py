"""The camera's tilt from the photo itself: how the road's texture is foreshortened.

Shape from texture (Garding 1992; Malik & Rosenholtz 1997): a road surface is, statistically,
the same in every direction, so in the photo its texture is squeezed toward the horizon by
sin(angle between the line of sight and the ground). The squeeze is measured block by block
with the gradient structure tensor; the pitch and roll whose ground plane predicts the
measured squeeze best, across the frame, is the photo's own reading of the tilt.

The measured squeeze is a fraction (the gain) of the geometric one: JPEG noise and the lens's
and renderer's blur add an isotropic part. The gain is a nuisance fitted per pose with a prior
GAIN +- GAIN_SIGMA. GAIN and INFLATE (how much less than independent neighbouring blocks
are) were set on a held-out rendered set (vision/groundtruth.py seed 1, never the benchmark's
seed 0), where the gain at the true pose was 0.5-1.1, typically 0.8. There the photo alone
reads the pitch to 2-3 deg (median |error|; sd 4-5 deg: lane lines, patches and textures that
are not isotropic make tails) and the roll to about 1 deg.

The reading is a log-likelihood over a pitch/roll grid around the phone's reading;
vision.measure multiplies it by the phone's Gaussian and samples the posterior.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import cv2
import numpy as np

from vision import camera
from vision.errors import InvalidArgument
from vision.measure import Pose

WORK_LONG_SIDE = 1200  # px: the texture is read at this size
BLOCK = 60  # px at the working size
MIN_BLOCKS = 24
PRE_BLUR = 0.5
CAP = 0.1  # truncated-quadratic cap on a block's squared residual: sky, paint, lines, markers
GAIN = 0.8  # measured / geometric anisotropy on the held-out set
GAIN_SIGMA = 0.15
GAIN_LIMITS = (0.4, 1.2)
# 5 until session 3, then 12 for the likelihood's width only (GAIN_INFLATE keeps the gain
# prior's weight, so the texture's best pitch/roll is unchanged): ground-plane with pose noise,
# 100 cases each, median |area error| seed 1 (fit) 17.5% -> 16.2%, seed 2 (check) 16.4% ->
# 16.1%. Narrower, the texture overruled the phone at mid and steep pitches, where
# foreshortening says little. (Both widths together: 15.5% / 15.8%, but the texture alone then
# misreads a clean synthetic road by 3.5 deg: tests/vision/test_measure_tilt.py.)
INFLATE = 12.0
GAIN_INFLATE = 5.0  # the gain prior's weight against the blocks (as fitted with INFLATE 5)
OUTLIER = 0.01
# The texture's own anisotropy, the same over the frame (grain laid in one direction; a street
# photo used as a surface, itself taken at an angle), fitted per pose as a nuisance with this
# prior sigma (normalised anisotropy), so that the tilt is read more from how the squeeze
# changes across the frame than from its level. Set on fresh rendered sets (seeds 10-13, none
# of the bench's): with pose noise, median |area error| 17.1 % -> 14.7 %; checked on seeds 0-3
# (17.4 -> 16.2) and 4-9 (16.5 -> 15.6); sigmas 0.3-1.0 read the same within the noise. Its
# cost: where the road really is isotropic its level said more (an isotropic re-synthesis of
# the same textures: the tilt's share 5.6 % -> 9.0 %, both noisy 14.2 -> 14.6 %).
OWN_SIGMA = 0.15
SEARCH_DEG = 15.0  # least half-width of the pitch/roll grid


@dataclasses.dataclass(frozen=True)
class TiltReading:
    """What the texture says about the tilt: a grid of pitch/roll and its log-likelihood."""

    pitch_deg: np.ndarray  # (P,)
    roll_deg: np.ndarray  # (R,)
    cost: np.ndarray  # (P, R): sum over blocks of the capped squared anisotropy residual
    blocks: int

    @property
    def loglik(self) -> np.ndarray:
        """Gaussian log-likelihood, the residual variance read off the best fit, inflated.

        Neighbouring blocks share texture (a crack, a patch), so they are not independent:
        INFLATE widens the likelihood to what a held-out rendered set (seed 1, not the
        benchmark's seed 0) showed the reading to be worth.
        """
        tau2 = max(float(self.cost.min()) / (2 * self.blocks), 1e-6)
        ll = -(self.cost - self.cost.min()) / (2 * tau2 * INFLATE)
        # A robust likelihood: the texture may mislead (lane lines, patches, a texture that is
        # not isotropic), so with probability OUTLIER it says nothing at all.
        return np.logaddexp(ll + math.log1p(-OUTLIER), math.log(OUTLIER))


def block_tensors(
    gray: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Block centres (N, 2) at the working size and their normalised anisotropy (N, 2)."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), PRE_BLUR)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    h, w = g.shape
    nby, nbx = h // BLOCK, w // BLOCK
    crop = (slice(0, nby * BLOCK), slice(0, nbx * BLOCK))

    def pool(a: np.ndarray) -> np.ndarray:
        return a[crop].reshape(nby, BLOCK, nbx, BLOCK).mean(axis=(1, 3))

    jxx, jyy, jxy = pool(gx * gx), pool(gy * gy), pool(gx * gy)
    tr = jxx + jyy
    ys, xs = np.mgrid[0:nby, 0:nbx]
    centres = np.stack([(xs + 0.5) * BLOCK, (ys + 0.5) * BLOCK], -1).reshape(-1, 2)
    e = np.stack([(jxx - jyy) / np.maximum(tr, 1e-9), 2 * jxy / np.maximum(tr, 1e-9)], -1)
    e = e.reshape(-1, 2)
    energy = tr.reshape(-1)
    keep = energy > 0.05 * np.median(energy)  # flat blocks (sky, blown-out paint) say nothing
    if exclude is not None:
        keep &= ~pool(exclude.astype(np.float32)).reshape(-1).astype(bool)
    return centres[keep], e[keep]


def predicted(centres: np.ndarray, fx: float, cx: float, cy: float, pitch: float, roll: float):
    """Anisotropy (N, 2) an isotropic ground texture has at the block centres; NaN off-ground."""
    return predicted_grid(centres, fx, cx, cy, np.array([pitch]), np.array([roll]))[0, 0]


def ground_homographies(
    fx: float, cx: float, cy: float, pitches: np.ndarray, rolls: np.ndarray
) -> np.ndarray:
    """`camera.ground_to_image(fx, cx, cy, p, r, 1.0)` for every pitch p and roll r: (P, R, 3, 3).

    Its columns are the camera's view of the ground's X and Y axes and of the ground point
    under the camera (world_from_camera's rows, the last one negated), through K."""
    p = np.radians(np.asarray(pitches, float))[:, None]
    r = np.radians(np.asarray(rolls, float))[None, :]
    cp, sp, cr, sr = np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    zero = np.zeros(np.broadcast_shapes(p.shape, r.shape))
    m = np.stack(
        [
            np.stack([cr + zero, -sp * sr, cp * sr], -1),
            np.stack([-sr + zero, -sp * cr, cp * cr], -1),
            np.stack([zero, cp + zero, sp + zero], -1),
        ],
        -2,
    )
    return camera.intrinsic_matrix(fx, cx, cy) @ m


def predicted_grid(
    centres: np.ndarray, fx: float, cx: float, cy: float, pitches: np.ndarray, rolls: np.ndarray
) -> np.ndarray:
    """`predicted` for every pitch and roll at once: (P, R, N, 2), NaN off-ground."""
    hg = ground_homographies(fx, cx, cy, pitches, rolls)[:, :, None]  # (P, R, 1, 3, 3)
    hi = np.linalg.inv(hg)
    x, y = np.asarray(centres, float).reshape(-1, 2).T  # (N,) each: broadcast over the grid
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # The block centres on the ground (X, Y); 1 / w is the homogeneous scale they have
        # when mapped back into the image (negative: the ray points away from the ground).
        w = hi[..., 2, 0] * x + hi[..., 2, 1] * y + hi[..., 2, 2]
        gx = (hi[..., 0, 0] * x + hi[..., 0, 1] * y + hi[..., 0, 2]) / w
        gy = (hi[..., 1, 0] * x + hi[..., 1, 1] * y + hi[..., 1, 2]) / w
        # Jacobian A of (X, Y) -> (u, v); the image gradient tensor of an isotropic texture is
        # (A A^T)^-1, whose normalised anisotropy is that of A A^T with the sign turned.
        a00 = (hg[..., 0, 0] - x * hg[..., 2, 0]) * w
        a01 = (hg[..., 0, 1] - x * hg[..., 2, 1]) * w
        a10 = (hg[..., 1, 0] - y * hg[..., 2, 0]) * w
        a11 = (hg[..., 1, 1] - y * hg[..., 2, 1]) * w
        m00, m11, m01 = a00**2 + a01**2, a10**2 + a11**2, a00 * a10 + a01 * a11
        tr = m00 + m11
        e = np.stack([(m11 - m00) / tr, -2 * m01 / tr], -1)
    # Rays that miss the ground, or graze it beyond ~40 camera heights, predict nothing usable.
    bad = ~(w > 0) | ~(np.hypot(gx, gy) <= 40.0)
    e[bad] = np.nan
    return e


def read_tilt(
    rgb: np.ndarray,
    fx_full: float,
    full_size: tuple[int, int],
    pose: Pose,
    exclude_polygons: Sequence[np.ndarray] = (),
) -> TiltReading | None:
    """The texture's log-likelihood over pitch/roll around the pose; None if too little texture.

    rgb may be a downscaled copy of the full-size (width, height) frame; fx_full is in full-size
    pixels; polygons to leave out (the object, a card) are in full-size pixels.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 2:
        raise InvalidArgument(f"read_tilt needs an (H, W, 3) uint8 image, got {rgb.shape}")
    full_w, full_h = full_size
    s = WORK_LONG_SIDE / max(full_w, full_h)
    size = (max(1, round(full_w * s)), max(1, round(full_h * s)))
    gray = cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    exclude = np.zeros(gray.shape, np.uint8)
    for poly in exclude_polygons:
        pts = np.round(np.asarray(poly, float) * s - 0.5).astype(np.int32)
        cv2.fillPoly(exclude, [pts], 1)
    if exclude.any():
        exclude = cv2.dilate(exclude, np.ones((BLOCK // 2, BLOCK // 2), np.uint8))
    centres, e = block_tensors(gray, exclude)
    if len(centres) < MIN_BLOCKS:
        return None
    fx, cx, cy = fx_full * s, size[0] / 2, size[1] / 2
    # The grid spans 3 sigma of the reading (at least SEARCH_DEG): 61 pitches, 31 rolls.
    hw_p = min(max(SEARCH_DEG, 3 * pose.pitch_sigma_deg), 45.0)
    hw_r = min(max(SEARCH_DEG, 3 * pose.roll_sigma_deg), 45.0)
    pitches = np.arange(
        max(1.0, pose.pitch_deg - hw_p), min(89.5, pose.pitch_deg + hw_p) + 1e-9, hw_p / 30
    )
    if len(pitches) < 2:
        return None  # the camera looks up: no ground to read
    rolls = np.arange(pose.roll_deg - hw_r, pose.roll_deg + hw_r + 1e-9, hw_r / 15)
    # The gain is a nuisance with a prior (GAIN +- GAIN_SIGMA), in the cost's units: the
    # residual variance at the phone's own reading scales it.
    d0 = e - GAIN * predicted(centres, fx, cx, cy, pose.pitch_deg, pose.roll_deg)
    tau2 = max(float(np.minimum(np.nan_to_num((d0**2).sum(-1), nan=CAP), CAP).mean()) / 2, 1e-6)
    pen = tau2 * GAIN_INFLATE / GAIN_SIGMA**2  # cost = sum of residuals + pen * (g - GAIN)^2
    # Every pose of the grid at once: the gain and the texture's own anisotropy fitted per pose,
    # then the capped residuals.
    ep = predicted_grid(centres, fx, cx, cy, pitches, rolls)  # (P, R, N, 2)
    ok = np.isfinite(ep[..., :1])  # blocks a pose puts in the sky cost the cap
    pen_c = tau2 * GAIN_INFLATE / OWN_SIGMA**2  # the same for the texture's own anisotropy
    g, c = _fit_gain_and_own(e, np.where(ok, ep, 0.0), ok, pen, pen_c)
    r2 = ((e - g[..., None, None] * ep - c[..., None, :]) ** 2).sum(-1)
    cost = np.minimum(np.nan_to_num(r2, nan=CAP), CAP).sum(-1)
    cost += pen * (g - GAIN) ** 2 + pen_c * (c**2).sum(-1)
    return TiltReading(pitches, rolls, cost, len(centres))


def _fit_gain_and_own(
    e: np.ndarray, epz: np.ndarray, ok: np.ndarray, pen_g: float, pen_c: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per pose, the gain g and the texture's own anisotropy c that best explain the blocks,
    e ~ g * predicted + c, with the priors' penalties pen_g (g - GAIN)^2 and pen_c |c|^2: the
    least-squares solution of the three normal equations, c eliminated. (P, R) and (P, R, 2)."""
    okf = ok.astype(float)
    den = okf.sum((-1, -2)) + pen_c
    s_p, s_e = epz.sum(-2), (okf * e).sum(-2)  # (P, R, 2)
    g = ((e * epz).sum((-1, -2)) + pen_g * GAIN - (s_p * s_e).sum(-1) / den) / (
        (epz**2).sum((-1, -2)) + pen_g - (s_p**2).sum(-1) / den
    )
    g = np.clip(g, GAIN_LIMITS[0], GAIN_LIMITS[1])
    return g, (s_e - g[..., None] * s_p) / den[..., None]
