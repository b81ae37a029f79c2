"""Group commit: the uploads that arrive while one transaction commits go together in the next.

Each upload used to commit its own transaction. On SQLite the writers of two API processes
then queue for one write lock, and SQLite's busy handler sleeps 1, 2, 5 ... 100 ms between
tries: at 16 concurrent uploads a few waited over a second (the p99 of `bench/ingest.py`), and
every commit paid its own WAL append and sync. Here one thread per process commits: it takes
everything waiting, writes it in one transaction (one sync, one lock hold) and answers each
caller with its own result. A lone upload waits for nothing: the thread is idle, so its batch
is just itself. This is the classic group commit of database logs, in front of the database.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


class GroupCommitter(Generic[T, R]):
    """Run `commit_many` on batches of items submitted from any thread.

    `commit_many(items)` returns one result per item, in order: a value, or an exception
    for that item alone (raised in its caller). An exception raised by `commit_many` itself
    fails the whole batch (the store is down: every caller gets it)."""

    def __init__(
        self,
        commit_many: Callable[[list[T]], list[R | BaseException]],
        max_batch: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._commit_many = commit_many
        self._on_batch = on_batch  # told each committed batch's size (a metric)
        self._max = max_batch
        self._q: queue.SimpleQueue[tuple[T, Future[R]] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # how many transactions (for tests and metrics)
        self.items = 0

    def submit(self, item: T) -> R:
        """Commit `item` with whatever else is waiting; return its result (or raise)."""
        fut: Future[R] = Future()
        # Queued before the thread is checked: a close() in between puts its stop after this
        # item, so the closing thread commits it (or a new thread starts and does).
        self._q.put((item, fut))
        self._start()
        return fut.result()

    def close(self) -> None:
        """Finish what is queued, then stop the thread (a later submit starts it again)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._q.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)  # type: ignore[arg-type]
            if stop:
                return

    def _commit(self, batch: list[tuple[T, Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = self._commit_many(items)
        except BaseException as exc:  # the batch failed as a whole: each caller hears why
            for _, fut in batch:
                fut.set_exception(exc)
            return
        self.batches += 1
        self.items += len(items)
        if self._on_batch is not None:
            self._on_batch(len(items))
        for (_, fut), res in zip(batch, results, strict=True):
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
