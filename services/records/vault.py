"""The vault: per-patient data keys and the encryption of record rows (DESIGN §4).

Data keys are created on a patient's first record, wrapped by the active KEK
and cached unwrapped in memory only. Rotation rewraps every data key under a
new KEK; shredding destroys a patient's wrapped key, after which their rows
are noise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.keys import KeyProvider
from services.records.store import PatientKey, Record, _now


class Shredded(Exception):
    """The patient's data key was destroyed: their records are gone for good."""


@dataclass
class Plain:
    """A decrypted record row."""

    row: Record
    resource: dict[str, Any]
    labels: list[str]


class Vault:
    def __init__(self, keyring: KeyProvider, blind_key: bytes, pseudonym_key: bytes) -> None:
        self.keyring = keyring
        self.blind_key = blind_key
        self.pseudonym_key = pseudonym_key
        self._cache: dict[str, crypto.DataKey] = {}
        self._lock = threading.Lock()

    def pseudonym(self, patient_id: str) -> str:
        return crypto.pseudonym(self.pseudonym_key, patient_id)

    def rid_index(self, rtype: str, rid: str) -> str:
        return crypto.blind_index(self.blind_key, "rid", rtype, rid)

    def identifier_index(self, system: str, value: str) -> str:
        return crypto.blind_index(self.blind_key, "identifier", system or "", value)

    def content_index(self, payload: bytes) -> str:
        return crypto.keyed_digest(self.blind_key, "content", payload.decode())

    def data_key(self, session: Session, patient: str, create: bool = False) -> crypto.DataKey:
        with self._lock:
            if patient in self._cache:
                return self._cache[patient]
        row = session.get(PatientKey, patient)
        if row is None:
            if not create:
                raise KeyError(patient)
            kid, kek = self.keyring.active()
            key = crypto.new_key()
            session.add(PatientKey(patient=patient, kek_id=kid, wrapped=crypto.wrap_key(kek, key)))
            session.flush()
        elif row.wrapped is None:
            raise Shredded(patient)
        else:
            key = crypto.unwrap_key(self.keyring.get(row.kek_id), row.wrapped)
        dk = crypto.DataKey(key)
        with self._lock:
            self._cache[patient] = dk
        return dk

    def seal_row(self, dk: crypto.DataKey, row: Record, resource: dict[str, Any], labels: list[str]) -> None:
        aad = crypto.record_aad(row.patient, row.rtype, row.rid_index, row.version)
        row.ciphertext = dk.encrypt(orjson.dumps({"resource": resource, "labels": labels}), aad)

    def open_row(self, session: Session, row: Record) -> Plain:
        dk = self.data_key(session, row.patient)
        aad = crypto.record_aad(row.patient, row.rtype, row.rid_index, row.version)
        doc = orjson.loads(dk.decrypt(row.ciphertext, aad))
        return Plain(row=row, resource=doc["resource"], labels=doc["labels"])

    def shred(self, session: Session, patient: str) -> bool:
        row = session.get(PatientKey, patient)
        with self._lock:
            self._cache.pop(patient, None)
        if row is None or row.wrapped is None:
            return False
        row.wrapped = None
        row.shredded_at = _now()
        session.add(row)
        return True

    def rotate(self, session: Session) -> tuple[str, int]:
        """Rewrap every live data key under a new KEK, then retire the old KEKs."""
        new_kid = self.keyring.rotate()
        new_kek = self.keyring.get(new_kid)
        old: set[str] = set()
        count = 0
        for row in session.exec(select(PatientKey)).all():
            if row.wrapped is None or row.kek_id == new_kid:
                continue
            key = crypto.unwrap_key(self.keyring.get(row.kek_id), row.wrapped)
            old.add(row.kek_id)
            row.wrapped, row.kek_id = crypto.wrap_key(new_kek, key), new_kid
            session.add(row)
            count += 1
        session.commit()
        for kid in old:
            self.keyring.retire(kid)
        return new_kid, count
