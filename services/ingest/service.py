"""Ingest use cases: label, seal and publish a validated submission.

Nothing is acknowledged before Kafka has acknowledged every message
(acks=all). Each payload is sealed with HPKE for the records service, bound to
its envelope (submission, hospital, key) so it cannot be replayed under
another sender's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import uuid6

from services.adapters import crypto
from services.adapters.auth import Caller
from services.adapters.kafka import Message, Producer
from services.contracts.events import (
    Accessor,
    AuditEvent,
    IngestEnvelope,
    ResourceRef,
    rfc3339,
    utcnow,
)
from services.contracts.topics import AUDIT_EVENTS, INGEST_RESOURCES
from services.ingest.fhir import Submission, patient_id_of
from services.ingest.labels import LabelTable

DIRECTORY_KEY = "directory"


def envelope_aad(submission_id: str, hospital: str, key: str) -> bytes:
    """What the seal is bound to; records recomputes it from the envelope."""
    return f"{submission_id}|{hospital}|{key}".encode()


@dataclass
class Sealer:
    """Turns resources into sealed envelopes keyed by patient pseudonym."""

    records_public_key: bytes
    pseudonym_key: bytes
    labels: LabelTable

    def key_for(self, patient_id: str | None) -> str:
        return crypto.pseudonym(self.pseudonym_key, patient_id) if patient_id else DIRECTORY_KEY

    def envelope(
        self, *, submission_id: str, hospital: str, kind: str, key: str,
        resources: list[dict[str, Any]], patients: list[str | None],
    ) -> Message:
        payload = orjson.dumps({
            "resources": resources,
            "labels": [self.labels.labels_for(r) for r in resources],
            "patients": patients,
        })
        sealed = crypto.seal(payload, self.records_public_key,
                             envelope_aad(submission_id, hospital, key))
        env = IngestEnvelope(
            submission_id=submission_id, hospital=hospital, kind=kind,
            sealed=crypto.b64e(sealed), received_at=rfc3339(utcnow()),
        )
        return Message(INGEST_RESOURCES.name, orjson.dumps(env.model_dump(by_alias=True)), key.encode())


@dataclass
class Receipt:
    submission_id: str
    counts: dict[str, int]
    digest: str
    event_id: str


def submit(*, caller: Caller, submission: Submission, sealer: Sealer, producer: Producer,
           submission_id: str | None = None) -> Receipt:
    """Seal and publish every resource; return only after the broker acknowledged all."""
    sid = submission_id or str(uuid6.uuid7())
    patients = [patient_id_of(r, submission.full_urls) for r in submission.resources]
    messages: list[Message] = []
    if submission.kind == "transaction":
        # One atomic message: records stores all of it in one database transaction.
        first = next((p for p in patients if p), None)
        messages.append(sealer.envelope(
            submission_id=sid, hospital=caller.org, kind="transaction",
            key=sealer.key_for(first), resources=submission.resources, patients=patients))
    else:
        for i, (res, pid) in enumerate(zip(submission.resources, patients, strict=True)):
            messages.append(sealer.envelope(
                submission_id=f"{sid}.{i}", hospital=caller.org, kind="resource",
                key=sealer.key_for(pid), resources=[res], patients=[pid]))
    counts: dict[str, int] = {}
    for res in submission.resources:
        counts[res["resourceType"]] = counts.get(res["resourceType"], 0) + 1
    digest = crypto.sha256_hex(b"".join(m.value for m in messages))
    event = AuditEvent(
        kind="ingest",
        accessor=Accessor(id=caller.id, org=caller.org, org_type=caller.org_type, role=caller.role),
        purpose="TREAT",
        resources=[ResourceRef(type=t, id=str(n)) for t, n in sorted(counts.items())],
        request_id=sid,
        data_digest=digest,
        details={"submission": sid, "kind": submission.kind, "identifier_present": bool(submission.identifier)},
    )
    messages.append(Message(AUDIT_EVENTS.name, event.canonical()))
    producer.send_all(messages)
    return Receipt(submission_id=sid, counts=counts, digest=digest, event_id=event.event_id)
