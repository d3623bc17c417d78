"""A records vault on SQLite with patients written straight into it, for the analytic store's tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlmodel import Session

from services.adapters.keys import PlatformKeys
from services.records.analytics.store import AnalyticStore
from services.records.store import ConsentRow, Record, latest_versions, make_engine
from services.records.vault import Vault

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
DIABETES = "44054006"
HYPERTENSION = "38341003"


class Vaulted:
    """Records' tables and vault in a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        self.keys = PlatformKeys(tmp)
        self.engine = make_engine(f"sqlite:///{tmp / 'records.db'}")
        self.vault = Vault(self.keys.keyring(), self.keys.blind_index_key(), self.keys.pseudonym_key())
        person_key, master = self.keys.analytics_keys()
        self.store = AnalyticStore(tmp / "analytics", engine=self.engine, vault=self.vault, person_key=person_key,
                                   master_key=master)

    def put(self, pid: str, *resources: dict[str, Any], hospital: str = "gy-hosp-001") -> None:
        """Store each resource as its next version, as records' consumer does."""
        with Session(self.engine) as s:
            patient = self.vault.pseudonym(pid)
            dk = self.vault.data_key(s, patient, create=True)
            for res in resources:
                rid = self.vault.rid_index(res["resourceType"], res["id"])
                prev = latest_versions(s, [rid]).get(rid)
                row = Record(patient=patient, rtype=res["resourceType"], rid_index=rid,
                             version=(prev.version + 1) if prev else 1, hospital=hospital,
                             content_index=uuid.uuid4().hex, submission_id="sub", ciphertext=b"")
                self.vault.seal_row(dk, row, res, [])
                s.add(row)
            s.commit()

    def opt_out(self, pid: str, purpose: str = "HRESCH") -> None:
        with Session(self.engine) as s:
            patient = self.vault.pseudonym(pid)
            dk = self.vault.data_key(s, patient)
            cid = str(uuid.uuid4())
            consent = {"resourceType": "Consent", "id": cid, "status": "active",
                       "provision": {"type": "deny", "purpose": [{"code": purpose}]}}
            row = ConsentRow(patient=patient, consent_index=self.vault.consent_index(cid), version=1,
                             change_id=str(uuid.uuid4()), ciphertext=b"")
            self.vault.seal_consent(dk, row, consent)
            s.add(row)
            s.commit()

    def erase(self, pid: str) -> None:
        with Session(self.engine) as s:
            self.vault.shred(s, self.vault.pseudonym(pid))
            s.commit()


def patient(pid: str, *, gender: str = "female", birth: str = "1961-02-03",
            district: str = "Nanming") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
            "name": [{"family": "Secretname", "given": ["Hidden"]}],
            "identifier": [{"system": "urn:oid:1.2.156", "value": "520102196102030011"}],
            "address": [{"line": ["12 Secret Road"], "district": district, "city": "Guiyang"}]}


def condition(pid: str, code: str, onset: str, *, system: str = SNOMED, cid: str | None = None) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid or str(uuid.uuid4()), "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": onset, "note": [{"text": "free text that must never reach the store"}],
            "code": {"coding": [{"system": system, "code": code, "display": "Display text"}],
                     "text": "typed text"}}


def population(v: Vaulted, n: int, *, code: str = DIABETES, onset: str = "2024-03-15", district: str = "Nanming",
               gender: str = "female", hospital: str = "gy-hosp-001", prefix: str = "p") -> list[str]:
    """``n`` new patients with one Condition each; their ids."""
    ids = []
    for i in range(n):
        pid = f"{prefix}-{uuid.uuid4().hex[:12]}-{i}"
        v.put(pid, patient(pid, gender=gender, district=district), condition(pid, code, onset), hospital=hospital)
        ids.append(pid)
    return ids
