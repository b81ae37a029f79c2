"""Exactly-once processing on both backends: claims, leases, stuck cases, idempotency keys."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import IdempotencyConflict
from pipeline.media import sha256_hex
from pipeline.store import SqlCaseStore
from pipeline.types import Report


def _report(data: bytes = b"photo") -> Report:
    return Report(
        photo_sha256=sha256_hex(data), photo_content_type="image/jpeg", lat=42.37, lon=-71.11,
        location_source="device",
    )  # fmt: skip


def test_only_one_claim_wins(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        wins.append(store.claim(cid, by="w", lease_s=60))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]
    case = store.get(cid)
    assert case.status == "processing"
    assert [h.status for h in case.history] == ["received", "processing"]


def test_a_lost_worker_lease_can_be_reclaimed(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    assert store.claim(cid, by="w1", lease_s=60)
    assert not store.claim(cid, by="w2", lease_s=60)  # w1 still holds it
    time.sleep(0.3)
    assert store.stuck(received_s=60, processing_s=0.2) == [cid]
    assert store.claim(cid, by="w2", lease_s=0.2)  # w1 died: its lease ran out
    store.transition(cid, "needs_review", by="w2", why="done")
    assert not store.claim(cid, by="w3", lease_s=0.0)  # finished cases are never re-run
    assert store.stuck(received_s=0, processing_s=0) == []


def test_release_hands_back_for_a_retry(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    assert store.claim(cid, by="w", lease_s=60)
    store.release(cid, by="w", why="retrying")
    assert store.status(cid) == "received"
    assert store.claim(cid, by="w", lease_s=60)


def test_stuck_received_cases_are_found_after_the_grace(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    assert store.stuck(received_s=60, processing_s=60) == []
    time.sleep(0.3)
    assert store.stuck(received_s=0.2, processing_s=60) == [cid]


def test_idempotency_key_returns_the_same_case(store: SqlCaseStore) -> None:
    a = store.create_case(_report(b"x"), 1, idempotency_key="k-1")
    b = store.create_case(_report(b"x"), 1, idempotency_key="k-1")
    c = store.create_case(_report(b"x"), 1, idempotency_key="k-2")
    assert a == b != c
    assert store.count() == 2
    with pytest.raises(IdempotencyConflict, match="different photo"):
        store.create_case(_report(b"other"), 1, idempotency_key="k-1")


def test_racing_retries_with_one_key_make_one_case(store: SqlCaseStore) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(4)

    def upload() -> None:
        barrier.wait()
        ids.append(store.create_case(_report(b"y"), 1, idempotency_key="race"))

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and store.count() == 1


def test_claim_next_takes_the_oldest_due_case_once(store: SqlCaseStore) -> None:
    first = store.create_case(_report(b"1"), 1)
    second = store.create_case(_report(b"2"), 1)
    assert store.claim_next(by="w1", lease_s=60) == first
    assert store.claim_next(by="w2", lease_s=60) == second
    assert store.claim_next(by="w3", lease_s=60) is None  # both held, leases fresh
    assert [h.status for h in store.get(first).history] == ["received", "processing"]


def test_claim_next_races_give_each_case_to_one_worker(store: SqlCaseStore) -> None:
    ids = {store.create_case(_report(f"r{i}".encode()), 1) for i in range(5)}
    got: list[str | None] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        got.append(store.claim_next(by="w", lease_s=60))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [g for g in got if g is not None]
    assert sorted(taken) == sorted(ids)  # each case once, none twice


def test_a_renewed_lease_is_not_taken_a_lapsed_one_is(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    assert store.claim_next(by="w1", lease_s=0.3) == cid
    time.sleep(0.2)
    assert store.renew(cid)  # w1 is alive and working
    time.sleep(0.2)
    assert store.claim_next(by="w2", lease_s=0.3) is None  # 0.2 s since the renewal
    time.sleep(0.2)
    assert store.claim_next(by="w2", lease_s=0.3) == cid  # w1 stopped renewing: it died
    store.transition(cid, "needs_review", by="w2", why="done")
    assert not store.renew(cid)  # a finished case has no lease to renew


def test_a_released_case_waits_its_backoff(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    assert store.claim_next(by="w", lease_s=60) == cid
    store.release(cid, by="w", why="retrying", retry_in_s=0.4)
    assert store.claim_next(by="w", lease_s=60) is None
    assert store.stuck(received_s=0, processing_s=60) == []  # not stuck before its time
    time.sleep(0.5)
    assert store.claim_next(by="w", lease_s=60) == cid


def test_touch_restarts_a_received_cases_grace(store: SqlCaseStore) -> None:
    cid = store.create_case(_report(), 5)
    time.sleep(0.3)
    assert store.stuck(received_s=0.2, processing_s=60) == [cid]
    store.touch_received([cid])
    assert store.stuck(received_s=0.2, processing_s=60) == []
    assert store.waiting() == 1
