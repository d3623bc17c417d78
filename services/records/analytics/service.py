"""The analytic query use case: decide, bring the store up to date, count, protect, audit, release.

1. The query is parsed (a 400 names what is wrong).
2. The policy decides ``analytics_query`` (``policies/healthgov/access/analytics.rego``)
   with the project's facts when one is named (its ethics approval verified
   again, as for an export); a refusal is a denial event through the gate and a 403.
3. The store takes in what records committed since its last update (an update
   already under way elsewhere is waited for at most ``update_wait_s``: then 503).
4. An identical query (same canonical form, same audience, same store
   version) is answered from the cache, so repeating a question yields the
   same answer and nothing new to average or subtract.
5. Otherwise the engine runs the SQL and disclosure control (``sdc.py``)
   decides what of the answer may leave, against the ledger of what was
   released before; the cache and the ledger are records' tables, consulted
   and appended under one lock (``ledger.py``), so neither a restart nor a
   second records process forgets what was released.
6. The gate publishes a ``disclosure`` event naming the query, the rule, the
   project and the SHA-256 of the exact bytes released, and only then does
   the answer leave.

Research answers leave out patients who opted out of research; public-health
answers never do (an opt-out does not bind the state, docs/architecture.md §5).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.adapters import crypto
from services.adapters.auth import Caller
from services.adapters.documents import DocumentRefused
from services.adapters.policy import PolicyClient
from services.contracts import errors
from services.contracts.events import rfc3339, utcnow
from services.contracts.policy import Decision, PolicyInput, PolicyResource
from services.records.access import Authority
from services.records.analytics import query as q
from services.records.analytics.engines import DuckDBEngine, Engine, cells
from services.records.analytics.ledger import Release, ReleaseLedger, released_sets
from services.records.analytics.sdc import Control, Key, Ledger, Members
from services.records.analytics.store import AnalyticStore
from services.records.gate import Gate
from services.records.projects import ProjectRegistry, facts

CACHE_SIZE = 1024


@dataclass(frozen=True)
class Answer:
    body: bytes
    event_id: str
    cached: bool


@dataclass
class Analytics:
    store: AnalyticStore
    policy: PolicyClient
    gate: Gate
    projects: ProjectRegistry
    control: Control = field(default_factory=Control)
    engine: Engine | None = None
    update_wait_s: float = 20.0  # how long a query waits for an update already under way (then 503)
    ledger: ReleaseLedger | None = None  # records' shared ledger and cache; None: this process's own
    _cache: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = DuckDBEngine(self.store)

    def decide(self, caller: Caller, authority: Authority, query: q.Query) -> Decision:
        """The policy's decision; a refusal is audited and raised (``Denied``)."""
        project = None
        details: dict[str, Any] = {"action": "analytics_query", "query_digest": crypto.sha256_hex(query.canonical())}
        if query.project is not None:
            details["project"] = query.project
            try:
                stored = self.projects.get(query.project)
            except errors.NotFound:
                stored = None
            if stored is not None and stored.org == caller.org:
                try:
                    self.projects.approval_facts(stored)
                except DocumentRefused as exc:
                    raise self.gate.refuse(caller, authority, None, Decision(allow=False, reasons=[exc.reason]),
                                           details=details) from exc
            project = facts(stored) if stored is not None else None  # unknown: asked as no project at all
        pin = PolicyInput(subject=caller.subject(None), action="analytics_query", purpose=authority.purpose,
                          resource=PolicyResource(patient=None, type="Analytics"),
                          project=project,
                          requested_types=query.cohort.types, now=rfc3339(utcnow()),
                          analytics={"feasibility": query.feasibility, "grouped": bool(query.measure.by)})
        decision = self.policy.decide(pin)
        if not decision.allow:
            raise self.gate.refuse(caller, authority, None, decision, details=details)
        return decision

    def ask(self, caller: Caller, authority: Authority, doc: Any) -> Answer:
        query = q.parse(doc)
        decision = self.decide(caller, authority, query)
        research = authority.purpose == "HRESCH" or caller.org_type == "research"
        self.store.update(wait_s=self.update_wait_s)
        body, cached = self._released(query, research, self.store.version())
        event = self.gate.record(
            kind="disclosure", caller=caller, authority=authority, patient=None, decision=decision, body=body,
            details={"action": "analytics_query", "query": orjson.loads(query.canonical()),
                     "query_digest": crypto.sha256_hex(query.canonical()),
                     "project": query.project, "cached": cached,
                     "engine": self.engine.name if self.engine else None,
                     "research_opt_outs_excluded": research})
        return Answer(body=body, event_id=event.event_id, cached=cached)

    def _released(self, query: q.Query, research: bool, version: str) -> tuple[bytes, bool]:
        """The bytes to release for ``query`` on the store's ``version``, and whether they were released before."""
        key = crypto.sha256_hex(b"|".join([query.canonical(), b"research" if research else b"all", version.encode()]))
        if self.ledger is None:
            return self._released_here(key, query, research)
        body = self.ledger.cached(key)
        if body is not None:
            return body, True
        by, groups, total = self._count(query, research)
        return self.ledger.release(
            key, version, crypto.sha256_hex(query.canonical()),
            [len(m) for m in groups.values()] + [len(total)], self.control.settings.threshold,
            lambda near: self._protect(by, groups, total, near))

    def _released_here(self, key: str, query: q.Query, research: bool) -> tuple[bytes, bool]:
        """``_released`` with this process's own ledger and cache (one process, nothing kept: tests and benches)."""
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
                return body, True
        by, groups, total = self._count(query, research)
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                return body, True
            body = self._protect(by, groups, total, self.control.ledger).body
            self._cache[key] = body
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return body, False

    def _count(self, query: q.Query, research: bool) -> tuple[list[str], dict[Key, Members], Members]:
        """The raw answer: each group's set of people and the total's (never leaves records)."""
        assert self.engine is not None
        table = self.engine.run(q.sql(query, research=research), q.scope(query))
        groups, total = cells(table, [q.GROUPS[g] for g in query.measure.by])
        return list(query.measure.by), groups, total

    def _protect(self, by: list[str], groups: dict[Key, Members], total: Members, near: Ledger) -> Release:
        """Disclosure control against the ledger ``near``: the body to release and the sets it releases."""
        released = self.control.protect(by, groups, total, near)
        doc = {"measure": "patients", **released.as_json(),
               "disclosure_control": {"threshold": self.control.settings.threshold,
                                      "rounding": self.control.settings.rounding}}
        return Release(orjson.dumps(doc), released_sets(released, groups, total))
