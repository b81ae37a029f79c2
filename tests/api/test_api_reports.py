"""The report API in-process: uploads accepted; bad input a clear 4xx that stores nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from imagegen import jpeg_bytes, png_bytes

from api.app import create_app
from pipeline.settings import Settings
from vision.exif import write_exif

CITY_HALL = {"lat": "42.36630", "lon": "-71.10560"}  # 795 Massachusetts Ave, Cambridge
BOSTON_COMMON = {"lat": "42.35510", "lon": "-71.06560"}


@pytest.fixture
def client(settings: Settings) -> TestClient:
    app = create_app(settings)
    with TestClient(app) as c:
        c.ctx = app.state.ctx  # type: ignore[attr-defined]
        yield c


def _nothing_stored(client: TestClient) -> None:
    ctx = client.ctx  # type: ignore[attr-defined]
    assert ctx.store.count() == 0
    assert ctx.media.count() == 0


def _post(client: TestClient, data: bytes, fields: dict | None = None, name: str = "p.jpg"):
    return client.post(
        "/api/v1/reports", files={"photo": (name, data, "image/jpeg")}, data=fields or {}
    )


def test_accepts_photo_and_reports_received(client: TestClient) -> None:
    r = _post(client, jpeg_bytes(), {**CITY_HALL, "description": "deep hole", "heading": "90"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "received" and body["queued"] is True
    case = client.get(f"/api/v1/reports/{body['id']}").json()
    assert case["status"] == "received"
    assert case["report"]["lat"] == pytest.approx(42.3663)
    assert case["report"]["location_source"] == "device"
    assert [h["status"] for h in case["history"]] == ["received"]
    assert client.ctx.media.count() == 1  # type: ignore[attr-defined]


def test_same_photo_twice_is_stored_once(client: TestClient) -> None:
    data = jpeg_bytes(seed=3)
    ids = {_post(client, data, CITY_HALL).json()["id"] for _ in range(2)}
    assert len(ids) == 2
    assert client.ctx.media.count() == 1  # type: ignore[attr-defined]


def test_location_from_exif_gps(client: TestClient) -> None:
    data = write_exif(jpeg_bytes(), lat=42.3736, lon=-71.1097, heading_deg=45.0)
    r = _post(client, data)
    assert r.status_code == 202, r.text
    case = client.get(r.json()["url"]).json()
    assert case["report"]["location_source"] == "exif"
    assert case["report"]["lat"] == pytest.approx(42.3736, abs=1e-5)
    assert case["report"]["heading_deg"] == pytest.approx(45.0, abs=0.1)


@pytest.mark.parametrize(
    ("data", "fields", "code", "words"),
    [
        (b"", CITY_HALL, "photo_rejected", "empty"),
        (b"this is not a photo at all, just text", CITY_HALL, "photo_rejected", "JPEG"),
        (jpeg_bytes()[:1500], CITY_HALL, "photo_rejected", "truncated"),
        (png_bytes(8000, 8000), CITY_HALL, "photo_rejected", "pixel"),
        (jpeg_bytes(), BOSTON_COMMON, "outside_jurisdiction", "outside"),
        (jpeg_bytes(), {"lat": "north", "lon": "-71.1"}, "invalid_report", "lat must be a number"),
        (jpeg_bytes(), {"lat": "nan", "lon": "-71.1"}, "invalid_report", "finite"),
        (jpeg_bytes(), {"lat": "42.37"}, "invalid_report", "together"),
        (jpeg_bytes(), {"lat": "142.37", "lon": "-71.1"}, "invalid_report", "between"),
        (jpeg_bytes(), {**CITY_HALL, "heading": "400"}, "invalid_report", "heading"),
        (jpeg_bytes(), {**CITY_HALL, "category": "ufo"}, "invalid_report", "unknown category"),
        (jpeg_bytes(), {**CITY_HALL, "anonymous": "maybe"}, "invalid_report", "true or false"),
        (jpeg_bytes(), {}, "location_missing", "lat and lon"),
    ],
    ids=[
        "empty", "text", "truncated", "pixel-bomb", "outside-city", "lat-word", "lat-nan",
        "lat-alone", "lat-range", "heading-range", "category", "anonymous-flag", "no-location",
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    client: TestClient, data: bytes, fields: dict, code: str, words: str
) -> None:
    r = _post(client, data, fields)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == code
    assert words.lower() in body["message"].lower(), body["message"]
    _nothing_stored(client)


def test_missing_photo_field_is_422_json(client: TestClient) -> None:
    r = client.post("/api/v1/reports", data=CITY_HALL)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and r.json()["field"] == "photo"
    _nothing_stored(client)


def test_oversize_upload_is_413(settings: Settings) -> None:
    settings.max_upload_bytes = 10_000
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/api/v1/reports", files={"photo": ("p.jpg", jpeg_bytes(800, 600, quality=98))},
            data=CITY_HALL,
        )  # fmt: skip
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "photo_too_large"
        assert client.app.state.ctx.store.count() == 0


def test_unknown_case_is_404_json(client: TestClient) -> None:
    r = client.get("/api/v1/reports/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_services_come_from_the_city_pack(client: TestClient) -> None:
    codes = {s["code"] for s in client.get("/api/v1/services").json()}
    assert {"pothole", "graffiti", "streetlight"} <= codes


def test_idempotency_key_makes_a_retry_return_the_same_case(client: TestClient) -> None:
    data = jpeg_bytes(seed=9)
    headers = {"Idempotency-Key": "0b6f-retry-1"}
    ids = [
        client.post(
            "/api/v1/reports", files={"photo": ("p.jpg", data)}, data=CITY_HALL, headers=headers
        ).json()["id"]
        for _ in range(3)
    ]
    assert len(set(ids)) == 1
    assert client.ctx.store.count() == 1  # type: ignore[attr-defined]
    other = client.post(
        "/api/v1/reports", files={"photo": ("p.jpg", jpeg_bytes(seed=10))}, data=CITY_HALL,
        headers=headers,
    )  # fmt: skip
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    bad = _post(client, data, {**CITY_HALL, "idempotency_key": "x" * 200})
    assert bad.status_code == 422 and bad.json()["field"] == "idempotency_key"
    assert client.ctx.store.count() == 1  # type: ignore[attr-defined]
    assert client.ctx.media.count() == 1  # type: ignore[attr-defined]


def test_readiness_and_metrics(client: TestClient) -> None:
    _post(client, jpeg_bytes(seed=4), CITY_HALL)
    ready = client.get("/readyz").json()
    assert ready["checks"]["store"]["ok"] and ready["checks"]["broker"]["ok"]
    assert client.get("/metrics").status_code == 401  # operational data: analysts or a scraper
    from pipeline.accounts import create_api_key

    key, _ = create_api_key(client.ctx.store, "prometheus", scopes=("metrics",))  # type: ignore[attr-defined]
    text = client.get("/metrics", headers={"X-API-Key": key}).text
    assert 'streetlens_cases{status="received"} 1.0' in text
    assert "streetlens_queue_depth 1.0" in text
    assert 'streetlens_uploads_total{outcome="accepted"}' in text
