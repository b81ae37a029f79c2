"""A worker killed with SIGKILL in the middle of a task: its report still completes exactly
once (acks_late, the store's claim with a lease, and the sweeper in `serve`)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from faultkit import (
    assert_processed_once,
    base_photos,
    distinct,
    finding_rows,
    form,
    post,
    start_serve,
    start_worker,
    statuses,
    wait_all_final,
    wait_until,
)

from pipeline.media import LocalMediaStore
from pipeline.store import SqlCaseStore

N = 4


@pytest.mark.slow
def test_a_report_survives_its_worker_killed_mid_task(
    tmp_path: Path, data_dir: Path, fault_env: Callable[..., dict]
) -> None:
    # Full-resolution decoding of 6000x4500 photos keeps each task busy for a while.
    env = fault_env(detect_long_side="6000")
    home = Path(env["STREETLENS_HOME"])
    serve, url = start_serve(env, tmp_path / "serve.log")
    first = start_worker(env, tmp_path / "worker1.log")
    second = None
    store = SqlCaseStore(f"sqlite:///{home / 'cases.db'}")
    try:
        wait_until(lambda: b"ready." in first.log.read_bytes(), 60, "the first worker")
        [big] = base_photos(data_dir, 1, size=(6000, 4500))
        ids = []
        with httpx.Client(timeout=60) as client:
            for i in range(N):
                r = post(client, url, distinct(big, f"kill-{i}"), form(i), key=f"kill-{i}")
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])

        # Freeze the worker the moment a case is `processing`, check it still is, then kill:
        # SIGSTOP makes "still mid-task" and the kill one atomic moment.
        victim = None
        deadline = time.monotonic() + 40
        while victim is None and time.monotonic() < deadline:
            if "processing" in statuses(store).values():
                os.killpg(first.p.pid, signal.SIGSTOP)
                victim = next((c for c, s in statuses(store).items() if s == "processing"), None)
                if victim is None:
                    os.killpg(first.p.pid, signal.SIGCONT)  # it finished in between: next one
            else:
                time.sleep(0.01)
        assert victim is not None, "never caught the worker mid-task\n" + first.tail()
        first.kill9()
        assert store.status(victim) == "processing"  # the crash left it claimed, unfinished

        second = start_worker(env, tmp_path / "worker2.log")
        wait_all_final(store, N, 45, [serve, first, second])

        for cid in ids:
            assert_processed_once(store, cid)
        hist = [h.status for h in store.get(victim).history]
        assert hist.count("processing") == 2, hist  # the dead worker's claim, then the new one
        cases = [store.get(cid) for cid in ids]
        assert all(c.findings for c in cases)  # so "saved once" below counts something
        assert finding_rows(store) == sum(len(c.findings) for c in cases)
        assert store.count() == N and LocalMediaStore(home / "media").count() == N
    finally:
        for p in (second, first, serve):
            if p is not None:
                p.stop()
        store.close()
