"""The case store as the task queue (the default, embedded backend): a worker claims the oldest
due `received` case, or a `processing` one whose lease ran out, with one atomic UPDATE, and
processes it under a renewed lease. Uploads pay no broker round-trip; the store is the truth
and now the queue too, so a lost message cannot happen. Celery on Redis or RabbitMQ remains
the scale-out path (`task_queue = "celery"`, set by naming a `broker_url`)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading

from pipeline.context import Context
from pipeline.errors import ConfigError, PhotoRejected
from pipeline.observability import TASKS, case_context
from pipeline.settings import Settings, get_settings

log = logging.getLogger(__name__)

POLL_S = 0.1  # an idle worker looks again this often (one indexed UPDATE on a local file)
MAX_ATTEMPTS = 4  # as Celery's 1 + MAX_RETRIES


def work_one(ctx: Context, by: str) -> bool:
    """Claim and process the next case; False when none is due."""
    from pipeline.tasks import run_case

    case_id = ctx.store.claim_next(by=by, lease_s=ctx.settings.processing_lease_s)
    if case_id is None:
        return False
    with case_context(case_id):
        try:
            run_case(ctx, case_id, claimed=True)
            TASKS.labels("done").inc()
        except PhotoRejected:
            TASKS.labels("rejected").inc()
        except ConfigError as exc:
            TASKS.labels("failed").inc()
            ctx.store.transition(case_id, "failed", by="pipeline", why=str(exc), error=str(exc))
        except Exception as exc:
            _retry_or_fail(ctx, case_id, exc)
    return True


def _retry_or_fail(ctx: Context, case_id: str, exc: Exception) -> None:
    from pipeline.tasks import release_for_retry

    tries = sum(1 for h in ctx.store.get(case_id).history if h.status == "processing")
    if tries < MAX_ATTEMPTS:
        TASKS.labels("retried").inc()
        log.warning("retrying case %s: %s", case_id, exc)
        release_for_retry(ctx, case_id, exc, 2 ** (tries - 1))
        return
    TASKS.labels("failed").inc()
    reason = f"{type(exc).__name__}: {exc}"
    log.error("case %s failed after %d attempts: %s", case_id, tries, reason)
    ctx.store.transition(case_id, "failed", by="pipeline", why=reason, error=reason)


def run(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    """One worker process: warm up, then claim and process cases until stopped."""
    from pipeline.tasks import warm_up

    ctx = Context(settings or get_settings())
    stop = stop or threading.Event()
    by = f"worker:{socket.gethostname()}:{os.getpid()}"
    warm_up(ctx)
    log.info("store-queue worker %s ready.", by)
    print(f"store-queue worker {by} ready.", flush=True)
    while not stop.is_set():
        try:
            if work_one(ctx, by):
                continue
        except Exception:  # the store is down: wait and try again, never die of it
            log.warning("store-queue worker: could not claim a case", exc_info=True)
        stop.wait(POLL_S)


def _child() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(stop=stop)


def main(concurrency: int = 1) -> int:
    """`streetlens worker` with the store as the queue: `concurrency` worker processes; a
    SIGTERM lets each finish its case (a SIGKILL leaves it to the lease)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if concurrency <= 1:
        _child()
        return 0
    procs = [multiprocessing.Process(target=_child, daemon=False) for _ in range(concurrency)]
    for p in procs:
        p.start()

    def _forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.pid is not None:
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    for p in procs:
        p.join()
    return 0
