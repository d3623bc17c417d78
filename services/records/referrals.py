"""Referrals and patient grants: care relationships that do not come from an encounter.

A hospital in care may refer the patient to another hospital (the link lasts
``referral_window``), and the patient may grant a hospital care of their
record from the portal (``grant_window``). Whether either may be made is
OPA's decision (action ``refer``: the treating clinician or the patient, to a
registered hospital in good standing); the AuditEvent of kind ``referral``
is published before the link is committed, and a relationship new to the
hospital is a notice to the patient (``care.py`` for the other evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.adapters.auth import Caller
from services.adapters.policy import PolicyClient
from services.adapters.sql import UnitOfWork
from services.contracts.events import ResourceRef, rfc3339
from services.records import care
from services.records.access import Asker, Authority, load_facts
from services.records.gate import Gate
from services.records.vault import Shredded, Vault


@dataclass
class Referrals:
    engine: Any
    vault: Vault
    policy: PolicyClient
    gate: Gate
    referral_window: timedelta = timedelta(days=90)
    grant_window: timedelta = timedelta(days=365)

    def refer(self, caller: Caller, patient_id: str, hospital: str, authority: Authority) -> tuple[bool, str]:
        """Give ``hospital`` a care relationship; return (whether it is new, the event id)."""
        patient = self.vault.pseudonym(patient_id)
        with UnitOfWork(self.engine) as uow:
            facts = load_facts(uow.session, self.vault, patient, caller.org, with_consents=False)
            erased = facts.erased
        asker = Asker(self.policy, self.vault, caller, "refer", authority, patient, facts)
        decision = self.gate.check(asker, "Patient", [], hospital, details={"action": "refer", "to": hospital})
        if erased:
            raise Shredded(patient)
        grant = caller.org_type == "patient"
        until = datetime.now(UTC) + (self.grant_window if grant else self.referral_window)
        with UnitOfWork(self.engine) as uow:
            new = care.extend(uow.session, patient, hospital, source="patient_grant" if grant else "referral",
                              until=until, referred_by=None if grant else caller.org)
            event = self.gate.record(kind="referral", caller=caller, authority=authority, patient=patient,
                                     decision=decision, resources=[ResourceRef(type="Patient", id=patient)],
                                     details={"to": hospital, "new": new, "until": rfc3339(until),
                                              "source": "patient_grant" if grant else "referral"},
                                     session=uow.session)  # before the commit
            uow.commit()
        return new, event.event_id
