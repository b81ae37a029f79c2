"""Celery tasks: thin, idempotent, acks_late; they take a case id and call the service."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from celery import Celery
from celery.signals import worker_process_init, worker_ready
from kombu.transport.sqlalchemy import Transport as SqlaTransport

from pipeline.context import Context
from pipeline.errors import ConfigError, PhotoRejected
from pipeline.observability import TASKS, case_context
from pipeline.settings import Settings, get_settings

log = logging.getLogger(__name__)
MAX_RETRIES = 3

TASK_NAME = "streetlens.process_report"
BROKER_BACKOFF_S = 5.0  # after a failed enqueue, uploads leave their cases to the sweeper


def celery_config(s: Settings) -> dict:
    """Celery settings for these StreetLens settings."""
    url, transport = s.broker_url, None
    if url.startswith("sqla+sqlite:///"):
        _prepare_sqlite_broker(Path(url.removeprefix("sqla+sqlite:///")))
        # The same transport, polling faster (see SqliteBroker); a URL prefix would override it.
        url, transport = url.removeprefix("sqla+"), f"{__name__}:SqliteBroker"
    # kombu's SQLAlchemy transport hands its options to create_engine: give it none.
    options = {} if s.broker_url.startswith("sqla+") else {"visibility_timeout": 600}
    return {
        "broker_url": url,
        "broker_transport": transport,
        "task_ignore_result": True,
        "task_acks_late": True,  # a worker killed mid-task leaves the message for another
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_always_eager": s.task_always_eager,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "broker_transport_options": options,
    }


class SqliteBroker(SqlaTransport):
    """kombu's SQLAlchemy transport on the embedded SQLite broker, polling every 50 ms."""

    # While its children are busy (prefetch full) a prefork worker's poll finds nothing, then
    # sleeps a whole polling interval: kombu's 1 s held `worker --concurrency 2` to 2 cases/s
    # however fast the detector was. An idle poll is one indexed SELECT on a local file.
    polling_interval = 0.05


def _prepare_sqlite_broker(path: Path) -> None:
    # WAL is a property of the file, so kombu's own engine gets it too: a send costs one fsync
    # instead of a rollback journal's several (under load it halved the enqueue's wall time),
    # and workers polling the queue no longer block the API's writes to it.
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        log.warning("could not switch the broker file %s to WAL", path, exc_info=True)


def make_celery(s: Settings) -> Celery:
    """A Celery app for producers (the API, the sweeper): tasks are sent by name."""
    app = Celery("streetlens", set_as_current=False)
    app.conf.update(celery_config(s))
    return app


# The worker's app; its configuration is read from the environment on first use.
app = Celery("streetlens")
app.add_defaults(lambda: celery_config(get_settings()))

_ctx: Context | None = None


def worker_context() -> Context:
    """This process's context (one per worker process)."""
    global _ctx
    if _ctx is None:
        _ctx = Context(get_settings())
    return _ctx


def warm_up(ctx: Context) -> None:
    """Load the detector and city layers before the first task, not during it; start the
    worker's metrics server and notifier when configured."""
    from vision import threads

    threads.apply()  # this process's share of the cores (vision/threads.py)
    _ = ctx.detector, ctx.geo
    if ctx.settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(ctx.settings.worker_metrics_port, addr="127.0.0.1")
    if getattr(ctx.settings, "notify_interval_s", 0) > 0:
        try:
            from pipeline.notify import Notifier
        except ImportError:  # pragma: no cover - notifications not installed
            return
        Notifier(ctx, ctx.settings.notify_interval_s).start()


@worker_ready.connect
def _warm_up(**_: object) -> None:
    warm_up(worker_context())


@worker_process_init.connect
def _share_cores(**_: object) -> None:
    # A prefork child: its own share of the cores, whatever the parent set before forking.
    from vision import threads

    threads.apply()


class LeaseKeeper(threading.Thread):
    """Renews a `processing` case's lease while its worker works on it, so a slow photo is
    never taken for a dead worker's (the lease is what tells the two apart)."""

    def __init__(self, ctx: Context, case_id: str) -> None:
        super().__init__(name=f"lease-{case_id[:8]}", daemon=True)
        self.ctx, self.case_id = ctx, case_id
        self.every_s = max(0.05, ctx.settings.processing_lease_s / 3)
        self._done = threading.Event()

    def run(self) -> None:
        """Renew every third of the lease until stopped or the case leaves `processing`."""
        while not self._done.wait(self.every_s):
            try:
                if not self.ctx.store.renew(self.case_id):
                    return
            except Exception:  # the store is down: the next round tries again
                log.warning("could not renew the lease of case %s", self.case_id, exc_info=True)

    def __enter__(self) -> LeaseKeeper:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()


def run_case(ctx: Context, case_id: str, *, claimed: bool = False) -> str:
    """Process one case under a renewed lease; a photo the decoder refuses ends `rejected`."""
    from pipeline.process import process_case

    with LeaseKeeper(ctx, case_id):
        try:
            return process_case(ctx, case_id, claimed=claimed).status
        except PhotoRejected as exc:
            # It passed the upload's structural check but not the full decode: the resident's
            # file, not our failure, and retrying cannot help.
            why = f"the photo could not be decoded: {exc}"
            ctx.store.transition(case_id, "rejected", by="pipeline", why=why, error=why)
            raise


@app.task(name=TASK_NAME, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def process_report(self, case_id: str) -> str:
    """Process one case; retried with backoff, and `failed` with the reason when it gives up."""
    ctx = worker_context()
    with case_context(case_id):
        try:
            status = run_case(ctx, case_id)
            TASKS.labels("done").inc()
            return status
        except PhotoRejected:
            TASKS.labels("rejected").inc()
            raise
        except ConfigError as exc:
            # Retrying cannot help: the installation must change.
            TASKS.labels("failed").inc()
            ctx.store.transition(case_id, "failed", by="pipeline", why=str(exc), error=str(exc))
            raise
        except Exception as exc:
            if self.request.retries < MAX_RETRIES:
                TASKS.labels("retried").inc()
                log.warning("retrying case %s: %s", case_id, exc)
                countdown = 2**self.request.retries
                if not release_for_retry(ctx, case_id, exc, countdown):
                    # Still ours, `processing`: the retry can take it once the lease is out.
                    countdown = max(countdown, ctx.settings.processing_lease_s + 1)
                raise self.retry(exc=exc, countdown=countdown) from exc
            TASKS.labels("failed").inc()
            reason = f"{type(exc).__name__}: {exc}"
            ctx.store.transition(case_id, "failed", by="pipeline", why=reason, error=reason)
            raise


def release_for_retry(ctx: Context, case_id: str, exc: BaseException, countdown: float) -> bool:
    """Hand the case back before its retry; False when the store is down too. The retry must
    still go out (before, an exception here lost it): it finds the case `processing` under
    this worker's claim, no longer renewed, and takes it over once the lease has run out."""
    try:
        ctx.store.release(
            case_id, by="pipeline", why=f"retrying after: {exc}", retry_in_s=countdown
        )
        return True
    except Exception:
        log.warning("could not release case %s before its retry", case_id, exc_info=True)
        return False


def enqueue(ctx: Context, case_id: str, *, probe: bool = False) -> bool:
    """Queue a committed case for processing; False (logged) when the broker is down. With
    the store as the queue there is nothing to send (no broker round-trip per upload).

    After a failure, callers skip the broker for BROKER_BACKOFF_S unless they `probe` (the
    sweeper does): a failed send takes seconds (redis-py retries its connect), and every
    upload paying that during an outage would tie up the API's threads."""
    if ctx.settings.task_queue == "store":
        # The committed `received` row is the message: a worker claims it from the store.
        if ctx.settings.task_always_eager:
            run_case(ctx, case_id)
        return True
    if not probe and time.monotonic() < ctx.broker_down_until:
        log.debug("broker down: case %s left for the sweeper", case_id)
        return False
    try:
        ctx.celery.send_task(TASK_NAME, args=[case_id], retry=False)
    except Exception:  # the case stays `received`; the sweeper will enqueue it again
        ctx.broker_down_until = time.monotonic() + BROKER_BACKOFF_S
        log.exception("could not enqueue case %s", case_id)
        return False
    ctx.broker_down_until = 0.0
    return True
