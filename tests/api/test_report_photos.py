"""A report with several photos of one problem: all checked before any is stored, each with a
blurred, metadata-free public copy; a bad one is a 4xx that names it and leaves nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from imagegen import jpeg_bytes
from PIL import Image
from sqlalchemy import select

from api.app import create_app
from pipeline.case_photos import CasePhotoRow
from pipeline.media import sha256_hex
from pipeline.settings import Settings
from vision.exif import write_exif

CITY_HALL = {"lat": "42.36630", "lon": "-71.10560"}
LAT, LON = 42.3663, -71.1056


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    settings.sweep_interval_s = 0
    settings.ratelimit_enabled = False
    settings.privacy_mtcnn = False
    settings.public_long_side = 200
    settings.thumb_long_side = 80
    app = create_app(settings)
    with TestClient(app) as c:
        yield c


def _ctx(client: TestClient):
    return client.app.state.ctx  # type: ignore[attr-defined]


def _gps_jpeg(seed: int) -> bytes:
    return write_exif(jpeg_bytes(seed=seed), lat=LAT, lon=LON, make="Apple", model="iPhone 15")


def _files(photos: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    first, *more = photos
    out = [("photo", ("p0.jpg", first, "image/jpeg"))]
    out += [("photos", (f"p{i + 1}.jpg", d, "image/jpeg")) for i, d in enumerate(more)]
    return out


def _post(client: TestClient, photos: list[bytes], headers: dict | None = None):
    return client.post(
        "/api/v1/reports", files=_files(photos), data=CITY_HALL, headers=headers or {}
    )


def _rows(client: TestClient) -> list[CasePhotoRow]:
    with _ctx(client).store.session() as s:
        return list(s.scalars(select(CasePhotoRow).order_by(CasePhotoRow.idx)))


def _nothing_stored(client: TestClient) -> None:
    ctx = _ctx(client)
    assert ctx.store.count() == 0
    assert ctx.media.count() == 0
    assert _rows(client) == []


def test_three_photos_are_stored_listed_and_served_public(client: TestClient) -> None:
    photos = [_gps_jpeg(seed) for seed in (1, 2, 3)]
    assert all(b"Exif\x00\x00" in p for p in photos)
    r = _post(client, photos)
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    ctx = _ctx(client)
    assert ctx.media.count() == 3
    for p in photos:
        assert ctx.media.get(sha256_hex(p)) == p
    rows = _rows(client)
    assert [(row.case_id, row.idx, row.sha256) for row in rows] == [
        (cid, 1, sha256_hex(photos[1])),
        (cid, 2, sha256_hex(photos[2])),
    ]
    assert all(row.content_type == "image/jpeg" for row in rows)
    case = ctx.store.get(cid)
    assert case.report.photo_sha256 == sha256_hex(photos[0])  # the first stays the primary

    urls = client.get(f"/api/v1/reports/{cid}").json()["photos"]
    assert [u.rsplit("/", 1)[1] for u in urls] == ["0", "1", "2"]
    bodies = []
    for url in urls:
        for params in ({}, {"size": "thumb"}):
            got = client.get(url, params=params)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == "image/jpeg"
            img = Image.open(io.BytesIO(got.content))
            assert not img.getexif() and "exif" not in img.info
            assert b"Exif\x00\x00" not in got.content and b"iPhone" not in got.content
            assert max(img.size) == (80 if params else 200)
        bodies.append(got.content)
    assert len(set(bodies)) == 3  # three different photos, not one served three times
    assert client.get(f"/api/v1/reports/{cid}/photos/3").status_code == 404
    assert client.get(f"/api/v1/reports/{cid}/photos/9").status_code == 422
    assert client.get("/api/v1/reports/nope/photos/1").status_code == 404


def test_a_bad_third_photo_is_named_and_nothing_is_stored(client: TestClient) -> None:
    good = jpeg_bytes(seed=1)
    for bad in (good[: len(good) // 2], b"", b"<svg xmlns='http://www.w3.org/2000/svg'/>"):
        r = _post(client, [good, jpeg_bytes(seed=2), bad])
        assert 400 <= r.status_code < 500, r.text
        body = r.json()
        assert body["field"] == "photos[1]", body
        assert "photos[1]" in body["message"]
        _nothing_stored(client)


def test_an_oversize_extra_photo_is_named(settings: Settings) -> None:
    settings.max_upload_bytes = 60_000
    with TestClient(create_app(settings)) as c:
        r = _post(c, [jpeg_bytes(seed=1), jpeg_bytes(800, 600, seed=2, quality=98)])
        assert r.status_code == 413, r.text
        assert r.json()["field"] == "photos[0]"
        _nothing_stored(c)


def test_six_photos_are_refused(client: TestClient) -> None:
    r = _post(client, [jpeg_bytes(seed=s) for s in range(6)])
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "photos"
    _nothing_stored(client)
    assert _post(client, [jpeg_bytes(seed=s) for s in range(5)]).status_code == 202


def test_repeated_fields_other_than_photos_are_still_refused(client: TestClient) -> None:
    data = jpeg_bytes(seed=1)
    r = client.post(
        "/api/v1/reports",
        files=[("photo", ("a.jpg", data, "image/jpeg")), ("photo", ("b.jpg", data, "image/jpeg"))],
        data=CITY_HALL,
    )
    assert r.status_code == 422 and r.json()["field"] == "photo"
    r = client.post(
        "/api/v1/reports",
        files=_files([data, jpeg_bytes(seed=2)]),
        data={**CITY_HALL, "description": ["a", "b"]},
    )
    assert r.status_code == 422 and r.json()["field"] == "description"
    r = client.post(  # the flood limit still holds: 11 files
        "/api/v1/reports", files=_files([data] * 11), data=CITY_HALL
    )
    assert r.status_code == 422
    _nothing_stored(client)


def test_a_retry_with_the_same_photos_returns_the_same_case(client: TestClient) -> None:
    photos = [jpeg_bytes(seed=s) for s in (1, 2, 3)]
    key = {"Idempotency-Key": "trip-42"}
    first = _post(client, photos, key)
    again = _post(client, photos, key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    ctx = _ctx(client)
    assert ctx.store.count() == 1 and ctx.media.count() == 3 and len(_rows(client)) == 2


def test_a_retry_with_other_extra_photos_keeps_no_unreferenced_file(client: TestClient) -> None:
    first_photo, extra, other_extra = (jpeg_bytes(seed=s) for s in (1, 2, 3))
    key = {"Idempotency-Key": "trip-43"}
    first = _post(client, [first_photo, extra], key)
    again = _post(client, [first_photo, other_extra], key)  # the app re-sent a different set
    assert first.json()["id"] == again.json()["id"]
    ctx = _ctx(client)
    assert ctx.store.count() == 1 and len(_rows(client)) == 1
    assert ctx.media.exists(sha256_hex(extra))
    assert not ctx.media.exists(sha256_hex(other_extra))  # referenced by nothing: not kept
    assert ctx.media.count() == 2


class _DarkPatchDetector:
    """A stub detector (the real one is tested elsewhere): every dark patch is a pothole."""

    names = ("pothole", "graffiti")

    def detect(self, rgb):
        import numpy as np

        from vision.types import Detections

        ys, xs = np.nonzero(rgb.max(axis=2) < 40)
        if len(xs) < 50:
            return Detections.empty(self.names)
        box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
        return Detections(box, [0.9], [0], [], self.names)


def _street(dark_patch: bool, seed: int) -> bytes:
    import numpy as np
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(120, 12, (600, 800, 3)), 0, 255).astype("uint8")
    img = Image.fromarray(pixels)
    if dark_patch:
        ImageDraw.Draw(img).ellipse((330, 380, 470, 450), fill=(15, 15, 15))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_findings_come_from_every_photo_with_a_stub_detector(client: TestClient) -> None:
    from pipeline.process import process_case

    ctx = _ctx(client)
    ctx.__dict__["detector"] = _DarkPatchDetector()  # Context.detector is a cached property
    plain, with_pothole = _street(False, 1), _street(True, 2)
    r = _post(client, [plain, with_pothole, _street(False, 3)])
    assert r.status_code == 202, r.text
    case = process_case(ctx, r.json()["id"])
    assert [f.photo for f in case.findings] == [1]  # only the second photo shows it
    found = case.findings[0]
    assert found.class_name == "pothole" and case.category == "pothole"
    assert 320 <= found.bbox_xyxy[0] <= 340 and 460 <= found.bbox_xyxy[2] <= 480
    assert found.measurement.method in {"ground-plane", "pixels-only"}
    served = client.get(f"/api/v1/reports/{case.id}").json()
    assert served["findings"][0]["photo"] == 1
    # A report whose photos show nothing still ends with a person looking at it.
    r = _post(client, [_street(False, 4), _street(False, 5)])
    case = process_case(ctx, r.json()["id"])
    assert case.findings == [] and case.status == "needs_review"
