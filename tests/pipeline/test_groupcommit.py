"""Group commit (pipeline/groupcommit.py): uploads that arrive together share one transaction,
and each caller still gets exactly its own answer — on SQLite and on PostgreSQL + PostGIS."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from pipeline.db import CaseRow, HistoryRow, PhotoRow
from pipeline.errors import IdempotencyConflict, StoreUnavailable
from pipeline.groupcommit import GroupCommitter
from pipeline.media import sha256_hex
from pipeline.store import SqlCaseStore
from pipeline.store_create import NewCase, create_many
from pipeline.types import Report


def _report(data: bytes) -> Report:
    return Report(
        photo_sha256=sha256_hex(data), photo_content_type="image/jpeg", lat=42.37, lon=-71.11,
        location_source="device",
    )  # fmt: skip


def _item(data: bytes, key: str | None = None) -> NewCase:
    return NewCase(_report(data), len(data), "resident", key, None)


def _count(store: SqlCaseStore, table: type) -> int:
    with store.session() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


def test_waiting_items_go_in_one_batch_and_each_caller_gets_its_result() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def commit_many(items: list[int]) -> list[int | BaseException]:
        batches.append(list(items))
        release.wait(5)  # the first batch holds the "transaction" while the others queue
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    gc: GroupCommitter[int, int] = GroupCommitter(commit_many)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(gc.submit, 0)
        while not batches:  # the committer is inside the first batch
            threading.Event().wait(0.01)
        rest = [pool.submit(gc.submit, i) for i in range(1, 8)]
        while gc._q.qsize() < 7:  # all seven wait for the next batch
            threading.Event().wait(0.01)
        release.set()
        assert first.result() == 0
        for i, fut in enumerate(rest, start=1):
            if i % 2:
                with pytest.raises(ValueError, match=f"odd {i}"):
                    fut.result()
            else:
                assert fut.result() == i * 10
    assert batches == [[0], list(range(1, 8))]
    assert (gc.batches, gc.items) == (2, 8)
    gc.close()


def test_a_failed_batch_fails_every_caller_in_it() -> None:
    def commit_many(items: list[int]) -> list[int | BaseException]:
        raise StoreUnavailable("the store is down")

    gc: GroupCommitter[int, int] = GroupCommitter(commit_many)
    with pytest.raises(StoreUnavailable):
        gc.submit(1)
    gc.close()
    with pytest.raises(StoreUnavailable):  # a submit after close starts the thread again
        gc.submit(2)
    gc.close()


def test_a_batch_of_new_cases_is_one_transaction(store: SqlCaseStore) -> None:
    photos = [secrets.token_bytes(16) for _ in range(5)]
    items = [_item(p, key=f"k{i}") for i, p in enumerate(photos)] + [_item(photos[0])]
    ids = create_many(store, items)
    assert len(set(ids)) == 6 and all(isinstance(i, str) for i in ids)
    assert _count(store, CaseRow) == 6 and _count(store, HistoryRow) == 6
    assert _count(store, PhotoRow) == 5  # the same bytes twice: one photo row
    case = store.get(ids[2])  # type: ignore[arg-type]
    assert case.status == "received" and case.history[0].why == "photo uploaded"


def test_a_retry_inside_a_batch_gets_the_first_case_and_a_reused_key_its_conflict(
    store: SqlCaseStore,
) -> None:
    a, b, c = (secrets.token_bytes(16) for _ in range(3))
    first = store.create_case(_report(a), len(a), idempotency_key="retry-me")
    out = create_many(store, [
        _item(b, key="new"),
        _item(a, key="retry-me"),  # a retry of the committed upload: the same case
        _item(c, key="new"),  # the same key for other bytes: a conflict for this caller only
        _item(b, key="twice"),
        _item(b, key="twice"),  # two retries racing in one batch: one case
    ])  # fmt: skip
    assert out[1] == first
    assert isinstance(out[2], IdempotencyConflict)
    assert isinstance(out[0], str) and out[0] != first
    assert out[3] == out[4] and isinstance(out[3], str)
    assert _count(store, CaseRow) == 3  # first, "new", "twice"


def test_concurrent_uploads_share_transactions(store: SqlCaseStore) -> None:
    photos = [secrets.token_bytes(16) for _ in range(40)]

    def upload(p: bytes) -> str:
        return store.create_case(_report(p), len(p), group=True)

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(upload, photos))
    committer = store._committer
    assert committer is not None
    assert len(set(ids)) == 40 == _count(store, CaseRow) == committer.items
    assert committer.batches < 40  # some waited and went together
    from prometheus_client import REGISTRY

    seen = REGISTRY.get_sample_value("streetlens_upload_commit_batch_sum")
    assert seen is not None and seen >= 40  # the metric counts every committed upload
    store.close()  # stops the committer thread
    assert store._committer is not None and store._committer._thread is None
