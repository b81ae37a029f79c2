"""Decode an uploaded photo safely: validate, orient, optionally decode at reduced size."""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFile

from vision.errors import ImageRejected, InvalidArgument
from vision.exif import capture_from_exif, orientation_of, safe_getexif
from vision.types import Capture

# --- HEIC/HEIF and AVIF (phones' formats) -------------------------------------------------
# iPhones send HEIC by default; pillow-heif (libheif) decodes it, Pillow 13 decodes AVIF.
# libheif applies the container's rotation (irot/imir) and pillow-heif resets the EXIF
# orientation to 1, so the pixels come out upright and _TRANSPOSE below leaves them alone.
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs")
AVIF_BRANDS = (b"avif", b"avis")
ISO_STILL_BRANDS = (b"mif1", b"msf1")  # either codec: the plugins look at the compatible brands


def _register_heif() -> None:
    import pillow_heif

    # No thumbnails, depth maps or auxiliary images: less parsing of untrusted boxes, and only
    # the primary image is a photo of the problem. libheif's security limits stay on.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


_register_heif()
# --- end HEIC/HEIF ---------------------------------------------------------------------------

# Order matters for ISO brands: Pillow tries AVIF first, then libheif's HEIF.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "HEIF")
MIN_SIDE_PX = 32
DRAFT_SLACK = 0.9  # reduced JPEG decoding may come out this much under the target size

# ImageOps.exif_transpose's table: EXIF orientation -> the transpose that makes it upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}  # orientations whose transpose swaps width and height


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB photo, its camera data, and how much it was shrunk while decoding."""

    rgb: np.ndarray  # (H, W, 3) uint8, EXIF orientation applied
    capture: Capture  # full-size oriented dimensions and EXIF data
    scale: float  # rgb size / full size; 1.0 when not reduced
    format: str  # 'JPEG', 'PNG', 'WEBP', 'AVIF' or 'HEIF'


def decode(
    data: bytes,
    *,
    max_pixels: int = 50_000_000,
    max_bytes: int = 30_000_000,
    target_long_side: int | None = None,
) -> DecodedImage:
    """Decode, validate and orient an uploaded photo; shrink it to target_long_side if given
    (a JPEG's long side may come out up to 10 % under it, at the size its DCT scaling gives:
    `scale` says the size it has)."""
    if target_long_side is not None and target_long_side < MIN_SIDE_PX:
        raise InvalidArgument(f"target_long_side must be at least {MIN_SIDE_PX} px")
    data = bytes(data)
    img = _open_checked(data, max_pixels, max_bytes)
    stored_w, stored_h = img.size

    long_side = max(stored_w, stored_h)
    reduce = target_long_side is not None and target_long_side < long_side
    if reduce:
        assert target_long_side is not None
        s = target_long_side / long_side
        size = (max(1, round(stored_w * s)), max(1, round(stored_h * s)))
        if img.format == "JPEG" and img.mode in ("RGB", "L", "YCbCr", "CMYK"):
            # libjpeg scales in the DCT (1/2, 1/4, 1/8): a 12 MP photo never exists at full size.
            # Allowing the DCT result to be up to DRAFT_SLACK smaller (and keeping it so) lets a
            # 4000 px photo decode at 1/4 for 1024 px instead of at 1/2: 3x faster.
            draft = (max(1, int(size[0] * DRAFT_SLACK)), max(1, int(size[1] * DRAFT_SLACK)))
            img.draft("RGB" if img.mode != "L" else "L", draft)
    _load(img)

    exif = safe_getexif(img)
    capture = capture_from_exif(exif, stored_w, stored_h)
    out = _to_rgb(img)
    scale = 1.0
    if reduce:
        if max(out.size) < max(size):
            # The DCT scale landed within DRAFT_SLACK under the target (1000 px for 1024): use
            # it as it is. Stretching it the last few percent would add no detail and cost ~1 ms.
            size = out.size
        scale = max(size) / long_side
        if max(out.size) >= 2 * max(size):
            out = out.resize(size, Image.Resampling.LANCZOS)
    transpose = _TRANSPOSE.get(orientation_of(exif))
    if transpose is not None:
        out = out.transpose(transpose)
        if reduce and orientation_of(exif) in _SWAPS_AXES:
            size = (size[1], size[0])
    rgb = np.asarray(out, dtype=np.uint8)
    if reduce and (rgb.shape[1], rgb.shape[0]) != size:
        # After a DCT-scaled decode only a small step is left: OpenCV does it ~10x faster
        # than Pillow's Lanczos and looks the same at this ratio (area-averaging when shrinking).
        shrink = rgb.shape[1] > size[0]
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    rgb = np.ascontiguousarray(rgb)
    return DecodedImage(rgb=rgb, capture=capture, scale=scale, format=str(img.format))


@dataclass(frozen=True)
class ImageInfo:
    """What an upload's header and structure say, without decoding a pixel."""

    capture: Capture  # full-size oriented dimensions and EXIF data
    format: str  # as DecodedImage.format


def inspect(data: bytes, *, max_pixels: int = 50_000_000, max_bytes: int = 30_000_000) -> ImageInfo:
    """Validate an upload as decode() does, but by its structure (header, size, every segment
    or chunk in place, the end marker present) instead of decoding its pixels: what an upload
    can afford. A corrupt entropy-coded stream is found only by decode(), later."""
    from vision.structure import check_structure

    data = bytes(data)
    img = _open_checked(data, max_pixels, max_bytes)
    check_structure(data, str(img.format))
    capture = capture_from_exif(safe_getexif(img), *img.size)
    return ImageInfo(capture=capture, format=str(img.format))


def _open_checked(data: bytes, max_pixels: int, max_bytes: int) -> ImageFile.ImageFile:
    """Open the photo's header and refuse it by size, format and pixel count (no pixels yet)."""
    if not data:
        raise ImageRejected("the upload is empty (0 bytes): attach the photo file itself")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"the photo is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit: "
            "send it at a lower resolution or as a JPEG"
        )
    img = _open(data)
    if img.format not in ACCEPTED_FORMATS:  # only reachable if Pillow widens `formats`
        raise ImageRejected(_unsupported_message(img.format or "unknown"))
    stored_w, stored_h = img.size
    # The header alone gives the size: a decompression bomb is refused before any pixel exists.
    if stored_w * stored_h > max_pixels:
        raise ImageRejected(
            f"the photo is {stored_w}x{stored_h} = {stored_w * stored_h / 1e6:.0f} megapixels, "
            f"over the {max_pixels / 1e6:.0f} MP limit: send a smaller photo"
        )
    if min(stored_w, stored_h) < MIN_SIDE_PX:
        raise ImageRejected(
            f"the image is only {stored_w}x{stored_h} px; a photo needs at least "
            f"{MIN_SIDE_PX} px a side to show anything: send the original photo"
        )
    return img


def read_capture(img: Image.Image) -> Capture:
    """Camera and GPS data from an opened (not drafted) image's EXIF; bad fields become None."""
    return capture_from_exif(safe_getexif(img), *img.size)


def _pillow_open():
    """Pillow's own Image.open, even where ultralytics has replaced it process-wide (its wrapper
    answers a file Pillow cannot identify by trying to install and import a HEIF plugin)."""
    fn = Image.open
    if fn.__module__ == "PIL.Image":
        return fn
    return getattr(sys.modules.get(fn.__module__), "_image_open", fn)


def _open(data: bytes) -> ImageFile.ImageFile:
    # Gate on the signature first: Pillow never sees other formats, and a globally patched
    # Image.open (ultralytics installs one that reaches for a HEIF plugin) never has to guess.
    if not _has_accepted_signature(data):
        raise ImageRejected(_unsupported_message(_sniff(data)))
    from vision.polyglot import embedded_payload  # polyglots: tests/api/badinputs.py

    if hidden := embedded_payload(data):
        raise ImageRejected(
            f"the photo has {hidden} hidden inside it: send the photo straight from the camera"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between 1x and 2x its own pixel limit: make it refuse.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _pillow_open()(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"the image is too large to decode safely ({exc}): send a smaller photo"
        ) from None
    except Image.UnidentifiedImageError:
        if data[4:8] == b"ftyp":  # an HEIC/AVIF brand whose boxes libheif/libavif refused
            raise ImageRejected(
                f"the {_sniff(data)} photo is corrupt or not a still image: "
                "send the original photo again"
            ) from None
        raise ImageRejected(_unsupported_message(_sniff(data))) from None
    except Exception as exc:  # a header Pillow recognises but cannot parse
        raise ImageRejected(
            f"the photo's header is corrupt ({exc}): send the original file again"
        ) from None
    assert isinstance(img, ImageFile.ImageFile)
    if img.format == "HEIF":  # boxes parsed by libheif; its coded image checked without decoding
        from vision.heif_check import check_heic_payload

        check_heic_payload(data)
    return img


def _load(img: ImageFile.ImageFile) -> None:
    # LOAD_TRUNCATED_IMAGES stays False (Pillow's default): a cut-off upload raises here
    # instead of coming back with its bottom half grey.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"the image is too large to decode safely ({exc}): send a smaller photo"
        ) from None
    except Exception as exc:
        raise ImageRejected(
            f"the photo is truncated or corrupt ({exc}): the upload may have been cut off, "
            "send it again"
        ) from None


def _has_accepted_signature(data: bytes) -> bool:
    return (
        data.startswith(b"\xff\xd8\xff")
        or data.startswith(b"\x89PNG\r\n\x1a\n")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        or (data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS + AVIF_BRANDS + ISO_STILL_BRANDS)
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: Pillow's convert would clip at 255, so rescale to 8 bits first.
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        grey = np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels hold arbitrary colour (often black): show them as white paper.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
)


def _sniff(data: bytes) -> str:
    """Name the format of bytes we will not decode, for a helpful message."""
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "a video or ISO media file"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data.lstrip()[:1] in (b"<", b"{"):
        return "text (HTML, XML or JSON)"
    return ""


def _unsupported_message(kind: str) -> str:
    accepted = "JPEG, PNG or WebP (or HEIC, as iPhones take them)"
    if not kind:
        return f"the upload is not an image we can read: send the photo as {accepted}"
    return f"{kind} is not accepted: send the photo as {accepted}"
