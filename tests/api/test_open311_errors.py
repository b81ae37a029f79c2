"""Open311 errors: the spec's error document (JSON and XML, validated) with its codes, and a
refused request leaves nothing behind; filters and paging of GET requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from imagegen import jpeg_bytes
from open311_schemas import Schemas

from api.app import create_app
from pipeline import accounts
from pipeline.db import CaseRow
from pipeline.settings import Settings

V2 = "/open311/v2"
HERE = {"lat": "42.3663", "long": "-71.1056"}
# Rate limits are tested in test_auth_ratelimit.py; this many calls must not meet them.
QUIET = {"sweep_interval_s": 0, "ratelimit_enabled": False}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, shared_cache: Path):
    home = tmp_path_factory.mktemp("open311-errors")
    s = Settings(home=home, data_dir=data_dir, cache_dir=shared_cache, **QUIET)
    app = create_app(s)
    with TestClient(app) as c:
        c.ctx = app.state.ctx  # type: ignore[attr-defined]
        c.key, _ = accounts.create_api_key(c.ctx.store, "errors-test")  # type: ignore[attr-defined]
        yield c


def expect_error(schemas: Schemas, r, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    if r.request.url.path.endswith(".xml"):
        (err,) = schemas.validate_xml("errors", r.content)
    else:
        (err,) = r.json()
        schemas.validate("errors", r.json())
    assert err["code"] == status
    assert words.lower() in err["description"].lower(), err["description"]


def photo_fields(client: TestClient, **fields: str) -> dict:
    return {"api_key": client.key, "service_code": "graffiti", "attribute[surface]": "brick",
            **HERE, **fields}  # fmt: skip


BAD_POSTS = [
    ({"api_key": ""}, 403, "api_key"),
    ({"api_key": "sl_not-a-real-key"}, 403, "not valid"),
    ({"service_code": ""}, 400, "service_code"),
    ({"service_code": "ufo"}, 400, "use one of"),
    ({"jurisdiction_id": "sfgov.org"}, 404, "jurisdiction"),
    ({"attribute[surface]": ""}, 400, "needs attribute[surface]"),
    ({"attribute[surface]": "chalk"}, 400, "not one of its keys"),
    ({"attribute[colour]": "red"}, 400, "no attribute 'colour'"),
    ({"attribute[offensive]": "maybe"}, 400, "offensive"),
    ({"attributes": "x"}, 400, "attribute[CODE]"),
    ({"lat": "42.3551", "long": "-71.0656"}, 400, "outside"),  # Boston Common
    ({"lat": "nan"}, 400, "finite"),
    ({"long": ""}, 400, "together"),
    ({"lat": "", "long": "", "address_string": "1 Nowhere Lane"}, 400, "not found"),
    ({"lat": "", "long": "", "address_id": "no-such-parcel"}, 400, "no parcel"),
    ({"email": "not-an-email"}, 400, "email"),
    ({"phone": "call me maybe"}, 400, "phone"),
    ({"first_name": "x" * 101}, 400, "limit is 100"),
    ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ({"media_url": "file:///etc/passwd"}, 400, "never fetched"),
    ({"description": "d" * 4001}, 400, "description"),
]


@pytest.mark.parametrize(("fields", "status", "words"), BAD_POSTS)
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_post_is_refused_and_stores_nothing(
    client: TestClient, schemas: Schemas, fields: dict, status: int, words: str, fmt: str
) -> None:
    r = client.post(
        f"{V2}/requests.{fmt}",
        data=photo_fields(client, **fields),
        files={"media": ("p.jpg", jpeg_bytes(), "image/jpeg")},
    )
    expect_error(schemas, r, status, words)
    assert client.ctx.store.count() == 0  # type: ignore[attr-defined]
    assert client.ctx.media.count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("photo", "words"),
    [(b"", "empty"), (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "photo")],
)
def test_a_sent_photo_is_checked(
    client: TestClient, schemas: Schemas, photo: bytes, words: str
) -> None:
    # No media at all is fine (tests/api/test_open311_nophoto.py); a bad one is refused.
    files = {"media": ("p.svg", photo, "image/svg+xml")}
    r = client.post(f"{V2}/requests.json", data=photo_fields(client), files=files)
    expect_error(schemas, r, 400, words)
    assert client.ctx.store.count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("services/ufo.xml", 404, "service_code"),
        ("services.html", 404, "format"),
        ("services.json?jurisdiction_id=sfgov.org", 404, "jurisdiction"),
        ("requests/no-such-id.json", 404, "no service request"),
        ("requests/no-such-id.xml", 404, "no service request"),
        ("tokens/no-such-token.xml", 404, "token"),
        ("nothing-here.json", 404, "no open311 resource"),
        ("requests.json?status=pending", 400, "status"),
        ("requests.xml?start_date=last+week", 400, "iso 8601"),
        ("requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", 400, "90"),
        (
            "requests.json?start_date=2026-06-01T00:00:00Z&end_date=2026-01-01T00:00:00Z",
            400,
            "after",
        ),
        ("requests.json?page_size=0", 400, "page_size"),
        ("requests.json?page_size=5000", 400, "page_size"),
        ("requests.json?page=-1", 400, "page"),
        ("requests.json?service_code=ufo", 400, "service_code"),
        ("servicerequestupdates.xml?end_date=soon", 400, "end_date"),
    ],
)
def test_get_errors(
    client: TestClient, schemas: Schemas, path: str, status: int, words: str
) -> None:
    expect_error(schemas, client.get(f"{V2}/{path}"), status, words)


def test_wrong_method_answers_405_in_open311_format(client: TestClient, schemas: Schemas) -> None:
    r = client.delete(f"{V2}/services.xml")
    expect_error(schemas, r, 405, "not allowed")
    assert "GET" in r.headers["allow"]


def test_native_api_keeps_its_own_error_format(client: TestClient) -> None:
    r = client.get("/api/v1/reports/no-such-id")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_filters_and_paging(client: TestClient, schemas: Schemas) -> None:
    check_filters(client, schemas)


def test_filters_and_paging_on_postgis(
    pg_database, data_dir: Path, shared_cache: Path, tmp_path: Path, schemas: Schemas
) -> None:
    s = Settings(
        home=tmp_path / "home",
        data_dir=data_dir,
        cache_dir=shared_cache,
        database_url=pg_database(),
        **QUIET,
    )
    app = create_app(s)
    with TestClient(app) as c:
        c.ctx = app.state.ctx  # type: ignore[attr-defined]
        c.key, _ = accounts.create_api_key(c.ctx.store, "errors-test")  # type: ignore[attr-defined]
        check_filters(c, schemas)


def check_filters(client: TestClient, schemas: Schemas) -> None:
    """GET requests' filters and paging, and servicerequestupdates' window, on one store."""
    ctx = client.ctx  # type: ignore[attr-defined]
    ids = []
    for i, code in enumerate(["graffiti", "pothole", "streetlight", "pothole"]):
        fields = photo_fields(client, service_code=code)
        if code != "graffiti":
            fields.pop("attribute[surface]")
        if code == "streetlight":
            fields["attribute[problem]"] = "out"
        r = client.post(
            f"{V2}/requests.json",
            data=fields,
            files={"media": ("p.jpg", jpeg_bytes(seed=40 + i), "image/jpeg")},
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()[0]["service_request_id"])
    # Spread them in time (one a day, oldest first) and close the streetlight.
    now = datetime.now(UTC)
    with ctx.store.session() as s:
        for i, cid in enumerate(ids):
            s.get(CaseRow, cid).created_at = now - timedelta(days=len(ids) - i)
    ctx.store.transition(ids[2], "closed", by="crew:1", why="relamped", resolution="fixed")

    def find(**params) -> list[str]:
        r = client.get(f"{V2}/requests.json", params=params)
        assert r.status_code == 200, r.text
        schemas.validate("requests", r.json())
        return [x["service_request_id"] for x in r.json()]

    assert find() == ids[::-1]  # newest first
    assert find(service_code="pothole") == [ids[3], ids[1]]
    assert find(service_code="pothole,graffiti") == [ids[3], ids[1], ids[0]]
    assert find(status="closed") == [ids[2]]
    assert find(status="open") == [ids[3], ids[1], ids[0]]
    assert find(status="open,closed") == ids[::-1]
    assert find(page_size="2") == [ids[3], ids[2]]
    assert find(page_size="2", page="2") == [ids[1], ids[0]]
    assert find(page_size="2", page="3") == []
    since = (now - timedelta(days=2, hours=12)).isoformat()
    assert find(start_date=since) == [ids[3], ids[2]]
    until = (now - timedelta(days=2, hours=12)).astimezone().isoformat()
    assert find(end_date=until) == [ids[1], ids[0]]
    # Ids override every other filter; unknown ids are left out.
    assert set(find(service_request_id=f"{ids[0]},{ids[2]},nope", status="open")) == {
        ids[0],
        ids[2],
    }
    old = (now - timedelta(days=200)).isoformat()
    assert find(start_date=old, end_date=(now - timedelta(days=150)).isoformat()) == []
    # Updates: every status change in the window, oldest first; ids narrow them.
    r = client.get(f"{V2}/servicerequestupdates.json", params={"service_request_id": ids[2]})
    schemas.validate("updates", r.json())
    assert [u["external_status_code"] for u in r.json()] == ["received", "closed"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = client.get(f"{V2}/servicerequestupdates.json", params={"start_date": later})
    assert r.status_code == 200 and r.json() == []
    r = client.get(f"{V2}/servicerequestupdates.json", params={"page_size": "2", "page": "3"})
    assert [u["service_request_id"] for u in r.json()] == [ids[2]]


def test_oversized_upload_is_refused_from_its_length(
    tmp_path: Path, data_dir: Path, schemas: Schemas
) -> None:
    s = Settings(home=tmp_path / "home", data_dir=data_dir, max_upload_bytes=10_000, **QUIET)
    with TestClient(create_app(s)) as c:
        r = c.post(
            f"{V2}/requests.xml",
            data={"service_code": "other", **HERE},
            files={"media": ("big.jpg", b"\xff" * 300_000, "image/jpeg")},
        )
    expect_error(schemas, r, 413, "at most 10000 bytes")
