"""The case database: ORM rows, engines, and the Alembic migrations that build the schema.

The schema comes from the migrations in `pipeline/migrations/` (shipped inside the package, so
an installed StreetLens can migrate); the rows here must describe the same tables, which a test
checks by comparing them. On PostgreSQL the migrations also add `cases.geom`, a PostGIS point
generated from lat/lon; the ORM never reads or writes it, so the rows stay dialect-neutral.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TextClause,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pipeline.errors import ConfigError, StoreUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Made and kept by the PostgreSQL migrations alone, never by the ORM: autogenerate and the
# schema comparison leave them out.
POSTGIS_ONLY = frozenset({"geom", "ix_cases_geom", "ix_cases_geog", "spatial_ref_sys"})
# Any constant works; it only has to be the same in every process migrating one database.
_PG_MIGRATION_LOCK = 0x5354524545544C  # "STREETL"


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """A stored time as timezone-aware UTC (SQLite hands them back naive)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@functools.cache
def insert_or_keep(table: Table) -> TextClause:
    """INSERT of every column of `table` that keeps a row already there (SQLite 3.24+ and
    PostgreSQL share the ON CONFLICT syntax). Text with the columns' types bound: SQLAlchemy's
    dialect `on_conflict_do_nothing()` statements have no cache key, so they were compiled
    afresh on every upload's commit."""
    cols = list(table.columns)
    names = ", ".join(c.name for c in cols)
    values = ", ".join(f":{c.name}" for c in cols)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"
    return text(sql).bindparams(*(bindparam(c.name, type_=c.type) for c in cols))


class Base(DeclarativeBase):
    pass


class PhotoRow(Base):
    __tablename__ = "photos"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CaseRow(Base):
    __tablename__ = "cases"
    # The (lat, lon) index serves map windows and the SQLite cases_near prefilter.
    __table_args__ = (
        Index("ix_cases_lat_lon", "lat", "lon"),
        Index("ix_cases_status_updated_at", "status", "updated_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    # None: a report without a photo (Open311 clients often send none; migration 0006).
    photo_sha256: Mapped[str | None] = mapped_column(ForeignKey("photos.sha256"), index=True)
    report: Mapped[dict] = mapped_column(JSON)
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    severity: Mapped[str | None] = mapped_column(String(8))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    place: Mapped[dict | None] = mapped_column(JSON)
    routing: Mapped[dict | None] = mapped_column(JSON)
    duplicate_of: Mapped[str | None] = mapped_column(String(36))
    resolution: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    findings: Mapped[list[FindingRow]] = relationship(
        order_by="FindingRow.idx", cascade="all, delete-orphan"
    )
    history: Mapped[list[HistoryRow]] = relationship(
        order_by="HistoryRow.id", cascade="all, delete-orphan"
    )


class FindingRow(Base):
    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    area_m2: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict] = mapped_column(JSON)


class HistoryRow(Base):
    __tablename__ = "status_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    by: Mapped[str] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text, default="")


def normalize_url(url: str) -> str:
    """The URL with a driver we install: plain `postgresql://` means psycopg 3, not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so the API and workers share one file."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is not a URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(
                    f"case store {parsed.database} cannot be created: {exc}"
                ) from exc
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A short connect timeout: a down database must answer 503 fast, not hang a request.
    args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(url, pool_pre_ping=True, connect_args=args)


def alembic_config(url: str = "") -> Any:
    """An Alembic Config for our migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # Config values are interpolated: a literal % (in a password) must be doubled.
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe when several processes open one database at once."""
    from alembic import command

    try:
        with engine.connect() as conn:
            _lock_for_migration(conn)
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(
            f"case store {engine.url.render_as_string(hide_password=True)} is unreachable "
            f"or locked: {exc.orig}"
        ) from exc


def _lock_for_migration(conn: Connection) -> None:
    # Whoever gets the lock first migrates; the others wait, then find the schema at head.
    # Alembic runs inside this transaction, so a failed migration leaves nothing half-done.
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # pysqlite begins lazily; an explicit IMMEDIATE takes the write lock up front, and the
        # busy timeout makes a second process wait instead of failing.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        has_postgis = conn.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
        ).first()
        if not has_postgis:
            raise ConfigError(
                f"PostGIS is not installed on the PostgreSQL server of {conn.engine.url.database!r}"
                ": install it (Debian: apt-get install postgresql-15-postgis-3) and retry"
            )


def migrate(url: str, revision: str = "head") -> None:
    """Apply the migrations to the database at `url` (what `streetlens db upgrade` runs)."""
    engine = make_engine(url)
    try:
        upgrade(engine, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The database's schema revision, or None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(f"case store is unreachable: {exc.orig}") from exc
    finally:
        engine.dispose()


# Rows that live beside their own code join Base.metadata here, so whoever opens the store
# (and the schema comparison against the migrations) sees every table.
from pipeline import accounts as _accounts  # noqa: E402, F401  (0003: accounts, keys)
from pipeline import case_photos as _case_photos  # noqa: E402, F401  (0007: extra photos)
from pipeline import labels as _labels  # noqa: E402, F401  (0008: crew-verified labels)
from pipeline import notify_db as _notify_db  # noqa: E402, F401  (0004: webhooks, outbox)
from pipeline import photo_variants_db as _variants  # noqa: E402, F401  (0005: public photos)
