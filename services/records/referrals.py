"""Referrals: a care relationship that is not derived from authorship.

The care relationship the policy sees is a fact kept here: hospitals that
sent records about a patient have one (the ingest consumer writes it), and so
does a hospital the patient was referred to. Whether a referral may be made
is OPA's decision (action ``refer``: the treating clinician or the patient, to
a registered hospital); the AuditEvent of kind ``referral`` is published
before the link is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from services.adapters.auth import Caller
from services.adapters.kafka import Message, Producer
from services.adapters.policy import PolicyClient
from services.adapters.sql import UnitOfWork
from services.contracts.events import ResourceRef
from services.contracts.topics import AUDIT_EVENTS
from services.records.access import Asker, Authority, Denied, audit_event, load_facts
from services.records.store import CareLink
from services.records.vault import Shredded, Vault


@dataclass
class Referrals:
    engine: Any
    vault: Vault
    policy: PolicyClient
    producer: Producer

    def refer(self, caller: Caller, patient_id: str, hospital: str, authority: Authority) -> tuple[bool, str]:
        """Give ``hospital`` a care relationship; return (whether it is new, the event id)."""
        patient = self.vault.pseudonym(patient_id)
        with UnitOfWork(self.engine) as uow:
            facts = load_facts(uow.session, self.vault, patient, caller.org, with_consents=False)
            erased = facts.erased
        decision = Asker(self.policy, self.vault, caller, "refer", authority, patient, facts).decide(
            "Patient", [], hospital)
        if not decision.allow:
            event = audit_event(kind="denial", caller=caller, authority=authority, patient=patient,
                                decision=decision, details={"action": "refer", "to": hospital})
            self.producer.send(Message(AUDIT_EVENTS.name, event.canonical()))
            raise Denied(decision.reasons, event.event_id)
        if erased:
            raise Shredded(patient)
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            exists = s.exec(select(CareLink.pk).where(CareLink.patient == patient,
                                                      CareLink.hospital == hospital)).first() is not None
            if not exists:
                s.add(CareLink(patient=patient, hospital=hospital, source="referral", referred_by=caller.org))
                s.flush()
            event = audit_event(kind="referral", caller=caller, authority=authority, patient=patient,
                                decision=decision, resources=[ResourceRef(type="Patient", id=patient)],
                                details={"to": hospital, "new": not exists})
            self.producer.send(Message(AUDIT_EVENTS.name, event.canonical()))  # before the commit
            uow.commit()
        return not exists, event.event_id
