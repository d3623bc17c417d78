"""The SQL adapter: one way to open an engine and one unit of work, for every service.

Each service keeps its own tables, but they all run on SQLite (``make run``)
or PostgreSQL (tests, production) with the same needs: SQLite connections
shared across the web server's threads, waiting on a busy database instead of
failing at once, and write-ahead logging with full sync so that a commit the
service acknowledged survives a crash.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_S = 30


def engine_for(url: str, *, wal: bool = True, pool_size: int | None = None,
               application_name: str | None = None) -> Engine:
    """An engine for ``url`` with the platform's connection settings.

    ``pool_size`` and ``application_name`` apply to PostgreSQL (SQLite has no
    server to name itself to, and one file needs no large pool).
    """
    # No pre-ping: it is a SELECT 1 round trip on every checkout, i.e. on every read. A connection that died
    # (a database restart) fails the one statement that finds out, which callers see as a 503 with Retry-After
    # (``web.install_error_handlers``), and SQLAlchemy then discards every pooled connection of that age.
    kwargs: dict[str, Any] = {"pool_recycle": 1800}
    sqlite = url.startswith("sqlite")
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        if pool_size is not None:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        if application_name is not None:
            kwargs["connect_args"] = {"application_name": application_name}
    engine = create_engine(url, **kwargs)
    if sqlite and wal:

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

    return engine


class UnitOfWork:
    """A session that rolls back unless ``commit()`` was called."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> UnitOfWork:
        self.session = Session(self.engine, expire_on_commit=False)
        return self

    def __exit__(self, *exc: object) -> None:
        # close() rolls back anything uncommitted but keeps loaded rows readable.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()
