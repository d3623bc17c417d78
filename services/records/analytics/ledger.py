"""The disclosure ledger and the answer cache, in records' database, shared by every records process.

Disclosure control withholds a cell whose set of people differs from a set
already released by a few people (``sdc.py``): that needs to know what was
released, by every records process and since the first answer, not only by
this process since it started. Likewise an identical question must get the
identical answer from any process, so that a repeated question yields nothing
new to subtract or to average.

- ``records_sdc_released``: one row per distinct set of people released (a
  cell or a total), with the query digest, the cell and the count released.
  The set itself is what differencing is about (counts cannot tell who
  changed), so it is kept, as the store's keyed 63-bit pseudonyms, packed and
  sealed with AES-256-GCM under a key derived from the store's master key
  (AAD: the row's digest): the database holds no pseudonym in the clear, and
  rows cannot be joined to anything outside records' trust boundary.
- ``records_dp_spend``: what each differentially private answer spent of its
  project's privacy budget (``privacy.py``).
- ``records_analytics_answer``: the bytes released for (canonical query,
  audience, store version), as released (aggregates after disclosure control).

``release`` consults and appends (sets, spending, answer) in one transaction under one lock (a
transaction-scoped PostgreSQL advisory lock; one process serves SQLite, so a
thread lock suffices there): two processes cannot both release the two halves
of a difference, nor two different answers to one question.

**Finding the sets a new one could differ from, without reading them all**
(``records_sdc_token``). Order everyone by their keyed pseudonym. If a new set A
and a released set B differ by at most t people, their intersection S is not
empty (every released set has more than t people), and the first member m of S
in that order is among A's first t+1 members: the members of A before m are all
outside S, and at most t members of A are. Likewise m is among B's first t+1.
So each released set is indexed by keyed hashes of its first ``INDEXED``
members (``INDEXED`` > t), and a new set's candidates are the released sets
sharing a token with its own first t+1: exactly the sets it could differ from
by t or fewer, plus a few that share someone near the front, checked exactly
as before. A release reads the sets sharing someone near their front instead
of every set of nearby size, which grew with every answer ever released: an
eighth of the rows in ``bench/ledger.py``'s workload, where the same people
recur in most answers, far fewer where they do not. The
tokens are keyed (the ledger key): like the vault's blind indexes they let
rows be matched with each other, never with a person outside records.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, LargeBinary, Select, and_, delete, func, insert, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from services.adapters.crypto import DataKey
from services.records.analytics.privacy import Budget, Terms
from services.records.analytics.sdc import Key, Ledger, Members, Released

INDEXED = 16  # tokens kept per released set: the token index serves thresholds up to INDEXED - 1
LOCK_ID = int.from_bytes(hashlib.sha256(b"healthgov records sdc ledger").digest()[:8], "big", signed=True)
CACHE_RETENTION = timedelta(days=1)  # answers of an older store version are dropped after this


class ReleasedSet(SQLModel, table=True):
    """A set of people some answer released (a cell or a total): what a later answer must not differ from by few."""

    __tablename__ = "records_sdc_released"
    pk: int | None = Field(default=None, primary_key=True)
    size: int = Field(index=True)  # people in the set: only sets of nearby size can differ by few
    digest: str = Field(unique=True)  # HMAC of the set under the ledger key: each set is recorded once
    members: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # sealed packed pseudonyms
    query_digest: str  # SHA-256 of the canonical query whose answer released it
    cell: str  # JSON list of the cell's group values ([] for the total)
    count: int  # the count as released (rounded)
    released_at: datetime


class ReleasedToken(SQLModel, table=True):
    """A keyed hash of one of a released set's first ``INDEXED`` members (pseudonym order): finds near sets."""

    __tablename__ = "records_sdc_token"
    token: str = Field(primary_key=True)  # keyed hash of the member (hex), never the pseudonym
    set_pk: int = Field(primary_key=True)  # records_sdc_released.pk


class CachedAnswer(SQLModel, table=True):
    """The bytes once released for a question, so the same question gets the same answer from any process."""

    __tablename__ = "records_analytics_answer"
    key: str = Field(primary_key=True)  # SHA-256 of canonical query, audience and store version
    version: str  # the store version the answer was computed on
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    released_at: datetime = Field(index=True)


class DpSpend(SQLModel, table=True):
    """What one differentially private answer spent of its project's privacy budget (millionths of epsilon)."""

    __tablename__ = "records_dp_spend"
    pk: int | None = Field(default=None, primary_key=True)
    project: str = Field(index=True)
    query_digest: str
    epsilon: int  # millionths
    spent_at: datetime


@dataclass(frozen=True)
class Spend:
    """An answer that spends from ``project``'s budget under ``terms``."""

    project: str
    terms: Terms


def ledger_key(master_key: bytes) -> bytes:
    """The ledger's own key, derived from the store's master key (one secret to hold, separate uses)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"healthgov analytics disclosure ledger").derive(master_key)


def pack(members: Members) -> bytes:
    """A set as its sorted pseudonyms, 8 bytes each (the same set always packs to the same bytes)."""
    return struct.pack(f">{len(members)}q", *sorted(members))


def unpack(raw: bytes) -> Members:
    return frozenset(struct.unpack(f">{len(raw) // 8}q", raw))


def size_ranges(sizes: Iterable[int], threshold: int) -> list[tuple[int, int]]:
    """The merged ranges [n - t, n + t] of set sizes a new set of size n can differ from by at most t."""
    out: list[tuple[int, int]] = []
    for n in sorted(set(sizes)):
        lo, hi = max(0, n - threshold), n + threshold
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


@dataclass(frozen=True)
class Release:
    """What one answer releases: its body and, for the ledger, each released set with its cell and count."""

    body: bytes
    sets: list[tuple[Key, Members, int]]


def released_sets(released: Released, cells: dict[Key, Members], total: Members) -> list[tuple[Key, Members, int]]:
    """The sets an answer discloses: every cell and total it gives a count for."""
    out = [(c.key, cells[c.key], c.count) for c in released.cells if c.count is not None]
    if released.total.count is not None:
        out.append(((), total, released.total.count))
    return out


class ReleaseLedger:
    def __init__(self, engine: Engine, master_key: bytes) -> None:
        self.engine = engine
        self._key = ledger_key(master_key)
        self._token_key = hashlib.sha256(b"healthgov sdc token\0" + self._key).digest()
        self._seal = DataKey(self._key)
        self._thread_lock = threading.Lock()
        self._ready = False  # tokens of sets released before the index existed made, the key checked

    def digest(self, members: Members) -> str:
        return hmac.new(self._key, pack(members), hashlib.sha256).hexdigest()

    def tokens(self, members: Members, n: int) -> list[str]:
        """Keyed hashes of ``members``' first ``n`` (all of them if fewer), in the index's order.

        The order is the pseudonyms' own: they are keyed HMACs of the patients, so
        the first ones of a set are a random choice to anyone without the key.
        """
        return [hashlib.blake2b(m.to_bytes(8, "big", signed=True), key=self._token_key, digest_size=16).hexdigest()
                for m in sorted(members)[:n]]

    def cached(self, key: str) -> bytes | None:
        """The answer already released for ``key`` (see ``cache_key``), if any."""
        with self.engine.connect() as conn:
            return conn.execute(select(CachedAnswer.body).where(CachedAnswer.key == key)).scalar()  # type: ignore[arg-type]

    def release(self, key: str, version: str, query_digest: str, sets: Sequence[Members], threshold: int,
                answer: Callable[[Ledger, Budget | None], Release], spend: Spend | None = None) -> tuple[bytes, bool]:
        """The answer to release for ``key`` and whether it was one released before.

        Under the ledger lock, in one transaction: an answer some process released
        for ``key`` meanwhile is returned as it was (it spends nothing); otherwise,
        when the answer ``spend``s privacy budget, what the project has spent is
        summed and ``BudgetSpent`` raised if this answer would overspend it; then
        ``answer`` runs against the released sets that could differ from one of
        ``sets`` (the answer's cells and total) by ``threshold`` people or fewer,
        and the budget after it; the sets it releases (with their tokens), its
        spending and its body are stored before the lock is let go.
        """
        with self._thread_lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
            if not self._ready:
                self._prepare(conn)
            body = conn.execute(select(CachedAnswer.body).where(CachedAnswer.key == key)).scalar()  # type: ignore[arg-type]
            if body is not None:
                return body, True
            budget = None
            if spend is not None:
                budget = self.budget(conn, spend.project, spend.terms).after(spend.terms.per_query)
            ledger, known = self._near(conn, sets, threshold)
            out = answer(ledger, budget)
            now = datetime.now(UTC)
            if spend is not None:
                conn.execute(DpSpend.__table__.insert(), {  # type: ignore[attr-defined]
                    "project": spend.project, "query_digest": query_digest, "epsilon": spend.terms.per_query,
                    "spent_at": now})
            rows, new, seen = [], [], set(known)
            for cell, members, count in out.sets:
                digest = self.digest(members)
                if digest in seen:
                    continue
                seen.add(digest)
                new.append(members)
                rows.append({"size": len(members), "digest": digest, "query_digest": query_digest,
                             "members": self._seal.encrypt(pack(members), digest.encode()),
                             "cell": orjson.dumps(list(cell)).decode(), "count": count, "released_at": now})
            if rows:
                pks = conn.execute(insert(ReleasedSet).returning(ReleasedSet.pk, sort_by_parameter_order=True),  # type: ignore[arg-type]
                                   rows).scalars().all()
                self._index(conn, zip(pks, new, strict=True))
            conn.execute(delete(CachedAnswer).where(and_(  # type: ignore[arg-type]
                CachedAnswer.version != version, CachedAnswer.released_at < now - CACHE_RETENTION)))  # type: ignore[arg-type,operator]
            conn.execute(CachedAnswer.__table__.insert(),  # type: ignore[attr-defined]
                         {"key": key, "version": version, "body": out.body, "released_at": now})
            return out.body, False

    @staticmethod
    def budget(conn: Connection, project: str, terms: Terms) -> Budget:
        """``project``'s budget under ``terms`` and what its answers have spent of it."""
        spent = conn.execute(select(func.coalesce(func.sum(DpSpend.epsilon), 0)).where(  # type: ignore[arg-type]
            DpSpend.project == project)).scalar()
        return Budget(total=terms.budget, spent=int(spent or 0))

    def _index(self, conn: Connection, sets: Iterable[tuple[int, Members]]) -> None:
        """Store the tokens of the released sets ``sets`` (their primary keys and members)."""
        tokens = [(t, pk) for pk, members in sets for t in self.tokens(members, INDEXED)]
        if not tokens:
            return
        if conn.dialect.name == "postgresql":  # COPY: a thousand rows cost what one INSERT does
            with conn.connection.driver_connection.cursor() as cur, cur.copy(  # type: ignore[union-attr]
                    "COPY records_sdc_token (token, set_pk) FROM STDIN") as copy:
                for row in tokens:
                    copy.write_row(row)
        else:
            conn.execute(ReleasedToken.__table__.insert(), [{"token": t, "set_pk": pk} for t, pk in tokens])  # type: ignore[attr-defined]

    def _prepare(self, conn: Connection) -> None:
        """Once per process, under the lock: check this key opens the ledger; index sets released without tokens.

        The check keeps a wrong key failing closed: under another key no token
        would match, and the ledger would look empty instead of refusing.
        """
        first = conn.execute(select(ReleasedSet.digest, ReleasedSet.members).limit(1)).first()  # type: ignore[call-overload]
        if first is not None:
            self._seal.decrypt(first.members, first.digest.encode())
        untokened = conn.execute(select(ReleasedSet.pk, ReleasedSet.digest, ReleasedSet.members).where(  # type: ignore[call-overload]
            ~select(ReleasedToken.set_pk).where(ReleasedToken.set_pk == ReleasedSet.pk).exists())).all()
        self._index(conn, ((pk, unpack(self._seal.decrypt(sealed, digest.encode())))
                           for pk, digest, sealed in untokened))
        self._ready = True

    def near_query(self, sets: Sequence[Members], threshold: int) -> Select[Any] | None:
        """The SELECT of the sealed released sets that could differ from one of ``sets`` by ``threshold`` or fewer.

        Through the token index (module docstring) when it serves ``threshold``;
        otherwise every released set of nearby size, as before the index. ``None``
        when there is nothing to compare.
        """
        ranges = size_ranges((len(m) for m in sets), threshold)
        if not ranges:
            return None
        col = ReleasedSet.size  # type: ignore[var-annotated]
        by_size = or_(*(col.between(lo, hi) for lo, hi in ranges))
        if threshold >= INDEXED:
            return select(ReleasedSet.digest, ReleasedSet.members).where(by_size)  # type: ignore[call-overload,no-any-return]
        wanted = sorted({t for m in sets if len(m) > 0 for t in self.tokens(m, threshold + 1)})
        return select(ReleasedSet.digest, ReleasedSet.members).distinct().join(  # type: ignore[call-overload,no-any-return]
            ReleasedToken, ReleasedToken.set_pk == ReleasedSet.pk).where(  # type: ignore[arg-type]
            ReleasedToken.token.in_(wanted), by_size)  # type: ignore[attr-defined]

    def _near(self, conn: Connection, sets: Sequence[Members], threshold: int) -> tuple[Ledger, set[str]]:
        """An in-memory ledger of the released sets ``near_query`` finds, and their digests."""
        ledger = Ledger()
        query = self.near_query(sets, threshold)
        if query is None:
            return ledger, set()
        unique = dict(conn.execute(query).all())
        ledger.add(unpack(self._seal.decrypt(sealed, digest.encode())) for digest, sealed in unique.items())
        return ledger, set(unique)

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(ReleasedSet.pk)).all())
