"""Fixtures for the audit integration tests: fresh databases and an audit service on them.

Every store test runs on SQLite and on the real PostgreSQL of the test stack
(``HEALTHGOV_DATABASE_URL``, the owner's connection; ``make test`` sets it).
Each test gets its own database and its own writer role, so tampering here
never touches the running platform's log. The audit service under test is the
real application, served by uvicorn on a free port; OPA and Kafka are the
stack's.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from services.audit import store
from services.audit.app import create_app
from services.audit.config import AuditSettings
from services.audit.service import AuditService
from tests.integration.databases import scratch_database


@dataclass
class Db:
    kind: str
    url: str  # the owner's URL of a fresh, empty database
    role: str  # the writer role the service will create and use (PostgreSQL)

    def owner(self) -> Engine:
        return create_engine(self.url)


def fresh_db(kind: str, tmp_path, owner_url: str) -> Iterator[Db]:  # type: ignore[no-untyped-def]
    role = f"hg_w_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path / 'audit.db'}", role)
        return
    with scratch_database(owner_url, "hg_audit_t", drop_roles=(role,)) as url:
        yield Db("postgresql", url, role)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path, owner_url: str) -> Iterator[Db]:  # type: ignore[no-untyped-def]
    """A fresh, empty database, once SQLite and once PostgreSQL."""
    yield from fresh_db(request.param, tmp_path, owner_url)


@pytest.fixture
def pg_db(tmp_path, owner_url: str) -> Iterator[Db]:  # type: ignore[no-untyped-def]
    """A fresh, empty PostgreSQL database (roles, TRUNCATE and replication roles exist only there)."""
    yield from fresh_db("postgresql", tmp_path, owner_url)


def tamper(db: Db, table: str, sql: str, **params: object) -> None:
    """What an attacker with the owner's credentials does: switch the guard off, edit, switch it back on."""
    engine = db.owner()
    try:
        with engine.begin() as conn:
            if db.kind == "postgresql":
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
                conn.execute(text(sql), params)
                conn.execute(text(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only"))
            else:
                conn.execute(text(f"DROP TRIGGER {table}_no_update"))
                conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
                conn.execute(text(sql), params)
    finally:
        engine.dispose()
    if db.kind == "sqlite":
        store.migrate(db.url)  # puts the triggers back


def audit_settings(db: Db, **over: object) -> AuditSettings:
    return AuditSettings(database_url=db.url, audit_database_url=None, audit_db_role=db.role,
                         audit_consume=False, **over)  # type: ignore[arg-type]


@dataclass
class Server:
    url: str
    svc: AuditService
    db: Db


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(settings: AuditSettings, db: Db) -> Iterator[Server]:
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="audit-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the audit service did not start"
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", app.state.audit, db)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def server(db: Db) -> Iterator[Server]:
    """The audit service on a fresh database (its own consumer and checkpoint timer off)."""
    yield from serve(audit_settings(db), db)


@pytest.fixture
def pg_server(pg_db: Db) -> Iterator[Server]:
    """The audit service on a fresh PostgreSQL database."""
    yield from serve(audit_settings(pg_db), pg_db)
