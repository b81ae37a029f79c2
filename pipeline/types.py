"""The pipeline's validated types: Report (what arrived) → Finding → Case."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Status = Literal[
    "received", "processing", "needs_review", "open", "in_progress", "closed", "rejected", "failed"
]
Resolution = Literal["fixed", "duplicate", "not_city_responsibility", "no_action"]
Severity = Literal["low", "medium", "high"]


class Report(BaseModel):
    """What a resident sent: one photo and what they said about it."""

    model_config = ConfigDict(extra="forbid")

    # Both None: a report without a photo (Open311 clients may send none; see process_case).
    photo_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    photo_content_type: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)
    heading_deg: float | None = None
    location_source: Literal["exif", "device", "user"] | None = None
    description: str = ""
    category: str | None = None  # the service code the resident chose, if any
    anonymous: bool = True
    contact_name: str | None = None
    contact_email: str | None = None
    device_pose: dict[str, float] | None = None  # height_m, pitch_deg, roll_deg from the app
    # From Open311 clients: the service's attribute answers (checked against its definition),
    # a phone number (contact detail, like name and email), a photo link kept as sent (never
    # fetched), and the address the location was geocoded from.
    attributes: dict[str, str | float | list[str]] | None = None
    contact_phone: str | None = None
    media_url: str | None = None
    address_string: str | None = None

    @field_validator("lat", "lon", "heading_deg")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _check(self) -> Report:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: send both or neither")
        if self.lat is not None and not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise ValueError("lat must be within -90..90 and lon within -180..180")
        if self.anonymous and (self.contact_name or self.contact_email or self.contact_phone):
            raise ValueError("an anonymous report keeps no contact details")
        return self


class MeasurementOut(BaseModel):
    """A finding's size, as measured: metric numbers always come with an interval."""

    method: str
    area_px: float
    area_m2: float | None = None
    area_m2_interval: tuple[float, float] | None = None
    length_m: float | None = None
    length_m_interval: tuple[float, float] | None = None
    width_m: float | None = None
    width_m_interval: tuple[float, float] | None = None
    distance_m: float | None = None
    assumptions: str = ""


class Finding(BaseModel):
    """One object in the photo: what, how big, and where."""

    class_name: str
    confidence: float
    bbox_xyxy: tuple[float, float, float, float]
    polygon_px: list[tuple[float, float]]
    measurement: MeasurementOut
    lat: float | None = None
    lon: float | None = None
    uncertainty_m: float | None = None
    place: dict[str, Any] | None = None
    # Which of the report's photos it was found in: 0 the first, 1-4 the extra ones
    # (/api/v1/reports/{id}/photos/{n}); its pixels are that photo's.
    photo: int = Field(0, ge=0)


class Routing(BaseModel):
    """Where the case goes and by when."""

    department: str
    external: bool = False
    sla_hours: float
    due_at: datetime | None = None
    priority: int = Field(ge=1, le=5)  # 1 = most urgent


class StatusChange(BaseModel):
    """One recorded transition."""

    status: Status
    at: datetime
    by: str
    why: str = ""


class Case(BaseModel):
    """A city case made from one report."""

    id: str
    status: Status
    report: Report
    category: str | None = None
    severity: Severity | None = None
    findings: list[Finding] = []
    place: dict[str, Any] | None = None
    lat: float | None = None
    lon: float | None = None
    routing: Routing | None = None
    duplicate_of: str | None = None
    resolution: Resolution | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    history: list[StatusChange] = []
