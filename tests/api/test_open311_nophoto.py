"""Open311 requests without a photo: most GeoReport v2 clients send none (media is optional in
the spec). Such a request needs a location and a service_code; it is stored without a photo,
processed by place, category and routing alone, and every photo route answers a clear 404."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from open311_schemas import Schemas

from pipeline import accounts
from pipeline.process import process_case

V2 = "/open311/v2"
CITY_HALL = (42.36630, -71.10560)  # 795 Massachusetts Ave, Cambridge


def _key(client: TestClient) -> str:
    key, _ = accounts.create_api_key(client.ctx.store, "no-photo-client")  # type: ignore[attr-defined]
    return key


def _crew(client: TestClient) -> dict[str, str]:
    store = client.ctx.store  # type: ignore[attr-defined]
    acct = accounts.create_account(
        store, f"crew-{time.monotonic_ns()}@city.test", "pw-" + "x" * 12, "crew", log2_n=4
    )
    token, _ = accounts.issue_token(store, acct, 600)
    return {"Authorization": f"Bearer {token}"}


def _post(client: TestClient, schemas: Schemas, fmt: str, fields: dict) -> str:
    """POST without any file part; validate the answer; return the new request's id."""
    r = client.post(f"{V2}/requests.{fmt}", data={"api_key": _key(client), **fields})
    assert r.status_code == 200, r.text
    if fmt == "json":
        schemas.validate("post-response", r.json())
        body = r.json()
    else:
        body = schemas.validate_xml("post-response", r.content)
    return body[0]["service_request_id"]


def _get(client: TestClient, schemas: Schemas, rid: str) -> dict:
    jr = client.get(f"{V2}/requests/{rid}.json")
    xr = client.get(f"{V2}/requests/{rid}.xml")
    assert jr.status_code == xr.status_code == 200, (jr.text, xr.text)
    schemas.validate("requests", jr.json())
    (one,) = jr.json()
    assert [one] == schemas.validate_xml("requests", xr.content)
    return one


def test_requests_without_a_photo_are_filed_processed_and_routed(
    client: TestClient, schemas: Schemas
) -> None:
    ctx = client.ctx  # type: ignore[attr-defined]
    lat, lon = CITY_HALL
    by_point = _post(
        client,
        schemas,
        "json",
        {
            "service_code": "pothole",
            "lat": str(lat),
            "long": str(lon),
            "description": "Deep hole by the crosswalk",
            "attribute[position]": "travel_lane",
        },
    )
    by_address = _post(
        client,
        schemas,
        "xml",
        {
            "service_code": "streetlight",
            "attribute[problem]": "out",
            "address_string": "20 Chestnut Street, Cambridge, MA",
            "media_url": "https://photos.example.org/p/9.jpg",  # a link, never fetched
        },
    )
    assert ctx.media.count() == 0  # nothing was uploaded, nothing stored as a photo
    for rid in (by_point, by_address):
        assert ctx.store.get(rid).report.photo_sha256 is None
        assert ctx.store.get(rid).status == "received"
        assert _get(client, schemas, rid)["media_url"] is None

    for rid, code in ((by_point, "pothole"), (by_address, "streetlight")):
        case = process_case(ctx, rid)
        assert case.status == "needs_review" and case.findings == []
        assert case.category == code and case.routing is not None
        one = _get(client, schemas, rid)
        assert one["status"] == "open" and one["service_code"] == code
        assert one["agency_responsible"] == case.routing.department
        assert one["expected_datetime"] is not None
        assert one["media_url"] is None
    located = _get(client, schemas, by_address)
    assert located["lat"] == pytest.approx(42.3554, abs=0.001)
    assert ctx.media.count() == 0  # processing made no public variants either

    # The same pothole reported again without a photo: a duplicate by distance and category.
    again = _post(
        client, schemas, "json", {"service_code": "pothole", "lat": str(lat), "long": str(lon)}
    )
    case = process_case(ctx, again)
    assert case.status == "closed" and case.duplicate_of == by_point
    assert _get(client, schemas, again)["status"] == "closed"

    # The native view of it works; photo routes answer a clear JSON 404, not a crash.
    native = client.get(f"/api/v1/reports/{by_point}")
    assert native.status_code == 200, native.text
    assert native.json()["status"] == "needs_review"
    for path, headers in (
        (f"/api/v1/reports/{by_point}/photo", {}),
        (f"/api/v1/reports/{by_point}/photo?size=thumb", {}),
        (f"/api/v1/reports/{by_point}/original-link", _crew(client)),
    ):
        r = client.get(path, headers=headers)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["message"] == "this report has no photo"
    updates = client.get(
        f"{V2}/servicerequestupdates.json", params={"service_request_id": by_point}
    )
    assert updates.status_code == 200, updates.text
    schemas.validate("updates", updates.json())


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"service_code": "pothole"}, "needs a location"),
        ({"service_code": "pothole", "lat": "", "long": ""}, "needs a location"),
        ({"lat": str(CITY_HALL[0]), "long": str(CITY_HALL[1])}, "service_code"),
    ],
)
def test_a_request_without_a_photo_needs_a_location_and_a_service_code(
    client: TestClient, schemas: Schemas, fmt: str, fields: dict, words: str
) -> None:
    r = client.post(f"{V2}/requests.{fmt}", data={"api_key": _key(client), **fields})
    assert r.status_code == 400, r.text
    if fmt == "json":
        schemas.validate("errors", r.json())
        text = r.json()[0]["description"]
    else:
        text = schemas.validate_xml("errors", r.content)[0]["description"]
    assert words in text.lower()
    assert client.ctx.store.count() == 0  # type: ignore[attr-defined]
