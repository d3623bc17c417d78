"""Audit storage: the append-only entry table, stored subtree hashes, checkpoints.

Append-only is enforced twice in PostgreSQL. Triggers reject UPDATE, DELETE
and TRUNCATE on every audit table (``ENABLE ALWAYS``, so even a session with
``session_replication_role = replica`` cannot bypass them; only the table
owner can drop them). And the service does not run as the owner: ``migrate``
(run with the owner's connection) creates a writer role that holds SELECT and
INSERT on the audit tables and nothing else, and the service connects as that
role. SQLite has no roles; its triggers reject UPDATE and DELETE (it has no
TRUNCATE).

Deployment: set ``HEALTHGOV_AUDIT_DATABASE_URL`` to the writer role's URL and
run ``healthgov audit migrate --owner-url ...`` once; or, in dev and test,
give only ``HEALTHGOV_DATABASE_URL`` (the owner) and the service migrates at
start and then connects as the writer role.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Field, SQLModel, create_engine

from services.adapters.sql import engine_for


def _now() -> datetime:
    return datetime.now(UTC)


class Entry(SQLModel, table=True):
    """One log entry: the canonical AuditEvent bytes and the fields queries filter on.

    The filter columns are copies of what ``body`` says, for indexes; the
    Merkle leaf is ``body`` alone. Times are stored normalised (``query.norm_time``)
    so that they compare as strings.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_patient_idx", "patient", "idx"),
        Index("ix_audit_entry_accessor_org_idx", "accessor_org", "idx"),
    )
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    event_id: str = Field(unique=True)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    occurred_at: str = Field(index=True)
    kind: str
    outcome: str
    patient: str | None = None  # pseudonym
    accessor_id: str | None = None
    accessor_org: str
    accessor_org_type: str
    purpose: str | None = None
    # When the patient may see this event (the decision's obligations.notify_after); NULL: at once.
    notify_after: str | None = None


class Node(SQLModel, table=True):
    """The hash of one perfect subtree (level, index); level 0 are leaf hashes."""

    __tablename__ = "audit_node"
    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Checkpoint(SQLModel, table=True):
    """A signed tree head (C2SP checkpoint as a signed note)."""

    __tablename__ = "audit_checkpoint"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str
    created_at: datetime = Field(default_factory=_now)


class Cosignature(SQLModel, table=True):
    """A witness's cosignature line (C2SP tlog-cosignature) for one checkpoint."""

    __tablename__ = "audit_cosignature"
    __table_args__ = (UniqueConstraint("size", "witness", name="uq_audit_cosignature_size_witness"),)
    pk: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    witness: str  # "<name>+<key id hex>"
    line: str
    created_at: datetime = Field(default_factory=_now)


TABLES = (Entry.__table__, Node.__table__, Checkpoint.__table__, Cosignature.__table__)  # type: ignore[attr-defined]
APPEND_ONLY = ("audit_entry", "audit_node", "audit_checkpoint", "audit_cosignature")
WRITER_ROLE = "healthgov_audit_writer"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class StoreNotReady(Exception):
    """The audit tables are missing: run ``healthgov audit migrate`` with the owner's URL."""


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
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION healthgov_append_only()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION healthgov_append_only()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
    ]


def _pg_writer_role(role: str, password: str | None) -> list[tuple[str, dict[str, str]]]:
    """Create or refresh the writer role: LOGIN, SELECT and INSERT on the audit tables, nothing else."""
    tables = ", ".join(APPEND_ONLY)
    stmts: list[tuple[str, dict[str, str]]] = [
        (f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
         f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT; END IF; END $$", {}),
        (f"REVOKE ALL ON {tables} FROM {role}", {}),
        (f"GRANT SELECT, INSERT ON {tables} TO {role}", {}),
        (f"GRANT USAGE ON SEQUENCE audit_cosignature_pk_seq TO {role}", {}),
        (f"GRANT USAGE ON SCHEMA public TO {role}", {}),
    ]
    if password is not None:
        # ALTER ROLE takes no bind parameters; format_literal-quote the generated secret in SQL.
        stmts.append((f"DO $$ BEGIN EXECUTE format('ALTER ROLE {role} PASSWORD %L', "
                      f"current_setting('healthgov.writer_password')); END $$", {}))
    return stmts


def _add_missing_columns(engine: Engine) -> None:
    """Columns added since a table was created (nullable, so old rows stay untouched)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in TABLES:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    ddl = column.type.compile(engine.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {ddl}"))


def migrate(owner_url: str, *, writer_role: str | None = None, writer_password: str | None = None) -> None:
    """Create the tables, indexes and append-only triggers; in PostgreSQL also the writer role.

    Idempotent; run with the connection of the tables' owner.
    """
    engine = create_engine(owner_url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7262)"))
            SQLModel.metadata.create_all(conn, tables=list(TABLES))
        _add_missing_columns(engine)
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
                if writer_role is not None:
                    if not _ROLE_NAME.fullmatch(writer_role):
                        raise ValueError(f"invalid role name {writer_role!r}")
                    if writer_password is not None:
                        conn.execute(text("SELECT set_config('healthgov.writer_password', :p, true)"),
                                     {"p": writer_password})
                    for stmt, params in _pg_writer_role(writer_role, writer_password):
                        conn.execute(text(stmt), params)
    finally:
        engine.dispose()


def writer_url(owner_url: str, role: str, password: str | None) -> str:
    """The owner's URL with the writer role's credentials instead."""
    return make_url(owner_url).set(username=role, password=password).render_as_string(hide_password=False)


def connect(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for the running service; the tables must exist (``migrate`` made them)."""
    engine = engine_for(url, wal=False, pool_size=pool_size, application_name="healthgov-audit")
    missing = [t.name for t in TABLES if not inspect(engine).has_table(t.name)]
    if missing:
        engine.dispose()
        raise StoreNotReady(f"audit tables missing ({', '.join(missing)}): run `healthgov audit migrate`")
    return engine
