"""The committed Coral Gables pack runs with only its boundary: no parcel is reported, not fatal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import intake
from pipeline.context import Context
from pipeline.errors import ConfigError, StreetLensError
from pipeline.settings import Settings

INSIDE = (25.7465, -80.2680)  # Coral Gables, near Biltmore Way
CAMBRIDGE = (42.3736, -71.1190)


@pytest.fixture
def ctx(tmp_path: Path, data_dir: Path) -> Context:
    return Context(
        Settings(
            home=tmp_path / "home", data_dir=data_dir, cache_dir=tmp_path / "cache",
            city="coral-gables-fl",
        )
    )  # fmt: skip


def test_boundary_only_places_have_no_parcel_and_say_why(ctx):
    geo = ctx.geo
    assert geo.crs == "EPSG:26958" and geo.missing_layers == ["parcels", "streets"]
    assert any(n.startswith("no parcel layer") for n in geo.report.notes)
    p = geo.place(*INSIDE)
    assert p.in_jurisdiction
    assert (p.parcel_id, p.address, p.street_id, p.road_owner) == (None, None, None, None)
    assert geo.parcel_ids([INSIDE[0]], [INSIDE[1]]).tolist() == [None]
    assert not geo.place(*CAMBRIDGE).in_jurisdiction


def test_routing_without_streets_goes_to_the_city(ctx):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    p = ctx.geo.place(*INSIDE)
    r = ctx.city.route(category="pothole", severity=None, road_owner=p.road_owner,
                       in_jurisdiction=p.in_jurisdiction, now=now)  # fmt: skip
    assert r.department == "Coral Gables Public Works — Streets" and not r.external
    r = ctx.city.route(category="pothole", severity=None, road_owner="state-fdot",
                       in_jurisdiction=True, now=now)  # fmt: skip
    assert r.department.startswith("FDOT District 6") and r.external
    r = ctx.city.route(category="graffiti", severity=None, road_owner=None,
                       in_jurisdiction=False, now=now)  # fmt: skip
    assert r.department == "outside-jurisdiction"


def test_intake_and_processing_run_on_the_boundary_only_pack(ctx, data_dir):
    photo = sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg"))[0].read_bytes()
    with pytest.raises(StreetLensError, match="outside"):
        intake.submit(ctx, photo, intake.ReportForm(lat=CAMBRIDGE[0], lon=CAMBRIDGE[1]))
    cid = intake.submit(ctx, photo, intake.ReportForm(lat=INSIDE[0], lon=INSIDE[1]))
    assert ctx.store.get(cid).status == "received"
    try:
        ctx.detector  # noqa: B018 - the served model, when this checkout has one
    except ConfigError as exc:
        pytest.skip(f"no served detector to process with ({exc})")
    from pipeline.process import process_case

    case = process_case(ctx, cid, by="test")
    assert case.status in ("needs_review", "closed")
    assert case.place["in_jurisdiction"] and case.place["parcel_id"] is None
    assert case.routing.department.startswith("Coral Gables Public Works")
