"""Decoding uploads: every rejection, orientation, reduced-size decoding, EXIF in and out."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin
from PIL.TiffImagePlugin import IFDRational

from vision.errors import ImageRejected, InvalidArgument, VisionError
from vision.exif import capture_from_exif, write_exif
from vision.image import DecodedImage, decode, read_capture


def encode(arr: np.ndarray, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(h: int, w: int) -> np.ndarray:
    """A smooth, non-symmetric picture: compresses well, and any flip or turn changes it."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + 2 * y) % 256], -1).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header but holds (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 12 MP (4000x3000) phone-sized JPEG."""
    return encode(gradient(3000, 4000), quality=85)


@pytest.fixture
def draft_spy(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record each JpegImageFile.draft call: the DCT scale it chose and the size it left."""
    calls: list[dict] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        full = self.size
        result = original(self, mode, size)
        calls.append({"full": full, "result": result, "after": self.size})
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_errors_are_also_builtins() -> None:
    with pytest.raises(ValueError):
        decode(b"")
    assert issubclass(ImageRejected, VisionError)


def test_empty_upload_rejected() -> None:
    with pytest.raises(ImageRejected, match="empty"):
        decode(b"")


def test_not_an_image_rejected_with_accepted_formats() -> None:
    with pytest.raises(ImageRejected, match=r"not an image.*JPEG, PNG or WebP"):
        decode(b"this is a text file, not a photo\n" * 10)


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_image_formats_rejected_by_name(fmt: str, name: str) -> None:
    data = encode(gradient(64, 64), fmt)
    with pytest.raises(ImageRejected, match=rf"{name} is not accepted.*JPEG, PNG or WebP"):
        decode(data)


def test_broken_heic_rejected_as_corrupt() -> None:
    # HEIC is accepted (tests/api/test_formats.py); a brand with no boxes behind it is not.
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    with pytest.raises(ImageRejected, match=r"HEIC photo is corrupt"):
        decode(heic)


def test_file_over_max_bytes_rejected() -> None:
    data = encode(gradient(64, 64))
    with pytest.raises(ImageRejected, match="MB limit"):
        decode(data, max_bytes=len(data) - 1)
    assert decode(data, max_bytes=len(data)).rgb.shape == (64, 64, 3)


def test_pixel_bomb_rejected_from_header_without_decoding(monkeypatch) -> None:
    def never(self):
        raise AssertionError("pixels of a decompression bomb were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    bomb = png_header_only(8000, 7500)  # 60 MP claimed in a 100-byte file
    with pytest.raises(ImageRejected, match="60 megapixels, over the 50 MP limit"):
        decode(bomb)
    with pytest.raises(ImageRejected, match="too large to decode safely"):
        decode(png_header_only(20_000, 20_000))  # past 2x Pillow's own limit: Pillow refuses
    with pytest.raises(ImageRejected, match="over the 1 MP limit"):
        decode(png_header_only(1001, 1000), max_pixels=1_000_000)


def test_pillow_bomb_error_and_warning_become_rejections() -> None:
    # Past our own limit (raised on purpose), Pillow's guards must still end in ImageRejected.
    over_warning = Image.MAX_IMAGE_PIXELS + 1000  # Pillow warns between 1x and 2x its limit
    side = int(over_warning**0.5) + 1
    with pytest.raises(ImageRejected, match="too large to decode safely"):
        decode(png_header_only(side, side), max_pixels=10**12)
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 10  # past 2x Pillow raises
    with pytest.raises(ImageRejected, match="too large to decode safely"):
        decode(png_header_only(side, side), max_pixels=10**12)


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.99, -2])
@pytest.mark.parametrize("target", [None, 64])
def test_truncated_jpeg_raises_not_grey(
    progressive: bool, keep: float | int, target: int | None
) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = encode(pixels, quality=90, progressive=progressive)
    cut = data[:keep] if keep < 0 else data[: int(len(data) * keep)]  # -2: only the EOI lost
    with pytest.raises(ImageRejected, match=r"truncated or corrupt.*send it again"):
        decode(cut, target_long_side=target)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_and_corrupt_header_rejected() -> None:
    data = encode(np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8), "PNG")
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        decode(data[: len(data) * 2 // 3])
    broken = bytearray(data)
    broken[16:24] = b"\xff" * 8  # the IHDR's size fields, now absurd and failing the CRC
    with pytest.raises(ImageRejected):
        decode(bytes(broken))


def test_tiny_image_rejected() -> None:
    with pytest.raises(ImageRejected, match=r"20x40 px.*at least 32 px"):
        decode(encode(gradient(40, 20), "PNG"))
    assert decode(encode(gradient(32, 32), "PNG")).rgb.shape == (32, 32, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepted_formats_decode(fmt: str) -> None:
    arr = gradient(48, 80)
    out = decode(encode(arr, fmt, quality=95) if fmt != "PNG" else encode(arr, fmt))
    assert isinstance(out, DecodedImage)
    assert out.format == fmt
    assert out.rgb.shape == (48, 80, 3) and out.rgb.dtype == np.uint8
    assert out.scale == 1.0
    assert (out.capture.width_px, out.capture.height_px) == (80, 48)
    err = np.abs(out.rgb.astype(int) - arr).mean()
    assert err == 0 if fmt == "PNG" else err < 6


def test_transparent_png_becomes_white_and_16_bit_png_scaled() -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20] = (200, 10, 10, 255)
    out = decode(encode(rgba, "PNG")).rgb
    assert (out[:, :20] == (200, 10, 10)).all()
    assert (out[:, 20:] == 255).all()
    grey16 = np.full((40, 40), 65535, np.uint16)
    grey16[:, :20] = 0
    out = decode(encode(grey16, "PNG")).rgb
    assert (out[:, 20:] == 255).all() and (out[:, :20] == 0).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_like_exif_transpose(orientation: int) -> None:
    img = Image.fromarray(gradient(48, 64))  # 64 wide, 48 high as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)  # PNG: lossless, so pixels can be compared exactly
    out = decode(buf.getvalue())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert out.capture.orientation == orientation
    np.testing.assert_array_equal(out.rgb, expected)
    assert out.rgb.shape[:2] == (out.capture.height_px, out.capture.width_px)


def test_orientation_6_turns_portrait_upright() -> None:
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # a red mark top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    out = decode(encode(stored, "JPEG", exif=exif, quality=95))
    assert (out.capture.width_px, out.capture.height_px, out.capture.orientation) == (48, 64, 6)
    assert out.rgb.shape == (64, 48, 3)
    assert out.rgb[:8, -8:, 0].mean() > 200  # the mark is now top-right
    assert out.rgb[:8, :8, 0].mean() < 50


# 1024: 1/4 of 4000 px is 1000, within DRAFT_SLACK under the target: kept, not stretched.
@pytest.mark.parametrize("target", [1000, 1024])
def test_reduced_decode_uses_jpeg_draft(
    big_jpeg: bytes, draft_spy: list[dict], target: int
) -> None:
    out = decode(big_jpeg, target_long_side=target)
    assert out.rgb.shape == (750, 1000, 3)
    assert out.scale == pytest.approx(0.25)
    assert (out.capture.width_px, out.capture.height_px) == (4000, 3000)
    (call,) = draft_spy
    _, box = call["result"]
    assert call["full"][0] / box[2] == 8 / 2  # decoded at 1/4 scale in the DCT
    assert call["after"] == (1000, 750)  # never materialised at 12 MP


def test_reduced_decode_picks_smallest_scale_not_below_target(
    big_jpeg: bytes, draft_spy: list[dict]
) -> None:
    out = decode(big_jpeg, target_long_side=1280)
    assert out.rgb.shape == (960, 1280, 3)
    assert out.scale == pytest.approx(0.32)
    (call,) = draft_spy
    assert call["after"] == (2000, 1500)  # 1/2: 1/4 (1000 px) would be below the target
    # The shrunk photo shows the same picture as a full decode shrunk afterwards.
    full = Image.fromarray(decode(big_jpeg).rgb).resize((1280, 960), Image.Resampling.LANCZOS)
    assert np.abs(out.rgb.astype(int) - np.asarray(full)).mean() < 3


def test_reduced_decode_of_rotated_jpeg_and_of_png(draft_spy: list[dict]) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(gradient(600, 800), "JPEG", exif=exif)
    out = decode(data, target_long_side=200)
    assert out.rgb.shape == (200, 150, 3)  # upright portrait, long side = target
    assert (out.capture.width_px, out.capture.height_px) == (600, 800)
    assert draft_spy and draft_spy[0]["after"] == (200, 150)
    png = decode(encode(gradient(600, 800), "PNG"), target_long_side=200)
    assert png.rgb.shape == (150, 200, 3) and png.scale == pytest.approx(0.25)
    same = decode(encode(gradient(60, 80), "PNG"), target_long_side=200)  # never enlarged
    assert same.rgb.shape == (60, 80, 3) and same.scale == 1.0
    with pytest.raises(InvalidArgument):
        decode(data, target_long_side=8)


def test_exif_round_trip_through_decode() -> None:
    taken = datetime(2024, 5, 1, 14, 3, 22, 125000, tzinfo=timezone(timedelta(hours=-4)))
    data = write_exif(
        encode(gradient(300, 400)),
        lat=42.373611,
        lon=-71.109733,
        heading_deg=287.5,
        accuracy_m=4.2,
        make="Apple",
        model="iPhone 12",
        focal_length_mm=4.2,
        focal_length_35mm=26,
        taken_at=taken,
    )
    cap = decode(data).capture
    assert cap.gps_lat == pytest.approx(42.373611, abs=1e-7)
    assert cap.gps_lon == pytest.approx(-71.109733, abs=1e-7)
    assert cap.gps_heading_deg == pytest.approx(287.5)
    assert cap.gps_accuracy_m == pytest.approx(4.2)
    assert (cap.make, cap.model) == ("Apple", "iPhone 12")
    assert cap.focal_length_mm == pytest.approx(4.2)
    assert cap.focal_length_35mm == 26
    assert cap.taken_at == taken and cap.taken_at.utcoffset() == timedelta(hours=-4)
    assert read_capture(Image.open(io.BytesIO(data))) == cap


def test_write_exif_southern_hemisphere_keeps_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = write_exif(encode(gradient(48, 64), exif=exif), lat=-33.8688, lon=151.2093)
    out = decode(data)
    assert out.capture.gps_lat == pytest.approx(-33.8688, abs=1e-7)
    assert out.capture.gps_lon == pytest.approx(151.2093, abs=1e-7)
    assert out.capture.orientation == 6 and out.rgb.shape == (64, 48, 3)
    assert out.capture.taken_at is None and out.capture.gps_heading_deg is None


def test_write_exif_rejects_bad_input() -> None:
    with pytest.raises(ImageRejected, match="JPEG"):
        write_exif(encode(gradient(40, 40), "PNG"), lat=1.0, lon=1.0)
    with pytest.raises(InvalidArgument, match="lat"):
        write_exif(encode(gradient(40, 40)), lat=91.0, lon=1.0)
    with pytest.raises(ValueError, match="lon"):
        write_exif(encode(gradient(40, 40)), lat=1.0, lon=float("nan"))


def test_broken_exif_fields_become_none_without_crashing() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Acme"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (IFDRational(1, 0), IFDRational(2, 1), IFDRational(3, 1))})
    gps.update({3: "E", 4: (IFDRational(1, 1), IFDRational(0, 1), IFDRational(0, 1))})
    gps.update({17: IFDRational(5, 0), 31: IFDRational(3, 0)})
    sub = exif.get_ifd(0x8769)
    sub.update({0x920A: IFDRational(4, 0), 0x9003: "garbage", 0xA405: 0})
    out = decode(encode(gradient(48, 64), exif=exif))
    cap = out.capture
    assert cap.make == "Acme"  # the good field survives its broken neighbours
    assert (cap.gps_lat, cap.gps_lon, cap.gps_heading_deg, cap.gps_accuracy_m) == (None,) * 4
    assert (cap.focal_length_mm, cap.focal_length_35mm, cap.taken_at) == (None, None, None)


def test_garbage_exif_types_parsed_defensively() -> None:
    exif = Image.Exif()
    exif[0x010F] = 12345  # Make should be text
    exif[0x0110] = b"Pixel 7\x00"
    exif[0x0112] = 42  # no such orientation
    exif.get_ifd(0x8825).update(
        {1: "Q", 2: (1.0, 2.0, 3.0), 3: "E", 4: (1.0, 2.0), 17: float("nan"), 31: -5.0}
    )
    exif.get_ifd(0x8769).update(
        {0x920A: "4.2mm", 0xA405: float("inf"), 0x9003: "0000:00:00 00:00:00", 0x9011: "+99:00"}
    )
    cap = capture_from_exif(exif, 64, 48)
    assert (cap.make, cap.model, cap.orientation) == (None, "Pixel 7", 1)
    assert cap.gps_lat is None and cap.gps_lon is None  # "Q" is no hemisphere
    assert cap.gps_heading_deg is None and cap.gps_accuracy_m is None
    assert cap.focal_length_mm is None and cap.focal_length_35mm is None and cap.taken_at is None


def test_exif_null_island_and_offsets() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)})
    exif.get_ifd(0x8769).update({0x9003: "2023:12:31 23:59:59", 0x9011: "+05:30"})
    cap = capture_from_exif(exif, 64, 48)
    assert cap.gps_lat is None  # 0/0 is what cameras write without a fix
    assert cap.taken_at == datetime(2023, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5.5)))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_unparseable_exif_segment_does_not_lose_the_photo() -> None:
    data = encode(gradient(48, 64))
    app1 = b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08" + b"\xff" * 40  # IFD with absurd counts
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    out = decode(data[:2] + segment + data[2:])
    assert out.rgb.shape == (48, 64, 3)
    assert out.capture.make is None and out.capture.orientation == 1


def test_rejections_hold_with_ultralytics_patching_image_open(ultralytics_ready: None) -> None:
    import ultralytics.utils.patches  # noqa: F401  (replaces PIL.Image.open process-wide)

    assert Image.open.__module__ != "PIL.Image"
    with pytest.raises(ImageRejected, match="GIF is not accepted"):
        decode(encode(gradient(64, 64), "GIF"))
    with pytest.raises(ImageRejected):
        decode(b"\xff\xd8\xff" + b"\x00" * 200)  # a JPEG signature and nothing else
    assert decode(encode(gradient(64, 64))).rgb.shape == (64, 64, 3)
