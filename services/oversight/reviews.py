"""Judging a break-glass access: asked of OPA, written to the audit log, then shown in the queue.

A review is an accountable act like any disclosure, so it follows the same
rule (docs/architecture.md §5, "decide, audit, release"): OPA decides whether
the caller may judge (``oversight_review``: the regulator); the verdict is an
AuditEvent of kind ``break_glass_review`` published with acks=all through
``adapters/audit_log.py``, the one producer of the audit topic (records'
disclosure gate is a layer over the same adapter, for records' own use
cases); only then does the queue change. The consumer applies the same event
when it comes back from the topic, so the queue is what the log says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.engine import Engine

from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller, purpose_of_use
from services.adapters.policy import PolicyClient
from services.contracts import errors
from services.contracts.events import AuditDecision, AuditEvent, ResourceRef, rfc3339
from services.contracts.policy import PolicyInput, PolicyResource
from services.oversight import store
from services.oversight.queries import review_json, review_row

Verdict = Literal["justified", "not_justified"]
MAX_NOTE = 2_000


@dataclass
class Reviews:
    engine: Engine
    policy: PolicyClient
    log: AuditLog

    def decide(self, caller: Caller, now: datetime, *, hospital: str | None, patient: str | None = None,
               accessor: str | None = None) -> Any:
        """OPA ``oversight_review``: may ``caller`` judge the accesses of ``hospital`` (``accessor``'s, if known)?

        The one rule for both the verdict and which review queue a caller sees.
        """
        return self.policy.decide(PolicyInput(
            subject=caller.subject(), action="oversight_review", purpose=purpose_of_use(caller, default="HCOMPL"),
            resource=PolicyResource(patient=patient, type="AuditEvent", hospital=hospital, accessor=accessor),
            now=rfc3339(now)))

    def judge(self, caller: Caller, event_id: str, verdict: Verdict, note: str, now: datetime) -> dict[str, Any]:
        """Record the verdict on one break-glass access; 403 for who may not judge, 404 if there is no such
        access, 409 if it was judged already."""
        row = review_row(self.engine, event_id)
        # the policy first: who may not judge learns nothing, not even whether there is such an access
        decision = self.decide(caller, now, hospital=row.hospital if row else None,
                               patient=row.patient if row else None, accessor=row.accessor_id if row else None)
        audit_decision = AuditDecision(allow=decision.allow, reasons=decision.reasons,
                                       policy_version=decision.policy_version)
        if not decision.allow:
            self.log.publish(AuditEvent(kind="denial", accessor=caller.accessor(), purpose="HCOMPL",
                                        patient=row.patient if row else None, decision=audit_decision,
                                        details={"action": "oversight_review", "reviewed_event": event_id}))
            raise errors.Forbidden("review denied: " + ", ".join(decision.reasons), reasons=decision.reasons)
        if row is None:
            raise errors.NotFound("no break-glass access with that event id")
        if row.state != "open":
            raise errors.Conflict("this break-glass access was already reviewed")
        event = AuditEvent(kind="break_glass_review", accessor=caller.accessor(), purpose="HCOMPL",
                           patient=row.patient, resources=[ResourceRef(type="AuditEvent", id=event_id)],
                           decision=audit_decision,
                           details={"reviewed_event": event_id, "verdict": verdict, "note": note,
                                    "hospital": row.hospital, "accessor": row.accessor_id})
        self.log.publish(event)  # acks=all: the verdict is in the log before the queue shows it
        with self.engine.begin() as conn:
            conn.execute(store.review.update().where(store.review.c.event_id == event_id,
                                                     store.review.c.state == "open")
                         .values(state=verdict, note=note, reviewer=f"{caller.org}/{caller.id}",
                                 reviewed_at=now, review_event_id=event.event_id))
        updated = review_row(self.engine, event_id)
        return review_json(updated, now)
