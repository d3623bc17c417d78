"""What every records use case shares: the OPA input, the facts it carries, the audit event.

The records service never decides anything itself. It gathers the facts the
policy needs about a patient (the care relationship, the patient's consents),
fills the input of docs/architecture.md §5 and asks OPA through the policy adapter;
what happened is written down by the disclosure gate (``records/gate.py``) as an
AuditEvent (docs/architecture.md §6). Rules live in ``policies/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from services.adapters.auth import Caller
from services.adapters.policy import PolicyClient
from services.contracts import errors
from services.contracts.envelope import DIRECTORY_KEY
from services.contracts.events import rfc3339, utcnow
from services.contracts.policy import Decision, Legal, PolicyInput, PolicyResource, Relationship, Subject
from services.records import consents
from services.records.store import KeyRow, latest_consents, patient_state
from services.records.vault import Vault

__all__ = ["DIRECTORY_KEY", "Asker", "Authority", "Denied", "Facts", "NotFound", "load_facts"]


@dataclass(frozen=True)
class Authority:
    """Why the caller asks: purpose of use and any legal or emergency authority (docs/architecture.md §5)."""

    purpose: str = ""
    legal: Legal = field(default_factory=Legal)
    break_glass: dict[str, Any] | None = None
    request_id: str | None = None

    def legal_refs(self) -> dict[str, Any]:
        """The ids of the warrant or ethics approval, for the audit event."""
        return {k: v.get("id") for k, v in self.legal.model_dump().items() if v}


@dataclass
class Facts:
    """What the policy needs to know about one patient, read from the vault."""

    care: bool = False
    consents: list[dict[str, Any]] = field(default_factory=list)
    key: KeyRow | None = None  # the patient's key row: decrypting their rows needs no second look-up
    unknown: str | None = None  # the identifier asked for names nobody (or several): why, for a 404

    @property
    def erased(self) -> bool:
        """The patient's data key was shredded (their consents are unreadable, so not listed)."""
        return self.key is not None and self.key.wrapped is None


def load_facts(session: Session, vault: Vault, patient: str | None, org: str,
               with_consents: bool = True, state: tuple[KeyRow | None, bool, bool] | None = None) -> Facts:
    """The care relationship of ``org`` with the patient, and the patient's consents.

    Every consent's newest version goes in, withdrawn ones too, so that a
    denial can say ``consent_revoked`` rather than ``no_consent``. After
    erasure the consents are unreadable and left out; callers that do not
    need them pass ``with_consents=False``. A caller that already read the
    patient's ``state`` (``store.patient_state``) passes it in.
    """
    if not patient or patient == DIRECTORY_KEY:
        return Facts()
    key, care, has_consents = state if state is not None else patient_state(session, patient, org)
    erased = key is not None and key.wrapped is None
    wanted = with_consents and has_consents and not erased
    docs = [c for row in latest_consents(session, patient)
            for c in consents.to_policy(vault.open_consent(session, row, key))] if wanted else []
    return Facts(care=care, consents=docs, key=key)


@dataclass
class Asker:
    """Builds the input of docs/architecture.md §5 for one caller and asks OPA, caching identical questions."""

    policy: PolicyClient
    vault: Vault
    caller: Caller
    action: str
    authority: Authority
    patient: str | None
    facts: Facts
    now: str = field(default_factory=lambda: rfc3339(utcnow()))
    _cache: dict[tuple[str, tuple[str, ...], str | None], Decision] = field(default_factory=dict)

    def subject(self) -> Subject:
        c = self.caller
        return c.subject(self.vault.pseudonym(c.patient) if c.patient else None)

    def input(self, rtype: str, labels: list[str], hospital: str | None) -> PolicyInput:
        patient = None if self.patient == DIRECTORY_KEY else self.patient
        return PolicyInput(
            subject=self.subject(), action=self.action, purpose=self.authority.purpose,  # type: ignore[arg-type]
            resource=PolicyResource(patient=patient, type=rtype, labels=sorted(labels), hospital=hospital),
            relationship=Relationship(care=self.facts.care), consents=self.facts.consents,
            legal=self.legal(), break_glass=self.authority.break_glass, now=self.now)

    def legal(self) -> Legal:
        """The legal authority as the policy compares it: a warrant names the patient by pseudonym.

        A court names a person by their record id; the policy sees only
        pseudonyms, so the warrant's ``patient`` is translated the same way
        the resource's is. Nothing else in it changes.
        """
        warrant = self.authority.legal.warrant
        if not warrant or not isinstance(warrant.get("patient"), str):
            return self.authority.legal
        named = {**warrant, "patient": self.vault.pseudonym(warrant["patient"])}
        return self.authority.legal.model_copy(update={"warrant": named})

    def decide(self, rtype: str, labels: list[str], hospital: str | None) -> Decision:
        key = (rtype, tuple(sorted(labels)), hospital)
        if key not in self._cache:
            self._cache[key] = self.policy.decide(self.input(rtype, labels, hospital))
        return self._cache[key]

    def prefetch(self, questions: Iterable[tuple[str, list[str], str | None]]) -> None:
        """Ask every (type, labels, hospital) not decided yet in one evaluation; ``decide`` then answers.

        A whole record holds a dozen kinds of resource from several hospitals:
        one round trip to OPA instead of one per kind.
        """
        asked = dict.fromkeys((rtype, tuple(sorted(labels)), hospital) for rtype, labels, hospital in questions)
        todo = [key for key in asked if key not in self._cache]
        if len(todo) < 2:
            return
        inputs = [self.input(rtype, list(labels), hospital) for rtype, labels, hospital in todo]
        answers = self.policy.decide_each(inputs[0], [i.resource for i in inputs])
        self._cache.update(zip(todo, answers, strict=True))


class Denied(errors.Forbidden):
    """The policy said no (or nothing could be released); the denial is on the audit log."""

    def __init__(self, reasons: list[str], event_id: str) -> None:
        super().__init__("access denied: " + ", ".join(reasons), reasons=reasons,
                         headers={errors.EVENT_HEADER: event_id})
        self.event_id = event_id


class NotFound(errors.NotFound):
    """No such resource, consent or patient identifier."""
