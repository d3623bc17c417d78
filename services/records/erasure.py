"""Erasure by crypto-shredding (docs/architecture.md §4): destroy the patient's data key, audited.

Order: OPA decides ``erase`` (only the patient, through the portal, by
policy); the key row loses its wrapped key and the identifier blind indexes
go, in one transaction; the AuditEvent of kind ``erasure`` is published
(acks=all) *before* that transaction commits. If the event cannot be
published nothing is erased (503); the worst a crash between the two can
leave is an event for an erasure the patient must ask for again.

After erasure every ciphertext of the patient (records, consent versions and
the consent changes still on the broker) is noise, and reads answer 410 Gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import select

from services.adapters.auth import Caller
from services.adapters.policy import PolicyClient
from services.adapters.sql import UnitOfWork
from services.contracts.events import ResourceRef
from services.records.access import Asker, Authority, NotFound, load_facts
from services.records.gate import Gate
from services.records.store import ConsentRow, IdentifierIndex, PatientKey, Record
from services.records.vault import Shredded, Vault


@dataclass
class Eraser:
    engine: Any
    vault: Vault
    policy: PolicyClient
    gate: Gate

    def erase(self, caller: Caller, patient_id: str, authority: Authority) -> str:
        """Shred the patient's data key; return the erasure event's id."""
        patient = self.vault.pseudonym(patient_id)
        with UnitOfWork(self.engine) as uow:
            facts = load_facts(uow.session, self.vault, patient, caller.org, with_consents=False)
        asker = Asker(self.policy, self.vault, caller, "erase", authority, patient, facts)
        decision = self.gate.check(asker, "Patient", [], None, details={"action": "erase"})
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            key = s.get(PatientKey, patient, with_for_update=True)
            if key is None:
                raise NotFound("no records are kept for this patient")
            if key.wrapped is None:
                raise Shredded(patient)
            rows = s.exec(select(func.count()).select_from(Record).where(Record.patient == patient)).one()
            kept = s.exec(select(func.count()).select_from(ConsentRow).where(ConsentRow.patient == patient)).one()
            self.vault.shred(s, patient)
            s.exec(delete(IdentifierIndex).where(IdentifierIndex.patient == patient))  # type: ignore[call-overload]
            s.flush()
            event = self.gate.record(kind="erasure", caller=caller, authority=authority, patient=patient,
                                     decision=decision, resources=[ResourceRef(type="Patient", id=patient)],
                                     details={"method": "crypto-shredding", "record_versions": int(rows),
                                              "consent_versions": int(kept)})  # before the commit
            uow.commit()
        return event.event_id
