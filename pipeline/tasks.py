"""Celery tasks: thin, idempotent, acks_late; they take a case id and call the service."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_ready

from pipeline.context import Context
from pipeline.errors import ConfigError, PhotoRejected
from pipeline.settings import get_settings

log = logging.getLogger(__name__)
MAX_RETRIES = 3

app = Celery("streetlens")


def _celery_config() -> dict:
    s = get_settings()
    return {
        "broker_url": s.broker_url,
        "task_ignore_result": True,
        "task_acks_late": True,  # a worker killed mid-task leaves the message for another
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_always_eager": s.task_always_eager,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "broker_transport_options": {"polling_interval": 0.2},
    }


# Evaluated when the configuration is first read, never at import time.
app.add_defaults(_celery_config)

_ctx: Context | None = None


def worker_context() -> Context:
    """This process's context (one per worker process)."""
    global _ctx
    if _ctx is None:
        _ctx = Context(get_settings())
    return _ctx


@worker_ready.connect
def _warm_up(**_: object) -> None:
    # Load the detector and city layers before the first task, not during it.
    ctx = worker_context()
    _ = ctx.detector, ctx.geo


@app.task(name="streetlens.process_report", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def process_report(self, case_id: str) -> str:
    """Process one case; retried with backoff, and `failed` with the reason when it gives up."""
    from pipeline.process import process_case

    ctx = worker_context()
    try:
        return process_case(ctx, case_id).status
    except (PhotoRejected, ConfigError) as exc:
        # Retrying cannot help: the photo or the installation must change.
        ctx.store.transition(case_id, "failed", by="pipeline", why=str(exc), error=str(exc))
        raise
    except Exception as exc:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
        reason = f"{type(exc).__name__}: {exc}"
        ctx.store.transition(case_id, "failed", by="pipeline", why=reason, error=reason)
        raise


def enqueue(case_id: str) -> bool:
    """Queue a committed case for processing; False (logged) when the broker is down."""
    try:
        process_report.apply_async(args=[case_id], retry=False)
        return True
    except Exception:  # the case stays `received`; the sweeper will enqueue it again
        log.exception("could not enqueue case %s", case_id)
        return False
