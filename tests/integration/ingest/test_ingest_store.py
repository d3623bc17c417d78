"""Ingest's durable state on the real PostgreSQL: idempotency claims and encrypted job chunks."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import text

from services.adapters.auth import Caller
from services.adapters.config import PlatformSettings
from services.ingest.config import IngestSettings
from services.ingest.idempotency import Claim, Idempotency, InFlight, KeyReused, Replay
from services.ingest.jobs import JobRunner
from services.ingest.store import make_engine


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    url = PlatformSettings().database_url
    assert url and url.startswith("postgresql"), "integration tests run against PostgreSQL"
    eng = make_engine(url)
    yield eng
    eng.dispose()


def test_claim_done_replay_and_conflicts(engine) -> None:  # type: ignore[no-untyped-def]
    idem = Idempotency(engine, b"k" * 32, stale_after_s=60)
    key = str(uuid.uuid4())
    claim = idem.begin("gy-hosp-001", key, "digest-a")
    assert isinstance(claim, Claim)
    with pytest.raises(InFlight):
        idem.begin("gy-hosp-001", key, "digest-a")
    with pytest.raises(KeyReused):
        idem.begin("gy-hosp-001", key, "digest-b")
    assert isinstance(idem.begin("gy-hosp-002", key, "digest-a"), Claim)  # per hospital
    idem.done(claim, "sub-1", "evt-1")
    assert idem.begin("gy-hosp-001", key, "digest-a") == Replay("sub-1", "evt-1")
    assert idem.begin("gy-hosp-001", None, "digest-a") is None


def test_release_and_stale_takeover(engine) -> None:  # type: ignore[no-untyped-def]
    idem = Idempotency(engine, b"k" * 32, stale_after_s=0.2)
    key = str(uuid.uuid4())
    claim = idem.begin("gy-hosp-001", key, "d")
    assert isinstance(claim, Claim)
    idem.release(claim)
    again = idem.begin("gy-hosp-001", key, "d")
    assert isinstance(again, Claim)
    assert isinstance(again, Claim)
    if again.lock is not None:  # PostgreSQL: a crashed holder's session, and its lock, end with it
        with pytest.raises(InFlight):
            idem.begin("gy-hosp-001", key, "d")
        again.lock.close()
    else:  # elsewhere its claim goes stale and is taken over
        time.sleep(0.3)
    taken = idem.begin("gy-hosp-001", key, "d")
    assert isinstance(taken, Claim)
    # The same submission and event ids: what the crashed holder may have published is stored once.
    assert (taken.submission_id, taken.event_id, taken.occurred_at) == (
        again.submission_id, again.event_id, again.occurred_at)


def test_keys_and_bodies_are_stored_only_as_digests(engine) -> None:  # type: ignore[no-untyped-def]
    key = "bundle-" + uuid.uuid4().hex
    Idempotency(engine, b"k" * 32).begin("gy-hosp-001", key, "a-body-digest")
    with engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM ingest_idempotency")))
    assert key not in dump and "a-body-digest" not in dump


def test_job_chunks_are_encrypted_and_jobs_are_private(engine, keys) -> None:  # type: ignore[no-untyped-def]
    settings = IngestSettings()
    runner = JobRunner(engine=engine, ingestor=None, spool_key=keys.ingest_spool_key(),  # type: ignore[arg-type]
                       chunk_lines=2, lease_s=60, poll_s=1, max_errors=10)
    marker = "Marker" + uuid.uuid4().hex
    lines = [f'{{"resourceType": "Patient", "id": "{marker}{i}"}}'.encode() for i in range(5)]
    caller = Caller(id="his", org="gy-hosp-001", org_type="hospital", role="integration")
    job = runner.create(caller, lines, "digest")
    assert job.chunks == 3 and job.lines == 5
    with engine.connect() as conn:
        blobs = [bytes(r[0]) for r in conn.execute(
            text("SELECT ciphertext FROM ingest_import_chunk WHERE job_id = :j"), {"j": job.id})]
        conn.execute(text("DELETE FROM ingest_import_chunk WHERE job_id = :j"), {"j": job.id})
        conn.execute(text("DELETE FROM ingest_import_job WHERE id = :j"), {"j": job.id})
        conn.commit()
    assert len(blobs) == 3 and not any(marker.encode() in b for b in blobs)
    assert settings.chunk_lines > 0
    assert runner.status("gy-hosp-002", job.id) is None
