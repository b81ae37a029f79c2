"""A labelled privacy set made here: real face photos and rendered plates on real street photos.

Nothing is downloaded. Faces come from photos that ship inside installed packages, each with a
clear licence (FACE_SOURCES); plates are rendered (random characters on plate-shaped,
plate-coloured boards with a bumper around them), perspective-warped and composited at the
sizes a phone photo shows them. Labels are polygons (the face box or the plate's four corners
after the same warp), so rotation does not inflate them.
"""

from __future__ import annotations

import io
import string
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class FaceSource:
    """A face photo inside an installed package, with the face box (hand-checked) and licence."""

    name: str
    package: str
    path: str  # inside the package
    face_xyxy: tuple[int, int, int, int]
    licence: str


FACE_SOURCES = (
    FaceSource(
        "astronaut",
        "skimage",
        "data/astronaut.png",
        (178, 61, 267, 174),
        "public domain (NASA photo of Eileen Collins; scikit-image data, skimage.data.astronaut)",
    ),
    FaceSource(
        "camera",
        "skimage",
        "data/camera.png",
        (198, 120, 253, 192),
        "CC0 by the photographer Lav Varshney (scikit-image data, skimage.data.camera); profile",
    ),
    FaceSource(
        "grace_hopper",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        (181, 117, 356, 339),
        "public domain (US Navy official portrait of Grace Hopper; matplotlib sample data)",
    ),
)


@dataclass
class Sample:
    """One labelled photo: RGB pixels and the polygons (K, 2) of faces and plates in it."""

    name: str
    rgb: np.ndarray
    faces: list[np.ndarray] = field(default_factory=list)
    plates: list[np.ndarray] = field(default_factory=list)


def load_face_source(src: FaceSource) -> np.ndarray:
    """The source photo as RGB (raises ImportError when its package is not installed)."""
    import importlib

    pkg = importlib.import_module(src.package)
    path = Path(pkg.__file__).parent / src.path
    return np.asarray(Image.open(path).convert("RGB"))


def _alpha_ellipse(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return np.clip((1.0 - d) * 4.0, 0.0, 1.0)


def _paste(bg: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = patch.shape[:2]
    a = alpha[..., None]
    region = bg[y : y + h, x : x + w].astype(np.float32)
    bg[y : y + h, x : x + w] = (a * patch + (1 - a) * region).astype(np.uint8)


def composite_face(
    bg: np.ndarray,
    face_img: np.ndarray,
    face_xyxy: tuple[int, int, int, int],
    *,
    face_width_px: float,
    angle_deg: float,
    flip: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Paste a head-and-shoulders crop onto `bg` (in place); return the face polygon (4, 2)."""
    x0, y0, x1, y1 = face_xyxy
    fw, fh = x1 - x0, y1 - y0
    H, W = face_img.shape[:2]
    cx0, cy0 = max(0, int(x0 - 0.5 * fw)), max(0, int(y0 - 0.45 * fh))
    cx1, cy1 = min(W, int(x1 + 0.5 * fw)), min(H, int(y1 + 0.7 * fh))
    crop = face_img[cy0:cy1, cx0:cx1]
    if flip:
        crop = crop[:, ::-1]
        fx0 = (cx1 - cx0) - (x1 - cx0)
    else:
        fx0 = x0 - cx0
    box = np.array(
        [[fx0, y0 - cy0], [fx0 + fw, y0 - cy0], [fx0 + fw, y1 - cy0], [fx0, y1 - cy0]], float
    )
    s = face_width_px / fw
    ch, cw = crop.shape[:2]
    # Rotate and scale about the crop's centre into a canvas big enough for any angle.
    side = int(np.hypot(ch, cw) * s) + 2
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle_deg, s)
    m[:, 2] += (side / 2 - cw / 2, side / 2 - ch / 2)
    patch = cv2.warpAffine(np.ascontiguousarray(crop), m, (side, side))
    alpha = cv2.warpAffine(_alpha_ellipse(ch, cw).astype(np.float32), m, (side, side))
    gain = rng.uniform(0.75, 1.15)
    patch = np.clip(patch.astype(np.float32) * gain, 0, 255)
    bh, bw = bg.shape[:2]
    if side >= min(bh, bw):
        raise ValueError("the face is too large for this background")
    x = int(rng.integers(0, bw - side))
    y = int(rng.integers(0, bh - side))
    _paste(bg, patch, alpha, x, y)
    pts = np.c_[box, np.ones(4)] @ m.T
    return pts + np.array([x, y], float)


PLATE_STYLES = {
    # name: (width/height, board RGB, character RGB, EU blue strip)
    "eu": (4.73, (245, 245, 240), (20, 20, 20), True),
    "uk_rear": (4.73, (250, 200, 20), (15, 15, 15), False),
    "us": (2.0, (238, 238, 232), (20, 40, 120), False),
    "dark": (3.5, (25, 25, 30), (235, 235, 235), False),
}


def render_plate(style: str, rng: np.random.Generator, height_px: int = 110) -> np.ndarray:
    """A plate board with random characters, at `height_px` tall (RGB)."""
    ratio, board, ink, strip = PLATE_STYLES[style]
    h, w = height_px, int(height_px * ratio)
    img = np.full((h, w, 3), board, dtype=np.uint8)
    cv2.rectangle(img, (2, 2), (w - 3, h - 3), ink, max(2, h // 30))
    x_start = 6
    if strip:
        sw = int(h * 0.4)
        img[4 : h - 4, 4 : 4 + sw] = (20, 50, 160)
        x_start = 4 + sw + 4
    n = 7 if ratio > 3 else 6
    chars = "".join(rng.choice(list(string.ascii_uppercase + string.digits), n))
    text = f"{chars[:3]} {chars[3:]}" if ratio > 3 else chars
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = min((w - x_start - 10) / tw, (h * (0.62 if ratio > 3 else 0.5)) / th)
    thick = max(2, int(scale * 2.2))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (x_start + (w - x_start - tw) // 2, (h + th) // 2)
    cv2.putText(img, text, org, font, scale, ink, thick, cv2.LINE_AA)
    return img


def composite_plate(
    bg: np.ndarray, style: str, *, plate_width_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Paste a plate on a bumper, perspective-warped, onto `bg` (in place); return its corners."""
    plate = render_plate(style, rng)
    ph, pw = plate.shape[:2]
    # The bumper: a car-coloured board around the plate.
    mx, my = int(pw * 0.6), int(ph * 1.2)
    car = rng.integers(20, 235, size=3)
    board = np.empty((ph + 2 * my, pw + 2 * mx, 3), np.float32)
    board[:] = car
    shade = np.linspace(1.1, 0.8, board.shape[0])[:, None, None]
    board = np.clip(board * shade, 0, 255).astype(np.uint8)
    board[my : my + ph, mx : mx + pw] = plate
    bh0, bw0 = board.shape[:2]
    src = np.float32([[0, 0], [bw0, 0], [bw0, bh0], [0, bh0]])
    s = plate_width_px / pw
    yaw = rng.uniform(-0.2, 0.2)  # one side nearer than the other
    angle = np.deg2rad(rng.uniform(-8, 8))
    dst = src * s
    dst[[1, 2], 1] = dst[[1, 2], 1] * (1 + yaw) - (bh0 * s * yaw / 2)
    c, sn = np.cos(angle), np.sin(angle)
    dst = dst @ np.array([[c, sn], [-sn, c]], np.float32)
    dst -= dst.min(axis=0)
    out_w, out_h = (np.ceil(dst.max(axis=0)) + 1).astype(int)
    H, W = bg.shape[:2]
    if out_w >= W or out_h >= H:
        raise ValueError("the plate is too large for this background")
    warp = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    patch = cv2.warpPerspective(board, warp, (int(out_w), int(out_h)), flags=cv2.INTER_AREA)
    alpha = cv2.warpPerspective(np.ones((bh0, bw0), np.float32), warp, (int(out_w), int(out_h)))
    patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.4, 0.9))
    x = int(rng.integers(0, W - out_w))
    y = int(rng.integers(H // 3, H - out_h)) if H - out_h > H // 3 else 0
    _paste(bg, patch.astype(np.float32), alpha, x, y)
    corners = np.float32([[mx, my], [mx + pw, my], [mx + pw, my + ph], [mx, my + ph]])
    return cv2.perspectiveTransform(corners[None], warp)[0] + np.array([x, y], np.float32)


def jpeg_roundtrip(rgb: np.ndarray, quality: int = 88) -> np.ndarray:
    """The pixels after a phone-like JPEG encode."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def polygon_mask(shape: tuple[int, ...], poly: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of a polygon."""
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def covered_fraction(blur_mask: np.ndarray, poly: np.ndarray) -> float:
    """How much of a labelled polygon the blur mask covers (0..1)."""
    m = polygon_mask(blur_mask.shape, poly)
    n = int(m.sum())
    return float((blur_mask & m).sum() / n) if n else 0.0


FACE_WIDTHS_PX = (20, 32, 48, 72, 110)
FACE_ANGLES_DEG = (-20.0, 0.0, 20.0)
PLATE_WIDTHS_PX = (36, 50, 70, 100, 140)


def _photos(root: Path, folders: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        out += sorted((root / f / "images").rglob("*.jpg"))
    return out


def build_set(
    data_dir: Path, *, seed: int = 0, plate_repeats: int = 3, n_clean: int = 30
) -> tuple[list[Sample], list[Sample]]:
    """(labelled samples, clean photos) on real street photos from `data_dir`.

    Faces go on facades and walls (facades-negatives-spb, graffiti-det), plates on roads
    (potholes-seg, cracks-potholes-brazil); clean photos are others from all four, untouched.
    """
    rng = np.random.default_rng(seed)
    walls = _photos(data_dir, ("facades-negatives-spb", "graffiti-det"))
    roads = _photos(data_dir, ("potholes-seg", "cracks-potholes-brazil"))
    if not walls or not roads:
        raise FileNotFoundError(f"no street photos under {data_dir}")
    rng.shuffle(walls)  # type: ignore[arg-type]
    rng.shuffle(roads)  # type: ignore[arg-type]

    def _rgb(p: Path) -> np.ndarray:
        return np.array(Image.open(p).convert("RGB"))

    def _fit(img: np.ndarray, min_side: float) -> np.ndarray:
        # A few backgrounds are small: enlarge them rather than shrink the face.
        s = min_side / min(img.shape[:2])
        if s <= 1:
            return img
        return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)

    samples: list[Sample] = []
    i = 0
    for src in FACE_SOURCES:
        face_img = load_face_source(src)
        for width in FACE_WIDTHS_PX:
            for angle in FACE_ANGLES_DEG:
                bg = _fit(_rgb(walls[i % len(walls)]), 4.0 * width)
                i += 1
                poly = composite_face(
                    bg,
                    face_img,
                    src.face_xyxy,
                    face_width_px=width,
                    angle_deg=angle + rng.uniform(-3, 3),
                    flip=bool(i % 2),
                    rng=rng,
                )
                name = f"face-{src.name}-{width}px-{angle:+.0f}deg"
                samples.append(Sample(name, jpeg_roundtrip(bg), faces=[poly]))
    j = 0
    for style in PLATE_STYLES:
        for width in PLATE_WIDTHS_PX:
            for _ in range(plate_repeats):
                bg = _rgb(roads[j % len(roads)])
                j += 1
                poly = composite_plate(bg, style, plate_width_px=width, rng=rng)
                name = f"plate-{style}-{width}px-{j}"
                samples.append(Sample(name, jpeg_roundtrip(bg), plates=[poly]))
    rest = walls[i:] + roads[j:]
    picks = rng.choice(len(rest), size=min(n_clean, len(rest)), replace=False)
    clean = [Sample(f"clean-{rest[k].name}", _rgb(rest[k])) for k in picks]
    return samples, clean
