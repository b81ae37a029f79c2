"""The case store (a private PostgreSQL + PostGIS) restarted while uploads keep coming: uploads
during the outage answer a clear 503 and leave neither a case nor a photo behind; the others
answer 202; afterwards accepted = cases = processed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from faultkit import (
    PostgresServer,
    assert_processed_once,
    base_photos,
    distinct,
    form,
    post,
    start_serve,
    start_worker,
    wait_all_final,
    wait_until,
)

from pipeline.media import LocalMediaStore
from pipeline.store import SqlCaseStore

UPLOADERS = 2
PAUSE_S = 0.25  # between one uploader's requests: steady load the worker keeps up with


@pytest.mark.slow
def test_uploads_through_a_database_restart(
    tmp_path: Path, data_dir: Path, fault_env: Callable[..., dict]
) -> None:
    pg = PostgresServer()
    serve = worker = store = None
    try:
        pg.start()
        pg.create_database()
        env = fault_env(database_url=pg.url())
        serve, url = start_serve(env, tmp_path / "serve.log")
        worker = start_worker(env, tmp_path / "worker.log")
        wait_until(lambda: b"ready." in worker.log.read_bytes(), 60, "the worker")
        store = SqlCaseStore(pg.url())
        photos = base_photos(data_dir, 4)
        answers: list[tuple[float, int, dict]] = []
        lock = threading.Lock()
        stop = threading.Event()
        counter = iter(range(1_000_000))

        def uploader() -> None:
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    with lock:
                        n = next(counter)
                    photo = distinct(photos[n % len(photos)], f"db-{n}")
                    r = post(client, url, photo, form(n), key=f"db-{n}")
                    with lock:
                        answers.append((time.monotonic(), r.status_code, r.json()))
                    time.sleep(PAUSE_S)

        with httpx.Client(timeout=60) as client:  # the first upload loads the city's layers
            r = post(client, url, distinct(photos[0], "db-warm"), form(0), key="db-warm")
            answers.append((time.monotonic(), r.status_code, r.json()))
            assert r.status_code == 202, r.text
        threads = [threading.Thread(target=uploader) for _ in range(UPLOADERS)]
        for t in threads:
            t.start()
        time.sleep(3)
        pg.stop("fast")  # every session ends; open transactions roll back
        down_at = time.monotonic()
        time.sleep(3)
        pg.start()
        up_at = time.monotonic()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(timeout=60)

        codes = [code for _, code, _ in answers]
        assert set(codes) <= {202, 503}, [a for a in answers if a[1] not in (202, 503)]
        refused = [body for _, code, body in answers if code == 503]
        assert refused, "no upload met the outage"
        for body in refused:
            assert body["error"] == "unavailable" and "case store" in body["message"], body
        assert sum(code == 202 and t < down_at for t, code, _ in answers) > 1
        assert any(code == 202 and t > up_at for t, code, _ in answers), "never recovered"
        accepted = {body["id"] for _, code, body in answers if code == 202}

        wait_all_final(store, len(accepted), 45, [serve, worker])
        assert {c for c in store.ids(limit=10_000)} == accepted
        for cid in accepted:
            assert_processed_once(store, cid)
        # Photos of refused uploads are removed (at once, or by the sweeper once the store
        # answers again): every stored photo belongs to a case.
        media = LocalMediaStore(Path(env["STREETLENS_HOME"]) / "media")
        wait_until(lambda: media.count() == len(accepted), 10, "orphan photos to be removed")
    finally:
        for p in (worker, serve):
            if p is not None:
                p.stop()
        if store is not None:
            store.close()
        pg.destroy()
