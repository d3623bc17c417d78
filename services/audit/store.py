"""Audit storage: the append-only entry table, stored subtree hashes, checkpoints.

Append-only is enforced by the database too: triggers reject UPDATE, DELETE
and TRUNCATE on every audit table, in SQLite and in PostgreSQL (``ENABLE
ALWAYS``, so even replication-role sessions cannot bypass them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary, text
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, create_engine


def _now() -> datetime:
    return datetime.now(UTC)


class Entry(SQLModel, table=True):
    """One log entry: the canonical AuditEvent bytes and the fields regulators filter on."""

    __tablename__ = "audit_entry"
    idx: int = Field(primary_key=True)
    event_id: str = Field(unique=True)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    occurred_at: str = Field(index=True)
    kind: str = Field(index=True)
    outcome: str
    patient: str | None = Field(default=None, index=True)  # pseudonym
    accessor_org: str = Field(index=True)
    accessor_org_type: str
    purpose: str | None = None


class Node(SQLModel, table=True):
    """The hash of one perfect subtree (level, index); level 0 are leaf hashes."""

    __tablename__ = "audit_node"
    level: int = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Checkpoint(SQLModel, table=True):
    """A signed tree head (C2SP checkpoint as a signed note)."""

    __tablename__ = "audit_checkpoint"
    size: int = Field(primary_key=True)
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str
    created_at: datetime = Field(default_factory=_now)


class Cosignature(SQLModel, table=True):
    """A witness's cosignature line for one checkpoint."""

    __tablename__ = "audit_cosignature"
    pk: int | None = Field(default=None, primary_key=True)
    size: int = Field(index=True)
    witness: str
    line: str
    created_at: datetime = Field(default_factory=_now)


APPEND_ONLY = ("audit_entry", "audit_node", "audit_checkpoint", "audit_cosignature")


def _sqlite_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
    ]


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION healthgov_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql
"""


def _pg_triggers(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION healthgov_append_only()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION healthgov_append_only()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
    ]


def make_engine(url: str) -> Engine:
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    SQLModel.metadata.create_all(engine, tables=[
        Entry.__table__, Node.__table__, Checkpoint.__table__, Cosignature.__table__,  # type: ignore[attr-defined]
    ])
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA journal_mode=WAL"))
            for table in APPEND_ONLY:
                for stmt in _sqlite_triggers(table):
                    conn.execute(text(stmt))
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7262)"))
            conn.execute(text(_PG_FUNCTION))
            for table in APPEND_ONLY:
                for stmt in _pg_triggers(table):
                    conn.execute(text(stmt))
    return engine
