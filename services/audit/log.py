"""The incremental Merkle log over SQL (DESIGN §6).

Appending stores the new leaf and every perfect subtree it completes
(``tree.appended_nodes``), so nothing is ever recomputed; roots and proofs read
the O(log n) stored nodes a ``tree`` plan names. Appends are idempotent on
``event_id``. A checkpoint is signed only after the new root has been proved
consistent with the last signed one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.audit import merkle, tree
from services.audit.store import Checkpoint, Entry, Node


class InconsistentLog(Exception):
    """The stored tree does not extend the last signed checkpoint: refuse to sign."""


@dataclass(frozen=True)
class Appended:
    size: int
    new: int


def entry_fields(body: bytes) -> dict[str, Any]:
    """The filterable columns of an entry, read from its canonical event."""
    ev = orjson.loads(body)
    decision = ev.get("decision") or {}
    accessor = ev.get("accessor") or {}
    return {
        "event_id": ev["event_id"],
        "occurred_at": ev.get("occurred_at", ""),
        "kind": ev.get("kind", ""),
        "outcome": "allowed" if decision.get("allow", ev.get("kind") != "denial") else "denied",
        "patient": ev.get("patient"),
        "accessor_org": accessor.get("org", ""),
        "accessor_org_type": accessor.get("org_type", ""),
        "purpose": ev.get("purpose"),
    }


class MerkleLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    # --- reads ---------------------------------------------------------------------

    def size(self, session: Session | None = None) -> int:
        def q(s: Session) -> int:
            last = s.exec(select(func.max(Entry.idx))).one()
            return 0 if last is None else int(last) + 1

        if session is not None:
            return q(session)
        with Session(self.engine) as s:
            return q(s)

    def _fetch(self, s: Session, plan: tree.Plan) -> list[bytes]:
        addrs = tree.plan_addresses(plan)
        fetched: dict[tree.Address, bytes] = {}
        for i in range(0, len(addrs), 500):
            chunk = addrs[i:i + 500]
            rows = s.exec(select(Node).where(tuple_(Node.level, Node.idx).in_(chunk))).all()  # type: ignore[arg-type]
            fetched.update({(r.level, r.idx): r.hash for r in rows})
        return tree.hash_plan(plan, fetched)

    def root(self, size: int) -> bytes:
        with Session(self.engine) as s:
            return self._fetch(s, tree.root_plan(size))[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with Session(self.engine) as s:
            return self._fetch(s, tree.inclusion_proof_plan(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        with Session(self.engine) as s:
            return self._fetch(s, tree.consistency_proof_plan(size1, size2))

    def leaf_hash(self, index: int) -> bytes:
        with Session(self.engine) as s:
            node = s.get(Node, (0, index))
            if node is None:
                raise IndexError(index)
            return node.hash

    def entries(self, start: int, end: int) -> list[Entry]:
        with Session(self.engine) as s:
            return list(s.exec(select(Entry).where(Entry.idx >= start, Entry.idx < end)
                               .order_by(Entry.idx)).all())  # type: ignore[arg-type]

    def by_event_id(self, event_id: str) -> Entry | None:
        with Session(self.engine) as s:
            return s.exec(select(Entry).where(Entry.event_id == event_id)).first()

    def latest_checkpoint(self) -> Checkpoint | None:
        with Session(self.engine) as s:
            return s.exec(select(Checkpoint).order_by(Checkpoint.size.desc())).first()  # type: ignore[attr-defined]

    # --- append ----------------------------------------------------------------------

    def append(self, bodies: Sequence[bytes]) -> Appended:
        """Append canonical events in order, skipping event ids already logged."""
        with self._lock, Session(self.engine) as s:
            size = self.size(s)
            fields = [entry_fields(b) for b in bodies]
            ids = [f["event_id"] for f in fields]
            known = set(s.exec(select(Entry.event_id).where(Entry.event_id.in_(ids))).all())  # type: ignore[attr-defined]
            fresh: dict[tree.Address, bytes] = {}

            def get_node(level: int, index: int) -> bytes:
                if (level, index) in fresh:
                    return fresh[(level, index)]
                node = s.get(Node, (level, index))
                if node is None:
                    raise tree.MissingNodeError((level, index))
                return node.hash

            added = 0
            for body, f in zip(bodies, fields, strict=True):
                if f["event_id"] in known:
                    continue
                known.add(f["event_id"])
                s.add(Entry(idx=size, body=body, **f))
                for level, index, h in tree.appended_nodes(size, merkle.leaf_hash(body), get_node):
                    fresh[(level, index)] = h
                    s.add(Node(level=level, idx=index, hash=h))
                size += 1
                added += 1
            s.commit()
            return Appended(size=size, new=added)

    # --- checkpoints --------------------------------------------------------------------

    def checkpoint(self, sign: Callable[[int, bytes], str]) -> Checkpoint | None:
        """Sign a checkpoint for the current size, if it grew, after proving consistency."""
        with self._lock:
            size = self.size()
            last = self.latest_checkpoint()
            if size == 0 or (last is not None and last.size >= size):
                return last
            root = self.root(size)
            if last is not None:
                proof = self.consistency_proof(last.size, size)
                if not merkle.consistency_ok(last.size, size, proof, last.root, root):
                    raise InconsistentLog(f"tree of size {size} does not extend checkpoint {last.size}")
            cp = Checkpoint(size=size, root=root, note=sign(size, root))
            with Session(self.engine, expire_on_commit=False) as s:
                s.add(cp)
                s.commit()
            return cp
