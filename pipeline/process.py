"""Processing one report: pixels → findings → place → category, severity, routing."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import numpy as np

from pipeline import triage
from pipeline.context import Context
from pipeline.duplicates import find_duplicate
from pipeline.errors import PhotoRejected
from pipeline.measuring import find_card, measure_outline, pose_from
from pipeline.observability import stage
from pipeline.types import Case, Finding, MeasurementOut, Report

log = logging.getLogger(__name__)

SURFACE = {"graffiti": "wall"}  # everything else lies on the ground plane


def _fix(report: Report, capture: object):  # -> geo.types.Fix
    from geo.types import Fix

    assert report.lat is not None and report.lon is not None
    # Phones report ~5 m outdoors; EXIF without an accuracy tag is assumed worse.
    accuracy = report.accuracy_m
    if accuracy is None:
        accuracy = 10.0 if report.location_source == "exif" else 8.0
    return Fix(
        lat=report.lat,
        lon=report.lon,
        accuracy_m=accuracy,
        source=report.location_source or "device",
        heading_deg=report.heading_deg,
    )


def _measurement_out(m: object) -> MeasurementOut:
    d = dataclasses.asdict(m)  # type: ignore[call-overload]
    return MeasurementOut.model_validate({k: d[k] for k in MeasurementOut.model_fields if k in d})


def analyse(ctx: Context, data: bytes, report: Report, photo: int = 0) -> list[Finding]:
    """Detect, measure and place every object in the photo (`photo`: which of the report's)."""
    from geo.locate import locate_object
    from vision.errors import ImageRejected
    from vision.image import decode

    s = ctx.settings
    try:
        with stage("decode"):
            img = decode(
                data,
                max_pixels=s.max_pixels,
                max_bytes=s.max_upload_bytes,
                target_long_side=s.detect_long_side,
            )
    except ImageRejected as exc:
        raise PhotoRejected(str(exc)) from exc
    with stage("detect"):
        dets = ctx.detector.detect(img.rgb)
    fix = _fix(report, img.capture)
    pose = pose_from(report.device_pose)
    card = find_card(img)  # the crew marker card, if in view: measures every finding on its plane
    findings = []
    for i in np.argsort(-dets.confidence):
        cls = dets.class_name(int(i))
        poly_full = dets.polygons[i] / img.scale
        with stage("measure"):
            m = measure_outline(
                img, poly_full, surface=SURFACE.get(cls, "ground"), pose=pose, card=card
            )
        sigma = None
        if m.distance_m_interval is not None:
            sigma = (m.distance_m_interval[1] - m.distance_m_interval[0]) / 3.29  # 90% → σ
        with stage("locate"):
            lat, lon, unc = locate_object(fix, m.distance_m, m.bearing_offset_deg, sigma)
            place = ctx.geo.place(lat, lon, uncertainty_m=unc)
        findings.append(
            Finding(
                class_name=cls,
                confidence=round(float(dets.confidence[i]), 4),
                bbox_xyxy=tuple(round(float(v) / img.scale, 1) for v in dets.xyxy[i]),
                polygon_px=[(round(float(x), 1), round(float(y), 1)) for x, y in poly_full],
                measurement=_measurement_out(m),
                lat=lat,
                lon=lon,
                uncertainty_m=round(unc, 1),
                place=dataclasses.asdict(place),
                photo=photo,
            )
        )
    return findings


def analyse_extras(ctx: Context, case_id: str, report: Report) -> list[Finding]:
    """The findings in a report's extra photos: another angle often shows what the first did
    not (too far, glare, a parked car). The phone's pose and heading were sent for the first
    photo only, so these are measured with the hand-held prior and placed without a heading.
    An extra photo that does not decode is skipped (the first photo decides a rejection)."""
    from pipeline.case_photos import extra_photos

    bare = report.model_copy(update={"device_pose": None, "heading_deg": None})
    found: list[Finding] = []
    for row in extra_photos(ctx.store, case_id):
        try:
            found += analyse(ctx, ctx.media.get(row.sha256), bare, photo=row.idx)
        except PhotoRejected as exc:
            log.warning(
                "extra photo skipped", extra={"case_id": case_id, "photo": row.idx, "why": str(exc)}
            )
    return found


def process_case(
    ctx: Context, case_id: str, *, by: str = "pipeline", claimed: bool = False
) -> Case:
    """Process a received case once; re-running a finished case changes nothing.
    `claimed`: the caller took the case already (the store-queue worker's claim_next)."""
    store = ctx.store
    case = store.get(case_id)
    if not claimed and not store.claim(case_id, by=by, lease_s=ctx.settings.processing_lease_s):
        return case  # done already, or another worker holds it
    report = case.report
    data, findings = None, []
    if report.photo_sha256 is not None:  # None: no photo (Open311): place, category, routing
        data = ctx.media.get(report.photo_sha256)
        findings = analyse(ctx, data, report)
        from pipeline.public_media import ensure_variants

        ensure_variants(ctx, report.photo_sha256, data)  # faces, plates blurred before anyone looks
        findings += analyse_extras(ctx, case_id, report)

    city = ctx.city
    category = report.category
    main = triage.main_finding(findings, _detector_class(ctx, category))
    if category is None:
        category = (main and city.service_for_class(main.class_name)) or "other"
    if main is not None and main.place is not None:
        place, lat, lon = main.place, main.lat, main.lon
    else:
        assert report.lat is not None and report.lon is not None
        place = dataclasses.asdict(
            ctx.geo.place(report.lat, report.lon, uncertainty_m=report.accuracy_m or 10.0)
        )
        lat, lon = report.lat, report.lon
    severity = triage.severity(main)
    routing = city.route(
        category=category,
        severity=severity,
        road_owner=place.get("road_owner"),
        in_jurisdiction=bool(place.get("in_jurisdiction")),
        now=datetime.now(UTC),
    )
    if not place.get("in_jurisdiction"):
        status, why = "rejected", f"the object is outside {city.name}"
    elif data is None:
        status, why = "needs_review", f"no photo: a person should look at this {category} report"
    elif main is None:
        status, why = "needs_review", "no object detected: a person should look at the photo"
    else:
        status, why = (
            "needs_review",
            f"{len(findings)} finding(s){_in_photos(findings)}; {main.class_name} at "
            f"{main.confidence:.0%}",
        )
    dup = None
    if status == "needs_review" and category != "other" and lat is not None and lon is not None:
        with stage("duplicates"):
            dup = find_duplicate(ctx, case_id, category, lat, lon, data)
        if dup is not None:
            status, why = "closed", f"duplicate: {dup.why}"
    store.save_result(
        case_id,
        status=status,
        findings=findings,
        category=category,
        severity=severity,
        place=place,
        lat=lat,
        lon=lon,
        routing=routing,
        by=by,
        why=why,
        duplicate_of=dup.case_id if dup else None,
        resolution="duplicate" if dup else None,
    )
    if dup is not None:
        # Its reporter now follows the original; the original shows it was reported again.
        store.note(dup.case_id, by=by, why=f"reported again as case {case_id}")
    log.info("case processed", extra={"case_id": case_id, "status": status, "why": why})
    return store.get(case_id)


def _in_photos(findings: list[Finding]) -> str:
    n = len({f.photo for f in findings})
    return f" in {n} photos" if n > 1 else ""


def _detector_class(ctx: Context, category: str | None) -> str | None:
    svc = ctx.city.service(category) if category else None
    return svc.detector_class if svc else None
