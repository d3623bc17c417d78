"""Helpers for ingest's integration and end-to-end tests (real Kafka, OPA, PostgreSQL, services)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx

from services.adapters.config import PlatformSettings
from tests.conftest import TokenFactory, auth, first_patient, wait_for

HOSPITAL = "gy-hosp-001"


def new_patient() -> dict[str, Any]:
    """A fresh patient (new id and identifiers) shaped like the fixtures' first one."""
    patient = copy.deepcopy(first_patient())
    patient["id"] = str(uuid.uuid4())
    for ident in patient.get("identifier", []):
        ident["value"] = str(uuid.uuid4())
    return patient


def condition(pid: str, code: str = "38341003", system: str = "http://snomed.info/sct") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": str(uuid.uuid4()), "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": system, "code": code}]},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}


def ingest(settings: PlatformSettings, token: TokenFactory, path: str, *, org: str = HOSPITAL,
           json: Any = None, content: bytes | str | None = None, headers: dict[str, str] | None = None,
           tok: str | None = None) -> httpx.Response:
    hdrs = auth(tok or token(org, "ingest", role="integration"), **(headers or {}))
    return httpx.post(f"{settings.ingest_url}{path}", json=json, content=content, headers=hdrs, timeout=120)


def read(settings: PlatformSettings, token: TokenFactory, rtype: str, rid: str,
         org: str = HOSPITAL, purpose: str = "ETREAT") -> httpx.Response:
    """Read back as a clinician of ``org``: by default under break-glass.

    Sending records gives a hospital no care relationship (docs/architecture.md §10),
    and these tests check what was stored, not who may read it: an emergency read
    needs no care relationship, and is audited like any other. ``purpose="TREAT"``
    reads under the care relationship, where a test is about that.
    """
    extra = {"break_glass_reason": "verifying what the hospital sent"} if purpose == "ETREAT" else {}
    return httpx.get(f"{settings.records_url}/fhir/{rtype}/{rid}",
                     headers=auth(token(org, purpose=purpose, **extra)), timeout=30)


def wait_readable(settings: PlatformSettings, token: TokenFactory, rtype: str, rid: str,
                  timeout_s: float = 90, org: str = HOSPITAL, purpose: str = "ETREAT") -> dict[str, Any]:
    """The resource, once a clinician of ``org`` can read it (under break-glass: see ``read``)."""
    got: dict[str, Any] = {}

    def ready() -> bool:
        r = read(settings, token, rtype, rid, org, purpose)
        if r.status_code == 200:
            got.update(r.json())
        return r.status_code == 200

    wait_for(ready, timeout_s, f"{rtype}/{rid} to be stored")
    return got


def assert_never_stored(settings: PlatformSettings, token: TokenFactory, pid: str,
                        refs: list[tuple[str, str]], org: str = HOSPITAL) -> None:
    """Nothing of ``refs`` was stored: a later write for the same patient (same partition) is stored first.

    The later write registers the patient afresh (a hospital writes only about patients it
    registered), under identifiers of its own: if ``Patient/pid`` is among ``refs``, what is
    stored must be that sentinel Patient at version 1, never anything sent before.
    """
    marker = {**new_patient(), "id": pid}
    sentinel = condition(pid)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": marker, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": sentinel, "request": {"method": "PUT", "url": f"Condition/{sentinel['id']}"}}]}
    r = ingest(settings, token, "/fhir", json=bundle, org=org)
    assert r.status_code == 200, r.text
    wait_readable(settings, token, "Condition", sentinel["id"], org=org)
    for rtype, rid in refs:
        got = read(settings, token, rtype, rid, org)
        if (rtype, rid) == ("Patient", pid):
            assert got.status_code == 200 and got.json()["meta"]["versionId"] == "1", got.text
            assert got.json()["identifier"] == marker["identifier"], f"{rtype}/{rid} was stored"
        else:
            assert got.status_code == 404, f"{rtype}/{rid} was stored"


def audit_event(settings: PlatformSettings, event_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """The AuditEvent with this id, read from ``audit.events.v1`` on the real broker."""
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    from services.contracts.topics import AUDIT_EVENTS

    found: dict[str, Any] = {}
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(AUDIT_EVENTS.name, 0)
        consumer.assign([tp])

        def scan() -> bool:
            end = consumer.end_offsets([tp])[tp]
            consumer.seek_to_beginning(tp)
            while consumer.position(tp) < end and not found:
                for recs in consumer.poll(timeout_ms=1000).values():
                    for rec in recs:
                        doc = orjson.loads(rec.value)
                        if doc.get("event_id") == event_id:
                            found.update(doc)
            return bool(found)

        wait_for(scan, timeout_s, f"audit event {event_id}")
    finally:
        consumer.close()
    return found
