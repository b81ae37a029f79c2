"""The sweeper: the case store is the truth, the queue only a hint. Cases left in `received`
(the broker was down, the message was lost) or in `processing` past their lease (the worker
died) are enqueued again; claiming makes the extra deliveries harmless. It also removes the
photos of uploads the case store refused while it could not say whether a case used them."""

from __future__ import annotations

import logging
import threading

from pipeline.context import Context

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> int:
    """Enqueue every stuck case once; return how many were enqueued."""
    from pipeline.tasks import enqueue

    s = ctx.settings
    ids = ctx.store.stuck(received_s=s.received_grace_s, processing_s=s.processing_lease_s)
    sent = 0
    for case_id in ids:
        if not enqueue(ctx, case_id, probe=True):
            break  # the broker is still down: try again next round
        sent += 1
    if ids:
        log.info("sweeper re-enqueued %d of %d stuck case(s)", sent, len(ids))
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
