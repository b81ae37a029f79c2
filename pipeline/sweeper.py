"""The sweeper: the case store is the truth, the queue only a hint. Cases left in `received`
(the broker was down, the message was lost) or in `processing` past their lease (the worker
died; a live worker renews its lease) are enqueued again; claiming makes the extra deliveries
harmless. It also removes the photos of uploads the case store refused while it could not say
whether a case used them. With the store as the queue (the default) there is no message to
lose: workers claim such cases themselves, and only the photo clean-up runs."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator

from sqlalchemy import func, select

from pipeline.context import Context

log = logging.getLogger(__name__)

_PG_SWEEP_LOCK = 0x5357454550  # "SWEEP": any constant, the same in every process
NEVER_S = 1e9  # ~31 years: "no case of this kind"


@contextlib.contextmanager
def sweep_lock(ctx: Context) -> Iterator[bool]:
    """True for the one process (of all API processes, on all machines) that sweeps now: a
    PostgreSQL advisory lock, or a lock file beside the SQLite database."""
    store = ctx.store
    if store.dialect == "postgresql":
        with store.begin() as conn:
            yield bool(
                conn.execute(select(func.pg_try_advisory_xact_lock(_PG_SWEEP_LOCK))).scalar()
            )
        return
    path = ctx.settings.home / "sweeper.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sweep(ctx: Context) -> int:
    """Enqueue every stuck case once; return how many were enqueued."""
    from pipeline.health import queue_depth
    from pipeline.tasks import enqueue

    s = ctx.settings
    if s.task_queue == "store":
        return 0
    with sweep_lock(ctx) as leader:
        if not leader:
            return 0  # another process sweeps this round
        store = ctx.store
        lost = store.stuck(received_s=NEVER_S, processing_s=s.processing_lease_s)
        waiting = store.stuck(received_s=s.received_grace_s, processing_s=NEVER_S)
        if waiting:
            # A deep queue is not a lost message: when the broker holds at least one message
            # per waiting case, they are all still on their way.
            depth = queue_depth(ctx)
            if depth is not None and depth >= store.waiting():
                log.info("sweeper: %d case(s) waiting behind a queue of %d", len(waiting), depth)
                waiting = []
        sent = 0
        for case_id in lost + waiting:
            if not enqueue(ctx, case_id, probe=True):
                break  # the broker is still down: try again next round
            sent += 1
        # A case sent again waits a whole grace before the next try, not one sweep interval.
        store.touch_received(waiting[: max(0, sent - len(lost))])
        if lost or waiting:
            log.info("sweeper re-enqueued %d of %d stuck case(s)", sent, len(lost) + len(waiting))
        return sent


def drop_orphan_photos(ctx: Context) -> int:
    """Delete the photos of refused uploads that no case refers to; return how many."""
    removed = 0
    for sha256 in list(ctx.orphan_suspects):
        if not ctx.store.photo_in_use(sha256):
            ctx.media.delete(sha256)
            removed += 1
        ctx.orphan_suspects.discard(sha256)
    if removed:
        log.info("sweeper removed %d photo(s) of refused uploads", removed)
    return removed


class Sweeper(threading.Thread):
    """Runs `sweep` every interval until stopped."""

    def __init__(self, ctx: Context, interval_s: float) -> None:
        super().__init__(name="streetlens-sweeper", daemon=True)
        self.ctx = ctx
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Loop; a failing round is logged, never fatal."""
        while not self._stop_event.wait(self.interval_s):
            for job in (sweep, drop_orphan_photos):
                try:
                    job(self.ctx)
                except Exception:
                    log.exception("sweeper round failed")

    def stop(self) -> None:
        """Ask the loop to end."""
        self._stop_event.set()
