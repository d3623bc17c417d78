"""Alembic migrations of the records schema, for SQLite and PostgreSQL.

The records service shares its database with other services, so its revision
lives in its own version table (``records_alembic_version``) and only tables
named ``records_*`` are ever compared or touched. ``upgrade`` is what every
records process runs before first use; on PostgreSQL an advisory lock makes
concurrent starts wait for one another instead of racing.

A database made before migrations existed (the walking skeleton's
``create_all``) is adopted: it is stamped at the baseline revision, then
upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "records_alembic_version"
BASELINE = "0001"
# Any 64-bit number unique to this schema: the PostgreSQL advisory lock id.
_LOCK_ID = 0x68676F7672656373  # "hgovrecs"


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Only the records tables are ours: the audit tables share the database."""
    from services.records.store import RECORDS_TABLE_NAMES

    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table is None or table in RECORDS_TABLE_NAMES


def config(connection: Connection | None = None) -> Config:
    """An Alembic config that needs no ini file (the CLI and tests use it too)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision in this directory."""
    rev = ScriptDirectory.from_config(config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the records schema to ``revision`` (idempotent, safe to race)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        cfg = config(conn)
        tables = set(inspect(conn).get_table_names())
        if VERSION_TABLE not in tables and "records_resource" in tables:
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the records schema back to ``revision`` (``base`` drops every records table)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        command.downgrade(config(conn), revision)
