"""Checks that readiness and metrics use: store, broker, model, queue depth."""

from __future__ import annotations

from typing import Any

from pipeline.context import Context


def store_check(ctx: Context) -> dict[str, Any]:
    """Can the case store be read?"""
    try:
        ctx.store.count()
        return {"ok": True}
    except Exception as exc:  # readiness reports any failure, it never raises
        return {"ok": False, "error": str(exc)[:300]}


def broker_check(ctx: Context) -> dict[str, Any]:
    """Can the broker be reached? (With the store as the queue, there is none to reach.)"""
    if ctx.settings.task_queue == "store":
        return {"ok": True, "queue": "case store"}
    try:
        with ctx.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": str(exc)[:300]}


def model_check(ctx: Context) -> dict[str, Any]:
    """Is the served detector registered and its export present?"""
    try:
        m = ctx.model
        if not m.onnx.exists():
            return {"ok": False, "error": f"{m.onnx} is missing"}
        return {"ok": True, "version": m.version}
    except Exception as exc:
        return {"ok": False, "error": str(exc)[:300]}


def queue_depth(ctx: Context) -> int | None:
    """Messages waiting in the default queue, or None when the broker cannot say."""
    if ctx.settings.task_queue == "store":
        try:
            return ctx.store.waiting()
        except Exception:
            return None
    try:
        with ctx.celery.connection_for_read() as conn:
            ch = conn.default_channel
            return int(ch.queue_declare(queue="celery", passive=True).message_count)
    except Exception:
        return None
