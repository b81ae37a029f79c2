"""Operations endpoints: liveness, readiness (store, broker, model) and Prometheus metrics."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from api.auth import public, require
from pipeline.context import Context
from pipeline.health import broker_check, model_check, queue_depth, store_check
from pipeline.types import Status

router = APIRouter(tags=["operations"])


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


@router.get("/healthz", dependencies=[Depends(public())])
async def health(request: Request) -> dict[str, Any]:
    """Liveness: the process answers and the case store can be read."""
    n = await run_in_threadpool(_ctx(request).store.count)
    return {"status": "ok", "cases": n}


@router.get("/readyz", dependencies=[Depends(public())])
async def ready(request: Request) -> JSONResponse:
    """Readiness: the store, the broker and the served model all answer (503 otherwise)."""
    ctx = _ctx(request)
    checks = {
        "store": await run_in_threadpool(store_check, ctx),
        "broker": await run_in_threadpool(broker_check, ctx),
        "model": await run_in_threadpool(model_check, ctx),
    }
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


class _CaseCollector:
    """Cases by status and queue depth, read from the store and broker at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self):
        """Yield the gauges (called by prometheus_client on each scrape)."""
        g = GaugeMetricFamily("streetlens_cases", "Cases by status", labels=["status"])
        for status in get_args(Status):
            g.add_metric([status], self.ctx.store.count(status))
        yield g
        depth = queue_depth(self.ctx)
        if depth is not None:
            yield GaugeMetricFamily("streetlens_queue_depth", "Tasks waiting", value=depth)


@router.get(
    "/metrics",
    dependencies=[Depends(require("analyst", "admin", scopes=("metrics",)))],
    response_class=PlainTextResponse,  # documented as text/plain, as Prometheus serves it
)
async def metrics(request: Request) -> Response:
    """Prometheus exposition of this process's metrics plus store-derived gauges."""
    ctx = _ctx(request)
    collector = _CaseCollector(ctx)
    body = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(collector)
    body += await run_in_threadpool(generate_latest, extra)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
