"""A measuring ground-truth set: real road and facade textures photographed by known cameras.

Each case projects a crop of a real photo (a road from potholes-seg / cracks-potholes-brazil,
a facade from facades-negatives-spb, read in place from the data directory) as a flat surface
through a pinhole camera of known focal length, height, pitch and roll, with one object of
known metric shape on it: a dark irregular pothole on the road, a painted blob on the wall.
Some cases also have the crew marker card lying on the surface. Rendering is 2x supersampled
and the pixel convention is measure.py's (pixel (i, j) covers [i, i+1) x [j, j+1)).
Deterministic by seed; `cache_dir` keeps rendered cases outside git.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from vision import camera
from vision.errors import DatasetError
from vision.exif import write_exif
from vision.marker import MARKER_SIDE_M, marker_image
from vision.measure import DIAGONAL_35MM

WIDTH, HEIGHT = 1600, 1200
SUPER = 2  # supersampling factor: edges and the card's cells render without aliasing
CARD_CELL_PX = 40  # card texture resolution; the black square is 6 cells = MARKER_SIDE_M
ROAD_SOURCES = ("potholes-seg", "cracks-potholes-brazil")
ROADS = ("photo", "isotropic")
WALL_SOURCES = ("facades-negatives-spb",)
VERSION = 1


@dataclass(frozen=True)
class TruthCase:
    """One rendered photo and what is true about it."""

    name: str
    jpeg: bytes
    surface: str  # 'ground' or 'wall'
    polygon_m: np.ndarray  # (K, 2) on the surface: ground (X right, Y fwd); wall (right, up)
    polygon_px: np.ndarray  # (K, 2) in the image
    area_m2: float
    pose: dict[str, float]  # as the app sends it: pitch_deg, roll_deg, camera_height_m
    focal_35mm: float
    marker: bool
    marker_corners_px: np.ndarray | None  # (4, 2) TL, TR, BR, BL of the black square
    scale_points_px: np.ndarray  # (2, 2): ends of a known length on the surface near the object
    scale_length_m: float
    wall_distance_m: float | None  # wall cases: the wall's distance along its normal


def generate(
    data_dir: Path, n: int, *, seed: int = 0, cache_dir: Path | None = None, road: str = "photo"
) -> list[TruthCase]:
    """n cases: alternately ground and wall every third, half of each with a marker card.

    road="isotropic" re-synthesises each road crop with the same grain and no direction (its
    radially averaged power spectrum, random phases): what the tilt reader assumes a road to
    be, for measuring what the photos' own perspective costs it (bench/measure_pose.py)."""
    if road not in ROADS:
        raise ValueError(f"road must be one of {ROADS}, not {road!r}")
    key = seed if road == "photo" else f"{seed}-{road}"
    if cache_dir is not None:
        cached = _load(cache_dir, n, key)
        if cached is not None:
            return cached
    roads = _sources(data_dir, ROAD_SOURCES)
    walls = _sources(data_dir, WALL_SOURCES)
    cases = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        surface = "wall" if i % 3 == 2 else "ground"
        with_marker = (i // 3) % 2 == 0 if surface == "wall" else i % 2 == 0
        files = walls if surface == "wall" else roads
        texture = _texture(files[int(rng.integers(len(files)))], surface, rng)
        if road == "isotropic" and surface == "ground":  # own phases: the same poses and objects
            texture = _isotropic(texture, np.random.default_rng([seed, i, 1]))
        render = _ground_case if surface == "ground" else _wall_case
        cases.append(render(f"gt-{seed}-{i:03d}", texture, with_marker, rng))
    if cache_dir is not None:
        _save(cache_dir, n, key, cases)
    return cases


def _sources(data_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """Photos of the named datasets under data_dir (sorted, so the set is reproducible)."""
    files: list[Path] = []
    for name in names:
        d = Path(data_dir) / name / "images"
        if d.is_dir():
            files += sorted(
                p for p in d.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
            )
    if not files:
        raise DatasetError(f"no texture photos of {', '.join(names)} under {data_dir}")
    return files


def _texture(path: Path, surface: str, rng: np.random.Generator) -> np.ndarray:
    """A 1024 px square RGB crop: the road in a photo's lower half, a facade's middle."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path} is not a readable image")
    h, w = bgr.shape[:2]
    y0 = int(h * (0.5 if surface == "ground" else 0.2))
    y1 = int(h * (0.95 if surface == "ground" else 0.8))
    side = min(y1 - y0, w)
    x0 = int(rng.integers(0, max(1, w - side + 1)))
    crop = bgr[y0 : y0 + side, x0 : x0 + side]
    return cv2.cvtColor(
        cv2.resize(crop, (1024, 1024), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )


def _isotropic(tex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The texture's grain without its direction: each channel's power spectrum averaged over
    directions (256 rings), one set of random phases for all three, mean and spread kept."""
    n = tex.shape[0]
    f = np.fft.fftfreq(n)
    ring = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    ring = np.minimum((ring / ring.max() * 256).astype(int), 255).ravel()
    count = np.maximum(np.bincount(ring, minlength=256), 1)
    phase = np.exp(2j * np.pi * rng.random((n, n)))
    out = np.empty(tex.shape, np.float64)
    for ch in range(tex.shape[2]):
        x = tex[..., ch].astype(np.float64)
        power = np.abs(np.fft.fft2(x - x.mean())).ravel() ** 2
        amp = np.sqrt(np.bincount(ring, power, 256) / count)[ring].reshape(n, n)
        y = np.real(np.fft.ifft2(amp * phase))
        out[..., ch] = (y - y.mean()) / (y.std() + 1e-9) * x.std() + x.mean()
    return np.clip(out, 0, 255).astype(np.uint8)


def _camera(rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """(focal 35 mm-eq, fx in output px, K at the supersampled continuous frame)."""
    f35 = float(rng.integers(24, 31))  # EXIF stores whole millimetres
    fx = f35 * math.hypot(WIDTH, HEIGHT) / DIAGONAL_35MM
    return f35, fx, camera.intrinsic_matrix(fx * SUPER, WIDTH * SUPER / 2, HEIGHT * SUPER / 2)


def _ground_case(
    name: str, tex: np.ndarray, with_marker: bool, rng: np.random.Generator
) -> TruthCase:
    f35, _, k = _camera(rng)
    for _ in range(200):
        height, pitch = rng.uniform(1.2, 1.8), rng.uniform(25.0, 70.0)
        roll = rng.uniform(-10.0, 10.0)
        r = camera.world_from_camera(pitch, roll)
        centre = np.array([0.0, 0.0, height])
        h_g = camera.plane_to_image(k, r, centre, np.zeros(3), _e(0), _e(1))
        # The object's centre: somewhere in the lower middle of the frame, back on the ground.
        target = np.array([rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(0.45, 0.85) * HEIGHT])
        xy = camera.apply_homography(np.linalg.inv(h_g), target[None] * SUPER)[0]
        if not np.isfinite(xy).all() or np.hypot(*xy) > 15:
            continue
        poly_m = _blob(rng, xy, 0.15, 0.5)
        card = _card_place(rng, poly_m) if with_marker else None
        frame = _Frame(k, r, centre, np.zeros(3), _e(0), _e(1))
        if _fits(frame, poly_m, card):
            break
    else:
        raise DatasetError(f"{name}: no pose put the object inside the frame")
    img = _render(frame, tex, tex_side_m=4.0, tex_centre=xy, sky=True)
    poly_px = frame.to_px(poly_m)
    _paint(img, poly_px, rng, pothole=True)
    corners = _put_card(img, frame, card) if card is not None else None
    pose = {"pitch_deg": pitch, "roll_deg": roll, "camera_height_m": height}
    return _finish(name, img, "ground", poly_m, poly_px, pose, f35, corners, frame, rng, None)


def _wall_case(
    name: str, tex: np.ndarray, with_marker: bool, rng: np.random.Generator
) -> TruthCase:
    f35, _, k = _camera(rng)
    for _ in range(200):
        dist, yaw = rng.uniform(2.0, 6.0), math.radians(rng.uniform(-15.0, 15.0))
        pitch, roll = rng.uniform(-5.0, 10.0), rng.uniform(-10.0, 10.0)
        r = camera.world_from_camera(pitch, roll)
        centre = np.array([0.0, 0.0, 1.5])
        u = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        normal = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        origin = centre * [1, 1, 0] + [0, 0, 1.5] + normal * dist
        frame = _Frame(k, r, centre, origin, u, _e(2))
        target = np.array([rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(0.3, 0.7) * HEIGHT])
        ab = camera.apply_homography(np.linalg.inv(frame.h), target[None] * SUPER)[0]
        poly_m = _blob(rng, ab, 0.2, 0.7)
        card = _card_place(rng, poly_m, wall=True) if with_marker else None
        if _fits(frame, poly_m, card):
            break
    else:
        raise DatasetError(f"{name}: no pose put the object inside the frame")
    img = _render(frame, tex, tex_side_m=8.0, tex_centre=ab, sky=False)
    poly_px = frame.to_px(poly_m)
    _paint(img, poly_px, rng, pothole=False)
    corners = _put_card(img, frame, card) if card is not None else None
    pose = {"pitch_deg": pitch, "roll_deg": roll, "camera_height_m": 1.5}
    return _finish(name, img, "wall", poly_m, poly_px, pose, f35, corners, frame, rng, dist)


@dataclass(frozen=True)
class _Frame:
    """A plane (origin + a*u + b*v) seen by a camera: its homography to supersampled pixels."""

    k: np.ndarray
    r: np.ndarray
    centre: np.ndarray
    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def h(self) -> np.ndarray:
        """Plane metres -> supersampled continuous pixels."""
        return camera.plane_to_image(self.k, self.r, self.centre, self.origin, self.u, self.v)

    def to_px(self, ab: np.ndarray) -> np.ndarray:
        """Plane metres -> output-image continuous pixels."""
        return camera.apply_homography(self.h, ab) / SUPER


def _e(i: int) -> np.ndarray:
    return np.eye(3)[i]


def _blob(rng: np.random.Generator, centre: np.ndarray, r_lo: float, r_hi: float) -> np.ndarray:
    """An irregular star-shaped outline (metres): a few random harmonics and an elongation."""
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    rad = np.ones_like(t)
    for harmonic in (2, 3, 5):
        rad += rng.uniform(0.05, 0.18) * np.cos(harmonic * t + rng.uniform(0, 2 * np.pi))
    rad *= rng.uniform(r_lo, r_hi)
    x, y = rad * np.cos(t) * rng.uniform(1.0, 1.8), rad * np.sin(t)
    a = rng.uniform(0, np.pi)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (np.stack([x, y], 1) @ rot.T) + centre


def _card_place(rng: np.random.Generator, poly_m: np.ndarray, wall: bool = False) -> np.ndarray:
    """A card's (origin, x-axis, y-axis) in plane metres, beside the object."""
    c = poly_m.mean(0)
    reach = np.linalg.norm(poly_m - c, axis=1).max() + 0.2
    ang = rng.uniform(0, 2 * np.pi)
    pos = c + reach * np.array([math.cos(ang), math.sin(ang)])
    yaw = rng.uniform(-np.pi, np.pi) if not wall else rng.uniform(-0.2, 0.2)
    ex = np.array([math.cos(yaw), math.sin(yaw)])
    ey = np.array(
        [math.sin(yaw), -math.cos(yaw)]
    )  # print "down"; not mirrored seen from the camera
    card_side = MARKER_SIDE_M * 8 / 6  # the black square plus one white cell around it
    return np.array([pos - (ex + ey) * card_side / 2, ex, ey])


def _card_corners_m(card: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The card's outer corners and its black square's corners (TL, TR, BR, BL), plane metres."""
    o, ex, ey = card
    cell = MARKER_SIDE_M / 6
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    outer = o + (unit * 8 * cell) @ np.array([ex, ey])
    inner = o + (cell + unit * 6 * cell) @ np.array([ex, ey])
    return outer, inner


def _fits(frame: _Frame, poly_m: np.ndarray, card: np.ndarray | None) -> bool:
    """Whether the object (and card) sit well inside the frame, in front of the camera."""
    pts = poly_m if card is None else np.r_[poly_m, _card_corners_m(card)[0]]
    px = frame.to_px(pts)
    cam = np.c_[pts, np.zeros(len(pts))] @ np.array([frame.u, frame.v, np.zeros(3)])
    depth = (cam + frame.origin - frame.centre) @ frame.r[:, 2]
    if not np.isfinite(px).all() or (depth <= 0.3).any():
        return False
    m = 30
    return bool(
        (px[:, 0] > m).all()
        and (px[:, 0] < WIDTH - m).all()
        and (px[:, 1] > m).all()
        and (px[:, 1] < HEIGHT - m).all()
    )


def _render(
    frame: _Frame, tex: np.ndarray, *, tex_side_m: float, tex_centre: np.ndarray, sky: bool
) -> np.ndarray:
    """The textured plane (texture tiled by reflection), sky where rays miss it, supersampled."""
    n = tex.shape[0]
    s = tex_side_m / n
    # Texture continuous px -> plane metres (texture y runs against the plane's second axis).
    tex_to_plane = np.array(
        [[s, 0, tex_centre[0] - tex_side_m / 2], [0, -s, tex_centre[1] + tex_side_m / 2], [0, 0, 1]]
    )
    m = _cv(frame.h @ tex_to_plane)
    big = (WIDTH * SUPER, HEIGHT * SUPER)
    img = cv2.warpPerspective(tex, m, big, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if sky:
        # Rays that miss the ground (or graze it beyond 40 m) see a plain grey-blue sky; the
        # test runs at output resolution, the sky's edge needs no anti-aliasing.
        hinv = np.linalg.inv(frame.h)
        ys, xs = (np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32) + 0.5) * SUPER
        w = hinv[2, 0] * xs + hinv[2, 1] * ys + hinv[2, 2]
        gx = (hinv[0, 0] * xs + hinv[0, 1] * ys + hinv[0, 2]) / w
        gy = (hinv[1, 0] * xs + hinv[1, 1] * ys + hinv[1, 2]) / w
        miss = ((w <= 0) | (np.hypot(gx, gy) > 40.0)).astype(np.uint8)
        miss = cv2.resize(miss, big, interpolation=cv2.INTER_NEAREST).astype(bool)
        img[miss] = (178, 196, 214)
    return img


def _cv(h_cont: np.ndarray) -> np.ndarray:
    """A continuous-pixel homography as OpenCV's (pixel centres at integers on both sides)."""
    t_in = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    t_out = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    return t_out @ h_cont @ t_in


def _paint(img: np.ndarray, poly_px: np.ndarray, rng: np.random.Generator, pothole: bool) -> None:
    """Darken (pothole) or colour (paint) the outline's inside, anti-aliased, in place."""
    x0, y0, x1, y1 = _bbox(poly_px * SUPER, img.shape)
    roi = img[y0:y1, x0:x1]
    a = _mask(roi.shape[:2], poly_px * SUPER - [x0, y0])[..., None]
    if pothole:
        shade = rng.uniform(0.3, 0.5)
        noise = rng.normal(0, 8, roi.shape).astype(np.float32)
        inside = roi.astype(np.float32) * shade + noise
    else:
        colour = rng.integers(20, 235, 3).astype(np.float32)
        inside = 0.25 * roi.astype(np.float32) + 0.75 * colour
    roi[:] = np.clip(roi * (1 - a) + inside * a, 0, 255).astype(np.uint8)


def _bbox(pts: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer bounds (x0, y0, x1, y1) around points, padded and clipped to the image."""
    x0, y0 = np.floor(pts.min(0)).astype(int) - 4
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 4
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _mask(shape: tuple[int, ...], poly_px_big: np.ndarray) -> np.ndarray:
    """Area-coverage mask (float 0..1) of a polygon in supersampled continuous pixels."""
    shift = 4
    pts = np.round((poly_px_big - 0.5) * (1 << shift)).astype(np.int32)
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    return m.astype(np.float32) / 255.0


def _put_card(img: np.ndarray, frame: _Frame, card: np.ndarray) -> np.ndarray:
    """Composite the marker card onto the plane; return its black square's corners (output px)."""
    card_img = cv2.cvtColor(marker_image(CARD_CELL_PX, 1), cv2.COLOR_GRAY2RGB)
    o, ex, ey = card
    cell_m = MARKER_SIDE_M / 6
    s = cell_m / CARD_CELL_PX
    card_to_plane = np.array(
        [[ex[0] * s, ey[0] * s, o[0]], [ex[1] * s, ey[1] * s, o[1]], [0, 0, 1]]
    )
    outer, inner = _card_corners_m(card)
    outer_px = camera.apply_homography(frame.h, outer)
    x0, y0, x1, y1 = _bbox(outer_px, img.shape)
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]])
    m = _cv(shift @ frame.h @ card_to_plane)
    roi = img[y0:y1, x0:x1]
    warped = cv2.warpPerspective(card_img, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    alpha = _mask(roi.shape[:2], outer_px - [x0, y0])[..., None]
    roi[:] = np.clip(roi * (1 - alpha) + warped * alpha, 0, 255).astype(np.uint8)
    return frame.to_px(inner)


def _finish(
    name: str,
    big: np.ndarray,
    surface: str,
    poly_m: np.ndarray,
    poly_px: np.ndarray,
    pose: dict[str, float],
    f35: float,
    corners: np.ndarray | None,
    frame: _Frame,
    rng: np.random.Generator,
    wall_distance: float | None,
) -> TruthCase:
    """Downsample, encode with EXIF, and pick a known length near the object for user-scale."""
    img = cv2.resize(big, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    ok, enc = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
    )
    assert ok
    jpeg = write_exif(
        enc.tobytes(),
        lat=42.3663,
        lon=-71.1056,
        make="StreetLens",
        model="groundtruth",
        focal_length_35mm=f35,
    )
    c = poly_m.mean(0)
    a = rng.uniform(0, np.pi)
    half = 0.5 * np.array([math.cos(a), math.sin(a)])
    scale_m = np.array([c - half, c + half])  # a 1 m tape laid across the object
    x, y = poly_m[:, 0], poly_m[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))
    return TruthCase(
        name=name,
        jpeg=jpeg,
        surface=surface,
        polygon_m=poly_m,
        polygon_px=poly_px,
        area_m2=area,
        pose={k: float(v) for k, v in pose.items()},
        focal_35mm=f35,
        marker=corners is not None,
        marker_corners_px=corners,
        scale_points_px=frame.to_px(scale_m),
        scale_length_m=1.0,
        wall_distance_m=wall_distance,
    )


def _cache_path(cache_dir: Path, n: int, seed: int | str) -> Path:
    return Path(cache_dir) / f"groundtruth-v{VERSION}-seed{seed}-n{n}"


def _save(cache_dir: Path, n: int, seed: int | str, cases: list[TruthCase]) -> None:
    """Write the cases as JPEGs plus one JSON of the truth."""
    d = _cache_path(cache_dir, n, seed)
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in cases:
        (d / f"{c.name}.jpg").write_bytes(c.jpeg)
        row = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in asdict(c).items()}
        row.pop("jpeg")
        rows.append(row)
    (d / "truth.json").write_text(json.dumps(rows))


def _load(cache_dir: Path, n: int, seed: int | str) -> list[TruthCase] | None:
    """The cached cases, or None when absent or unreadable."""
    d = _cache_path(cache_dir, n, seed)
    try:
        rows = json.loads((d / "truth.json").read_text())
        out = []
        for row in rows:
            for key in ("polygon_m", "polygon_px", "marker_corners_px", "scale_points_px"):
                if row[key] is not None:
                    row[key] = np.asarray(row[key], float)
            out.append(TruthCase(jpeg=(d / f"{row['name']}.jpg").read_bytes(), **row))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return None
