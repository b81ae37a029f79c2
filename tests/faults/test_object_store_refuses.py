"""The object store refusing writes (S3 on moto's real HTTP server): an upload answers 503 with
the JSON error body, and no case row is left behind."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from faultkit import S3_REGION, MotoS3, base_photos, distinct, form, post, start_serve

from pipeline.media import S3MediaStore
from pipeline.store import SqlCaseStore


def _assert_503(r: httpx.Response, says: str) -> None:
    assert r.status_code == 503, r.text
    body = r.json()  # the one error shape: a code and a message that says what failed
    assert body["error"] == "unavailable", body
    assert "photo store" in body["message"] and says in body["message"], body


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["server stopped", "read-only credentials"])
def test_an_upload_the_object_store_refuses_answers_503_and_leaves_no_case(
    fault: str,
    tmp_path: Path,
    data_dir: Path,
    fault_env: Callable[..., dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = MotoS3()
    bucket = f"originals-{secrets.token_hex(4)}"
    photos = [distinct(p, f"s3-{i}") for i, p in enumerate(base_photos(data_dir, 2))]
    serve = None
    try:
        admin = S3MediaStore(s3.endpoint, "admin", "admin", bucket, region=S3_REGION)
        admin.put(b"made the bucket", "text/plain")
        keys = ("admin", "admin")
        if fault == "read-only credentials":
            keys = s3.read_only_user()
            from moto import settings as moto_settings

            # moto checks signatures and IAM policies once this many requests were served.
            monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        env = fault_env(**s3.settings(bucket, *keys))
        store = SqlCaseStore(f"sqlite:///{Path(env['STREETLENS_HOME']) / 'cases.db'}")
        serve, url = start_serve(env, tmp_path / "serve.log")
        reader = S3MediaStore(s3.endpoint, *keys, bucket, region=S3_REGION)
        with httpx.Client(timeout=60) as client:
            if fault == "server stopped":
                ok = post(client, url, photos[0], form(0), key="s3-ok")
                assert ok.status_code == 202, ok.text  # the setup works: the fault is the cause
                assert store.count() == 1 and reader.count() == 2
                s3.stop()
                r = post(client, url, photos[1], form(1), key="s3-refused")
                _assert_503(r, "check STREETLENS_S3_ENDPOINT")
                assert store.count() == 1
            else:
                r = post(client, url, photos[1], form(1), key="s3-refused")
                _assert_503(r, "AccessDenied")
                assert store.count() == 0
                assert reader.count() == 1  # only the admin's object: nothing half-stored
        store.close()
    finally:
        if serve is not None:
            serve.stop()
        s3.stop()
