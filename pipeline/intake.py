"""Accepting a report: validate everything first, then store the photo and the case."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from pydantic import ValidationError

from pipeline.context import Context
from pipeline.errors import (
    InvalidReport,
    LocationMissing,
    OutsideJurisdiction,
    PhotoRejected,
    PhotoTooLarge,
)
from pipeline.media import sha256_hex
from pipeline.textcheck import check_report_text
from pipeline.types import Report

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",  # iPhones' photos (HEVC in HEIF)
    "AVIF": "image/avif",
}


@dataclass
class ReportForm:
    """The fields of an upload as they arrived (strings from a form, or None)."""

    lat: str | float | None = None
    lon: str | float | None = None
    heading: str | float | None = None
    accuracy_m: str | float | None = None
    description: str | None = None
    category: str | None = None
    anonymous: str | bool | None = None
    name: str | None = None
    email: str | None = None
    pitch_deg: str | float | None = None
    roll_deg: str | float | None = None
    camera_height_m: str | float | None = None
    camera_height_sigma_m: str | float | None = None
    tilt_sigma_deg: str | float | None = None
    # Open311 (pipeline/open311.py checks them before they come here).
    phone: str | None = None
    attributes: dict[str, str | float | list[str]] | None = None
    media_url: str | None = None
    address_string: str | None = None


def parse_number(field: str, raw: str | float | None, lo: float, hi: float) -> float | None:
    """A finite number within [lo, hi], or None when absent; InvalidReport otherwise."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidReport(
            f"{field} must be a number, got {str(raw)[:40]!r}", field=field
        ) from None
    if not math.isfinite(value):
        raise InvalidReport(f"{field} must be a finite number, got {raw!r}", field=field)
    if not lo <= value <= hi:
        raise InvalidReport(f"{field} must be between {lo} and {hi}, got {value}", field=field)
    return value


def parse_pose(
    pitch_deg: str | float | None,
    roll_deg: str | float | None,
    height_m: str | float | None,
    height_sigma_m: str | float | None = None,
    tilt_sigma_deg: str | float | None = None,
) -> dict[str, float]:
    """The device pose fields that were sent, checked: pitch/roll in degrees, height in metres,
    and how sure the app is of them (1 sigma; e.g. a height from an AR ground plane is good to
    a few cm, one guessed from the person's stature to ~0.2 m, the default)."""
    fields = (
        ("pitch_deg", parse_number("pitch_deg", pitch_deg, -90, 90)),
        ("roll_deg", parse_number("roll_deg", roll_deg, -90, 90)),
        ("height_m", parse_number("camera_height_m", height_m, 0.2, 5)),
        ("height_sigma_m", parse_number("camera_height_sigma_m", height_sigma_m, 0.005, 2)),
        ("tilt_sigma_deg", parse_number("tilt_sigma_deg", tilt_sigma_deg, 0.1, 30)),
    )
    pose = {k: v for k, v in fields if v is not None}
    if "height_sigma_m" in pose and "height_m" not in pose:
        raise InvalidReport(
            "camera_height_sigma_m says how sure camera_height_m is: send both",
            field="camera_height_sigma_m",
        )
    if "tilt_sigma_deg" in pose and not {"pitch_deg", "roll_deg"} & pose.keys():
        raise InvalidReport(
            "tilt_sigma_deg says how sure pitch_deg and roll_deg are: send them with it",
            field="tilt_sigma_deg",
        )
    return pose


def parse_bool(field: str, raw: str | bool | None, default: bool) -> bool:
    """true/false/1/0/yes/no/on/off, or the default when absent."""
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise InvalidReport(f"{field} must be true or false, got {raw[:20]!r}", field=field)


def build_report(ctx: Context, data: bytes | None, form: ReportForm) -> tuple[Report, int]:
    """Validate the photo and the fields; return the report to store and the photo's size.
    `data` None: a report without a photo (Open311), which must name its category."""
    from vision.errors import ImageRejected
    from vision.image import inspect

    s = ctx.settings
    check_report_text(form, s.max_description_chars)  # NUL, bidi overrides, lengths
    lat = parse_number("lat", form.lat, -90, 90)
    lon = parse_number("lon", form.lon, -180, 180)
    if (lat is None) != (lon is None):
        raise InvalidReport("lat and lon go together: send both or neither", field="lat")
    heading = parse_number("heading", form.heading, 0, 360)
    accuracy = parse_number("accuracy_m", form.accuracy_m, 0, 100_000)
    pose = parse_pose(
        form.pitch_deg,
        form.roll_deg,
        form.camera_height_m,
        form.camera_height_sigma_m,
        form.tilt_sigma_deg,
    )
    description = (form.description or "").strip()
    if len(description) > s.max_description_chars:
        raise InvalidReport(
            f"description is {len(description)} characters; the limit is {s.max_description_chars}",
            field="description",
        )
    category = (form.category or "").strip() or None
    if category is not None and ctx.city.service(category) is None:
        codes = ", ".join(sv.code for sv in ctx.city.services)
        raise InvalidReport(
            f"unknown category {category[:40]!r}; use one of: {codes}", field="category"
        )
    anonymous = parse_bool(
        "anonymous", form.anonymous, default=not (form.name or form.email or form.phone)
    )

    img = None
    if data is None:
        if category is None:
            raise InvalidReport(
                "a report without a photo must say what it is: send its category (service_code)",
                field="category",
            )
    elif not data:
        raise PhotoRejected(
            "the photo is empty (0 bytes): attach a JPEG, HEIC, PNG or WebP photo", field="photo"
        )
    elif len(data) > s.max_upload_bytes:
        raise PhotoTooLarge(
            f"the photo is {len(data)} bytes; the limit is {s.max_upload_bytes}", field="photo"
        )
    else:
        try:
            # The structure, not the pixels: header, size, every segment in place and the end
            # marker present refuse truncated and mangled uploads at a fraction of a
            # millisecond; decoding (40% of an upload's CPU) waits for the worker, where a
            # photo that still fails to decode ends `rejected` with the decoder's reason.
            img = inspect(data, max_pixels=s.max_pixels, max_bytes=s.max_upload_bytes)
        except ImageRejected as exc:
            raise PhotoRejected(str(exc), field="photo") from exc

    source = "device"
    cap = img.capture if img is not None else None
    if lat is None and cap is not None and cap.gps_lat is not None:
        lat, lon, source = cap.gps_lat, cap.gps_lon, "exif"
        accuracy = accuracy if accuracy is not None else cap.gps_accuracy_m
        heading = heading if heading is not None else cap.gps_heading_deg
    if lat is None or lon is None:
        raise LocationMissing(
            "say where the problem is: send lat and lon, or a photo with GPS in its EXIF",
            field="lat",
        )
    if not ctx.geo.contains(lat, lon):
        raise OutsideJurisdiction(
            f"({lat:.6f}, {lon:.6f}) is outside {ctx.city.name}; report it to the city it is in",
            field="lat",
        )
    try:
        report = Report(
            photo_sha256=sha256_hex(data) if data is not None else None,
            photo_content_type=(
                CONTENT_TYPES.get(img.format, "application/octet-stream") if img else None
            ),
            lat=lat,
            lon=lon,
            accuracy_m=accuracy,
            heading_deg=heading,
            location_source=source,
            description=description,
            category=category,
            anonymous=anonymous,
            contact_name=None if anonymous else form.name,
            contact_email=None if anonymous else form.email,
            device_pose=pose or None,
            contact_phone=None if anonymous else form.phone,
            attributes=form.attributes or None,
            media_url=form.media_url,
            address_string=form.address_string,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "report"
        raise InvalidReport(f"{where}: {first['msg']}", field=where) from None
    return report, len(data or b"")


def check_idempotency_key(key: str | None) -> str | None:
    """1-128 printable ASCII characters, or None."""
    if key is None or key == "":
        return None
    if len(key) > 128 or not all(33 <= ord(c) < 127 for c in key):
        raise InvalidReport(
            "Idempotency-Key must be 1-128 printable ASCII characters (a UUID is ideal)",
            field="idempotency_key",
        )
    return key


def submit(
    ctx: Context,
    data: bytes | None,
    form: ReportForm,
    *,
    by: str = "resident",
    idempotency_key: str | None = None,
    extra_photos: list[bytes] | None = None,
) -> str:
    """Store the photo and a `received` case; on any failure leave neither behind.
    A retried upload with the same idempotency key returns the first case's id.
    `data` None files a report without a photo (Open311 clients): nothing goes to media.
    `extra_photos`: up to 4 more photos of the problem (pipeline/case_photos.py), all checked
    before anything is stored, stored with the case in one transaction."""
    from pipeline import case_photos

    key = check_idempotency_key(idempotency_key)
    report, size = build_report(ctx, data, form)
    extras = case_photos.check_extra(extra_photos or [], ctx.settings)
    if extras and data is None:
        raise InvalidReport("extra photos need a first photo: send `photo`", field="photos")
    if data is None or report.photo_sha256 is None:
        return ctx.store.create_case(report, size, by=by, idempotency_key=key, group=True)
    # build_report hashed it already; a second pass over ~1 MB is a millisecond of CPU.
    stored = [(data, report.photo_content_type, report.photo_sha256)]
    stored += [(e.data, e.content_type, e.sha256) for e in extras]
    try:
        for blob, ctype, sha in stored:
            ctx.media.put(blob, ctype, sha256=sha)
        also = partial(case_photos.insert_rows, extras=extras) if extras else None
        case_id = ctx.store.create_case(
            report, size, by=by, idempotency_key=key, also=also, group=True
        )
    except Exception:
        # No orphan photo: remove each unless another case already refers to it.
        # When the store itself is down this check fails too; the photo then waits for the
        # sweeper, since deleting it blind could break another case that shares it (or one
        # whose commit landed although its answer was lost).
        _drop_unreferenced(ctx, [sha for _, _, sha in stored])
        raise
    if extras and key:
        # A retry (only possible with a key) returns the first case, which keeps the extra
        # photos it was made with: any other extra photo this request stored is referenced by
        # nothing, so it is not kept.
        _drop_unreferenced(ctx, [e.sha256 for e in extras])
    return case_id


def _drop_unreferenced(ctx: Context, shas: list[str]) -> None:
    """Remove each photo no case refers to; when the store cannot say, leave it to the sweeper
    (deleting blind could break a case that shares it)."""
    for sha in shas:
        try:
            if not ctx.store.photo_in_use(sha):
                ctx.media.delete(sha)
        except Exception:
            ctx.orphan_suspects.add(sha)
