"""EXIF camera data: read it defensively into a Capture, write it for demo and test photos."""

from __future__ import annotations

import io
import math
import numbers
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import Image

from vision.errors import ImageRejected, InvalidArgument
from vision.types import Capture

# EXIF tag numbers (EXIF 2.32); named here so the reader needs no piexif.
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _SUBSEC_TIME_ORIGINAL = 0x9003, 0x9011, 0x9291
_FOCAL_LENGTH, _FOCAL_LENGTH_35MM = 0x920A, 0xA405
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_IMG_DIRECTION, _GPS_H_POSITIONING_ERROR = 17, 31

# Beyond these the tag is garbage, not an unusual camera.
_MAX_FOCAL_MM = 1000.0
_MAX_FOCAL_35MM = 5000.0
_MAX_GPS_ERROR_M = 100_000.0


def safe_getexif(img: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one when Pillow cannot parse what is there."""
    try:
        return img.getexif()
    except Exception:  # a malformed APP1 segment must cost us the metadata, not the photo
        return Image.Exif()


def orientation_of(exif: Mapping[int, Any]) -> int:
    """The EXIF orientation (1..8); anything unreadable counts as 1 (as stored)."""
    value = exif.get(_ORIENTATION)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return 1


def capture_from_exif(exif: Image.Exif, stored_width: int, stored_height: int) -> Capture:
    """Build a Capture from parsed EXIF and the stored (pre-orientation) full image size."""
    orientation = orientation_of(exif)
    width, height = stored_width, stored_height
    if orientation in (5, 6, 7, 8):  # these orientations turn the picture a quarter
        width, height = height, width
    exif_ifd = _sub_ifd(exif, _EXIF_IFD)
    gps_ifd = _sub_ifd(exif, _GPS_IFD)
    lat, lon = _gps_position(gps_ifd)
    return Capture(
        width_px=width,
        height_px=height,
        orientation=orientation,
        make=_text(exif.get(_MAKE)),
        model=_text(exif.get(_MODEL)),
        focal_length_mm=_positive(exif_ifd.get(_FOCAL_LENGTH), _MAX_FOCAL_MM),
        focal_length_35mm=_positive(exif_ifd.get(_FOCAL_LENGTH_35MM), _MAX_FOCAL_35MM),
        gps_lat=lat,
        gps_lon=lon,
        gps_accuracy_m=_non_negative(gps_ifd.get(_GPS_H_POSITIONING_ERROR), _MAX_GPS_ERROR_M),
        gps_heading_deg=_heading(gps_ifd.get(_GPS_IMG_DIRECTION)),
        taken_at=_taken_at(exif_ifd),
    )


def _sub_ifd(exif: Image.Exif, tag: int) -> Mapping[int, Any]:
    try:
        ifd = exif.get_ifd(tag)
    except Exception:  # an IFD offset pointing nowhere: treat as absent
        return {}
    return ifd if isinstance(ifd, Mapping) else {}


def _number(value: Any) -> float | None:
    """A finite float from an int/float/IFDRational/(num, den) pair, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        num, den = value
        if den == 0:
            return None
        value = num / den
    try:
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def _positive(value: Any, upper: float) -> float | None:
    x = _number(value)
    return x if x is not None and 0.0 < x <= upper else None


def _non_negative(value: Any, upper: float) -> float | None:
    x = _number(value)
    return x if x is not None and 0.0 <= x <= upper else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:128] or None


def _heading(value: Any) -> float | None:
    x = _number(value)
    if x is None or not -360.0 <= x <= 720.0:
        return None
    return x % 360.0


def _dms(value: Any) -> float | None:
    """Degrees from EXIF's (deg, min, sec) rationals; a bare number is decimal degrees."""
    if isinstance(value, tuple | list):
        parts = [_number(v) for v in value]
        if not 1 <= len(parts) <= 3 or any(p is None or p < 0 for p in parts):
            return None
        return sum(p / 60.0**i for i, p in enumerate(parts))  # type: ignore[operator]
    return _number(value)


def _gps_position(gps: Mapping[int, Any]) -> tuple[float | None, float | None]:
    lat, lon = _dms(gps.get(_GPS_LAT)), _dms(gps.get(_GPS_LON))
    lat_ref, lon_ref = _text(gps.get(_GPS_LAT_REF)), _text(gps.get(_GPS_LON_REF))
    # Without its hemisphere a coordinate could be on another continent: drop it.
    if lat is None or lon is None or lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        return None, None
    lat = -lat if lat_ref == "S" else lat
    lon = -lon if lon_ref == "W" else lon
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None, None
    # Many cameras write 0/0 when they had no fix; nobody reports a pothole off West Africa.
    if lat == 0.0 and lon == 0.0:
        return None, None
    return lat, lon


_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _taken_at(exif_ifd: Mapping[int, Any]) -> datetime | None:
    text = _text(exif_ifd.get(_DATETIME_ORIGINAL))
    if text is None:
        return None
    when = None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%dT%H:%M:%S"):
        try:
            when = datetime.strptime(text[:19], fmt)
            break
        except ValueError:
            continue
    if when is None:
        return None
    subsec = _text(exif_ifd.get(_SUBSEC_TIME_ORIGINAL))
    if subsec and subsec.isdigit():
        when = when.replace(microsecond=int((subsec + "000000")[:6]))
    offset = _text(exif_ifd.get(_OFFSET_TIME_ORIGINAL))
    match = _OFFSET.match(offset) if offset else None
    if match:
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours <= 14 and minutes < 60:
            when = when.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    return when


def write_exif(
    jpeg_bytes: bytes,
    *,
    lat: float,
    lon: float,
    heading_deg: float | None = None,
    accuracy_m: float | None = None,
    make: str | None = None,
    model: str | None = None,
    focal_length_mm: float | None = None,
    focal_length_35mm: float | None = None,
    taken_at: datetime | None = None,
) -> bytes:
    """Return the JPEG with camera and GPS EXIF set (other EXIF kept), e.g. for demo photos."""
    import piexif  # only demo/test tooling writes EXIF; serving just reads it

    if not jpeg_bytes or jpeg_bytes[:2] != b"\xff\xd8":
        raise ImageRejected("write_exif needs JPEG bytes (they start with FF D8); encode as JPEG")
    _check_range("lat", lat, -90.0, 90.0)
    _check_range("lon", lon, -180.0, 180.0)
    if heading_deg is not None:
        _check_range("heading_deg", heading_deg, -360.0, 720.0)
    if accuracy_m is not None:
        _check_range("accuracy_m", accuracy_m, 0.0, _MAX_GPS_ERROR_M)
    if focal_length_mm is not None:
        _check_range("focal_length_mm", focal_length_mm, 0.01, _MAX_FOCAL_MM)
    if focal_length_35mm is not None:
        _check_range("focal_length_35mm", focal_length_35mm, 1.0, _MAX_FOCAL_35MM)

    try:
        data = piexif.load(jpeg_bytes)
    except Exception:  # unreadable old EXIF: start afresh rather than refuse the photo
        data = {}
    ifd0 = dict(data.get("0th") or {})
    exif_ifd = dict(data.get("Exif") or {})
    gps: dict[int, Any] = {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: _to_dms(lat),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: _to_dms(lon),
    }
    if heading_deg is not None:
        gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
        gps[piexif.GPSIFD.GPSImgDirection] = _rational(heading_deg % 360.0, 100)
    if accuracy_m is not None:
        gps[piexif.GPSIFD.GPSHPositioningError] = _rational(accuracy_m, 100)
    if make is not None:
        ifd0[piexif.ImageIFD.Make] = make.encode("ascii", errors="replace")
    if model is not None:
        ifd0[piexif.ImageIFD.Model] = model.encode("ascii", errors="replace")
    if focal_length_mm is not None:
        exif_ifd[piexif.ExifIFD.FocalLength] = _rational(focal_length_mm, 1000)
    if focal_length_35mm is not None:
        exif_ifd[piexif.ExifIFD.FocalLengthIn35mmFilm] = round(focal_length_35mm)
    if taken_at is not None:
        exif_ifd[piexif.ExifIFD.DateTimeOriginal] = taken_at.strftime("%Y:%m:%d %H:%M:%S").encode()
        exif_ifd[piexif.ExifIFD.SubSecTimeOriginal] = f"{taken_at.microsecond:06d}".encode()
        offset = taken_at.utcoffset()
        if offset is not None:
            minutes = round(offset.total_seconds() / 60)
            sign = "-" if minutes < 0 else "+"
            hh, mm = divmod(abs(minutes), 60)
            exif_ifd[piexif.ExifIFD.OffsetTimeOriginal] = f"{sign}{hh:02d}:{mm:02d}".encode()
    fresh = {"0th": ifd0, "Exif": exif_ifd, "GPS": gps, "1st": {}, "thumbnail": None}
    try:
        blob = piexif.dump(fresh)
    except Exception:  # an old tag piexif cannot re-encode: keep only what we set ourselves
        keep = {k: v for k, v in ifd0.items() if k in (piexif.ImageIFD.Make, piexif.ImageIFD.Model)}
        if _ORIENTATION in ifd0:
            keep[_ORIENTATION] = ifd0[_ORIENTATION]
        exif_keep = {k: v for k, v in exif_ifd.items() if k in _WRITTEN_EXIF_TAGS}
        blob = piexif.dump({"0th": keep, "Exif": exif_keep, "GPS": gps, "1st": {}})
    out = io.BytesIO()
    piexif.insert(blob, jpeg_bytes, out)
    return out.getvalue()


_WRITTEN_EXIF_TAGS = (
    _FOCAL_LENGTH,
    _FOCAL_LENGTH_35MM,
    _DATETIME_ORIGINAL,
    _SUBSEC_TIME_ORIGINAL,
    _OFFSET_TIME_ORIGINAL,
)


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")


def _rational(value: float, den: int) -> tuple[int, int]:
    return round(value * den), den


def _to_dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    # Integer arithmetic in 1e-4 arc-seconds (~3 mm) so seconds never round up to 60.
    total = round(abs(value) * 3600 * 10_000)
    deg, rest = divmod(total, 3600 * 10_000)
    minutes, sec = divmod(rest, 60 * 10_000)
    return (deg, 1), (minutes, 1), (sec, 10_000)
