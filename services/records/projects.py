"""Data-use projects: a research organisation's governed licence for bulk, de-identified export.

A research organisation applies (title, stated purpose, the ethics approval its
board signed, and the terms: resource types, optionally the elements of each,
de-identification level, cohort criteria, expiry); the regulator approves,
suspends or revokes. Each step is asked of the policy (``project_apply``, ``project_review``) and written down by
the disclosure gate as an audit event of kind ``project`` before the change is
committed, so the trail says who changed a licence, when and under which rule.
What an export under the project may take is the policy's ``export`` decision
(``policies/healthgov/access/projects.rego``), never decided here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlmodel import Session

from services.adapters.auth import Caller
from services.adapters.documents import ETHICS_APPROVAL, DocumentRefused, DocumentVerifier
from services.adapters.policy import PolicyClient
from services.adapters.sql import UnitOfWork
from services.contracts import errors
from services.contracts.events import rfc3339, utcnow
from services.contracts.ids import is_fhir_id
from services.contracts.policy import Decision, PolicyInput, PolicyResource
from services.records.access import Authority
from services.records.analytics.privacy import parse_terms
from services.records.cohort import Cohort, CohortInvalid
from services.records.gate import Gate
from services.records.store import Project

LEVELS = ("pseudonymize", "safe_harbor")
REVIEWS = {"approve": "approved", "suspend": "suspended", "revoke": "revoked"}
# Which review may follow which state: a revoked project is over for good.
REVIEW_FROM = {"approve": {"applied", "suspended"}, "suspend": {"approved"}, "revoke": {"applied", "approved",
                                                                                      "suspended"}}
MAX_TEXT = 2000
ELEMENT = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")  # a root element name (a choice element by its base: "value")


def utc(moment: datetime) -> datetime:
    """A stored instant as UTC (SQLite hands timestamps back without their zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def facts(p: Project) -> dict[str, Any]:
    """The project as the policy sees it (no free text: the policy needs none)."""
    return {"id": p.id, "org": p.org, "status": p.status, "purpose": p.purpose, "types": orjson.loads(p.types),
            "elements": orjson.loads(p.elements or "{}"), "deidentify": p.deidentify,
            "expires": rfc3339(utc(p.expires_at))}


def public(p: Project) -> dict[str, Any]:
    """What the applicant and the regulator read back."""
    return {**facts(p), "title": p.title, "description": p.description, "cohort": orjson.loads(p.cohort),
            "privacy": orjson.loads(p.privacy) if p.privacy else None,
            "ethics_approval": p.approval_id, "created": rfc3339(utc(p.created_at))}


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise errors.Invalid(f"'{name}' must be a non-empty string of at most {MAX_TEXT} characters")
    return value.strip()


def _elements(raw: Any, types: list[str]) -> dict[str, list[str]]:
    """The agreement's element terms: per type it covers, the root elements it allows (none listed: all that
    de-identification leaves). ``_elements`` in an export can only narrow these."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
            t in types and isinstance(names, list) and names and all(
                isinstance(n, str) and ELEMENT.match(n) for n in names) for t, names in raw.items()):
        raise errors.Invalid("'elements' must map types the agreement covers to non-empty lists of root element "
                             "names, e.g. {\"Condition\": [\"code\", \"onset\"]}")
    return {t: sorted(set(names)) for t, names in sorted(raw.items())}


def _terms(doc: dict[str, Any]) -> tuple[list[str], str, dict[str, Any], datetime]:
    """The agreement's terms from the application, or a 400 naming what is wrong."""
    types = doc.get("types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t.isalpha() for t in types):
        raise errors.Invalid("'types' must be a non-empty list of FHIR resource type names")
    level = doc.get("deidentify")
    if level not in LEVELS:
        raise errors.Invalid(f"'deidentify' must be one of {list(LEVELS)}")
    cohort = doc.get("cohort", {})
    try:
        Cohort.parse(cohort)
    except CohortInvalid as exc:
        raise errors.Invalid(str(exc)) from exc
    raw = doc.get("expires")
    try:
        expires = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        if expires is None or expires.tzinfo is None:
            raise ValueError("no offset")
        expires = expires.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 9999 pushed past the calendar by its offset
        raise errors.Invalid("'expires' must be an RFC 3339 instant with its offset") from exc
    return sorted(set(types)), level, cohort, expires


@dataclass
class ProjectRegistry:
    engine: Any
    policy: PolicyClient
    gate: Gate
    verifier: DocumentVerifier

    def ask(self, caller: Caller, authority: Authority, action: str, project: dict[str, Any],
            requested: list[str] | None = None, elements: list[str] | None = None) -> Decision:
        """The policy's decision on ``action`` about ``project``; a refusal is audited and raised."""
        pin = PolicyInput(subject=caller.subject(None), action=action,  # type: ignore[arg-type]
                          purpose=authority.purpose, resource=PolicyResource(patient=None, type="Group"),
                          project=project, requested_types=requested, requested_elements=elements,
                          now=rfc3339(utcnow()))
        decision = self.policy.decide(pin)
        if not decision.allow:
            details: dict[str, Any] = {"action": action, "project": project.get("id")}
            if elements:
                details["elements"] = elements[:100]
            raise self.gate.refuse(caller, authority, None, decision, details=details)
        return decision

    def approval_facts(self, p: Project) -> dict[str, Any]:
        """The project's ethics approval, verified now (its expiry and the board's standing count today)."""
        return self.verifier.verify(ETHICS_APPROVAL, p.approval, org=p.org, purpose=p.purpose)

    def apply(self, caller: Caller, authority: Authority, doc: Any, approval: str | None) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise errors.Invalid("an application is a JSON object")
        title, description = _text(doc, "title"), _text(doc, "purpose")
        types, level, cohort, expires = _terms(doc)
        privacy = parse_terms(doc.get("privacy"))  # optional differential privacy of its analytic answers
        elements = _elements(doc.get("elements"), types)
        if not approval:
            raise errors.Invalid("an application carries its signed ethics approval (X-Ethics-Approval)")
        try:
            verified = self.verifier.verify(ETHICS_APPROVAL, approval, org=caller.org, purpose="HRESCH")
        except DocumentRefused as exc:
            raise self.gate.refuse(caller, authority, None, Decision(allow=False, reasons=[exc.reason]),
                                   details={"action": "project_apply", "refused": exc.kind.name}) from exc
        p = Project(id=f"prj-{uuid.uuid4().hex[:20]}", org=caller.org, title=title, description=description,
                    types=orjson.dumps(types).decode(), deidentify=level, cohort=orjson.dumps(cohort).decode(),
                    privacy=orjson.dumps(privacy.as_json()).decode() if privacy else None,
                    elements=orjson.dumps(elements).decode(), expires_at=expires, approval=approval,
                    approval_id=str(verified["id"]))
        decision = self.ask(caller, authority, "project_apply", facts(p))
        with UnitOfWork(self.engine) as uow:
            uow.session.add(p)
            self.gate.record(kind="project", caller=caller, authority=authority, patient=None, decision=decision,
                             details={"action": "apply", "project": p.id, "status": p.status, "types": types,
                                      "elements": elements, "deidentify": level, "ethics_approval": p.approval_id},
                             session=uow.session)
            uow.commit()
            return public(p)

    def review(self, caller: Caller, authority: Authority, project_id: str, step: str) -> dict[str, Any]:
        if step not in REVIEWS:
            raise errors.NotFound(f"no such review step: {step}")
        with UnitOfWork(self.engine) as uow:
            p = self._get(uow.session, project_id)
            decision = self.ask(caller, authority, "project_review", facts(p))
            if p.status not in REVIEW_FROM[step]:
                raise errors.Conflict(f"a project that is {p.status} cannot be {REVIEWS[step]}")
            before, p.status, p.updated_at = p.status, REVIEWS[step], datetime.now(UTC)
            uow.session.add(p)
            self.gate.record(kind="project", caller=caller, authority=authority, patient=None, decision=decision,
                             details={"action": step, "project": p.id, "from": before, "status": p.status},
                             session=uow.session)
            uow.commit()
            return public(p)

    def read(self, caller: Caller, project_id: str) -> dict[str, Any]:
        """The applicant organisation and the regulator read a project; to anyone else it does not exist."""
        with Session(self.engine) as s:
            p = self._get(s, project_id)
            if caller.org != p.org and caller.org_type != "regulator":
                raise errors.NotFound("no such project")
            return public(p)

    def get(self, project_id: str) -> Project:
        with Session(self.engine) as s:
            return self._get(s, project_id)

    @staticmethod
    def _get(s: Session, project_id: str) -> Project:
        p = s.get(Project, project_id) if is_fhir_id(project_id) else None
        if p is None:
            raise errors.NotFound("no such project")
        return p
