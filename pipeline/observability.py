"""Structured logs that carry the case id, and Prometheus metrics for the pipeline stages."""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

case_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("case_id", default=None)

UPLOADS = Counter("streetlens_uploads_total", "Uploads by outcome", ["outcome"])
STAGE_SECONDS = Histogram(
    "streetlens_stage_seconds",
    "Time spent in each pipeline stage",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TASKS = Counter("streetlens_tasks_total", "Processing tasks by outcome", ["outcome"])
COMMIT_BATCH = Histogram(
    "streetlens_upload_commit_batch",
    "Uploads committed together in one transaction (pipeline/groupcommit.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


@contextmanager
def case_context(case_id: str) -> Iterator[None]:
    """Tag every log record made inside with this case id."""
    token = case_id_var.set(case_id)
    try:
        yield
    finally:
        case_id_var.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time one pipeline stage into the stage histogram."""
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(name).observe(time.perf_counter() - start)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, case id and extras."""

    _skip = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        case_id = getattr(record, "case_id", None) or case_id_var.get()
        if case_id:
            out["case_id"] = case_id
        for key, value in record.__dict__.items():
            if key not in self._skip and key not in out:
                out[key] = (
                    value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    """Send the root logger to stderr, as JSON lines by default."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
