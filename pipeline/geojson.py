"""Cases as GeoJSON Features (RFC 7946: WGS84 longitude, latitude)."""

from __future__ import annotations

from typing import Any

from pipeline.types import Case


def case_feature(case: Case, *, photo: str | None = None) -> dict[str, Any]:
    """One enriched report as a Feature; the point is where the object is, else the camera."""
    body = case.model_dump(mode="json")
    body["report"].pop("contact_name", None)
    body["report"].pop("contact_email", None)
    props: dict[str, Any] = {
        "case_id": case.id,
        "status": case.status,
        "category": case.category,
        "severity": case.severity,
        "place": case.place,
        "routing": body["routing"],
        "findings": body["findings"],
        "report": body["report"],
        "history": body["history"],
    }
    if photo:
        props["photo"] = photo
    geometry = None
    if case.lat is not None and case.lon is not None:
        geometry = {"type": "Point", "coordinates": [round(case.lon, 7), round(case.lat, 7)]}
    return {"type": "Feature", "id": case.id, "geometry": geometry, "properties": props}
