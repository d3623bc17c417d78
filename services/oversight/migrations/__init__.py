"""Alembic migrations of the oversight schema, for SQLite and PostgreSQL.

The oversight service shares its database with other services, so its revision
lives in its own version table (``oversight_alembic_version``) and only tables
named ``oversight_*`` are ever compared or touched. ``upgrade`` is what every
oversight process runs before first use; on PostgreSQL an advisory lock makes
concurrent starts wait for one another instead of racing.

"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "oversight_alembic_version"
# Any 64-bit number unique to this schema: the PostgreSQL advisory lock id.
_LOCK_ID = 0x68676F766F767273  # "hgovovrs"


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Only the oversight tables are ours: other services' tables share the database."""
    from services.oversight.store import TABLE_NAMES

    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table is None or table in TABLE_NAMES


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
    """Bring the oversight schema to ``revision`` (idempotent, safe to race)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        command.upgrade(config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the oversight schema back to ``revision`` (``base`` drops every oversight table)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        command.downgrade(config(conn), revision)
