"""No plaintext PHI in any column: load the 10-patient set, dump the database, search it.

The fixtures go in through the records consumers exactly as they arrive from
Kafka (HPKE-sealed ingest envelopes, sealed consent changes), on SQLite and on
PostgreSQL; then every name, identifier, patient id, birth date and address
line is searched for in the dump (and, for SQLite, in the raw database files).
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.audit_log import AuditLog
from services.adapters.config import PlatformSettings
from services.adapters.kafka import Producer
from services.contracts.envelope import DIRECTORY_KEY, envelope_aad
from services.contracts.events import Accessor, ConsentChange, IngestEnvelope
from services.contracts.topics import CONSENT_CHANGES, INGEST_RESOURCES
from services.records import consents
from services.records.consent_consumer import ConsentChangeHandler
from services.records.consumer import IngestHandler
from services.records.gate import Gate
from services.records.notices import NoticeOutbox
from services.records.store import ConsentRow, IdentifierIndex, Record
from tests.integration.records.support import Rec, permit, phi_needles


def _patient_of(res: dict[str, Any]) -> str | None:
    if res["resourceType"] == "Patient":
        return res["id"]
    for element in ("subject", "patient"):
        ref = (res.get(element) or {}).get("reference", "")
        if ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def ingest_messages(resources: list[dict[str, Any]], keys: Any, vault: Any) -> list[Rec]:
    """One sealed transaction envelope per patient (and one for the directory), as ingest sends them."""
    groups: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for res in resources:
        groups[_patient_of(res)].append(res)
    out = []
    for n, (pid, group) in enumerate(groups.items()):
        key = vault.pseudonym(pid) if pid else DIRECTORY_KEY
        sid = f"sub-{n}"
        payload = orjson.dumps({"resources": group, "labels": [[] for _ in group], "patients": [pid] * len(group)})
        sealed = crypto.seal(payload, keys.records_hpke_public(), envelope_aad(sid, "gy-hosp-001", key))
        env = IngestEnvelope(submission_id=sid, hospital="gy-hosp-001", kind="transaction",
                             sealed=crypto.b64e(sealed), received_at="2026-11-22T10:00:00Z")
        out.append(Rec(INGEST_RESOURCES.name, 0, n, key.encode(), env.model_dump_json(by_alias=True).encode()))
    return out


def consent_messages(patient_ids: list[str], engine: Any, vault: Any) -> list[Rec]:
    out = []
    with Session(engine) as s:
        for n, pid in enumerate(patient_ids):
            patient = vault.pseudonym(pid)
            stored = consents.with_identity(consents.parse(permit(pid, "gz-insurer-1", "HPAYMT")),
                                            consents.new_id(), 1, "2026-11-22T10:00:00Z")
            change = ConsentChange(change="created", patient=patient, consent_index=vault.consent_index(stored["id"]),
                                   accessor=Accessor(id="me", org="healthgov-portal", org_type="patient",
                                                     role="patient"), event_id="e", sealed="")
            sealed = vault.seal_change(vault.data_key(s, patient), patient, change.change_id, stored)
            change.sealed = crypto.b64e(sealed)
            value = change.model_dump_json(by_alias=True).encode()
            out.append(Rec(CONSENT_CHANGES.name, 0, n, patient.encode(), value))
    return out


def dump(db: Any) -> bytes:
    if db.kind == "sqlite":
        path = Path(make_url(db.url).database or "")
        conn = sqlite3.connect(path)
        text = "\n".join(conn.iterdump()).encode()
        conn.close()
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        return text + raw
    url = db.url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run(["pg_dump", "--data-only", url], capture_output=True, check=True).stdout


def test_no_plaintext_phi_in_the_database(db, engine, vault, private_keys, ten_patients,  # type: ignore[no-untyped-def]
                                          settings: PlatformSettings) -> None:
    producer = Producer(settings.kafka_bootstrap, "healthgov-records-test")
    handler = IngestHandler(engine=engine, vault=vault, hpke_private=private_keys.records_hpke_private(),
                            producer=producer, gate=Gate(AuditLog(producer), NoticeOutbox(engine)))
    handler(ingest_messages(ten_patients, private_keys, vault))
    patient_ids = [r["id"] for r in ten_patients if r["resourceType"] == "Patient"]
    consent_handler = ConsentChangeHandler(engine=engine, vault=vault, producer=producer)
    consent_handler(consent_messages(patient_ids, engine, vault))
    producer.close()
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Record)).one() == len(ten_patients)
        assert s.exec(select(func.count()).select_from(ConsentRow)).one() == len(patient_ids)
        assert s.exec(select(func.count()).select_from(IdentifierIndex)).one() >= len(patient_ids)
    # Binary columns dump as hex (raw bytes in the SQLite files); the other columns hold hex digests,
    # pseudonyms, uuids and times: no base64 text, so every needle is searched for bare.
    needles = phi_needles(ten_patients, beside_base64=False)
    assert len(needles) > 50
    dumped = dump(db)
    assert b"records_resource" in dumped and len(dumped) > 1_000_000
    leaked = sorted(n.decode() for n in needles if n in dumped)
    assert not leaked, f"plaintext PHI in the {db.kind} database: {leaked[:5]}"
    for probe in (b"gz-insurer-1", b"HPAYMT", b"Sepsis"):  # what was consented and what is wrong with whom
        assert probe not in dumped

