"""Dump and restore the platform's databases with the database's own tools.

PostgreSQL goes through ``pg_dump --format=custom`` taken in a snapshot this
module exports, so that the facts it records beside the dump (row counts, the
audit log's tree head) describe exactly the dumped data. ``pg_restore`` loads
it without owners or grants: roles belong to the cluster, not the database,
and the audit service recreates its SELECT/INSERT-only writer role and its
grants when it starts. SQLite files (the ``make run`` default) are copied with
SQLite's online backup API.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, inspect, select, table, text
from sqlalchemy.engine import Connection, make_url

from services.audit.config import AuditSettings
from services.ingest.config import IngestSettings
from services.oversight.config import OversightSettings
from services.portal.config import PortalSettings
from services.records.config import RecordsSettings


class RestoreRefused(Exception):
    """The target is not a fresh, empty database (a restore never merges into live data)."""


@dataclass(frozen=True)
class Database:
    """One database the platform writes, and the services that share it."""

    url: str
    services: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    @property
    def file_name(self) -> str:
        return "-".join(self.services) + (".pgdump" if self.kind == "postgresql" else ".sqlite")


def platform_databases() -> list[Database]:
    """Every distinct database of the five services, as their own settings name them."""
    urls = {
        "audit": AuditSettings().owner_url, "ingest": IngestSettings().store_url,
        "oversight": OversightSettings().store_url, "portal": PortalSettings().store_url,
        "records": RecordsSettings().store_url,
    }
    by_url: dict[str, list[str]] = {}
    for service, url in urls.items():
        by_url.setdefault(url, []).append(service)
    return [Database(url, tuple(services)) for url, services in by_url.items()]


def pg_bin(tool: str) -> str:
    """A PostgreSQL client tool: the newest installed server's, else one on PATH (never older than the server)."""
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (d / tool).exists():
            return str(d / tool)
    found = shutil.which(tool)
    if not found:
        raise FileNotFoundError(f"{tool} is not installed (deploy/setup.sh installs PostgreSQL)")
    return found


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq keyword/value connection string for an SQLAlchemy URL, and the environment with its password.

    Keywords rather than a URI, because the platform's URL may name several hosts (``?host=a:1&host=b:2``
    with ``target_session_attrs=read-write``: a primary and its replica, docs/architecture.md §13), which
    libpq takes as ``host=a,b port=1,2``. The password goes in ``PGPASSWORD`` rather than on the command line,
    where ``ps`` would show it.
    """
    u = make_url(url)
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    params: dict[str, str] = {}
    hosts = u.query.get("host")
    if hosts:
        pairs = [h.rpartition(":") if ":" in h else (h, "", "") for h in ([hosts] if isinstance(hosts, str) else hosts)]
        params["host"] = ",".join(h for h, _, _ in pairs)
        params["port"] = ",".join(port or "5432" for _, _, port in pairs)
    else:
        params["host"] = u.host or "localhost"
        params["port"] = str(u.port or 5432)
    if u.username:
        params["user"] = u.username
    params["dbname"] = u.database or ""
    for key, value in u.query.items():
        if key != "host":
            params[key] = value if isinstance(value, str) else value[-1]
    quoted = {k: "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for k, v in params.items()}
    return " ".join(f"{k}={v}" for k, v in quoted.items()), env


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _row_counts(conn: Connection) -> dict[str, int]:
    """Rows per table; the names come from the database's own catalogue, quoted by SQLAlchemy."""
    tables = sorted(inspect(conn).get_table_names())
    return {t: int(conn.execute(select(func.count()).select_from(table(t))).scalar_one()) for t in tables}


def _tree_head(conn: Connection) -> dict[str, Any] | None:
    """The audit log's size and its newest signed checkpoint, if this database holds the log."""
    if not inspect(conn).has_table("audit_entry"):
        return None
    size = int(conn.execute(text("SELECT count(*) FROM audit_entry")).scalar_one())
    row = conn.execute(text("SELECT size, root, note FROM audit_checkpoint ORDER BY size DESC LIMIT 1")).first()
    checkpoint = {"size": int(row[0]), "root": bytes(row[1]).hex(), "note": row[2]} if row else None
    return {"entries": size, "checkpoint": checkpoint}


def _checkpointed_snapshot(conn: Connection, wait_s: float) -> dict[str, Any]:
    """Open a snapshot in which the audit log's newest signed checkpoint covers every entry, if one comes.

    The log signs a checkpoint a few seconds after it grows; waiting for it makes the backup's tree head a
    signed one that the restored log serves unchanged. After ``wait_s`` the snapshot is taken as it is.
    """
    deadline = time.monotonic() + wait_s
    while True:
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        head = _tree_head(conn)
        covered = head is None or head["entries"] == (head["checkpoint"] or {}).get("size", 0)
        if covered or time.monotonic() >= deadline:
            return {"snapshot": snapshot, "rows": _row_counts(conn), "audit": head}
        conn.rollback()
        time.sleep(1)


def dump(db: Database, out: Path, checkpoint_wait_s: float = 30) -> dict[str, Any]:
    """Write ``db`` to ``out``; return what the manifest says of it (counts, tree head, digest)."""
    if db.kind == "sqlite":
        return _dump_sqlite(db, out)
    engine = create_engine(db.url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn:
            # The dump runs in this transaction's snapshot: the counts below are the dump's.
            facts = _checkpointed_snapshot(conn, checkpoint_wait_s)
            snapshot = facts.pop("snapshot")
            target, env = libpq(db.url)
            done = subprocess.run(
                [pg_bin("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", f"--file={out}", f"--dbname={target}"],
                capture_output=True, text=True, env=env, check=False,
            )
            conn.rollback()
    finally:
        engine.dispose()
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {done.stderr.strip()}")
    os.chmod(out, 0o600)
    return {**_describe(db), **facts, "file": out.name, "sha256": sha256_file(out)}


def _describe(db: Database) -> dict[str, Any]:
    return {"kind": db.kind, "services": list(db.services)}


def _dump_sqlite(db: Database, out: Path) -> dict[str, Any]:
    source = make_url(db.url).database or ""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(out)) as dst:
        src.backup(dst)
    engine = create_engine(f"sqlite:///{out}")
    try:
        with engine.connect() as conn:
            facts = {"rows": _row_counts(conn), "audit": _tree_head(conn)}
    finally:
        engine.dispose()
    return {**_describe(db), **facts, "file": out.name, "sha256": sha256_file(out)}


def ensure_empty(db: Database) -> None:
    """Refuse a database that already holds tables (or a SQLite file that exists)."""
    if db.kind == "sqlite":
        path = Path(make_url(db.url).database or "")
        if path.exists() and path.stat().st_size > 0:
            raise RestoreRefused(f"{path} exists: restore into a fresh state directory")
        return
    engine = create_engine(db.url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise RestoreRefused(f"the database {make_url(db.url).database} already has {len(tables)} tables "
                             "(the platform has run on it): restore into a fresh, empty database")


def restore(db: Database, source: Path) -> None:
    """Load a dump into the (empty) database ``db`` in one transaction: all of it or nothing."""
    if db.kind == "sqlite":
        path = Path(make_url(db.url).database or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(path)) as dst:
            src.backup(dst)
        return
    target, env = libpq(db.url)
    done = subprocess.run(
        [pg_bin("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         f"--dbname={target}", str(source)],
        capture_output=True, text=True, env=env, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_restore failed: {done.stderr.strip()}")


def facts(db: Database) -> dict[str, Any]:
    """Row counts and the audit tree head of a (restored) database, to compare with the manifest."""
    engine = create_engine(db.url)
    try:
        with engine.connect() as conn:
            return {"rows": _row_counts(conn), "audit": _tree_head(conn)}
    finally:
        engine.dispose()


def iter_files(manifest: dict[str, Any], directory: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    for entry in manifest["databases"]:
        yield entry, directory / entry["file"]
