"""Append-only storage: triggers stop the owner, missing grants stop the service's role."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from services.audit import store
from services.audit.log import MerkleLog
from tests.integration.audit.conftest import Db
from tests.unit.audit.factory import entry

TAMPER = {
    "audit_entry": ["UPDATE audit_entry SET kind = 'x'", "DELETE FROM audit_entry"],
    "audit_node": ["UPDATE audit_node SET hash = hash", "DELETE FROM audit_node WHERE level = 0"],
}


def _fill(db: Db) -> Db:
    store.migrate(db.url, writer_role=db.role if db.kind == "postgresql" else None, writer_password="pw-test")
    MerkleLog(store.connect(db.url)).append([entry() for _ in range(5)])
    return db


@pytest.fixture
def filled(db: Db) -> Db:
    return _fill(db)


@pytest.fixture
def pg_filled(pg_db: Db) -> Db:
    return _fill(pg_db)


def _rejected(url: str, sql: str, setup: str | None = None) -> str:
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError) as err, engine.begin() as conn:
            if setup:
                conn.execute(text(setup))
            conn.execute(text(sql))
        return str(err.value.orig)
    finally:
        engine.dispose()


@pytest.mark.parametrize("table", sorted(TAMPER))
def test_the_owner_cannot_update_or_delete(filled: Db, table: str) -> None:
    for sql in TAMPER[table]:
        assert f"{table} is append-only" in _rejected(filled.url, sql)


def test_postgresql_triggers_hold_against_truncate_and_replication_role(pg_filled: Db) -> None:
    filled = pg_filled
    for table in store.APPEND_ONLY:
        assert "is append-only" in _rejected(filled.url, f"TRUNCATE {table}")
    # ENABLE ALWAYS: a replica-role session (how logical replication bypasses triggers) is stopped too.
    assert "audit_entry is append-only" in _rejected(
        filled.url, "DELETE FROM audit_entry", setup="SET LOCAL session_replication_role = replica")
    with create_engine(filled.url).connect() as conn:
        modes = dict(conn.execute(text("SELECT tgname, tgenabled FROM pg_trigger WHERE tgname LIKE 'audit_%'")).all())
    assert len(modes) == 2 * len(store.APPEND_ONLY) and set(modes.values()) == {"A"}  # A = ALWAYS


def test_the_writer_role_can_only_select_and_insert(pg_filled: Db) -> None:
    filled = pg_filled
    writer = store.writer_url(filled.url, filled.role, "pw-test")
    log = MerkleLog(store.connect(writer))
    assert log.append([entry()]).size == 6  # SELECT and INSERT work
    for sql in ("UPDATE audit_entry SET kind = 'x'", "DELETE FROM audit_node", "TRUNCATE audit_checkpoint",
                "DELETE FROM audit_cosignature", "ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only",
                "DROP TRIGGER audit_entry_append_only ON audit_entry", "CREATE TABLE sneaky (x int)"):
        why = _rejected(writer, sql)
        assert "permission denied" in why or "must be owner" in why, (sql, why)
    with create_engine(filled.url).connect() as conn:
        grants = {(t, p) for t, p in conn.execute(text(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = :r"),
            {"r": filled.role}).all()}
    assert grants == {(t, p) for t in store.APPEND_ONLY for p in ("SELECT", "INSERT")}


def test_the_service_refuses_to_start_on_missing_tables(db: Db) -> None:
    with pytest.raises(store.StoreNotReady, match="healthgov audit migrate"):
        store.connect(db.url)
