"""The case store on SQLite and on PostgreSQL + PostGIS: one suite, run against both for real.

Transitions are recorded, results replace (idempotent), photos dedupe, the schema comes from the
migrations (and matches the rows), and `cases_near` gives the same answer on both backends.
"""

from __future__ import annotations

import math
import random
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from pipeline.db import (
    POSTGIS_ONLY,
    Base,
    CaseRow,
    FindingRow,
    HistoryRow,
    PhotoRow,
    alembic_config,
    current_revision,
    make_engine,
    migrate,
)
from pipeline.errors import CaseNotFound, InvalidReport, StoreUnavailable
from pipeline.media import sha256_hex
from pipeline.store import EARTH_RADIUS_M, SqlCaseStore, _near_postgis
from pipeline.types import Finding, MeasurementOut, Report, Routing


def _script_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


HEAD = _script_head()  # the newest migration, whichever work added it
# The tables the store made with create_all before it had migrations.
PRE_MIGRATION_TABLES = [t.__table__ for t in (PhotoRow, CaseRow, FindingRow, HistoryRow)]
# Harvard Square, Cambridge MA.
LAT0, LON0 = 42.3736, -71.1190


def _report(
    data: bytes = b"photo", lat: float | None = 42.37, lon: float | None = -71.11
) -> Report:
    return Report(
        photo_sha256=sha256_hex(data), photo_content_type="image/jpeg", lat=lat, lon=lon,
        location_source="device" if lat is not None else None,
    )  # fmt: skip


def _finding(conf: float) -> Finding:
    return Finding(
        class_name="pothole", confidence=conf, bbox_xyxy=(0, 0, 10, 10),
        polygon_px=[(0, 0), (10, 0), (10, 10)],
        measurement=MeasurementOut(method="ground-plane", area_px=50, area_m2=0.2,
                                   area_m2_interval=(0.1, 0.3)),
    )  # fmt: skip


def _save(store: SqlCaseStore, cid: str, lat: float, lon: float, status: str = "open") -> None:
    store.save_result(
        cid, status=status, findings=[], category="pothole", severity="low", place=None,
        lat=lat, lon=lon, routing=None, by="pipeline", why="moved",
    )  # fmt: skip


def _offset(north_m: float, east_m: float, lat: float = LAT0, lon: float = LON0) -> tuple:
    """The point north_m / east_m metres from (lat, lon) on the store's sphere."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def _case_at(
    store: SqlCaseStore, point: tuple, status: str = "open", category: str = "pothole"
) -> str:
    cid = store.create_case(
        _report(secrets.token_bytes(8), *point).model_copy(update={"category": category}), 8
    )
    if status != "received":
        store.transition(cid, status, by="crew")  # type: ignore[arg-type]
    return cid


def test_case_lifecycle_is_recorded(store: SqlCaseStore) -> None:
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
    assert case.created_at.tzinfo is not None and case.created_at.utcoffset().total_seconds() == 0
    assert case.routing == routing and case.place == {"parcel_id": "1-2"}
    assert store.count("needs_review") == 1 and store.ids() == [cid]


def test_unknown_case_raises_not_found(store: SqlCaseStore) -> None:
    with pytest.raises(CaseNotFound):
        store.get("nope")
    with pytest.raises(CaseNotFound):
        store.status("nope")
    with pytest.raises(LookupError):
        store.transition("nope", "failed", by="x")


def test_photos_dedupe_and_listing_filters(store: SqlCaseStore) -> None:
    first = store.create_case(_report(b"same"), 4)
    second = store.create_case(_report(b"same"), 4)  # a retried upload: one photo, two cases
    third = store.create_case(_report(b"other"), 5)
    store.transition(third, "rejected", by="crew", why="not a city matter")
    with store.session() as s:
        assert s.query(PhotoRow).count() == 2
    assert store.photo_in_use(sha256_hex(b"same")) and not store.photo_in_use(sha256_hex(b"x"))
    assert store.count() == 3 and store.count("received") == 2 and store.count("closed") == 0
    assert store.ids() == [third, second, first]  # newest first
    assert store.ids("received", limit=1) == [second]


def test_cases_near_finds_cases_within_radius(store: SqlCaseStore) -> None:
    a = _case_at(store, _offset(10, 0))
    b = _case_at(store, _offset(0, 40), status="needs_review")
    c = _case_at(store, _offset(-45, 0), category="graffiti")
    d = _case_at(store, _offset(0, -60))
    e = _case_at(store, _offset(14, 14), status="closed")
    store.create_case(_report(b"nowhere", None, None), 7)  # no location: never near anything
    near = store.cases_near(LAT0, LON0, 50)
    assert [n.id for n in near] == [a, b, c]
    assert [round(n.distance_m, 1) for n in near] == [10.0, 40.0, 45.0]
    assert near[1].status == "needs_review" and near[2].category == "graffiti"
    assert near[0].created_at.tzinfo is not None
    assert [n.id for n in store.cases_near(LAT0, LON0, 50, category="pothole")] == [a, b]
    assert [n.id for n in store.cases_near(LAT0, LON0, 50, statuses=None)] == [a, e, b, c]
    assert [n.id for n in store.cases_near(LAT0, LON0, 50, statuses=["closed"])] == [e]
    assert [n.id for n in store.cases_near(LAT0, LON0, 50, exclude_id=a)] == [b, c]
    assert [n.id for n in store.cases_near(LAT0, LON0, 50, limit=1)] == [a]
    assert [n.id for n in store.cases_near(LAT0, LON0, 100)] == [a, b, c, d]
    assert store.cases_near(LAT0, LON0, 5) == []
    with pytest.raises(InvalidReport):
        store.cases_near(LAT0, LON0, -1)
    with pytest.raises(InvalidReport):
        store.cases_near(91, LON0, 10)


def test_cases_near_follows_a_moved_case(store: SqlCaseStore) -> None:
    cid = _case_at(store, (LAT0, LON0))
    assert [n.id for n in store.cases_near(LAT0, LON0, 5)] == [cid]
    moved = _offset(100, 0)
    _save(store, cid, *moved)  # the located object is 100 m north of where the photo said
    assert store.cases_near(LAT0, LON0, 5) == []
    assert [n.id for n in store.cases_near(*moved, 5)] == [cid]
    store.transition(cid, "open", by="crew", why="pin dragged", lat=LAT0, lon=LON0)
    assert [n.id for n in store.cases_near(LAT0, LON0, 5)] == [cid]


def test_cases_near_across_the_antimeridian_and_at_a_pole(store: SqlCaseStore) -> None:
    east = _case_at(store, (0.0, 179.9999))
    west = _case_at(store, (0.0, -179.9998))
    assert [n.id for n in store.cases_near(0.0, 179.99995, 50)] == [east, west]
    north = _case_at(store, (89.9999, 0.0))
    south_side = _case_at(store, (89.99985, 180.0))
    assert {n.id for n in store.cases_near(90.0, 0.0, 20)} == {north, south_side}


def test_backends_agree_on_cases_near(tmp_path: Path, pg_database: Callable[[], str]) -> None:
    stores = [SqlCaseStore(f"sqlite:///{tmp_path / 'c.db'}"), SqlCaseStore(pg_database())]
    rng = random.Random(7)
    points = [
        (_offset(rng.uniform(-300, 300), rng.uniform(-300, 300)), rng.choice(["open", "closed"]))
        for _ in range(40)
    ]
    ids: list[list[str]] = [[], []]
    for i, s in enumerate(stores):
        ids[i] = [_case_at(s, p, status=st) for p, st in points]
    for radius in (25, 120, 400):
        answers = []
        for i, s in enumerate(stores):
            found = s.cases_near(LAT0, LON0, radius, statuses=None)
            answers.append([(ids[i].index(n.id), n.distance_m) for n in found])
        assert [k for k, _ in answers[0]] == [k for k, _ in answers[1]]
        for (_, d_sqlite), (_, d_pg) in zip(*answers, strict=True):
            assert d_sqlite == pytest.approx(d_pg, abs=1e-3)
    assert len(answers[0]) == 40  # 400 m holds every point
    for s in stores:
        s.close()


def test_postgis_point_tracks_lat_lon_and_is_indexed(pg_database: Callable[[], str]) -> None:
    store = SqlCaseStore(pg_database())
    cid = _case_at(store, (LAT0, LON0))
    nowhere = store.create_case(_report(b"nowhere", None, None), 7)
    geom = "SELECT ST_X(geom), ST_Y(geom), ST_SRID(geom) FROM cases WHERE id = :id"
    with store.engine.connect() as c:
        assert tuple(c.execute(text(geom), {"id": cid}).one()) == (LON0, LAT0, 4326)
        assert (
            c.execute(text("SELECT geom FROM cases WHERE id = :id"), {"id": nowhere}).scalar()
            is None
        )
    _save(store, cid, 42.5, -71.0)
    with store.engine.connect() as c:
        assert tuple(c.execute(text(geom), {"id": cid}).one()) == (-71.0, 42.5, 4326)
        # Forbid the sequential scan: the planner can then only answer through an index,
        # and must find ix_cases_geog usable for ST_DWithin on geography.
        c.exec_driver_sql("SET enable_seqscan = off")
        query = _near_postgis([], LAT0, LON0, 50).compile(
            store.engine, compile_kwargs={"literal_binds": True}
        )
        plan = "\n".join(r[0] for r in c.exec_driver_sql(f"EXPLAIN {query}"))
        assert "ix_cases_geog" in plan, plan
    store.close()


def test_schema_from_migrations_matches_the_rows(store: SqlCaseStore) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, *_: name not in POSTGIS_ONLY,
            },
        )
        assert compare_metadata(ctx, Base.metadata) == []
    names = {ix["name"] for ix in inspect(store.engine).get_indexes("cases")}
    assert {"ix_cases_status", "ix_cases_created_at", "ix_cases_lat_lon"} <= names
    if store.dialect == "postgresql":
        assert "ix_cases_geom" in names
    else:
        assert "geom" not in {c["name"] for c in inspect(store.engine).get_columns("cases")}


def test_migrate_is_idempotent(db_url: str) -> None:
    assert current_revision(db_url) is None
    migrate(db_url)
    assert current_revision(db_url) == HEAD
    migrate(db_url)  # already at head: nothing to do, nothing fails
    store = SqlCaseStore(db_url)
    assert store.count() == 0
    store.close()


def test_a_database_made_before_migrations_is_adopted(db_url: str) -> None:
    engine = make_engine(db_url)
    # What the store did before it had migrations (its four tables of then).
    Base.metadata.create_all(engine, tables=PRE_MIGRATION_TABLES)
    with engine.begin() as c:  # ...which made neither of these
        c.exec_driver_sql("DROP INDEX ix_cases_created_at")
        c.exec_driver_sql("DROP INDEX ix_cases_lat_lon")
    with Session(engine) as s, s.begin():
        s.add(PhotoRow(sha256=sha256_hex(b"old"), content_type="image/jpeg", size_bytes=3))
        s.flush()  # no relationship orders the photo before the case
        row = CaseRow(
            id="old-case", status="open", photo_sha256=sha256_hex(b"old"),
            report=_report(b"old", LAT0, LON0).model_dump(mode="json"), lat=LAT0, lon=LON0,
        )  # fmt: skip
        row.history.append(HistoryRow(status="open", by="crew", why="before migrations"))
        s.add(row)
    engine.dispose()
    store = SqlCaseStore(db_url)
    assert current_revision(db_url) == HEAD
    assert store.get("old-case").history[0].why == "before migrations"
    assert [n.id for n in store.cases_near(LAT0, LON0, 1)] == ["old-case"]
    assert "ix_cases_lat_lon" in {ix["name"] for ix in inspect(store.engine).get_indexes("cases")}
    store.close()


OPEN_AND_ADD = """
import sys
from pipeline.media import sha256_hex
from pipeline.store import SqlCaseStore
from pipeline.types import Report
store = SqlCaseStore(sys.argv[1])
sha = sha256_hex(sys.argv[2].encode())
print(store.create_case(Report(photo_sha256=sha, photo_content_type="image/jpeg"), 1))
"""


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url: str) -> None:
    # The API and the workers start together on a fresh database: each runs `upgrade head`;
    # the migration lock must make exactly one of them build the schema.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_ADD, db_url, f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    store = SqlCaseStore(db_url)
    assert sorted(store.ids()) == sorted(out.strip() for out, _ in outs)
    assert current_revision(db_url) == HEAD
    store.close()


def test_an_unreachable_store_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqlCaseStore("postgresql://postgres@127.0.0.1:1/nothing")  # nothing listens on port 1
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreUnavailable):
        SqlCaseStore(f"sqlite:///{tmp_path / 'file' / 'cases.db'}")


def test_anonymous_report_refuses_contact_details() -> None:
    with pytest.raises(ValueError, match="anonymous"):
        Report(**{**_report().model_dump(), "anonymous": True, "contact_email": "a@b.c"})
