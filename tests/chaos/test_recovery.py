"""Crash recovery on the real stack: kill -9 one component, restart it, time how long until all is well.

The recovery contract: acknowledged data readable, and its audit event in the
log, within ``BOUND_S`` of a component's restart; a retried half-done
submission answered at once; one ingest AuditEvent per submission. Each test
prints its measured times and brings every component back, even on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text

from services.audit.config import AuditSettings
from services.contracts.topics import INGEST_RESOURCES
from tests.conftest import TEN, auth, first_patient, wait_for
from tests.integration.records.support import fresh_patient, ingest

BOUND_S = 10.0
BULK = ("Encounter", "DocumentReference", "MedicationRequest", "Procedure")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _kill9(stack: Any, name: str) -> int:
    pid = stack.pid(name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 10, f"{name} to die")
    return pid


def _restart(stack: Any, name: str) -> float:
    """``healthgov stack restart name``; return the moment it answered healthy (the clock of the recovery bound)."""
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "healthgov"), "stack", "restart", name],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.status()[name]["healthy"]
    print(f"\n{name} restarted (healthgov stack restart) and healthy in {time.monotonic() - started:.1f}s")
    return time.monotonic()


BULK_COPIES = 3  # long enough a submission that ingest is still sending when it is killed, however fast it validates


def _bulk_ndjson() -> bytes:
    once = b"\n".join(gzip.decompress((TEN / f"{t}.000.ndjson.gz").read_bytes()).strip() for t in BULK)
    return b"\n".join([once] * BULK_COPIES) + b"\n"


def _high_watermark(settings: Any) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [TopicPartition(INGEST_RESOURCES.name, p) for p in range(INGEST_RESOURCES.partitions)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def _kill_mid_send(stack: Any, settings: Any, token: Callable[..., str], key: str | None = None) -> dict[str, Any]:
    """Send a bulk NDJSON submission and kill -9 ingest while its Kafka transaction is open."""
    before = _high_watermark(settings)
    outcome: dict[str, Any] = {}
    headers = _ndjson_headers(token, key)
    body = _bulk_ndjson()

    def send() -> None:
        try:
            outcome["status"] = httpx.post(f"{settings.ingest_url}/fhir/$import", content=body, headers=headers,
                                           timeout=60).status_code
        except httpx.HTTPError as exc:
            outcome["error"] = repr(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: _high_watermark(settings) > before or not sender.is_alive(), 30, "the transaction to open")
    pid = stack.pid("ingest")
    workers = _children(pid) if pid else []
    _kill9(stack, "ingest")
    sender.join(30)
    assert "status" not in outcome, f"the submission finished before ingest was killed: {outcome}"
    return {"body": body, "workers": workers}


def _ndjson_headers(token: Callable[..., str], key: str | None = None) -> dict[str, str]:
    headers = auth(token("gy-hosp-001", "ingest", role="integration"), **{"Content-Type": "application/fhir+ndjson"})
    if key:
        headers["Idempotency-Key"] = key
    return headers


def _condition_bundle(patient_id: str) -> tuple[str, dict[str, Any]]:
    cid = str(uuid.uuid4())
    condition = {
        "resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
    }
    return cid, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": condition, "request": {"method": "PUT", "url": f"Condition/{cid}"}}]}


def _in_log(settings: Any, event_id: str) -> bool:
    size = httpx.get(f"{settings.audit_url}/healthz", timeout=10).json()["size"]
    return httpx.get(f"{settings.audit_url}/proofs/inclusion", params={"event_id": event_id, "size": size},
                     timeout=10).status_code == 200


@pytest.fixture(scope="module")
def own_patient(loaded, settings, token) -> str:  # type: ignore[no-untyped-def]
    """A patient of these tests alone: the Conditions they add must not change what other tests count of the
    demo patients (the walking skeleton reads every demo resource back and compares the counts)."""
    patient = fresh_patient(first_patient())
    ingest(settings, token, patient)
    return str(patient["id"])


def _submit_and_time(patient_id: str, token: Callable[..., str], settings: Any,
                     since: float) -> tuple[float, float]:
    """Submit a new Condition of the tests' own patient; seconds from ``since`` until it is readable and audited."""
    cid, bundle = _condition_bundle(patient_id)
    r = httpx.post(f"{settings.ingest_url}/fhir", json=bundle, timeout=30,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration")))
    assert r.status_code == 200, r.text
    event_id = r.headers["X-Healthgov-Event-Id"]
    read = auth(token("gy-hosp-001", purpose="TREAT"))
    deadline = since + BOUND_S + 50  # measure past the bound, so a failure says by how much
    readable = audited = None
    while time.monotonic() < deadline and (readable is None or audited is None):
        now = time.monotonic()
        if readable is None and httpx.get(f"{settings.records_url}/fhir/Condition/{cid}", headers=read,
                                          timeout=10).status_code == 200:
            readable = now - since
        if audited is None and _in_log(settings, event_id):
            audited = now - since
        time.sleep(0.2)
    print(f"acknowledged data readable after {readable}s, its audit event in the log after {audited}s")
    assert readable is not None and audited is not None, "not recovered within a minute"
    return readable, audited


@pytest.fixture
def restore(stack: Any):  # type: ignore[no-untyped-def]
    """Whatever a test kills is running again afterwards."""
    yield
    for name in ("opa", "ingest", "records", "audit"):
        if stack.pid(name) is None:
            stack.start(name)


def test_ingest_killed_mid_transaction_holds_nobody_up(own_patient, stack, token, settings, restore) -> None:
    killed = _kill_mid_send(stack, settings, token)
    # The validation workers die with their parent; nothing is left for `stack down` to miss.
    wait_for(lambda: not any(_alive(w) for w in killed["workers"]), 5, "the validation workers to exit")
    restarted = _restart(stack, "ingest")
    readable, audited = _submit_and_time(own_patient, token, settings, restarted)
    assert readable <= BOUND_S and audited <= BOUND_S


@pytest.mark.parametrize("name", ["records", "audit"])
def test_consumer_killed_and_restarted_resumes_at_once(name, own_patient, stack, token, settings, restore) -> None:
    _kill9(stack, name)
    restarted = _restart(stack, name)
    readable, audited = _submit_and_time(own_patient, token, settings, restarted)
    assert readable <= BOUND_S and audited <= BOUND_S


def test_retry_of_a_half_done_submission_is_answered_at_once(loaded, stack, token, settings, restore) -> None:
    key = f"chaos-{uuid.uuid4()}"
    killed = _kill_mid_send(stack, settings, token, key)
    _restart(stack, "ingest")
    started = time.monotonic()
    url = f"{settings.ingest_url}/fhir/$import"
    r = httpx.post(url, content=killed["body"], headers=_ndjson_headers(token, key), timeout=60)
    print(f"retry answered {r.status_code} in {time.monotonic() - started:.1f}s")
    assert r.status_code == 200, r.text
    event_id = r.headers["X-Healthgov-Event-Id"]
    again = httpx.post(url, content=killed["body"], headers=_ndjson_headers(token, key), timeout=60)
    assert again.status_code == 200 and again.headers["X-Healthgov-Event-Id"] == event_id
    wait_for(lambda: _in_log(settings, event_id), BOUND_S, "the submission's ingest event in the log")
    assert _ingest_events(r.headers["X-Healthgov-Submission"]) == 1


def _ingest_events(submission: str) -> int:
    """How many ingest AuditEvents the log holds for ``submission`` (read from the audit store)."""
    engine = create_engine(AuditSettings().owner_url)
    try:
        with engine.connect() as conn:
            bodies = conn.execute(text("SELECT body FROM audit_entry WHERE kind = 'ingest'")).scalars()
            return sum(1 for b in bodies if orjson.loads(b)["details"].get("submission") == submission)
    finally:
        engine.dispose()


def test_with_opa_down_a_write_is_retried_later_and_a_read_still_denied(loaded, stack, token, settings,
                                                                         restore) -> None:
    _kill9(stack, "opa")
    _, bundle = _condition_bundle(loaded["patient_ids"][0])
    w = httpx.post(f"{settings.ingest_url}/fhir", json=bundle, timeout=30,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration")))
    assert w.status_code == 503, w.text
    assert int(w.headers["Retry-After"]) > 0
    assert w.json()["resourceType"] == "OperationOutcome"
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{loaded['patient_ids'][0]}",
                  headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=30)
    assert r.status_code == 403 and "policy_engine_unavailable" in r.text


PR_SET_CHILD_SUBREAPER = 36


def _subreaper(on: bool) -> None:
    """Make this process the parent of orphans below it, as an init that does not reap would be."""
    assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0


@pytest.fixture
def supervisor(stack: Any):  # type: ignore[no-untyped-def]
    """``healthgov stack supervise`` running beside the stack, stopped (not the platform) afterwards."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / "healthgov"), "stack", "supervise", "--interval", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    wait_for(lambda: (stack.run_dir / "supervisor.pid").exists(), 30, "the supervisor to start")
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_supervisor_restarts_a_crashed_component_by_itself(own_patient, stack, token, settings, supervisor,
                                                           restore) -> None:
    killed = _kill9(stack, "records")
    crashed = time.monotonic()
    wait_for(lambda: stack.pid("records") not in (None, killed) and stack.status()["records"]["healthy"], 60,
             "the supervisor to start records again")
    back = time.monotonic()
    print(f"\nrecords back by itself {back - crashed:.1f}s after kill -9")
    readable, audited = _submit_and_time(own_patient, token, settings, back)
    assert readable <= BOUND_S and audited <= BOUND_S
    # Stopping the supervisor leaves the platform running.
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    assert "records is up again" in (supervisor.stdout.read() if supervisor.stdout else "")
    assert stack.status()["records"]["healthy"]
    assert not (stack.run_dir / "supervisor.pid").exists()


def _stack_up() -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "healthgov"), "stack", "up"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})


def test_stack_up_after_a_crash_starts_the_dead_component(stack, settings, restore) -> None:
    # ingest started by `stack up`, whose process then exits: ingest's parent is now this process, which does
    # not reap it, so after a kill -9 it stays listed as a zombie (as under an init that does not reap).
    _subreaper(True)
    dead = 0
    try:
        stack.stop("ingest")
        assert _stack_up().returncode == 0
        dead = int((stack.run_dir / "ingest.pid").read_text())
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: not _alive(dead), 10, "ingest to die")
        started = time.monotonic()
        up = _stack_up()
        print(f"stack up after the crash took {time.monotonic() - started:.1f}s")
        assert up.returncode == 0, up.stdout + up.stderr
    finally:
        _subreaper(False)
        if dead:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(dead, 0)
    status = stack.status()
    assert all(info["healthy"] for info in status.values()), status
    assert status["ingest"]["pid"] != dead
