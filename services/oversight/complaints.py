"""Complaints: a patient reports one access in their trail; the regulator answers (docs/architecture.md §14).

A complaint names one audit event and says why, in the patient's words. It is
an accountable act on both sides, so it follows "decide, audit, release"
(§5): OPA decides (``complaint_file``: a patient, about an event of their own;
``complaint_answer``: the regulator), the act is an AuditEvent of kind
``complaint`` published with acks=all before the queue changes, and a refusal
is a denial event.

Whose event it is: oversight's copy of the trail (``oversight_event``) keeps
each event's patient pseudonym, and the patient's token carries the patient;
oversight makes the pseudonym with the platform's pseudonym key and the
policy compares the two. An event that does not exist and an event of another
patient are refused alike (no oracle for other people's events).

The patient's reason and the regulator's answer are free text, which may
speak of health: they are sealed (AES-256-GCM, ``PlatformKeys.oversight_key``,
bound to the complaint id) and never enter the audit log, which keeps their
SHA-256 only: the log is forever, a complaint's words need not be.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from services.adapters import crypto
from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller, purpose_of_use
from services.adapters.policy import PolicyClient
from services.contracts import errors
from services.contracts.events import AuditDecision, AuditEvent, ResourceRef, rfc3339
from services.contracts.policy import PolicyInput, PolicyResource
from services.oversight import store

MAX_TEXT = 2_000
ComplaintState = Literal["open", "answered", "all"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Complaints:
    engine: Engine
    policy: PolicyClient
    log: AuditLog
    pseudonym_key: bytes
    key: bytes

    def _seal(self, complaint_id: str, field: str, text: str) -> bytes:
        aad = f"healthgov.complaint.v1|{complaint_id}|{field}".encode()
        return crypto.DataKey(self.key).encrypt(text.encode(), aad)

    def _open(self, complaint_id: str, field: str, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        aad = f"healthgov.complaint.v1|{complaint_id}|{field}".encode()
        return crypto.DataKey(self.key).decrypt(bytes(sealed), aad).decode()

    def _decide(self, caller: Caller, action: str, patient: str | None, pseudonym: str | None,
                hospital: str | None, now: datetime, about: str) -> AuditDecision:
        """Ask OPA; a refusal is a denial event, then a 403 naming the reasons."""
        decision = self.policy.decide(PolicyInput(
            subject=caller.subject(pseudonym), action=action,  # type: ignore[arg-type]
            purpose=purpose_of_use(caller, default="PATRQT" if caller.org_type == "patient" else "HCOMPL"),
            resource=PolicyResource(patient=patient, type="AuditEvent", hospital=hospital), now=rfc3339(now)))
        audit_decision = AuditDecision(allow=decision.allow, reasons=decision.reasons,
                                       policy_version=decision.policy_version)
        if not decision.allow:
            self.log.publish(AuditEvent(kind="denial", accessor=caller.accessor(),
                                        purpose=caller.purpose or "PATRQT", patient=patient, decision=audit_decision,
                                        details={"action": action, "about": about}))
            raise errors.Forbidden("complaint refused: " + ", ".join(decision.reasons), reasons=decision.reasons)
        return audit_decision

    def file(self, caller: Caller, event_id: str, reason: str, now: datetime) -> dict[str, Any]:
        """The patient reports one access of their own trail; the new complaint, open."""
        pseudonym = crypto.pseudonym(self.pseudonym_key, caller.patient) if caller.patient else None
        with self.engine.connect() as conn:
            ev = conn.execute(select(store.event.c.patient, store.event.c.accessor_org, store.event.c.kind)
                              .where(store.event.c.event_id == event_id)).first()
        # the policy first: whose event it is decides, and an unknown one is nobody's
        decision = self._decide(caller, "complaint_file", ev.patient if ev else None, pseudonym,
                                ev.accessor_org if ev else None, now, event_id)
        if ev is None:  # unreachable when the policy compares patients; kept as the last line of defence
            raise errors.Forbidden("complaint refused: not_own_audit_events", reasons=["not_own_audit_events"])
        complaint_id = str(uuid.uuid4())
        event = AuditEvent(kind="complaint", accessor=caller.accessor(), purpose=caller.purpose or "PATRQT",
                           patient=ev.patient, resources=[ResourceRef(type="AuditEvent", id=event_id)],
                           decision=decision,
                           details={"complaint": complaint_id, "state": "open", "about_event": event_id,
                                    "hospital": ev.accessor_org, "reason_sha256": _digest(reason)})
        self.log.publish(event)  # acks=all: the complaint is in the log before the queue shows it
        with self.engine.begin() as conn:
            conn.execute(store.complaint.insert().values(
                complaint_id=complaint_id, patient=ev.patient, event_id=event_id, hospital=ev.accessor_org,
                event_kind=ev.kind, reason=self._seal(complaint_id, "reason", reason), state="open",
                filed_at=now, filed_event_id=event.event_id))
        return self.get(complaint_id)

    def answer(self, caller: Caller, complaint_id: str, text: str, now: datetime) -> dict[str, Any]:
        """The regulator answers a complaint (OPA ``complaint_answer``); 404 unknown, 409 already answered."""
        row = self._row(complaint_id)
        decision = self._decide(caller, "complaint_answer", row.patient if row else None, None,
                                row.hospital if row else None, now, complaint_id)
        if row is None:
            raise errors.NotFound("no such complaint")
        if row.state != "open":
            raise errors.Conflict("this complaint was already answered")
        event = AuditEvent(kind="complaint", accessor=caller.accessor(), purpose="HCOMPL", patient=row.patient,
                           resources=[ResourceRef(type="AuditEvent", id=row.event_id)], decision=decision,
                           details={"complaint": complaint_id, "state": "answered", "about_event": row.event_id,
                                    "hospital": row.hospital, "answer_sha256": _digest(text)})
        self.log.publish(event)
        with self.engine.begin() as conn:
            conn.execute(store.complaint.update().where(store.complaint.c.complaint_id == complaint_id,
                                                        store.complaint.c.state == "open")
                         .values(state="answered", answer=self._seal(complaint_id, "answer", text),
                                 answered_at=now, answerer=f"{caller.org}/{caller.id}",
                                 answered_event_id=event.event_id))
        return self.get(complaint_id)

    def _row(self, complaint_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(store.complaint).where(store.complaint.c.complaint_id == complaint_id)).first()

    def _json(self, row: Any) -> dict[str, Any]:
        return {"id": row.complaint_id, "event_id": row.event_id, "hospital": row.hospital,
                "event_kind": row.event_kind, "state": row.state,
                "reason": self._open(row.complaint_id, "reason", row.reason),
                "answer": self._open(row.complaint_id, "answer", row.answer),
                "filed_at": rfc3339(row.filed_at), "answered_at": rfc3339(row.answered_at) if row.answered_at else None,
                "patient": row.patient}

    def get(self, complaint_id: str) -> dict[str, Any]:
        row = self._row(complaint_id)
        if row is None:
            raise errors.NotFound("no such complaint")
        return self._json(row)

    def mine(self, caller: Caller) -> list[dict[str, Any]]:
        """The calling patient's own complaints, newest first: pinned to the token's patient, nobody else's.

        Like records' ``/notices``, this reads nothing but what the patient wrote and what was answered to them,
        so the token's patient claim is the whole rule.
        """
        if caller.org_type != "patient" or not caller.patient:
            raise errors.Forbidden("a patient's complaints are read by that patient")
        pseudonym = crypto.pseudonym(self.pseudonym_key, caller.patient)
        with self.engine.connect() as conn:
            rows = conn.execute(select(store.complaint).where(store.complaint.c.patient == pseudonym)
                                .order_by(store.complaint.c.filed_at.desc()).limit(200)).all()
        return [{k: v for k, v in self._json(r).items() if k != "patient"} for r in rows]

    def queue(self, state: ComplaintState, page: int, per_page: int) -> dict[str, Any]:
        """The regulator's queue: open ones oldest first (who waits longest is answered first), else newest."""
        c = store.complaint
        where = [] if state == "all" else [c.c.state == state]
        query = select(c).where(*where).order_by(c.c.filed_at.asc() if state == "open" else c.c.filed_at.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.offset((page - 1) * per_page).limit(per_page)).all()
            total = conn.execute(select(func.count()).select_from(c).where(*where)).scalar_one()
        return {"complaints": [self._json(r) for r in rows], "total": total, "page": page,
                "pages": max(1, -(-total // per_page))}
