"""Open311 GeoReport v2 conformance: a client's whole conversation, in JSON and in XML, with
every answer validated against the published schemas (and ours where none is published)."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import pytest
from fastapi.testclient import TestClient
from imagegen import jpeg_bytes
from open311_schemas import Schemas

from pipeline import accounts

V2 = "/open311/v2"
CITY_HALL = (42.36630, -71.10560)  # 795 Massachusetts Ave, Cambridge
CONTACT = {
    "email": "ada.resident@example.org",
    "first_name": "Adaline",
    "last_name": "Quimby",
    "phone": "617-555-0142",
}


def api_key(client: TestClient) -> str:
    """A client app's key, made the way the city makes one (`streetlens keys add`)."""
    key, _ = accounts.create_api_key(client.ctx.store, "conformance-test")  # type: ignore[attr-defined]
    return key


def get(client: TestClient, schemas: Schemas, path: str, name: str, **params) -> dict:
    """GET in both formats; validate both; return {'json': ..., 'xml': ...}."""
    out = {}
    for fmt in ("json", "xml"):
        r = client.get(f"{V2}/{path}.{fmt}", params=params)
        assert r.status_code == 200, r.text
        if fmt == "json":
            assert r.headers["content-type"].startswith("application/json")
            schemas.validate(name, r.json())
            out["json"] = r.json()
        else:
            assert r.headers["content-type"].startswith("text/xml")
            out["xml"] = schemas.validate_xml(name, r.content)
        for secret in CONTACT.values():
            assert secret not in r.text, f"{path}.{fmt} shows a contact detail"
    assert out["json"] == out["xml"], f"{path}: JSON and XML say different things"
    return out["json"]


def post(client: TestClient, fmt: str, fields: dict, photo: bytes | None = None):
    files = {"media": ("pothole.jpg", photo, "image/jpeg")} if photo is not None else None
    return client.post(f"{V2}/requests.{fmt}", data=fields, files=files)


def test_format_checks_are_live(schemas: Schemas) -> None:
    # Without the format packages jsonschema skips date-time and uri silently.
    bad = [{"service_request_id": "1", "status": "open", "service_code": "x"}]
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate("requests", [{**bad[0], "requested_datetime": "yesterday"}])
    ok = {**bad[0], "requested_datetime": "2026-11-28T09:30:00-05:00"}
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate("requests", [{**ok, "media_url": "not a uri"}])
    schemas.validate("requests", [ok])


def test_a_client_conversation(client: TestClient, schemas: Schemas) -> None:
    ctx = client.ctx  # type: ignore[attr-defined]
    # discovery -> services -> definitions
    disc = get(client, schemas, "discovery", "discovery")
    assert disc["endpoints"][0]["url"].endswith(V2)
    assert set(disc["endpoints"][0]["formats"]) == {"text/xml", "application/json"}
    services = get(client, schemas, "services", "services")
    assert [s["service_code"] for s in services] == [s.code for s in ctx.city.services]
    for s in services:
        definition = get(client, schemas, f"services/{s['service_code']}", "service-definition")
        assert definition["service_code"] == s["service_code"]
        assert s["metadata"] is bool(definition["attributes"])
    graffiti = get(client, schemas, "services/graffiti", "service-definition")
    surface = next(a for a in graffiti["attributes"] if a["code"] == "surface")
    assert surface["required"] is True and surface["datatype"] == "singlevaluelist"
    assert "brick" in [v["key"] for v in surface["values"]]

    # POST (JSON answer, lat/long) and POST (XML answer, located by a street address)
    key = api_key(client)
    lat, lon = CITY_HALL
    first = post(
        client,
        "json",
        {
            "api_key": key,
            "service_code": "graffiti",
            "lat": str(lat),
            "long": str(lon),
            "description": "Tag across the shutter",
            "attribute[surface]": "metal",
            "attribute[offensive]": "no",
            "media_url": "https://photos.example.org/p/123.jpg",
            **CONTACT,
        },
        jpeg_bytes(seed=11),
    )
    assert first.status_code == 200, first.text
    schemas.validate("post-response", first.json())
    second = post(
        client,
        "xml",
        {
            "api_key": key,
            "service_code": "pothole",
            "address_string": "20 Chestnut Street, Cambridge, MA",
            "attribute[depth_cm]": "7.5",
            "attribute[position]": "travel_lane",
        },
        jpeg_bytes(seed=12),
    )
    assert second.status_code == 200, second.text
    posted = schemas.validate_xml("post-response", second.content)

    # token -> id
    token = first.json()[0]["token"]
    (tok,) = get(client, schemas, f"tokens/{token}", "tokens")
    gid = tok["service_request_id"]
    assert gid == first.json()[0]["service_request_id"]
    pid = posted[0]["service_request_id"]

    # what was stored: attributes checked and typed, the contact kept privately
    report = ctx.store.get(gid).report
    assert report.attributes == {"surface": "metal", "offensive": "no"}
    assert report.media_url == "https://photos.example.org/p/123.jpg"
    assert (report.contact_name, report.contact_phone) == ("Adaline Quimby", "617-555-0142")
    assert report.anonymous is False
    assert ctx.store.get(pid).report.attributes == {"depth_cm": 7.5, "position": "travel_lane"}

    # GET requests and GET requests/{id}
    listed = get(client, schemas, "requests", "requests")
    assert {r["service_request_id"] for r in listed} == {gid, pid}
    (one,) = get(client, schemas, f"requests/{gid}", "requests")
    assert one["status"] == "open" and one["service_code"] == "graffiti"
    assert one["lat"] == pytest.approx(lat) and one["long"] == pytest.approx(lon)
    assert one["media_url"].endswith(f"/api/v1/reports/{gid}/photo")
    assert one["requested_datetime"][-6:] in ("-05:00", "-04:00")  # Cambridge's offset
    (by_address,) = get(client, schemas, f"requests/{pid}", "requests")
    assert by_address["address"] == "20 Chestnut Street, Cambridge, MA"
    assert by_address["lat"] == pytest.approx(42.3554, abs=0.001)

    # a crew works it: routed, then closed; the request and its updates follow
    case = ctx.store.get(gid)
    place = ctx.geo.place(lat, lon)
    routing = ctx.city.route(
        category="graffiti",
        severity="low",
        road_owner=place.road_owner,
        in_jurisdiction=True,
        now=datetime.now(UTC),
    )
    ctx.store.save_result(
        gid,
        status="open",
        findings=[],
        category="graffiti",
        severity="low",
        place={"address": "795 MASSACHUSETTS AVE", "parcel_id": "90-1", "zip_code": "02139"},
        lat=case.lat,
        lon=case.lon,
        routing=routing,
        by="pipeline",
        why="graffiti found",
    )
    (routed,) = get(client, schemas, f"requests/{gid}", "requests")
    assert routed["agency_responsible"] == routing.department
    assert routed["expected_datetime"] is not None
    assert (routed["address"], routed["address_id"]) == ("795 MASSACHUSETTS AVE", "90-1")
    ctx.store.transition(gid, "closed", by="crew:7", why="Painted over.", resolution="fixed")
    (closed,) = get(client, schemas, f"requests/{gid}", "requests")
    assert closed["status"] == "closed" and "fixed" in closed["status_notes"]
    assert (
        get(client, schemas, "requests", "requests", status="closed")[0]["service_request_id"]
        == gid
    )
    updates = get(client, schemas, "servicerequestupdates", "updates", service_request_id=gid)
    assert [u["status"] for u in updates] == ["open", "open", "closed"]
    assert "Painted over." in updates[-1]["description"]
    assert all("crew:7" not in u["description"] for u in updates)
