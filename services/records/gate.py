"""The disclosure gate: decide, audit, then release; the one way records discloses or refuses.

Every records path that discloses data or refuses to (reads, searches,
``$everything``, history, consents, referrals, erasure, care relationships)
goes through a ``Gate``:

- ``check`` asks the policy and, on a refusal, publishes the denial event and
  raises ``Denied`` (the block each use case used to write out by hand);
- ``refuse`` publishes a denial decided elsewhere (a caller whose asserted
  authority does not hold, a single resource withheld by its labels);
- ``record`` publishes the event of an allowed act, with the messages it
  accounts for, and writes the notice the act owes the patient.

Publishing is acks=all (``AuditLog``): the gate returns only once the event
is durable, so a caller that releases after the gate returned has its
audit event. Use cases depend on the gate, never on the audit topic, which
keeps "no disclosure without its audit event" true by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlmodel import Session

from services.adapters import crypto
from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller
from services.adapters.kafka import Message
from services.contracts.events import AuditDecision, AuditEvent, AuditKind, ResourceRef
from services.contracts.policy import Decision
from services.records.access import DIRECTORY_KEY, Asker, Authority, Denied
from services.records.notices import notice_for
from services.records.store import Notice


class Outbox(Protocol):
    """Where notices go (``notices.NoticeOutbox``, or a list in unit tests)."""

    def add(self, notices: list[Notice], session: Session | None = None) -> None: ...


def audit_event(*, kind: AuditKind, caller: Caller, authority: Authority, patient: str | None,
                decision: Decision | None, resources: list[ResourceRef] | None = None,
                body: bytes | None = None, details: dict[str, Any] | None = None) -> AuditEvent:
    """One accountable act; ``data_digest`` is the SHA-256 of exactly the bytes released."""
    extra = dict(details or {})
    if authority.break_glass:
        extra["break_glass_reason"] = authority.break_glass.get("reason")
    return AuditEvent(
        kind=kind, accessor=caller.accessor(), purpose=authority.purpose or None,
        patient=None if patient == DIRECTORY_KEY else patient, resources=resources or [],
        decision=None if decision is None else AuditDecision(
            allow=decision.allow, reasons=decision.reasons,
            obligations=decision.obligations.model_dump(), policy_version=decision.policy_version),
        legal=authority.legal_refs(), request_id=authority.request_id,
        data_digest=crypto.sha256_hex(body) if body is not None else None, details=extra)


@dataclass
class Gate:
    log: AuditLog
    outbox: Outbox | None = None

    def check(self, asker: Asker, rtype: str, labels: list[str], hospital: str | None, *,
              details: dict[str, Any] | None = None) -> Decision:
        """The policy's decision for this question; a refusal is audited and raised as ``Denied``."""
        decision = asker.decide(rtype, labels, hospital)
        if not decision.allow:
            raise self.refuse(asker.caller, asker.authority, asker.patient, decision, details=details)
        return decision

    def refuse(self, caller: Caller, authority: Authority, patient: str | None, decision: Decision, *,
               reasons: list[str] | None = None, details: dict[str, Any] | None = None) -> Denied:
        """Publish the denial; return the exception for the caller to raise."""
        if reasons is not None:
            decision = Decision(allow=False, reasons=reasons, policy_version=decision.policy_version,
                                obligations=decision.obligations)
        event = audit_event(kind="denial", caller=caller, authority=authority, patient=patient,
                            decision=decision, details=details)
        self.log.publish(event)
        return Denied(decision.reasons, event.event_id)

    def record(self, *, kind: AuditKind, caller: Caller, authority: Authority, patient: str | None,
               decision: Decision | None, resources: list[ResourceRef] | None = None, body: bytes | None = None,
               details: dict[str, Any] | None = None, together: Sequence[Message] = (),
               session: Session | None = None) -> AuditEvent:
        """Publish the event of an allowed act (with ``together``), then owe the patient its notice."""
        event = audit_event(kind=kind, caller=caller, authority=authority, patient=patient, decision=decision,
                            resources=resources, body=body, details=details)
        return self.record_event(event, decision, together=together, session=session)

    def record_all(self, events: Sequence[AuditEvent], decision: Decision | None, *,
                   session: Session | None = None) -> list[AuditEvent]:
        """Publish the events of many allowed acts in one transaction, then owe each patient its notice.

        All or none is logged: if the broker refuses, nothing was published and
        no notice is written, so the caller must release nothing.
        """
        if not events:
            return []
        self.log.publish_all(events)
        notices = [n for n in (notice_for(e, decision) for e in events) if n is not None]
        if notices and self.outbox is not None:
            self.outbox.add(notices, session)
        return list(events)

    def record_event(self, event: AuditEvent, decision: Decision | None = None, *,
                     together: Sequence[Message] = (), session: Session | None = None) -> AuditEvent:
        """Publish a prepared event (e.g. one the ingest consumer builds for a hospital)."""
        self.log.publish(event, together)
        notice = notice_for(event, decision)
        if notice is not None and self.outbox is not None:
            self.outbox.add([notice], session)
        return event
