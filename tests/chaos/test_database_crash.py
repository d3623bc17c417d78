"""kill -9 of PostgreSQL under a load of submissions and reads, then its restart: nothing lost, duplicated or
left unaudited, and during the outage only 503s with Retry-After (never a 500).

The load retries each submission with its Idempotency-Key after a 503, as a hospital would; the test then
counts one stored Condition and one ingest AuditEvent per submission, and finds every answered read in the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text

from services.adapters.config import REPO_ROOT
from services.audit.config import AuditSettings
from tests.chaos.test_recovery import _alive, _condition_bundle, _in_log
from tests.conftest import auth, first_patient, wait_for
from tests.integration.records.support import fresh_patient, ingest

SUBMISSIONS = 12
OUTAGE_S = 4.0


@pytest.fixture(scope="module")
def crash_patient(stack, settings, token) -> str:  # type: ignore[no-untyped-def]
    patient = fresh_patient(first_patient())
    ingest(settings, token, patient)
    return str(patient["id"])


class Load:
    """Submissions (retried after 503 under their Idempotency-Key) and reads, with every answer recorded."""

    def __init__(self, settings: Any, token: Any, patient: str) -> None:
        self.settings, self.token, self.patient = settings, token, patient
        self.statuses: list[tuple[str, int, str | None]] = []
        self.acknowledged: list[dict[str, str]] = []
        self.read_events: list[str] = []
        self.done = threading.Event()

    def _record(self, what: str, r: httpx.Response) -> None:
        self.statuses.append((what, r.status_code, r.headers.get("Retry-After")))

    def submit(self) -> None:
        for _ in range(SUBMISSIONS):
            cid, bundle = _condition_bundle(self.patient)
            key = f"dbcrash-{uuid.uuid4()}"
            while True:
                try:
                    r = httpx.post(f"{self.settings.ingest_url}/fhir", json=bundle, timeout=30, headers=auth(
                        self.token("gy-hosp-001", "ingest", role="integration"), **{"Idempotency-Key": key}))
                except httpx.HTTPError:
                    time.sleep(0.5)
                    continue
                self._record("write", r)
                if r.status_code == 200:
                    self.acknowledged.append({"id": cid, "submission": r.headers["X-Healthgov-Submission"],
                                              "event": r.headers["X-Healthgov-Event-Id"]})
                    break
                if r.status_code != 503:
                    return
                time.sleep(min(float(r.headers.get("Retry-After", 1)), 2.0))
            time.sleep(0.3)
        self.done.set()

    def read(self) -> None:
        """A clinician reading the patient over and over (it was stored before the load began)."""
        while not self.done.is_set():
            try:
                r = httpx.get(f"{self.settings.records_url}/fhir/Patient/{self.patient}",
                              headers=auth(self.token("gy-hosp-001", purpose="TREAT")), timeout=30)
            except httpx.HTTPError:
                continue
            self._record("read", r)
            if r.status_code == 200:
                self.read_events.append(r.headers["X-Healthgov-Event-Id"])
            time.sleep(0.3)


def _postmaster() -> int:
    port = os.environ["HEALTHGOV_PG_PORT"]
    data = Path((REPO_ROOT / ".cache" / f"pg-dir-{port}").read_text().strip()) / "data"
    return int((data / "postmaster.pid").read_text().split()[0])


def _audit(sql: str, **params: str) -> list[Any]:
    engine = create_engine(AuditSettings().owner_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).scalars())
    finally:
        engine.dispose()


def _ingest_submissions() -> list[str]:
    """The submission of every ingest AuditEvent in the log (one each, whatever failed)."""
    return [orjson.loads(b)["details"].get("submission") for b in
            _audit("SELECT body FROM audit_entry WHERE kind = :kind", kind="ingest")]


def test_postgres_killed_under_load_loses_nothing(crash_patient, stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    load = Load(settings, token, crash_patient)
    threads = [threading.Thread(target=load.submit), threading.Thread(target=load.read)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(load.acknowledged) >= 3, 60, "the load to get going")
        pid = _postmaster()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not _alive(pid), 10, "PostgreSQL to die")
        time.sleep(OUTAGE_S)
        started = subprocess.run([str(REPO_ROOT / "deploy" / "postgres.sh"), "start"], capture_output=True,
                                 text=True, timeout=60, cwd=REPO_ROOT)
        assert started.returncode == 0, started.stderr
        print(f"\nPostgreSQL down for {time.monotonic() - killed:.1f}s")
    finally:
        for t in threads:
            t.join(180)
    assert load.done.is_set(), f"the load did not finish: {load.statuses[-5:]}"

    # During the outage: only 503s the client may retry.
    failed = [s for s in load.statuses if s[1] != 200]
    print(f"{len(load.statuses)} requests, {len(failed)} answered 503 with Retry-After")
    assert failed, "the outage was not seen by the load"
    assert all(code == 503 and retry and int(retry) > 0 for _, code, retry in failed), failed

    # Nothing lost: every acknowledged submission readable; nothing duplicated: one ingest event each.
    assert len(load.acknowledged) == SUBMISSIONS
    answers: dict[str, int] = {}

    def readable() -> bool:
        for a in load.acknowledged:
            answers[a["id"]] = httpx.get(f"{settings.records_url}/fhir/Condition/{a['id']}",
                                         headers=auth(token("gy-hosp-001", purpose="TREAT")),
                                         timeout=30).status_code
        return set(answers.values()) == {200}

    try:
        wait_for(readable, 60, "every acknowledged Condition to be readable")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {answers}; acknowledged {load.acknowledged}") from exc
    wait_for(lambda: all(_in_log(settings, a["event"]) for a in load.acknowledged), 60, "the ingest events")
    submissions = _ingest_submissions()
    assert all(submissions.count(a["submission"]) == 1 for a in load.acknowledged)
    # Nothing unaudited: every read that answered 200 has its event in the log, once.
    def logged() -> list[str]:
        return _audit("SELECT event_id FROM audit_entry")

    wait_for(lambda: set(load.read_events) <= set(logged()), 60, "the read events in the log")
    ids = logged()
    assert all(ids.count(e) == 1 for e in load.read_events)
    verified = subprocess.run([str(Path(sys.executable).parent / "healthgov"), "audit", "verify"],
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
