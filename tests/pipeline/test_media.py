"""The photo stores: a local folder and a real S3 HTTP server (moto's), one suite for both.

Photos are content-addressed (a retried put stores once), missing photos and refused writes
raise StoreUnavailable (the API's 503), and Context.media picks the backend from the settings.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from minio import Minio
from moto.server import ThreadedMotoServer

from pipeline.context import Context
from pipeline.errors import ConfigError, StoreUnavailable
from pipeline.media import LocalMediaStore, MediaStore, S3MediaStore, media_store, sha256_hex
from pipeline.settings import Settings

REGION = "us-east-1"


def _start_moto() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"{host}:{port}"


def _stop_moto(server: ThreadedMotoServer) -> None:
    server.stop()
    server._server.server_close()  # type: ignore[union-attr]  # stop() leaves the port listening


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """host:port of a real S3 HTTP server on a free local port."""
    server, endpoint = _start_moto()
    yield endpoint
    _stop_moto(server)


def _bucket() -> str:
    return f"originals-{secrets.token_hex(4)}"  # moto's state is per process: one bucket a test


def _s3(endpoint: str, bucket: str, key: str = "admin", secret: str = "admin") -> S3MediaStore:
    return S3MediaStore(endpoint, key, secret, bucket, secure=False, region=REGION)


def _admin(endpoint: str) -> Minio:
    return Minio(endpoint, "admin", "admin", secure=False, region=REGION)


@pytest.fixture(params=["local", "s3"])
def media(request: pytest.FixtureRequest, tmp_path: Path) -> MediaStore:
    """An empty photo store on each backend."""
    if request.param == "local":
        return LocalMediaStore(tmp_path / "media")
    return _s3(request.getfixturevalue("s3_endpoint"), _bucket())


def test_media_store_is_content_addressed(media: MediaStore) -> None:
    a = media.put(b"abc", "image/jpeg")
    assert media.put(b"abc", "image/jpeg") == a == sha256_hex(b"abc")
    assert media.count() == 1 and media.get(a) == b"abc" and media.exists(a)
    media.delete(a)
    assert not media.exists(a) and media.count() == 0
    media.delete(a)  # deleting what is gone is fine: the sweeper and intake may race


def test_a_missing_photo_is_store_unavailable(media: MediaStore) -> None:
    missing = sha256_hex(b"never stored")
    assert not media.exists(missing) and media.count() == 0
    with pytest.raises(StoreUnavailable, match="missing"):
        media.get(missing)


def test_a_retried_put_stores_once_on_s3(s3_endpoint: str) -> None:
    bucket = _bucket()
    store = _s3(s3_endpoint, bucket)
    store.put(b"first", "image/jpeg")  # makes the bucket
    admin = _admin(s3_endpoint)
    from minio.versioningconfig import ENABLED, VersioningConfig

    # With versioning on, every PUT leaves a version: one version means one write.
    admin.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    data = secrets.token_bytes(1000)
    for _ in range(3):
        digest = store.put(data, "image/png")
    key = f"originals/{digest}"
    versions = [o for o in admin.list_objects(bucket, prefix=key, include_version=True)]
    assert len(versions) == 1
    assert admin.stat_object(bucket, key).content_type == "image/png"


def test_s3_bucket_is_made_private_when_missing(s3_endpoint: str) -> None:
    bucket = _bucket()
    admin = _admin(s3_endpoint)
    assert not admin.bucket_exists(bucket)
    _s3(s3_endpoint, bucket).put(b"x", "image/jpeg")
    assert admin.bucket_exists(bucket)
    from minio.error import S3Error

    with pytest.raises(S3Error, match="NoSuchBucketPolicy"):
        admin.get_bucket_policy(bucket)  # no policy: nobody but the owner reads it


def test_a_public_bucket_is_refused(s3_endpoint: str) -> None:
    bucket = _bucket()
    admin = _admin(s3_endpoint)
    admin.make_bucket(bucket)
    public = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
             "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }  # fmt: skip
    admin.set_bucket_policy(bucket, json.dumps(public))
    with pytest.raises(ConfigError, match="private"):
        _s3(s3_endpoint, bucket).put(b"face", "image/jpeg")


@pytest.fixture
def read_only_keys(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], tuple]:
    """Turns on the server's access control; returns a maker of read-only credentials."""
    import boto3
    from moto import settings as moto_settings

    iam = boto3.client(
        "iam", endpoint_url=f"http://{s3_endpoint}", region_name=REGION,
        aws_access_key_id="admin", aws_secret_access_key="admin",
    )  # fmt: skip
    name = f"reader-{secrets.token_hex(4)}"
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketPolicy",
                                           "s3:GetBucketLocation"], "Resource": "*"},
        ],
    }  # fmt: skip
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]

    def enforce() -> tuple[str, str]:
        # moto checks signatures and policies only once this count of requests is reached.
        monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        return key["AccessKeyId"], key["SecretAccessKey"]

    return enforce


def test_an_s3_refusing_writes_is_store_unavailable(
    s3_endpoint: str, read_only_keys: Callable[[], tuple]
) -> None:
    bucket = _bucket()
    writer = _s3(s3_endpoint, bucket)
    kept = writer.put(b"stored before", "image/jpeg")
    reader = _s3(s3_endpoint, bucket, *read_only_keys())
    assert reader.get(kept) == b"stored before"  # reads still work...
    with pytest.raises(StoreUnavailable, match=r"refused.*AccessDenied"):
        reader.put(b"new photo", "image/jpeg")  # ...writes are refused: the API answers 503
    assert not reader.exists(sha256_hex(b"new photo"))


def test_a_stopped_s3_server_is_store_unavailable() -> None:
    server, endpoint = _start_moto()
    store = _s3(endpoint, _bucket())
    digest = store.put(b"before", "image/jpeg")
    _stop_moto(server)
    with pytest.raises(StoreUnavailable, match="could not store"):
        store.put(b"after", "image/jpeg")
    with pytest.raises(StoreUnavailable):
        store.get(digest)
    with pytest.raises(StoreUnavailable):
        store.exists(digest)


def test_a_local_folder_refusing_writes_is_store_unavailable(tmp_path: Path) -> None:
    # chmod cannot stop root, so the store's root is a file: nothing can be made under it.
    (tmp_path / "media").write_text("not a folder")
    store = LocalMediaStore(tmp_path / "media")
    with pytest.raises(StoreUnavailable, match="refused the write"):
        store.put(b"photo", "image/jpeg")


def test_a_failed_local_write_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    digest = sha256_hex(b"photo")
    target = tmp_path / "media" / digest[:2] / digest[2:4] / digest
    target.mkdir(parents=True)  # a folder in the photo's place makes the final rename fail
    with pytest.raises(StoreUnavailable):
        store.put(b"photo", "image/jpeg")
    assert [p.name for p in target.parent.iterdir()] == [digest]


def test_context_picks_the_media_backend_from_settings(tmp_path: Path, s3_endpoint: str) -> None:
    local = Context(Settings(home=tmp_path / "a"))
    assert isinstance(local.media, LocalMediaStore)
    s = Settings(
        home=tmp_path / "b", media_backend="s3", s3_endpoint=f"http://{s3_endpoint}",
        s3_access_key="admin", s3_secret_key="admin", s3_bucket=_bucket(), s3_region=REGION,
    )  # fmt: skip
    media = Context(s).media
    assert isinstance(media, S3MediaStore)
    assert media.get(media.put(b"via settings", "image/jpeg")) == b"via settings"
    assert "admin" not in repr(s.s3_secret_key)
    with pytest.raises(ConfigError, match="S3_ENDPOINT"):
        media_store(Settings(home=tmp_path / "c", media_backend="s3"))
    with pytest.raises(ConfigError, match="bucket"):
        S3MediaStore("localhost:9000", "k", "s", "Not_A_Bucket")
    with pytest.raises(ConfigError, match="endpoint"):
        S3MediaStore("http://localhost:9000/path", "k", "s", "photos")


def test_settings_read_the_s3_backend_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETLENS_MEDIA_BACKEND", "s3")
    monkeypatch.setenv("STREETLENS_S3_ENDPOINT", "minio.city.example:9000")
    monkeypatch.setenv("STREETLENS_S3_SECRET_KEY", "hunter2")
    monkeypatch.setenv("STREETLENS_S3_SECURE", "false")
    s = Settings(home=tmp_path)
    assert (s.media_backend, s.s3_endpoint, s.s3_secure) == ("s3", "minio.city.example:9000", False)
    assert s.s3_secret_key.get_secret_value() == "hunter2" and "hunter2" not in repr(s)
    store = media_store(s)
    assert isinstance(store, S3MediaStore) and store.endpoint == "minio.city.example:9000"
