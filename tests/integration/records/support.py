"""Helpers shared by the records integration and end-to-end tests."""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any, NamedTuple

from services.adapters.audit_log import AuditLog
from services.adapters.kafka import Producer
from services.adapters.policy import PolicyClient
from services.records.gate import Gate
from services.records.notices import NoticeOutbox

SNOMED = "http://snomed.info/sct"
MRN_SYSTEM = "http://hospital.smarthealthit.org"
DEPRESSION = "35489007"  # labelled PSY by the ingest label table
HYPERTENSION = "38341003"  # no label
_MIN_BASE64_SAFE = 9  # a 9-character base64 needle: one chance hit per ~10^16 bytes of ciphertext
_BASE64_ONLY = re.compile(r"[A-Za-z0-9+/=_-]+")


class Rec(NamedTuple):
    """A Kafka record as the consumers read it (topic, partition, offset, key, value)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


OPEN_PRODUCERS: list[Producer] = []
"""Every producer ``use_case`` made; the records conftest closes them after each test, so a
producer pointed at a dead broker does not go on reconnecting (and logging) for the rest of the run."""


def use_case(cls: Any, engine: Any, vault: Any, settings: Any, *, kafka: str | None = None,
             opa: str | None = None) -> Any:
    """A records use case (Reader, ConsentRegistry, Eraser...) on the stack's OPA and Kafka, or dead ones."""
    producer = Producer(kafka or settings.kafka_bootstrap, "healthgov-records-test")
    OPEN_PRODUCERS.append(producer)
    gate = Gate(AuditLog(producer), NoticeOutbox(engine))
    return cls(engine=engine, vault=vault, policy=PolicyClient(opa or settings.opa_url, timeout_s=1.0), gate=gate)


def phi_needles(resources: list[dict[str, Any]], *, beside_base64: bool) -> set[bytes]:
    """What identifies the Patients given and the Practitioners who treat them, as byte strings.

    Patients: id, names, identifiers, birth date, address lines, phone numbers and e-mail
    addresses. Practitioners: names, e-mail addresses and address lines.

    ``beside_base64``: the haystack also holds base64 text (Kafka segments, where ciphertext
    travels base64-encoded; the audit log's checkpoint notes and signatures). A short needle
    made only of base64 characters ("Ai120", a Synthea given name) turns up in random base64
    by chance, about once per 100 MB for five characters, so there it is searched for only in
    forms no base64 text can contain: JSON-quoted (``"Ai120"``, as any JSON value that leaked
    would carry it; base64 has no double quote) and in its full-name context (``Ai120 Smith``,
    the space). Without base64 around (a plaintext response; a database dump whose binary
    columns are hex or raw bytes) every needle is searched for bare.
    """
    needles: set[bytes] = set()

    def add(value: str) -> None:
        if not beside_base64 or len(value) >= _MIN_BASE64_SAFE or not _BASE64_ONLY.fullmatch(value):
            needles.add(value.encode())
        else:
            needles.add(b'"' + value.encode() + b'"')

    def names(r: dict[str, Any]) -> None:
        for name in r.get("name", []):
            given = [n for n in name.get("given", []) if len(n) > 3]
            family = name.get("family", "")
            for n in given:
                add(n)
                if family:
                    add(f"{n} {family}")
            if len(family) > 3:
                add(family)

    def contacts(r: dict[str, Any]) -> None:
        for t in r.get("telecom", []):
            if len(t.get("value", "")) > 6:
                add(t["value"])
        for line in (line for addr in r.get("address", []) for line in addr.get("line", [])):
            add(line)

    for r in resources:
        if r.get("resourceType") == "Practitioner":
            names(r)
            contacts(r)
        if r.get("resourceType") != "Patient":
            continue
        add(r["id"])
        names(r)
        contacts(r)
        for i in r.get("identifier", []):
            if len(i.get("value", "")) > 4:
                add(i["value"])
        if r.get("birthDate"):
            add(r["birthDate"])
    return needles


def fresh_patient(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of a fixture Patient with a new id, new identifiers and a new name."""
    patient = copy.deepcopy(template)
    pid = str(uuid.uuid4())
    tag = uuid.uuid4().hex[:8]
    patient["id"] = pid
    patient["identifier"] = [{"system": "https://github.com/synthetichealth/synthea", "value": pid},
                             {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                   "code": "MR"}]},
                              "system": MRN_SYSTEM, "value": f"MRN-{tag}"}]
    patient["name"] = [{"use": "official", "family": f"Family{tag}", "given": [f"Given{tag}"]}]
    patient["birthDate"] = "1961-02-03"
    patient.pop("text", None)
    return patient


def condition(pid: str, code: str, onset: str, cid: str | None = None) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid or str(uuid.uuid4()),
            "subject": {"reference": f"Patient/{pid}"}, "onsetDateTime": onset,
            "code": {"coding": [{"system": SNOMED, "code": code}]},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]}}


def encounter(pid: str, start: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": str(uuid.uuid4()), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start, "end": start}}


def transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def permit(pid: str, grantee: str, purpose: str, types: list[str] | None = None,
           labels: list[str] | None = None, end: str = "2099-01-01") -> dict[str, Any]:
    """A FHIR Consent: the patient permits ``grantee`` to use their data for ``purpose``."""
    provision: dict[str, Any] = {
        "type": "permit", "period": {"end": end},
        "actor": [{"reference": {"reference": f"Organization/{grantee}"}}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}
    if types:
        provision["class"] = [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types]
    if labels:
        provision["securityLabel"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": x}
                                      for x in labels]
    return {"resourceType": "Consent", "status": "active", "patient": {"reference": f"Patient/{pid}"},
            "provision": provision}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- the running platform (end-to-end tests) ------------------------------------------

def bearer(tok: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", **headers}


def grant_care(settings: Any, token: Any, pid: str, org: str = "gy-hosp-001") -> None:
    """The patient, in the portal, lets ``org`` treat them: a care relationship of the patient's own making."""
    import httpx

    body = {"resourceType": "Parameters",
            "parameter": [{"name": "organization", "valueReference": {"reference": f"Organization/{org}"}}]}
    r = httpx.post(f"{settings.records_url}/fhir/Patient/{pid}/$refer", json=body, timeout=30,
                   headers=bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT")))
    assert r.status_code in (200, 201), r.text


def ingest(settings: Any, token: Any, *resources: dict[str, Any], org: str = "gy-hosp-001") -> None:
    """Send resources as one transaction through the ingest API and wait until records has them.

    Sending records gives ``org`` no care relationship (docs/architecture.md §10): each
    Patient sent here also grants ``org`` care from the portal, so that its clinicians
    can read what it sent, as the tests using this helper expect.
    """
    import httpx

    from tests.conftest import wait_for

    r = httpx.post(f"{settings.ingest_url}/fhir", json=transaction(*resources), timeout=60,
                   headers=bearer(token(org, "ingest", role="integration")))
    assert r.status_code == 200, r.text
    for res in resources:
        if res["resourceType"] == "Patient":
            grant_care(settings, token, res["id"], org)

    def stored() -> bool:
        last = resources[-1]
        got = httpx.get(f"{settings.records_url}/fhir/{last['resourceType']}/{last['id']}", timeout=30,
                        headers=bearer(token(org, purpose="TREAT")))
        return got.status_code == 200

    wait_for(stored, 120, "records to store the ingested resources")


def regulator(token: Any) -> dict[str, str]:
    return bearer(token("gz-nhc", "audit", role="regulator", purpose="HCOMPL"))


def logged_event(settings: Any, token: Any, event_id: str) -> dict[str, Any]:
    """The canonical AuditEvent the log holds for ``event_id`` (waits for its checkpoint)."""
    import base64

    import httpx

    from tests.conftest import wait_for

    found: dict[str, Any] = {}

    def ready() -> bool:
        r = httpx.get(f"{settings.audit_url}/receipts/{event_id}", headers=regulator(token), timeout=30)
        if r.status_code == 200:
            found.update(json.loads(base64.b64decode(r.json()["entry"])))
        return r.status_code == 200

    wait_for(ready, 90, f"audit event {event_id} in the log")
    return found


def all_logged_events(settings: Any, token: Any, start: int = 0) -> list[dict[str, Any]]:
    """Every entry of the audit log from index ``start`` on, decoded (read as a regulator)."""
    import base64

    import httpx

    out: list[dict[str, Any]] = []
    page = 5000
    with httpx.Client(base_url=settings.audit_url, timeout=120) as c:
        while True:
            at = start + len(out)
            r = c.get("/entries", params={"start": at, "end": at + page}, headers=regulator(token))
            if r.status_code == 400:  # past the end of the log
                break
            r.raise_for_status()
            rows = r.json()
            out.extend(json.loads(base64.b64decode(row["entry"])) for row in rows)
            if len(rows) < page:
                break
    return out


def settled_log_size(settings: Any, token: Any) -> int:
    """The audit log's size once every event published so far is in it.

    A denial of ours is published now and waited for: the audit topic has one
    partition, so every event acknowledged before it is logged before it. The
    entries from the returned index on are what happens afterwards.
    """
    import httpx

    denied = httpx.get(f"{settings.records_url}/fhir/Organization", timeout=30,
                       headers=bearer(token("gz-insurer-1", purpose="HPAYMT")))
    assert denied.status_code == 403, denied.text
    logged_event(settings, token, denied.headers["X-Healthgov-Event-Id"])
    r = httpx.get(f"{settings.audit_url}/stats", headers=regulator(token), timeout=60)
    r.raise_for_status()
    return int(r.json()["log"]["size"])
