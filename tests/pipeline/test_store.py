"""The SQLite case store: transitions are recorded, results replace (idempotent), photos dedupe."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import CaseNotFound
from pipeline.media import LocalMediaStore, sha256_hex
from pipeline.store import SqlCaseStore
from pipeline.types import Finding, MeasurementOut, Report, Routing


def _report(data: bytes = b"photo") -> Report:
    return Report(
        photo_sha256=sha256_hex(data), photo_content_type="image/jpeg", lat=42.37, lon=-71.11,
        location_source="device",
    )  # fmt: skip


def _finding(conf: float) -> Finding:
    return Finding(
        class_name="pothole", confidence=conf, bbox_xyxy=(0, 0, 10, 10),
        polygon_px=[(0, 0), (10, 0), (10, 10)],
        measurement=MeasurementOut(method="ground-plane", area_px=50, area_m2=0.2,
                                   area_m2_interval=(0.1, 0.3)),
    )  # fmt: skip


def test_case_lifecycle_is_recorded(tmp_path: Path) -> None:
    store = SqlCaseStore(f"sqlite:///{tmp_path / 'c.db'}")
    cid = store.create_case(_report(), 5)
    assert store.status(cid) == "received"
    store.transition(cid, "processing", by="pipeline", why="go")
    routing = Routing(department="DPW", sla_hours=48, priority=3)
    for _ in range(2):  # a re-run replaces the findings, never appends
        store.save_result(
            cid, status="needs_review", findings=[_finding(0.9), _finding(0.5)],
            category="pothole", severity="medium", place={"parcel_id": "1-2"}, lat=42.0,
            lon=-71.0, routing=routing, by="pipeline", why="done",
        )  # fmt: skip
    case = store.get(cid)
    assert case.status == "needs_review"
    assert [f.confidence for f in case.findings] == [0.9, 0.5]
    assert [h.status for h in case.history] == [
        "received", "processing", "needs_review", "needs_review",
    ]  # fmt: skip
    assert case.created_at.tzinfo is not None
    assert store.count("needs_review") == 1 and store.ids() == [cid]


def test_unknown_case_raises_not_found(tmp_path: Path) -> None:
    store = SqlCaseStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(CaseNotFound):
        store.get("nope")
    with pytest.raises(LookupError):
        store.transition("nope", "failed", by="x")


def test_media_store_is_content_addressed(tmp_path: Path) -> None:
    media = LocalMediaStore(tmp_path / "m")
    a = media.put(b"abc", "image/jpeg")
    assert media.put(b"abc", "image/jpeg") == a == sha256_hex(b"abc")
    assert media.count() == 1 and media.get(a) == b"abc"
    media.delete(a)
    assert not media.exists(a) and media.count() == 0


def test_anonymous_report_refuses_contact_details() -> None:
    with pytest.raises(ValueError, match="anonymous"):
        Report(**{**_report().model_dump(), "anonymous": True, "contact_email": "a@b.c"})
