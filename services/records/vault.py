"""The vault: per-patient data keys and the encryption of record rows (docs/architecture.md §4).

Data keys are created on a patient's first record, wrapped by the active KEK
and cached unwrapped in memory only. The cache is checked against the
database on every use, so a key shredded or rewrapped by another process is
never served from memory. Rotation rewraps every data key (and the key of
every live export job) under a new KEK;
shredding destroys a patient's wrapped key, after which their rows (records
and consents, in the database and on the broker) are noise.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.keys import KeyProvider
from services.contracts import errors
from services.records.store import ConsentRow, ExportJob, KeyRow, PatientKey, Record, RecordRow, _now

log = logging.getLogger(__name__)

LIVE_EXPORTS = ("queued", "running", "completed")  # jobs whose key still opens output someone may download


class Shredded(errors.Gone):
    """The patient's data key was destroyed: their records are gone for good."""

    default_message = "this patient's records were erased"

    def __init__(self, patient: str | None = None) -> None:
        super().__init__()  # the caller is told the fact, never which key
        self.patient = patient


@dataclass
class Plain:
    """A decrypted record row."""

    row: RecordRow
    resource: dict[str, Any]
    labels: list[str]


@dataclass(frozen=True)
class Rotation:
    """What a KEK rotation did."""

    new_kek: str
    retired: list[str]
    rewrapped: int


def consent_aad(patient: str, consent_index: str, version: int) -> bytes:
    """AAD of a stored consent version: its own namespace, so no record row can pass for it."""
    return crypto.record_aad(patient, "Consent", "consent:" + consent_index, version)


def change_aad(patient: str, change_id: str) -> bytes:
    """AAD of a consent carried on ``consent.changes.v1``: bound to that one message."""
    return f"healthgov.consent.change.v1|{patient}|{change_id}".encode()


class Vault:
    def __init__(self, keyring: KeyProvider, blind_key: bytes, pseudonym_key: bytes) -> None:
        self.keyring = keyring
        self.blind_key = blind_key
        self.pseudonym_key = pseudonym_key
        self._cache: dict[str, tuple[bytes, crypto.DataKey]] = {}
        self._lock = threading.Lock()

    # --- keyed digests ------------------------------------------------------------

    def pseudonym(self, patient_id: str) -> str:
        return crypto.pseudonym(self.pseudonym_key, patient_id)

    def rid_index(self, rtype: str, rid: str) -> str:
        return crypto.blind_index(self.blind_key, "rid", rtype, rid)

    def identifier_index(self, system: str, value: str) -> str:
        return crypto.blind_index(self.blind_key, "identifier", system or "", value)

    def consent_index(self, consent_id: str) -> str:
        return crypto.blind_index(self.blind_key, "consent", consent_id)

    def content_index(self, payload: bytes) -> str:
        return crypto.keyed_digest(self.blind_key, "content", payload.decode())

    def recipient_pseudonym(self, recipient: str, patient: str) -> str:
        """A per-recipient pseudonym of a patient (their platform pseudonym in, docs/architecture.md §5)."""
        return "rp-" + crypto.keyed_digest(self.pseudonym_key, "recipient", recipient, patient)[:24]

    # --- data keys ----------------------------------------------------------------

    def data_key(self, session: Session, patient: str, create: bool = False) -> crypto.DataKey:
        """The patient's data key; ``Shredded`` once erased, ``KeyError`` if never made."""
        row = session.get(PatientKey, patient)
        if row is None:
            if not create:
                raise KeyError(patient)
            kid, kek = self.keyring.active()
            key = crypto.new_key()
            row = PatientKey(patient=patient, kek_id=kid, wrapped=crypto.wrap_key(kek, key))
            session.add(row)
            session.flush()
            return self._remember(patient, row.wrapped, key)  # type: ignore[arg-type]
        return self.key_of(row)

    def key_of(self, row: KeyRow) -> crypto.DataKey:
        """The data key a key row holds (already read by the caller); ``Shredded`` once erased."""
        if row.wrapped is None:
            with self._lock:
                self._cache.pop(row.patient, None)
            raise Shredded(row.patient)
        with self._lock:
            hit = self._cache.get(row.patient)
        if hit is not None and hit[0] == row.wrapped:
            return hit[1]
        return self._remember(row.patient, row.wrapped,
                              crypto.unwrap_key(self.keyring.get(row.kek_id), row.wrapped))

    def _remember(self, patient: str, wrapped: bytes, key: bytes) -> crypto.DataKey:
        dk = crypto.DataKey(key)
        with self._lock:
            self._cache[patient] = (wrapped, dk)
        return dk

    # --- record rows --------------------------------------------------------------

    def seal_row(self, dk: crypto.DataKey, row: Record, resource: dict[str, Any], labels: list[str]) -> None:
        aad = crypto.record_aad(row.patient, row.rtype, row.rid_index, row.version)
        row.ciphertext = dk.encrypt(orjson.dumps({"resource": resource, "labels": labels}), aad)

    def _key_for(self, session: Session, patient: str, key: KeyRow | None) -> crypto.DataKey:
        """``patient``'s data key: from ``key`` if the caller already read that patient's key row."""
        if key is not None and key.patient == patient:
            return self.key_of(key)
        return self.data_key(session, patient)

    def open_row(self, session: Session, row: RecordRow, key: KeyRow | None = None) -> Plain:
        """Decrypt one row; ``key`` may be a key row the caller already read (used if it is this patient's)."""
        dk = self._key_for(session, row.patient, key)
        aad = crypto.record_aad(row.patient, row.rtype, row.rid_index, row.version)
        doc = orjson.loads(dk.decrypt(row.ciphertext, aad))
        return Plain(row=row, resource=doc["resource"], labels=doc["labels"])

    # --- consents -----------------------------------------------------------------

    def seal_consent(self, dk: crypto.DataKey, row: ConsentRow, consent: dict[str, Any]) -> None:
        row.ciphertext = dk.encrypt(orjson.dumps(consent), consent_aad(row.patient, row.consent_index, row.version))

    def open_consent(self, session: Session, row: ConsentRow, key: KeyRow | None = None) -> dict[str, Any]:
        dk = self._key_for(session, row.patient, key)
        return orjson.loads(dk.decrypt(row.ciphertext, consent_aad(row.patient, row.consent_index, row.version)))

    def seal_change(self, dk: crypto.DataKey, patient: str, change_id: str, consent: dict[str, Any]) -> bytes:
        return dk.encrypt(orjson.dumps(consent), change_aad(patient, change_id))

    def open_change(self, session: Session, patient: str, change_id: str, sealed: bytes) -> dict[str, Any]:
        dk = self.data_key(session, patient)
        return orjson.loads(dk.decrypt(sealed, change_aad(patient, change_id)))

    # --- erasure and rotation -----------------------------------------------------

    def shred(self, session: Session, patient: str) -> bool:
        """Destroy the patient's wrapped data key (the caller commits)."""
        row = session.get(PatientKey, patient)
        with self._lock:
            self._cache.pop(patient, None)
        if row is None or row.wrapped is None:
            return False
        row.wrapped = None
        row.shredded_at = _now()
        session.add(row)
        return True

    def _rewrap(self, session: Session, new_kid: str, new_kek: bytes) -> int:
        count = 0
        query = select(PatientKey).where(PatientKey.kek_id != new_kid, PatientKey.wrapped.is_not(None))  # type: ignore[union-attr]
        for row in session.exec(query).all():
            assert row.wrapped is not None
            key = crypto.unwrap_key(self.keyring.get(row.kek_id), row.wrapped)
            row.wrapped, row.kek_id = crypto.wrap_key(new_kek, key), new_kid
            session.add(row)
            count += 1
        # An export job's key is wrapped by the KEK too: its output stays downloadable after a rotation.
        jobs = select(ExportJob).where(ExportJob.kek_id != new_kid,
                                       ExportJob.status.in_(LIVE_EXPORTS))  # type: ignore[attr-defined]
        for job in session.exec(jobs).all():
            key = crypto.unwrap_key(self.keyring.get(job.kek_id), job.wrapped_key)
            job.wrapped_key, job.kek_id = crypto.wrap_key(new_kek, key), new_kid
            session.add(job)
            count += 1
        return count

    def rotate(self, engine: Any, announce: Any = None) -> Rotation:
        """Make a new KEK, rewrap every live data key under it, then retire the old KEKs.

        Records are never re-encrypted. The final pass runs under a table lock
        (PostgreSQL) or the write lock (SQLite), so a data key created with an
        old KEK while the first pass ran is rewrapped too before that KEK is
        destroyed. ``announce(rotation)`` runs before the final commit and before
        anything is retired: if it raises (e.g. the audit event cannot be
        published), no KEK is retired and a later rotation retires them. Only
        KEKs that no live data key uses are retired.
        """
        new_kid = self.keyring.rotate()
        new_kek = self.keyring.get(new_kid)
        with Session(engine) as s:
            count = self._rewrap(s, new_kid, new_kek)
            s.commit()
        with Session(engine) as s:
            if s.get_bind().dialect.name == "postgresql":
                s.exec(text("LOCK TABLE records_patient_key, records_export_job"  # type: ignore[call-overload]
                            " IN SHARE ROW EXCLUSIVE MODE"))
            else:
                s.exec(text("UPDATE records_patient_key SET kek_id = kek_id WHERE 1 = 0"))  # type: ignore[call-overload]
            late_count = self._rewrap(s, new_kid, new_kek)
            s.flush()
            retiring = self._retirable(s, new_kid)
            rotation = Rotation(new_kek=new_kid, retired=sorted(retiring), rewrapped=count + late_count)
            if announce is not None:
                announce(rotation)
            s.commit()
        for kid in rotation.retired:
            self.keyring.retire(kid)
        log.info("KEK rotated to %s: %d data keys rewrapped, retired %s", new_kid, rotation.rewrapped,
                 rotation.retired)
        return rotation

    def _retirable(self, session: Session, active: str) -> set[str]:
        """Every KEK in the keyring except the active one, if no live data key uses it."""
        in_use = set(session.exec(select(PatientKey.kek_id).where(PatientKey.wrapped.is_not(None))).all())  # type: ignore[union-attr]
        in_use |= set(session.exec(select(ExportJob.kek_id).where(
            ExportJob.status.in_(LIVE_EXPORTS))).all())  # type: ignore[attr-defined]
        return {k for k in self.keyring.kids() if k != active and k not in in_use}
