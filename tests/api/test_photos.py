"""Case photos over HTTP: anyone gets the blurred, metadata-free public variant; crew reach the
original only through a link that expires; on a folder and on a real S3 server (moto's)."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from PIL import Image, ImageCms

from api.app import create_app
from pipeline import accounts, public_media
from pipeline.media import sha256_hex
from pipeline.photo_variants_db import PhotoVariantRow
from pipeline.settings import Settings
from pipeline.types import Report
from vision.exif import write_exif
from vision.privacy_synth import FACE_SOURCES, composite_face, load_face_source, polygon_mask

LAT, LON = 42.3663, -71.1056
REGION = "us-east-1"


def _photo() -> tuple[bytes, np.ndarray, np.ndarray]:
    """A phone-like JPEG (EXIF GPS and camera, an ICC profile, XMP) with a face; its pixels
    and the face polygon."""
    pytest.importorskip("skimage", reason="scikit-image (the test extra) ships the face photo")
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:420, 0:560]
    bg = 120 + 35 * np.sin(x / 29.0) * np.cos(y / 41.0)
    rgb = np.clip(bg[..., None] + rng.normal(0, 6, (420, 560, 3)), 0, 255).astype(np.uint8)
    src = FACE_SOURCES[0]
    poly = composite_face(
        rgb, load_face_source(src), src.face_xyxy, face_width_px=90, angle_deg=0, flip=False,
        rng=np.random.default_rng(1),
    )  # fmt: skip
    buf = io.BytesIO()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92, icc_profile=icc, xmp=xmp)
    data = write_exif(buf.getvalue(), lat=LAT, lon=LON, make="Apple", model="iPhone 15")
    return data, rgb, poly


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, np.ndarray, np.ndarray]:
    return _photo()


def _client(settings: Settings) -> TestClient:
    settings.sweep_interval_s = 0
    settings.ratelimit_enabled = False
    settings.privacy_mtcnn = False  # the torch-free path every install has (and faster here)
    settings.public_long_side = 400
    settings.thumb_long_side = 120
    return TestClient(create_app(settings))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with _client(settings) as c:
        yield c


def _case(client: TestClient, data: bytes) -> str:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    sha = ctx.media.put(data, "image/jpeg")
    report = Report(
        photo_sha256=sha, photo_content_type="image/jpeg", lat=LAT, lon=LON, anonymous=True
    )
    return ctx.store.create_case(report, len(data))


def _as(client: TestClient, role: str) -> dict[str, str]:
    store = client.app.state.ctx.store  # type: ignore[attr-defined]
    acct = accounts.create_account(
        store, f"{role}-{time.monotonic_ns()}@city.test", "pw-" + "x" * 12, role, log2_n=4
    )
    token, _ = accounts.issue_token(store, acct, 600)
    return {"Authorization": f"Bearer {token}"}


def _no_metadata(jpeg: bytes) -> None:
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG"
    assert not img.getexif() and "exif" not in img.info
    assert "icc_profile" not in img.info and "xmp" not in img.info
    for marker in (b"Exif\x00\x00", b"ICC_PROFILE", b"adobe:ns:meta", b"iPhone", b"Apple"):
        assert marker not in jpeg, marker


def _detail(gray: np.ndarray, mask: np.ndarray) -> float:
    return float(cv2.Laplacian(gray.astype(np.float64), cv2.CV_64F)[mask].var())


def test_the_public_photo_is_blurred_stripped_and_capped(client: TestClient, photo) -> None:
    data, rgb, poly = photo
    assert b"Exif\x00\x00" in data and b"ICC_PROFILE" in data  # what the phone sent
    cid = _case(client, data)
    r = client.get(f"/api/v1/reports/{cid}/photo")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    _no_metadata(r.content)
    pub = np.asarray(Image.open(io.BytesIO(r.content)).convert("L"))
    assert pub.shape == (300, 400)  # long side capped at 400 (from 560 x 420)
    # The face, at the public size, has lost its detail; the original in the store has not.
    s = 400 / 560
    face = polygon_mask(pub.shape, poly * s)
    orig = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (400, 300), cv2.INTER_AREA)
    assert _detail(pub, face) < 0.1 * _detail(orig, face)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    assert ctx.media.get(sha256_hex(data)) == data
    assert ctx.media.count() == 1  # variants are not counted as photos

    t = client.get(f"/api/v1/reports/{cid}/photo", params={"size": "thumb"})
    assert t.status_code == 200
    _no_metadata(t.content)
    assert Image.open(io.BytesIO(t.content)).size == (120, 90)
    with ctx.store.session() as sess:
        row = sess.get(PhotoVariantRow, sha256_hex(data))
        assert row is not None and row.faces >= 1 and row.public_width == 400
        assert row.blur_version == public_media.BLUR_VERSION
    # Served again from the store, byte for byte.
    assert client.get(f"/api/v1/reports/{cid}/photo").content == r.content


def test_photo_of_a_missing_case_or_a_bad_size_is_a_clear_4xx(client: TestClient) -> None:
    r = client.get("/api/v1/reports/no-such-case/photo")
    assert r.status_code == 404 and r.json()["error"]
    r = client.get("/api/v1/reports/no-such-case/photo", params={"size": "huge"})
    assert r.status_code == 422 and r.json()["error"]


def test_originals_only_for_crew_and_only_while_the_link_lasts(client: TestClient, photo) -> None:
    data = photo[0]
    cid = _case(client, data)
    path = f"/api/v1/reports/{cid}/original-link"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=_as(client, "resident")).status_code == 403
    assert client.get(path, headers=_as(client, "analyst")).status_code == 403
    r = client.get(path, headers=_as(client, "crew"))
    assert r.status_code == 200, r.text
    link = r.json()
    assert link["signed_by"] == "app"
    got = client.get(link["url"])
    assert got.status_code == 200 and got.content == data  # the original, EXIF and all
    assert got.headers["cache-control"] == "private, no-store"
    # A changed signature, another case, or an expired link: refused.
    bad = link["url"][:-4] + ("0000" if not link["url"].endswith("0000") else "1111")
    assert client.get(bad).status_code == 403
    other = _case(client, data + b"\x00")
    assert client.get(link["url"].replace(cid, other)).status_code == 403
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    past = int(time.time()) - 1
    sig = public_media._signature(public_media.link_key(ctx.settings), cid, past)
    r = client.get(f"/api/v1/reports/{cid}/original", params={"expires": past, "sig": sig})
    assert r.status_code == 403 and "expired" in r.json()["message"]
    assert client.get(f"/api/v1/reports/{cid}/original").status_code == 422


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()
    server._server.server_close()  # type: ignore[union-attr]


def test_on_s3_variants_live_under_public_and_originals_behind_presigned_links(
    settings: Settings, s3_endpoint: str, photo
) -> None:
    data = photo[0]
    settings.media_backend = "s3"
    settings.s3_endpoint = f"http://{s3_endpoint}"
    settings.s3_access_key, settings.s3_bucket = "admin", f"orig-{secrets.token_hex(4)}"
    settings.s3_secret_key = settings.s3_secret_key.__class__("admin")
    settings.s3_region = REGION
    with _client(settings) as client:
        cid = _case(client, data)
        r = client.get(f"/api/v1/reports/{cid}/photo")
        assert r.status_code == 200
        _no_metadata(r.content)
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        assert ctx.media.count() == 1
        names = {
            o.object_name
            for o in ctx.media._client.list_objects(settings.s3_bucket, recursive=True)
        }
        sha = sha256_hex(data)
        assert names == {
            f"originals/{sha}",
            f"public/{sha}-v{public_media.BLUR_VERSION}.jpg",
            f"public/{sha}-v{public_media.BLUR_VERSION}-thumb.jpg",
        }
        link = client.get(f"/api/v1/reports/{cid}/original-link", headers=_as(client, "crew"))
        assert link.status_code == 200 and link.json()["signed_by"] == "s3"
        url = link.json()["url"]
        assert "X-Amz-Expires=300" in url and "X-Amz-Signature=" in url
        assert httpx.get(url).content == data
        # Without the signature the bucket answers no.
        assert httpx.get(url.split("?")[0]).status_code == 403
