"""The analytic query use case: decide, bring the store up to date, count, protect, audit, release.

1. The query is parsed (a 400 names what is wrong).
2. The policy decides ``analytics_query`` (``policies/healthgov/access/analytics.rego``)
   with the project's facts when one is named (its ethics approval verified
   again, as for an export); a refusal is a denial event through the gate and a 403.
3. The store takes in what records committed since its last update (an update
   already under way elsewhere is waited for at most ``update_wait_s``: then 503).
4. An identical query (same canonical form, same audience, same store
   generation) is answered from the cache, so repeating a question yields the
   same answer and nothing new to average or subtract.
5. Otherwise the engine runs the SQL and disclosure control (``sdc.py``)
   decides what of the answer may leave.
6. The gate publishes a ``disclosure`` event naming the query, the rule, the
   project and the SHA-256 of the exact bytes released, and only then does
   the answer leave.

Research answers leave out patients who opted out of research; public-health
answers never do (an opt-out does not bind the state, docs/architecture.md §5).

The notifiable-disease counts (``notifiable.py``) are a named query through
the same steps: one decision naming the query, one ordinary query per disease
(each through disclosure control), one disclosure event for the whole answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
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
from services.records.analytics import notifiable, rates
from services.records.analytics import query as q
from services.records.analytics.engines import DuckDBEngine, Engine, cells
from services.records.analytics.sdc import Control
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
    diseases: dict[str, notifiable.Disease] = field(default_factory=notifiable.load)
    populations: rates.Populations = field(default_factory=rates.load)
    update_wait_s: float = 20.0  # how long a query waits for an update already under way (then 503)
    _cache: OrderedDict[bytes, bytes] = field(default_factory=OrderedDict)
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
        return self._decide(caller, authority, details, types=query.cohort.types, project=project,
                            shape={"feasibility": query.feasibility, "grouped": bool(query.measure.by)})

    def _decide(self, caller: Caller, authority: Authority, details: dict[str, Any], *, types: list[str],
                shape: dict[str, Any], project: dict[str, Any] | None = None) -> Decision:
        pin = PolicyInput(subject=caller.subject(None), action="analytics_query", purpose=authority.purpose,
                          resource=PolicyResource(patient=None, type="Analytics"),
                          project=project, requested_types=types, now=rfc3339(utcnow()), analytics=shape)
        decision = self.policy.decide(pin)
        if not decision.allow:
            raise self.gate.refuse(caller, authority, None, decision, details=details)
        return decision

    def ask(self, caller: Caller, authority: Authority, doc: Any) -> Answer:
        query = q.parse(doc)
        decision = self.decide(caller, authority, query)
        research = authority.purpose == "HRESCH" or caller.org_type == "research"
        body, cached = self._released(query.canonical(), research, lambda: self._answer(query, research))
        event = self.gate.record(
            kind="disclosure", caller=caller, authority=authority, patient=None, decision=decision, body=body,
            details={"action": "analytics_query", "query": orjson.loads(query.canonical()),
                     "query_digest": crypto.sha256_hex(query.canonical()),
                     "project": query.project, "cached": cached,
                     "engine": self.engine.name if self.engine else None,
                     "research_opt_outs_excluded": research})
        return Answer(body=body, event_id=event.event_id, cached=cached)

    def ask_notifiable(self, caller: Caller, authority: Authority, params: dict[str, list[str]],
                       today: date | None = None) -> Answer:
        """Notifiable-disease counts (and rates) per district and ISO week, decided, protected and audited."""
        request = notifiable.parse(params, self.diseases, today or utcnow().date())
        canonical = orjson.dumps(request.canonical(), option=orjson.OPT_SORT_KEYS)
        details: dict[str, Any] = {"action": "analytics_query", "named": notifiable.NAME,
                                   "query_digest": crypto.sha256_hex(canonical)}
        types = sorted({t for d in request.diseases for t in self.diseases[d].types})
        decision = self._decide(caller, authority, details, types=types,
                                shape={"feasibility": False, "grouped": True, "named": notifiable.NAME})
        research = authority.purpose == "HRESCH" or caller.org_type == "research"
        body, cached = self._released(canonical, research, lambda: self._notifiable(request, research))
        event = self.gate.record(
            kind="disclosure", caller=caller, authority=authority, patient=None, decision=decision, body=body,
            details={**details, "query": request.canonical(), "cached": cached,
                     "engine": self.engine.name if self.engine else None, "research_opt_outs_excluded": research})
        return Answer(body=body, event_id=event.event_id, cached=cached)

    def _released(self, canonical: bytes, research: bool, compute: Callable[[], bytes]) -> tuple[bytes, bool]:
        """The answer to a question: from the cache if identical (same store generation), else computed once."""
        self.store.update(wait_s=self.update_wait_s)
        key = b"|".join([canonical, b"research" if research else b"all", str(self.store.generation).encode()])
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
        if body is not None:
            return body, True
        body = compute()
        with self._lock:
            self._cache[key] = body
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return body, False

    def _protected(self, query: q.Query, research: bool) -> dict[str, Any]:
        """One query run and put through disclosure control: its releasable JSON (with rates if asked)."""
        assert self.engine is not None
        table = self.engine.run(q.sql(query, research=research), q.scope(query))
        groups, total = cells(table, [q.GROUPS[g] for g in query.measure.by])
        released = self.control.protect(list(query.measure.by), groups, total).as_json()
        if query.measure.rate:
            released["rows"] = rates.add_rates(released["rows"], self.populations)
        return released

    def _control(self) -> dict[str, Any]:
        return {"threshold": self.control.settings.threshold, "rounding": self.control.settings.rounding}

    def _answer(self, query: q.Query, research: bool) -> bytes:
        doc: dict[str, Any] = {"measure": "patients", **self._protected(query, research),
                               "disclosure_control": self._control()}
        if query.measure.rate:
            doc["population"] = self.populations.about()
        return orjson.dumps(doc)

    def _notifiable(self, request: notifiable.Request, research: bool) -> bytes:
        diseases = []
        for did in request.diseases:
            disease = self.diseases[did]
            released = self._protected(request.query(disease), research)
            diseases.append({**disease.about(), "total": released["total"], "rows": released["rows"]})
        doc = {"named": notifiable.NAME, "measure": "patients", "since": request.since.isoformat(),
               "until": request.until.isoformat(), "weeks": request.weeks(), "districts": request.districts,
               "diseases": diseases, "disclosure_control": self._control(), "population": self.populations.about()}
        return orjson.dumps(doc)
