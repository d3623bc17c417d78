"""The audit trail of the running platform: every read is logged, provable, and shown to the right people."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from services.adapters import crypto
from services.adapters.kafka import Message, Producer
from services.audit.config import AuditSettings
from services.cli.main import app
from services.contracts.events import Accessor, AuditDecision, AuditEvent, rfc3339
from services.contracts.topics import AUDIT_EVENTS, INGEST_DEADLETTER
from services.tlog import note, receipt
from tests.conftest import auth, wait_for


def _regulator(token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return auth(token("gz-nhc", "audit", role="regulator", purpose="HCOMPL"))


def _patient(token, pid: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return auth(token("healthgov-portal", "audit", role="patient", patient=pid, purpose="PATRQT"))


def _events(settings, headers: dict[str, str], **params: object) -> list[dict]:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.audit_url}/events", params={"limit": 1000, **params}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def _logged(settings, token, event_id: str) -> bool:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.audit_url}/proofs/inclusion", params={"event_id": event_id, "size": 1}, timeout=10)
    return r.status_code != 404


def test_every_read_is_in_the_signed_log_and_verify_passes(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid, other = loaded["patient_ids"][2], loaded["patient_ids"][3]
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything",
                  headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=30)
    assert r.status_code == 200
    event_id = r.headers["X-Healthgov-Event-Id"]
    audit = settings.audit_url

    def receipt_ready() -> bool:
        return httpx.get(f"{audit}/receipts/{event_id}", headers=_patient(token, pid), timeout=10).status_code == 200

    wait_for(receipt_ready, 60, "a checkpoint covering the read")
    doc = httpx.get(f"{audit}/receipts/{event_id}", headers=_patient(token, pid), timeout=10).json()
    vkey = httpx.get(f"{audit}/verifier-key", timeout=10).text.strip()
    check = receipt.verify(doc, vkey)
    assert check.ok, check.problems
    assert check.event and check.event["kind"] == "disclosure" and check.event["event_id"] == event_id
    assert check.event["data_digest"] == crypto.sha256_hex(r.content)  # the logged digest is of what was released
    # The patient's own trail lists the read; another patient cannot fetch its receipt.
    assert event_id in [e["event_id"] for e in _events(settings, _patient(token, pid))]
    assert httpx.get(f"{audit}/receipts/{event_id}", headers=_patient(token, other), timeout=10).status_code == 404
    assert httpx.get(f"{audit}/receipts/{event_id}", timeout=10).status_code == 401

    result = CliRunner().invoke(app, ["audit", "verify", "--url", audit])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def _event(**over: object) -> AuditEvent:
    fields: dict[str, object] = {
        "kind": "disclosure", "purpose": "TREAT", "patient": "p-" + uuid.uuid4().hex,
        "accessor": Accessor(id=f"e2e-{uuid.uuid4().hex[:8]}", org="gy-hosp-001", org_type="hospital",
                             role="clinician"),
        "decision": AuditDecision(allow=True, reasons=["clinician_care_relationship"])}
    return AuditEvent(**{**fields, **over})  # type: ignore[arg-type]


def test_a_duplicate_delivery_is_logged_once(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    ev = _event()
    producer = Producer(settings.kafka_bootstrap, "e2e-audit")
    try:
        producer.send_all([Message(AUDIT_EVENTS.name, ev.canonical())] * 3)
    finally:
        producer.close()
    wait_for(lambda: _logged(settings, token, ev.event_id), 60, "the event in the log")
    time.sleep(1)  # give the copies every chance to land
    got = _events(settings, _regulator(token), accessor=ev.accessor.id)
    assert [e["event_id"] for e in got] == [ev.event_id]


def test_poison_on_the_audit_topic_is_dead_lettered_and_the_log_moves_on(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    poison = b'{"schema": "healthgov.audit.event.v1", "kind": "disclosure", "marker": "%s"}' % uuid.uuid4().hex.encode()
    after = _event()
    tp = TopicPartition(INGEST_DEADLETTER.name, 0)
    watcher = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    watcher.assign([tp])
    watcher.seek_to_end(tp)
    start = watcher.position(tp)
    producer = Producer(settings.kafka_bootstrap, "e2e-audit")
    try:
        producer.send_all([Message(AUDIT_EVENTS.name, poison), Message(AUDIT_EVENTS.name, after.canonical())])
    finally:
        producer.close()
    wait_for(lambda: _logged(settings, token, after.event_id), 60, "the event after the poison")
    watcher.seek(tp, start)
    found = []
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        for rec in watcher.poll(timeout_ms=1000).get(tp, []):
            doc = orjson.loads(rec.value)
            if doc["topic"] == AUDIT_EVENTS.name and base64.b64decode(doc["original"]) == poison:
                found.append(doc)
    watcher.close()
    assert found and "not a healthgov.audit.event.v1 event" in found[0]["reason"]
    health = httpx.get(f"{settings.audit_url}/healthz", timeout=10).json()
    assert health["consumer"] and health["dead_lettered"] >= 1


def test_state_access_stays_hidden_from_the_patient_until_notify_after(  # type: ignore[no-untyped-def]
        loaded, token, settings, keys, documents) -> None:
    pid = loaded["patient_ids"][4]
    pseudo = crypto.pseudonym(keys.pseudonym_key(), pid)
    now = datetime.now(UTC)
    # The warrant names the patient as the police know them; records compares it by pseudonym.
    warrant = documents.warrant(pid, jti=f"w-{uuid.uuid4().hex[:6]}", days=5,
                                sealed_until=rfc3339(now + timedelta(days=60)))
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything", timeout=30,
                  headers=auth(token("gy-police", role="investigator", purpose="HLEGAL"), **{"X-Warrant": warrant}))
    assert r.status_code == 200, r.text
    sealed_id = r.headers["X-Healthgov-Event-Id"]
    # A synthetic state access about the same patient whose seal ends in a few seconds.
    seal_ends = rfc3339(datetime.now(UTC) + timedelta(seconds=6))
    soon = _event(patient=pseudo, purpose="PUBHLTH",
                  decision=AuditDecision(allow=True, reasons=["public_health_notifiable"],
                                         obligations={"notify_patient": True, "notify_after": seal_ends}))
    producer = Producer(settings.kafka_bootstrap, "e2e-audit")
    try:
        producer.send(Message(AUDIT_EVENTS.name, soon.canonical()))
    finally:
        producer.close()
    wait_for(lambda: _logged(settings, token, sealed_id) and _logged(settings, token, soon.event_id), 60,
             "both state accesses in the log")
    regulator = [e["event_id"] for e in _events(settings, _regulator(token), patient=pid)]
    assert sealed_id in regulator and soon.event_id in regulator
    sealed = next(e for e in _events(settings, _regulator(token), patient=pid) if e["event_id"] == sealed_id)
    assert sealed["decision"]["obligations"]["notify_after"]  # the policy sealed it, not the test
    mine = [e["event_id"] for e in _events(settings, _patient(token, pid))]
    assert sealed_id not in mine and soon.event_id not in mine
    assert httpx.get(f"{settings.audit_url}/receipts/{sealed_id}", headers=_patient(token, pid),
                     timeout=10).status_code == 404
    wait_for(lambda: soon.event_id in [e["event_id"] for e in _events(settings, _patient(token, pid))], 30,
             "the short seal to end")
    assert sealed_id not in [e["event_id"] for e in _events(settings, _patient(token, pid))]


def test_the_running_service_writes_as_a_role_that_cannot_rewrite(stack, settings) -> None:  # type: ignore[no-untyped-def]
    role = AuditSettings().audit_db_role
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            users = {u for (u,) in conn.execute(text(
                "SELECT usename FROM pg_stat_activity WHERE application_name = 'healthgov-audit'")).all()}
            assert users == {role}
            for table in ("audit_entry", "audit_node", "audit_checkpoint", "audit_cosignature"):
                rights = {p: conn.execute(text("SELECT has_table_privilege(:r, :t, :p)"),
                                          {"r": role, "t": table, "p": p}).scalar()
                          for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")}
                assert rights == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False,
                                  "TRUNCATE": False}, table
    finally:
        engine.dispose()


def test_the_platform_witness_cosigns_the_live_log(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    # Signing on demand is for who oversees the log (the regulator); the witness itself only reads.
    signed = httpx.post(f"{settings.audit_url}/checkpoint", headers=_regulator(token), timeout=30)
    assert signed.status_code == 200, signed.text
    out = subprocess.run([sys.executable, "-m", "services.cli.main", "audit", "witness", "--once",
                          "--url", settings.audit_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    published = httpx.get(f"{settings.audit_url}/checkpoint", params={"witnessed": True}, timeout=10).text
    (wkey,) = httpx.get(f"{settings.audit_url}/witnesses", timeout=10).json()
    assert note.verify_cosignature(published, wkey) > 0
