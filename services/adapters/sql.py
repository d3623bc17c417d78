"""The SQL adapter: one way to open an engine, one unit of work and one bulk writer, for every service.

Each service keeps its own tables, but they all run on SQLite (``make run``)
or PostgreSQL (tests, production) with the same needs: SQLite connections
shared across the web server's threads, waiting on a busy database instead of
failing at once, write-ahead logging with full sync so that a commit the
service acknowledged survives a crash, and bulk writes at COPY speed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import String, Table, Text, any_, bindparam, event, func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_S = 30
INSERT_CHUNK = 1000  # rows per INSERT where there is no COPY (SQLite)


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


class AdvisoryLocks:
    """PostgreSQL session advisory locks, each on a connection of its own: "one holder at a time, across processes".

    A lock lives as long as the session that took it, so the server drops it
    the moment its holder's process (or the database) dies: whoever looks next
    can take over at once, with no stale-after timeout to guess. Each lock has
    its own connection, outside the service's pool, so work that holds one
    never starves the pool its own queries need. SQLite has no such locks
    (``available`` is False); it serves one process, and callers fall back
    to what suits them (run alone, or take over after a while).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = (create_engine(engine.url, poolclass=NullPool)
                        if engine.dialect.name == "postgresql" else None)

    @property
    def available(self) -> bool:
        return self._engine is not None

    def try_acquire(self, *key: str) -> Connection | None:
        """The lock named by ``key`` on its own connection, or None if another session holds it.

        Release it with ``release``; closing the connection ends the session and the lock.
        """
        if self._engine is None:
            raise RuntimeError("advisory locks need PostgreSQL")
        number = int.from_bytes(hashlib.sha256("\0".join(key).encode()).digest()[:8], "big", signed=True)
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(select(func.pg_try_advisory_lock(number))).scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return conn

    @staticmethod
    def release(held: Connection | None) -> None:
        """Give a lock back, even if the database went away meanwhile (then it is gone already)."""
        if held is not None:
            with contextlib.suppress(SQLAlchemyError):
                held.close()


class BulkInsert:
    """Many rows into one table, in the caller's transaction: binary COPY on PostgreSQL, INSERTs elsewhere.

    Binary COPY writes rows at 3-5x the rate of INSERT (no statement to parse,
    no values to convert from text), but it sends each value in its column's
    wire format, so it must know the columns' types as the database has them:
    given (``types``, column name to ``udt_name``), or asked of the database
    once, at the first PostgreSQL write.
    """

    def __init__(self, table: Table, types: Mapping[str, str] | None = None) -> None:
        self.table = table
        self.types = dict(types) if types is not None else None

    def write(self, conn: Connection, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows``, each a sequence of values in ``columns`` order."""
        if not rows:
            return
        if conn.dialect.name != "postgresql":
            for i in range(0, len(rows), INSERT_CHUNK):
                conn.execute(insert(self.table), [dict(zip(columns, row, strict=True))
                                                  for row in rows[i:i + INSERT_CHUNK]])
            return
        if self.types is None:
            self.types = dict(conn.execute(text(
                "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = :t "
                "AND table_schema = current_schema()"), {"t": self.table.name}).all())
        statement = f"COPY {self.table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        with conn.connection.driver_connection.cursor() as cur, cur.copy(statement) as copy:  # type: ignore[union-attr]
            copy.set_types([self.types[c] for c in columns])
            for row in rows:
                copy.write_row(row)


IN_CHUNK = 1_000  # bound the size of one IN (...) list (SQLite)


UNIT_SEPARATOR = "\x1f"  # joins keys into one text parameter; keys (digests, FHIR ids) never contain it


def joined(values: Sequence[str]) -> str | None:
    """``values`` as one text parameter for ``string_to_array(:p, :sep)``, or None if one holds the separator.

    psycopg dumps a Python list as an array literal element by element, with a regular expression per
    element to decide its quoting: for a thousand keys that costs more CPU than the query. A join is one C call.
    """
    text_ = UNIT_SEPARATOR.join(values)
    return None if text_.count(UNIT_SEPARATOR) != len(values) - 1 else text_


class KeyLookup:
    """``SELECT columns WHERE key IN (values)``: one parameter on PostgreSQL, chunked IN lists elsewhere.

    psycopg rewrites a query's placeholders on every execution, and an ``IN`` list
    of a thousand cost more CPU than the query; one parameter does not. The keys travel
    as one text split by the server (``string_to_array``, see ``joined``), an array
    parameter only if a key holds the separator. The PostgreSQL statements are built
    once: a statement made per call costs more CPU in SQLAlchemy's cache-key walk than the query.
    """

    def __init__(self, *columns: Any, key: Any) -> None:
        self.columns = columns
        self.key = key
        self.pg = select(*columns).where(key == bindparam("values", type_=ARRAY(String)).any_())
        self.pg_joined = select(*columns).where(key == any_(func.string_to_array(
            bindparam("joined", type_=Text), bindparam("sep", UNIT_SEPARATOR, type_=Text))))

    def rows(self, conn: Connection, values: list[str]) -> list[Any]:
        if not values:
            return []
        if conn.dialect.name == "postgresql":
            one = joined(values)
            if one is not None:
                return list(conn.execute(self.pg_joined, {"joined": one}))
            return list(conn.execute(self.pg, {"values": values}))
        out: list[Any] = []
        for i in range(0, len(values), IN_CHUNK):
            out += conn.execute(select(*self.columns).where(self.key.in_(values[i:i + IN_CHUNK])))
        return out
