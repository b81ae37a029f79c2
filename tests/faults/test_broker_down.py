"""The broker (a private redis-server) killed during uploads and restarted empty: every upload
still answers 202 (the case is committed; the failed enqueue is logged) and every accepted
report is processed exactly once (the sweeper re-enqueues what the queue lost)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from faultkit import (
    RedisServer,
    assert_processed_once,
    base_photos,
    distinct,
    finding_rows,
    form,
    post,
    start_serve,
    start_worker,
    wait_all_final,
    wait_until,
)

from pipeline.media import LocalMediaStore
from pipeline.store import SqlCaseStore

PER_PHASE = 8  # uploads before the kill, while it is down, and after the restart


@pytest.mark.slow
def test_uploads_survive_the_broker_going_down(
    tmp_path: Path, data_dir: Path, fault_env: Callable[..., dict]
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = fault_env(broker_url=redis.url)
    home = Path(env["STREETLENS_HOME"])
    serve = worker = None
    store = SqlCaseStore(f"sqlite:///{home / 'cases.db'}")
    try:
        serve, url = start_serve(env, tmp_path / "serve.log")
        worker = start_worker(env, tmp_path / "worker.log")
        wait_until(lambda: b"ready." in worker.log.read_bytes(), 60, "the worker")
        photos = base_photos(data_dir, 4)
        answers: list[tuple[str, dict]] = []
        took: dict[str, list[float]] = {"before": [], "down": [], "after": []}
        with httpx.Client(timeout=30) as client:

            def upload_phase(phase: str) -> None:
                for _ in range(PER_PHASE):
                    n = len(answers)
                    photo = distinct(photos[n % len(photos)], f"broker-{n}")
                    t0 = time.monotonic()
                    r = post(client, url, photo, form(n), key=f"broker-{n}")
                    took[phase].append(time.monotonic() - t0)
                    assert r.status_code == 202, (phase, r.status_code, r.text)
                    answers.append((phase, r.json()))

            upload_phase("before")
            redis.kill()  # the queue, unacked messages included, is gone for good
            upload_phase("down")
            redis.start()  # same port, empty
            upload_phase("after")

        queued = {ph: [a["queued"] for p, a in answers if p == ph] for ph in ("before", "down")}
        assert all(queued["before"]), queued
        assert not any(queued["down"]), queued  # committed, not queued: the sweeper's job now
        ids = [a["id"] for _, a in answers]
        assert len(set(ids)) == 3 * PER_PHASE
        assert b"could not enqueue case" in serve.log.read_bytes()  # logged, not silent
        # A failed send costs seconds (the client retries its connect); after one, uploads
        # skip the broker for a while instead of each paying that.
        assert statistics.median(took["down"]) < 2.0, took

        wait_all_final(store, len(ids), 50, [serve, worker])
        for cid in ids:
            assert_processed_once(store, cid)
        assert finding_rows(store) == sum(len(store.get(c).findings) for c in ids)
        assert store.count() == len(ids) == LocalMediaStore(home / "media").count()
    finally:
        for p in (worker, serve):
            if p is not None:
                p.stop()
        redis.stop()
        store.close()
