"""Asynchronous bulk import (``$import`` with ``Prefer: respond-async``).

Where the state lives, and why a restart loses nothing that was accepted:
the request body is split into chunks, encrypted with ingest's spool key and
written with the job row in one database transaction *before* the 202 is sent.
A worker thread in any ingest process then claims the job (a lease in the job
row), prepares each chunk in the validation pool, publishes it (acks=all) and
only then records the progress and deletes the chunk. If the process dies in
between, the lease runs out, another worker resumes at the first unrecorded
chunk, and republishing that chunk is harmless (records stores identical
content once). The job's one ``ingest`` AuditEvent is sent at the end with an
id fixed when the job was created, so a resumed job never logs twice under
different ids. Kafka down: the job waits and retries; nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import uuid6
from sqlalchemy import delete, or_
from sqlalchemy.engine import Engine
from sqlmodel import select

from services.adapters import crypto
from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller
from services.adapters.kafka import BrokerUnavailable, MessageTooLarge
from services.adapters.sql import UnitOfWork
from services.ingest.prepare import chunk_ranges, prepare_lines
from services.ingest.service import Ingestor, ingest_event, refusal_event
from services.ingest.store import ImportChunk, ImportJob, now

log = logging.getLogger(__name__)


def _chunk_aad(job_id: str, seq: int) -> bytes:
    return f"healthgov.ingest.spool.v1|{job_id}|{seq}".encode()


class JobRunner:
    """Creates jobs, runs them in a background thread, reports their status."""

    def __init__(self, *, engine: Engine, ingestor: Ingestor, spool_key: bytes, chunk_lines: int,
                 lease_s: int, poll_s: float, max_errors: int) -> None:
        self.engine = engine
        self.ingestor = ingestor
        self.key = crypto.DataKey(spool_key)
        self.chunk_lines = chunk_lines
        self.lease = timedelta(seconds=lease_s)
        self.poll_s = poll_s
        self.max_errors = max_errors
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ingest-jobs", daemon=True)

    # --- accepting ------------------------------------------------------------------

    def create(self, caller: Caller, lines: list[bytes], body_digest: str) -> ImportJob:
        """Make the job durable (encrypted chunks + job row, one commit) before answering 202."""
        job = ImportJob(id=str(uuid6.uuid7()), org=caller.org, caller_id=caller.id, caller_role=caller.role,
                        caller_org_type=caller.org_type, body_digest=body_digest, event_id=str(uuid6.uuid7()),
                        lines=len(lines))
        with UnitOfWork(self.engine) as uow:
            for seq, (first, end) in enumerate(chunk_ranges(lines, self.chunk_lines)):
                raw = b"\n".join(lines[first:end])
                uow.session.add(ImportChunk(job_id=job.id, seq=seq, first_line=first + 1,
                                            ciphertext=self.key.encrypt(raw, _chunk_aad(job.id, seq))))
                job.chunks = seq + 1
            uow.session.add(job)
            uow.commit()
        self._wake.set()
        return job

    def status(self, org: str, job_id: str) -> dict[str, Any] | None:
        """The job as its hospital sees it; None for another hospital's job (no existence leak)."""
        with UnitOfWork(self.engine) as uow:
            job = uow.session.get(ImportJob, job_id)
        if job is None or job.org != org:
            return None
        return {
            "id": job.id, "status": job.state, "lines": job.lines, "processed": job.processed,
            "accepted": job.accepted, "rejected": job.rejected,
            "progress": round(100.0 * job.processed / job.lines, 1) if job.lines else 100.0,
            "counts": orjson.loads(job.counts), "errors": orjson.loads(job.errors),
            "errors_truncated": job.rejected > len(orjson.loads(job.errors)),
            "event_id": job.event_id if job.state == "completed" else None,
            "body_sha256": job.body_digest, "last_error": job.last_error,
            "submitted_at": job.created_at.isoformat(),
            "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        }

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.claim()
                if job is not None:
                    self.run(job)
                    continue
            except Exception as exc:  # keep the worker alive; the lease makes the job retryable
                log.warning("import job worker: %r", exc)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def claim(self) -> ImportJob | None:
        """Lease the oldest job that is waiting or whose worker's lease ran out."""
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            query = (select(ImportJob)
                     .where(ImportJob.state.in_(("accepted", "running")))  # type: ignore[attr-defined]
                     .where(or_(ImportJob.lease_until.is_(None), ImportJob.lease_until < now()))  # type: ignore[union-attr,operator]
                     .order_by(ImportJob.created_at).limit(1))  # type: ignore[arg-type]
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            job = s.exec(query).first()
            if job is None:
                return None
            job.state, job.lease_until, job.updated_at = "running", now() + self.lease, now()
            s.add(job)
            uow.commit()
            return job

    def run(self, job: ImportJob) -> None:
        """Publish the remaining chunks in order, recording progress after each acknowledgement.

        Chunks are read and decrypted as the pool asks for them, not all at
        once: a job's memory is a few chunks, whatever the size of the job.
        """
        caller = Caller(id=job.caller_id, org=job.org, org_type=job.caller_org_type, role=job.caller_role)
        with UnitOfWork(self.engine) as uow:
            seqs = list(uow.session.exec(select(ImportChunk.seq).where(ImportChunk.job_id == job.id)
                                         .where(ImportChunk.seq >= job.next_chunk)
                                         .order_by(ImportChunk.seq)).all())  # type: ignore[arg-type]
        issued: deque[tuple[Any, ...]] = deque()  # each chunk's arguments, to prepare it again without refused lines

        def jobs() -> Iterator[tuple[Any, ...]]:
            for seq in seqs:
                with UnitOfWork(self.engine) as uow:
                    chunk = uow.session.get(ImportChunk, (job.id, seq))
                if chunk is None:
                    raise RuntimeError(f"import job {job.id}: chunk {seq} is missing")
                issued.append((self.ingestor.ctx, job.org, job.id, chunk.first_line,
                               self.key.decrypt(chunk.ciphertext, _chunk_aad(job.id, seq)).split(b"\n")))
                yield issued[-1]

        refusals: Counter[str] = Counter()
        try:
            for seq, prepared in zip(seqs, self.ingestor.pool.map_ordered(prepare_lines, jobs()), strict=True):
                prepared = self.ingestor.settle_chunk(caller, issued.popleft(), prepared, refusals)
                # the chunk's quality report travels with it, under an id the chunk fixes (a resent chunk
                # repeats its report, which the oversight consumer counts once)
                report = self.ingestor.report(job.org, job.id, prepared.tally, accepted=True, transport="ndjson-job",
                                              report_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{job.id}#{seq}")))
                self.ingestor.producer.send_all([*prepared.messages, report])
                self._progress(job, seq, prepared.outcomes)
                if refusals:  # refused lines are reported per line and audited per chunk
                    AuditLog(self.ingestor.producer).publish(
                        refusal_event(caller=caller, submission_id=job.id, refusals=refusals))
                    refusals.clear()
                if self._stop.is_set():  # shutting down: hand the job over at once, not after the lease
                    self._pause(job, None, retry_in_s=0)
                    return
            self._finish(job, caller)
        except BrokerUnavailable as exc:
            self._pause(job, f"event broker unavailable, retrying: {exc}")
        except MessageTooLarge as exc:  # cannot happen while packing keeps within the limits; never retried
            self._fail(job, f"a chunk cannot be stored: {exc}")

    def _progress(self, job: ImportJob, seq: int, outcomes: list[Any]) -> None:
        counts = Counter(orjson.loads(job.counts))
        counts.update(o.rtype for o in outcomes if o.ok)
        errors = orjson.loads(job.errors)
        for o in outcomes:
            if not o.ok and len(errors) < self.max_errors:
                errors.append({"line": o.index, "status": o.status,
                               "issue": [i.to_fhir() for i in o.issue_objects()]})
        job.next_chunk = seq + 1
        job.processed += len(outcomes)
        job.accepted += sum(1 for o in outcomes if o.ok)
        job.rejected += sum(1 for o in outcomes if not o.ok)
        job.counts, job.errors = orjson.dumps(dict(counts)).decode(), orjson.dumps(errors).decode()
        job.lease_until, job.updated_at, job.last_error = now() + self.lease, now(), None
        with UnitOfWork(self.engine) as uow:
            uow.session.add(job)
            uow.session.execute(delete(ImportChunk).where(ImportChunk.job_id == job.id,  # type: ignore[arg-type]
                                                          ImportChunk.seq == seq))  # type: ignore[arg-type]
            uow.commit()

    def _finish(self, job: ImportJob, caller: Caller) -> None:
        counts = orjson.loads(job.counts)
        if counts:
            event = ingest_event(
                caller=caller.accessor(),
                submission_id=job.id, kind="ndjson-job", counts=counts, rejected=job.rejected,
                body_digest=job.body_digest, event_id=job.event_id)
            AuditLog(self.ingestor.producer).publish(event)
        job.state = "completed" if counts or not job.lines else "failed"
        if not counts and job.lines:
            job.last_error = "no line was accepted"
        job.completed_at = job.updated_at = now()
        job.lease_until = None
        with UnitOfWork(self.engine) as uow:
            uow.session.add(job)
            uow.commit()

    def _fail(self, job: ImportJob, why: str) -> None:
        log.warning("import job %s failed: %s", job.id, why)
        job.state, job.last_error = "failed", why
        job.completed_at = job.updated_at = now()
        job.lease_until = None
        with UnitOfWork(self.engine) as uow:
            uow.session.add(job)
            uow.commit()

    def _pause(self, job: ImportJob, why: str | None, retry_in_s: float = 5) -> None:
        if why:
            log.warning("import job %s paused: %s", job.id, why)
        job.last_error, job.updated_at = why, now()
        job.lease_until = now() + timedelta(seconds=retry_in_s)
        with UnitOfWork(self.engine) as uow:
            uow.session.add(job)
            uow.commit()
