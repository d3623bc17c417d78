"""The patient notice outbox: what the platform owes a patient to tell them.

A notice is written from the audit event of the act it reports (by the
disclosure gate, ``records/gate.py``), in the same transaction as the act
where there is one. The portal lists a patient's notices; delivery by e-mail
or SMS can read the same table later. Which acts warrant a notice is the
policy's word (the ``notify_patient`` and ``notify_after`` obligations), plus
two the platform always owes: a hospital's first care relationship with the
patient and any break-glass access, as Australia's My Health Record does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from services.adapters.sql import UnitOfWork
from services.contracts.events import AuditEvent
from services.contracts.policy import Decision
from services.contracts.vocabulary import STATE_ORG_TYPES
from services.records.care import instant
from services.records.store import Notice

NOTICE_KINDS = ("first_access", "break_glass", "state_access", "on_behalf")


def notice_for(event: AuditEvent, decision: Decision | None) -> Notice | None:
    """The notice an event owes its patient, or None.

    Only allowed acts about a patient are told (a refusal released nothing);
    a warrant's ``notify_after`` defers the notice, never cancels it.
    """
    if not event.patient or event.kind == "denial":
        return None
    obligations = decision.obligations if decision is not None else None
    kind: str | None = None
    if event.kind == "care_relationship" and event.details.get("new"):
        kind = "first_access"
    elif event.kind == "break_glass":
        kind = "break_glass"
    elif event.accessor.org_type in STATE_ORG_TYPES and event.kind == "disclosure":
        kind = "state_access"
    elif obligations is not None and obligations.notify_patient:
        kind = "on_behalf" if event.accessor.org_type == "hospital" else "state_access"
    if kind is None:
        return None
    created = instant(event.occurred_at) or datetime.now(UTC)
    deferred = instant(obligations.notify_after) if obligations is not None else None
    about = event.details.get("to")
    return Notice(patient=event.patient, kind=kind, org=event.accessor.org, org_type=event.accessor.org_type,
                  about_org=about if isinstance(about, str) else None, purpose=event.purpose,
                  event_id=event.event_id, created_at=created,
                  visible_from=max(created, deferred) if deferred else created)


class NoticeOutbox:
    """Writes notices (in the caller's transaction when given one) and lists a patient's visible ones."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def add(self, notices: list[Notice], session: Session | None = None) -> None:
        if not notices:
            return
        if session is not None:
            known = set(session.exec(select(Notice.event_id).where(
                Notice.event_id.in_([n.event_id for n in notices]))).all())  # type: ignore[attr-defined]
            session.add_all(n for n in notices if n.event_id not in known)
            return
        with UnitOfWork(self.engine) as uow:
            self.add(notices, uow.session)
            uow.commit()

    def visible(self, patient: str, limit: int = 100) -> list[Notice]:
        """The patient's notices whose time has come, newest first."""
        now = datetime.now(UTC)
        with Session(self.engine) as s:
            query = (select(Notice).where(Notice.patient == patient, Notice.visible_from <= now)
                     .order_by(Notice.pk.desc()).limit(limit))  # type: ignore[union-attr]
            return list(s.exec(query).all())
