"""The consent registry: patients (and hospitals on their behalf) grant and withdraw.

A change runs in this order:
1. the FHIR Consent is validated (``InvalidConsent`` → 400, nothing kept);
2. OPA decides ``consent_write`` for this caller and patient (deny → 403 and
   an audited denial);
3. the change, sealed under the patient's data key, goes to
   ``consent.changes.v1`` together with its AuditEvent of kind ``consent``,
   both acks=all (broker down → 503, nothing changed);
4. the registry's consumer applies the change (idempotently, by change id),
   and the caller gets the stored Consent once it is in force.

The version and the stored bytes are fixed in step 3, so the response body is
exactly what the audit event's ``data_digest`` covers. The consumer is the
only writer of ``records_consent``: changes of one patient are applied in
order, from one partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import uuid6
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.auth import Caller
from services.adapters.kafka import Message
from services.adapters.policy import PolicyClient
from services.adapters.sql import UnitOfWork
from services.contracts import errors
from services.contracts.events import ConsentChange, ResourceRef, rfc3339, utcnow
from services.contracts.topics import CONSENT_CHANGES
from services.records import consents
from services.records.access import Asker, Authority, NotFound, load_facts
from services.records.gate import Gate, audit_event
from services.records.store import ConsentRow, consent_versions
from services.records.vault import Shredded, Vault

APPLY_POLL_S = 0.02


class Conflict(errors.Conflict):
    """Another change to the same consent won the race; the caller may retry."""


@dataclass
class ConsentResult:
    """The Consent as stored after the change, and the audit event that recorded it."""

    body: bytes
    consent_id: str
    version: int
    event_id: str
    applied: bool  # False: durable on the broker but not yet applied when we stopped waiting


@dataclass
class ConsentRegistry:
    engine: Any
    vault: Vault
    policy: PolicyClient
    gate: Gate
    apply_timeout_s: float = 10.0

    def create(self, caller: Caller, doc: Any, authority: Authority) -> ConsentResult:
        """Record a consent. A permit a hospital records on the patient's behalf waits for the patient.

        An opt-out (``deny``) takes effect at once, whoever records it: it can
        only protect the patient. A permit releases data to a third party, so
        when a hospital records one it is kept as ``proposed`` (which the policy
        treats as not in force) until the patient confirms it in the portal.
        """
        consent = consents.parse(doc)
        if caller.org_type != "patient" and consents.releases_data(consent):
            consent = consents.proposed(consent)
        patient = self.vault.pseudonym(consents.patient_of(consent) or "")
        return self._change(caller, authority, patient, consents.new_id(), None, "created",
                            lambda _current: consent)

    def confirm(self, caller: Caller, consent_id: str, authority: Authority) -> ConsentResult:
        """The patient confirms a permit recorded on their behalf: it comes into force."""
        current = self._newest(consent_id)
        return self._change(caller, authority, current.patient, consent_id, current, "confirmed", consents.confirmed)

    def revoke(self, caller: Caller, consent_id: str, authority: Authority) -> ConsentResult:
        current = self._newest(consent_id)
        return self._change(caller, authority, current.patient, consent_id, current, "revoked", consents.revoked)

    def _newest(self, consent_id: str) -> ConsentRow:
        """The consent's newest stored version; ``NotFound`` when there is none."""
        with UnitOfWork(self.engine) as uow:
            rows = consent_versions(uow.session, self.vault.consent_index(consent_id))
        if not rows:
            raise NotFound(f"Consent/{consent_id} not found")
        return rows[-1]

    def _change(self, caller: Caller, authority: Authority, patient: str, consent_id: str,
                current: ConsentRow | None, change: str, edit: Any) -> ConsentResult:
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            facts = load_facts(s, self.vault, patient, caller.org)
            erased = facts.erased
            if not erased:
                dk = self.vault.data_key(s, patient, create=True)
                previous = self.vault.open_consent(s, current) if current is not None else None
                uow.commit()  # a new patient's data key must exist before the consumer needs it
        action = "consent_confirm" if change == "confirmed" else "consent_write"
        asker = Asker(self.policy, self.vault, caller, action, authority, patient, facts)
        decision = self.gate.check(asker, "Consent", [], None, details={"action": action, "change": change})
        if erased:  # said only to a caller who may change this patient's consents
            raise Shredded(patient)
        if change == "confirmed" and (previous or {}).get("status") != consents.PROPOSED:
            raise Conflict(f"this consent is {(previous or {}).get('status')}, not awaiting the patient's confirmation")
        version = (current.version + 1) if current is not None else 1
        change_id, occurred = str(uuid6.uuid7()), rfc3339(utcnow())
        consent_index = self.vault.consent_index(consent_id)
        stored = consents.with_identity(edit(previous), consent_id, version, occurred)
        body = orjson.dumps(stored)
        event = audit_event(kind="consent", caller=caller, authority=authority, patient=patient,
                            decision=decision, body=body,
                            resources=[ResourceRef(type="Consent", id=consent_id, version=str(version))],
                            details={"change": change, "change_id": change_id, **consents.summary(stored)})
        msg = ConsentChange(change_id=change_id, occurred_at=occurred, change=change,  # type: ignore[arg-type]
                            patient=patient, consent_index=consent_index, accessor=caller.accessor(),
                            sealed=crypto.b64e(self.vault.seal_change(dk, patient, change_id, stored)),
                            event_id=event.event_id)
        self.gate.record_event(event, decision, together=[
            Message(CONSENT_CHANGES.name, msg.model_dump_json(by_alias=True).encode(), patient.encode())])
        applied = self._wait_applied(change_id, consent_index, version)
        return ConsentResult(body=body, consent_id=consent_id, version=version, event_id=event.event_id,
                             applied=applied)

    def _wait_applied(self, change_id: str, consent_index: str, version: int) -> bool:
        """Wait until the consumer applied ``change_id``; a rival change at that version is a conflict."""
        deadline = time.monotonic() + self.apply_timeout_s
        while True:
            with Session(self.engine) as s:
                row = s.exec(select(ConsentRow.change_id).where(ConsentRow.consent_index == consent_index,
                                                                ConsentRow.version == version)).first()
            if row == change_id:
                return True
            if row is not None:
                raise Conflict("the consent was changed concurrently; read it again and retry")
            if time.monotonic() > deadline:
                return False
            time.sleep(APPLY_POLL_S)
