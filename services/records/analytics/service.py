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

The notifiable-disease counts (``notifiable.py``) are a named query through
the same steps: one decision naming the query, one ordinary query per disease,
disclosure control of every cell against the ledger (and against the cells of
the diseases before it in the same answer), one disclosure event for the whole.

Research answers leave out patients who opted out of research; public-health
answers never do (an opt-out does not bind the state, docs/architecture.md §5).
"""

from __future__ import annotations

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
from services.records.analytics.ledger import Release, ReleaseLedger, Spend, released_sets
from services.records.analytics.privacy import MECHANISM, MICRO, Budget, BudgetSpent, Terms, noisy_count, parse_terms
from services.records.analytics.sdc import PRIMARY, Control, Key, Ledger, Members, round_to
from services.records.analytics.store import AnalyticStore
from services.records.gate import Gate
from services.records.projects import ProjectRegistry, facts
from services.records.store import Project


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
    ledger: ReleaseLedger  # records' shared disclosure ledger, answer cache and privacy budgets
    control: Control = field(default_factory=Control)
    engine: Engine | None = None
    diseases: dict[str, notifiable.Disease] = field(default_factory=notifiable.load)
    populations: rates.Populations = field(default_factory=rates.load)
    update_wait_s: float = 20.0  # how long a query waits for an update already under way (then 503)
    dp_default: Terms | None = None  # differential privacy for every project whose agreement names none

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = DuckDBEngine(self.store)

    def decide(self, caller: Caller, authority: Authority, query: q.Query) -> tuple[Decision, Project | None]:
        """The policy's decision and the project the query is asked under; a refusal is audited and raised."""
        project = None
        stored: Project | None = None
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
        decision = self._decide(caller, authority, details, types=query.cohort.types, project=project,
                                shape={"feasibility": query.feasibility, "grouped": bool(query.measure.by)})
        return decision, stored

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
        decision, project = self.decide(caller, authority, query)
        research = authority.purpose == "HRESCH" or caller.org_type == "research"
        spend = self._spend(project)
        if spend is not None and query.measure.by:
            raise errors.Invalid("this project's answers are differentially private: only totals are offered "
                                 "(ask without 'measure.by')", code="not-supported")
        self.store.update(wait_s=self.update_wait_s)
        details: dict[str, Any] = {"action": "analytics_query", "query": orjson.loads(query.canonical()),
                                   "query_digest": crypto.sha256_hex(query.canonical()), "project": query.project}
        try:
            body, cached = self._released(query, research, self.store.version(), spend)
        except BudgetSpent as exc:
            refused = Decision(allow=False, reasons=["privacy_budget_spent"], policy_version=decision.policy_version)
            raise self.gate.refuse(caller, authority, None, refused, details={
                **details, "epsilon_spent": exc.budget.spent / MICRO, "epsilon_budget": exc.budget.total / MICRO,
                "epsilon_asked": exc.cost / MICRO}) from exc
        event = self.gate.record(
            kind="disclosure", caller=caller, authority=authority, patient=None, decision=decision, body=body,
            details={**details, "cached": cached, "engine": self.engine.name if self.engine else None,
                     "research_opt_outs_excluded": research,
                     "epsilon": spend.terms.epsilon if spend is not None and not cached else None})
        return Answer(body=body, event_id=event.event_id, cached=cached)

    def _spend(self, project: Project | None) -> Spend | None:
        """What an answer under ``project`` spends of its privacy budget (None: its answers are not noised)."""
        if project is None:
            return None
        terms = parse_terms(orjson.loads(project.privacy)) if project.privacy else self.dp_default
        return Spend(project.id, terms) if terms is not None else None

    def _released(self, query: q.Query, research: bool, version: str, spend: Spend | None) -> tuple[bytes, bool]:
        """The bytes to release for ``query`` on the store's ``version``, and whether they were released before."""
        key = crypto.sha256_hex(b"|".join([query.canonical(), b"research" if research else b"all", version.encode()]))
        body = self.ledger.cached(key)
        if body is not None:
            return body, True
        by, groups, total = self._count(query, research)
        digest = crypto.sha256_hex(query.canonical())
        if spend is not None:
            return self.ledger.release(key, version, digest, [], self.control.settings.threshold,
                                       lambda _near, budget: self._noised(total, spend, budget), spend=spend)
        return self.ledger.release(
            key, version, digest, [*groups.values(), total], self.control.settings.threshold,
            lambda near, _budget: self._protect(query, by, groups, total, near))

    def _count(self, query: q.Query, research: bool) -> tuple[list[str], dict[Key, Members], Members]:
        """The raw answer: each group's set of people and the total's (never leaves records)."""
        assert self.engine is not None
        table = self.engine.run(q.sql(query, research=research), q.scope(query))
        groups, total = cells(table, [q.GROUPS[g] for g in query.measure.by])
        return list(query.measure.by), groups, total

    def _controls(self) -> dict[str, int]:
        return {"threshold": self.control.settings.threshold, "rounding": self.control.settings.rounding}

    def _protect(self, query: q.Query, by: list[str], groups: dict[Key, Members], total: Members,
                 near: Ledger) -> Release:
        """Disclosure control against the ledger ``near``: the body to release and the sets it releases.

        A rate is worked out from the released (rounded) count, so it tells no more than the count does.
        """
        released = self.control.protect(by, groups, total, near)
        doc: dict[str, Any] = {"measure": "patients", **released.as_json(), "disclosure_control": self._controls()}
        if query.measure.rate:
            doc["rows"] = rates.add_rates(doc["rows"], self.populations)
            doc["population"] = self.populations.about()
        return Release(orjson.dumps(doc), released_sets(released, groups, total))

    # --- notifiable diseases ---------------------------------------------------------------------------------

    def ask_notifiable(self, caller: Caller, authority: Authority, params: dict[str, list[str]],
                       today: date | None = None) -> Answer:
        """Notifiable-disease counts (and rates) per district and ISO week, decided, protected and audited."""
        request = notifiable.parse(params, self.diseases, today or utcnow().date())
        canonical = orjson.dumps(request.canonical(), option=orjson.OPT_SORT_KEYS)
        digest = crypto.sha256_hex(canonical)
        details: dict[str, Any] = {"action": "analytics_query", "named": notifiable.NAME, "query_digest": digest}
        types = sorted({t for d in request.diseases for t in self.diseases[d].types})
        decision = self._decide(caller, authority, details, types=types,
                                shape={"feasibility": False, "grouped": True, "named": notifiable.NAME})
        research = authority.purpose == "HRESCH" or caller.org_type == "research"
        self.store.update(wait_s=self.update_wait_s)
        version = self.store.version()
        key = crypto.sha256_hex(b"|".join([canonical, b"research" if research else b"all", version.encode()]))
        body = self.ledger.cached(key)
        cached = body is not None
        if body is None:
            counted = [(did, self._count(request.query(self.diseases[did]), research)) for did in request.diseases]
            sets = [m for _, (_, groups, total) in counted for m in [*groups.values(), total]]
            body, cached = self.ledger.release(key, version, digest, sets, self.control.settings.threshold,
                                               lambda near, _budget: self._notifiable(request, counted, near))
        event = self.gate.record(
            kind="disclosure", caller=caller, authority=authority, patient=None, decision=decision, body=body,
            details={**details, "query": request.canonical(), "cached": cached,
                     "engine": self.engine.name if self.engine else None, "research_opt_outs_excluded": research})
        return Answer(body=body, event_id=event.event_id, cached=cached)

    def _notifiable(self, request: notifiable.Request,
                    counted: list[tuple[str, tuple[list[str], dict[Key, Members], Members]]], near: Ledger) -> Release:
        """Each disease's cells through disclosure control, in turn, against ``near`` and the ones before it."""
        diseases, sets = [], []
        for did, (by, groups, total) in counted:
            released = self.control.protect(by, groups, total, near)  # records its sets in ``near`` as it goes
            shown = released.as_json()
            diseases.append({**self.diseases[did].about(), "total": shown["total"],
                             "rows": rates.add_rates(shown["rows"], self.populations)})
            sets.extend(released_sets(released, groups, total))
        doc = {"named": notifiable.NAME, "measure": "patients", "since": request.since.isoformat(),
               "until": request.until.isoformat(), "weeks": request.weeks(), "districts": request.districts,
               "diseases": diseases, "disclosure_control": self._controls(), "population": self.populations.about()}
        return Release(orjson.dumps(doc), sets)

    def _noised(self, total: Members, spend: Spend, budget: Budget | None) -> Release:
        """A differentially private total: OpenDP's noise, then small counts withheld and the rest rounded.

        Nothing of it goes to the disclosure ledger: no exact set is released.
        """
        assert budget is not None
        noisy = noisy_count(len(total), spend.terms.epsilon)
        settings = self.control.settings
        count = None if noisy <= settings.threshold else round_to(noisy, settings.rounding)
        doc = {"measure": "patients", "by": [], "rows": [],
               "total": {"count": count, "suppressed": None if count is not None else PRIMARY},
               "disclosure_control": self._controls(),
               "differential_privacy": {"mechanism": MECHANISM, "epsilon": spend.terms.epsilon,
                                        "budget": budget.total / MICRO, "spent": budget.spent / MICRO,
                                        "remaining": budget.remaining / MICRO}}
        return Release(orjson.dumps(doc), [])
