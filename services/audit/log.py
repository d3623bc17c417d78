"""The incremental Merkle log over SQL (docs/architecture.md §6).

Appending stores the new leaf and every perfect subtree it completes
(``tree.appended_nodes``), so nothing is ever recomputed; roots and proofs read
the O(log n) stored nodes a ``tree`` plan names, in one query. A batch is one
transaction: it reads the tree's current peaks once (one query), so an append
of any batch size costs a constant number of reads. Appends are idempotent on
``event_id``; an event id that arrives again with *different* bytes is not
logged and is reported back as a conflict.

One writer at a time: a lock in the process and, in PostgreSQL, an advisory
transaction lock across processes, so the log is one total order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Row, and_, func, or_, select, text
from sqlalchemy.engine import Connection, Engine

from services.adapters.sql import BulkInsert
from services.audit.query import norm_time
from services.audit.store import Entry, Node
from services.tlog import merkle, tree

ENTRY = Entry.__table__  # type: ignore[attr-defined]
NODE = Node.__table__  # type: ignore[attr-defined]
APPEND_LOCK = 7263  # PostgreSQL advisory lock key of the single log writer
_CHUNK = 1000
SEALED_FOREVER = "9999-12-31T23:59:59.999999Z"


@dataclass(frozen=True)
class Appended:
    """What one ``append`` did: the new tree size, entries added, ids refused."""

    size: int
    new: int
    conflicts: list[str] = field(default_factory=list)


def entry_fields(body: bytes) -> dict[str, Any]:
    """The filterable columns of an entry, read from its canonical event."""
    ev = orjson.loads(body)
    decision = ev.get("decision") or {}
    accessor = ev.get("accessor") or {}
    notify_after = (decision.get("obligations") or {}).get("notify_after")
    return {
        "event_id": ev["event_id"],
        "occurred_at": norm_time(ev.get("occurred_at"), default=""),
        "kind": ev.get("kind", ""),
        "outcome": "allowed" if decision.get("allow", ev.get("kind") != "denial") else "denied",
        "patient": ev.get("patient"),
        "accessor_id": accessor.get("id"),
        "accessor_org": accessor.get("org", ""),
        "accessor_org_type": accessor.get("org_type", ""),
        "purpose": ev.get("purpose"),
        # A notify_after that cannot be read keeps the event sealed (fail closed).
        "notify_after": None if notify_after is None else norm_time(notify_after, default=SEALED_FOREVER),
    }


class MerkleLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._pg = engine.dialect.name == "postgresql"
        self._entry_writer = BulkInsert(ENTRY)
        self._node_writer = BulkInsert(NODE)

    # --- reads ---------------------------------------------------------------------

    def size(self) -> int:
        with self.engine.connect() as conn:
            return self._size(conn)

    @staticmethod
    def _size(conn: Connection) -> int:
        last = conn.execute(select(func.max(ENTRY.c.idx))).scalar()
        return 0 if last is None else int(last) + 1

    @staticmethod
    def _nodes(conn: Connection, addresses: Sequence[tree.Address]) -> dict[tree.Address, bytes]:
        fetched: dict[tree.Address, bytes] = {}
        for i in range(0, len(addresses), 500):
            by_level: dict[int, list[int]] = {}
            for level, index in addresses[i:i + 500]:
                by_level.setdefault(level, []).append(index)
            # One (level, idx IN ...) term per level: both databases answer it from the primary key
            # (SQLite scans the table for a row-value IN list).
            cond = or_(*(and_(NODE.c.level == level, NODE.c.idx.in_(ids)) for level, ids in by_level.items()))
            rows = conn.execute(select(NODE.c.level, NODE.c.idx, NODE.c.hash).where(cond)).all()
            fetched.update({(r.level, r.idx): bytes(r.hash) for r in rows})
        return fetched

    def _fetch(self, plan: tree.Plan) -> list[bytes]:
        with self.engine.connect() as conn:
            return tree.hash_plan(plan, self._nodes(conn, tree.plan_addresses(plan)))

    def root(self, size: int) -> bytes:
        return self._fetch(tree.root_plan(size))[0]

    def peaks(self, size: int) -> list[bytes]:
        """The stored hashes of the tree's peaks at ``size`` (``tree.range_nodes(0, size)``)."""
        addresses = tree.range_nodes(0, size)
        with self.engine.connect() as conn:
            got = self._nodes(conn, addresses)
        try:
            return [got[a] for a in addresses]
        except KeyError as exc:
            raise tree.MissingNodeError(exc.args[0]) from None

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._fetch(tree.inclusion_proof_plan(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self._fetch(tree.consistency_proof_plan(size1, size2))

    def leaf_hash(self, index: int) -> bytes:
        with self.engine.connect() as conn:
            h = conn.execute(select(NODE.c.hash).where(NODE.c.level == 0, NODE.c.idx == index)).scalar()
        if h is None:
            raise IndexError(index)
        return bytes(h)

    def iter_leaf_hashes(self, start: int, end: int, chunk: int = 20_000) -> Iterator[bytes]:
        """Stored leaf hashes of ``[start, end)`` in index order (as stored: trust nothing)."""
        while start < end:
            stop = min(end, start + chunk)
            with self.engine.connect() as conn:
                rows = conn.execute(select(NODE.c.hash).where(NODE.c.level == 0, NODE.c.idx >= start,
                                                             NODE.c.idx < stop).order_by(NODE.c.idx)).all()
            yield from (bytes(r.hash) for r in rows)
            if len(rows) < stop - start:
                return
            start = stop

    def iter_bodies(self, start: int, end: int, chunk: int = 5_000) -> Iterator[tuple[int, bytes]]:
        """``(index, canonical event)`` for ``[start, end)``, in index order, a chunk per query."""
        while start < end:
            stop = min(end, start + chunk)
            with self.engine.connect() as conn:
                rows = conn.execute(select(ENTRY.c.idx, ENTRY.c.body).where(
                    ENTRY.c.idx >= start, ENTRY.c.idx < stop).order_by(ENTRY.c.idx)).all()
            yield from ((int(r.idx), bytes(r.body)) for r in rows)
            if len(rows) < stop - start:
                return
            start = stop

    def entries(self, start: int, end: int) -> list[Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(ENTRY).where(ENTRY.c.idx >= start, ENTRY.c.idx < end)
                                     .order_by(ENTRY.c.idx)).all())

    def by_event_id(self, event_id: str) -> Row[Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(select(ENTRY).where(ENTRY.c.event_id == event_id)).first()

    # --- append ----------------------------------------------------------------------

    def append(self, bodies: Sequence[bytes]) -> Appended:
        """Append canonical events in order, in one transaction, skipping event ids already logged."""
        fields = [entry_fields(b) for b in bodies]
        with self._lock, self.engine.begin() as conn:
            if self._pg:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})
            size = start = self._size(conn)
            known = self._known(conn, [f["event_id"] for f in fields])
            # Every left sibling an append needs is a peak at the batch start or a node made in it.
            fresh = self._nodes(conn, tree.range_nodes(0, size))
            entry_rows: list[dict[str, Any]] = []
            node_rows: list[dict[str, Any]] = []
            conflicts: list[str] = []
            for body, f in zip(bodies, fields, strict=True):
                seen = known.get(f["event_id"])
                if seen is not None:
                    if seen != body:
                        conflicts.append(f["event_id"])
                    continue
                known[f["event_id"]] = body
                entry_rows.append({"idx": size, "body": body, **f})
                for level, index, h in tree.appended_nodes(size, merkle.leaf_hash(body),
                                                           lambda lv, ix: fresh[(lv, ix)]):
                    fresh[(level, index)] = h
                    node_rows.append({"level": level, "idx": index, "hash": h})
                size += 1
            self._insert(conn, self._entry_writer, entry_rows)
            self._insert(conn, self._node_writer, node_rows)
        return Appended(size=size, new=size - start, conflicts=conflicts)

    @staticmethod
    def _insert(conn: Connection, writer: BulkInsert, rows: list[dict[str, Any]]) -> None:
        """Bulk insert in the open transaction (binary COPY in PostgreSQL)."""
        if rows:
            columns = list(rows[0])
            writer.write(conn, columns, [[row[c] for c in columns] for row in rows])

    @staticmethod
    def _known(conn: Connection, ids: list[str]) -> dict[str, bytes]:
        known: dict[str, bytes] = {}
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), _CHUNK):
            rows = conn.execute(select(ENTRY.c.event_id, ENTRY.c.body)
                                .where(ENTRY.c.event_id.in_(unique[i:i + _CHUNK]))).all()
            known.update({r.event_id: bytes(r.body) for r in rows})
        return known
