"""Alembic environment: run in-process by `pipeline.db.upgrade`, or by the alembic command.

`pipeline.db.upgrade` hands over a connection already inside a locked transaction. To write a
new revision from a checkout (compared against the rows in `pipeline/db.py`):

    python -c "from alembic import command; from pipeline.db import alembic_config; \
        command.revision(alembic_config('sqlite:///rev.db'), 'what changed', autogenerate=True)"

(migrate `rev.db` to head first; on PostgreSQL the geometry column and its indexes are ours and
are left out of the comparison.)
"""

from __future__ import annotations

from typing import Any

from alembic import context

from pipeline.db import POSTGIS_ONLY, Base, make_engine


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
    """Leave PostGIS objects out of autogenerate."""
    return name not in POSTGIS_ONLY


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()
