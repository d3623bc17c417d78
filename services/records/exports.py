"""FHIR Bulk Data ``$export`` under a data-use project: durable jobs, per-patient governance.

A kick-off is the policy's ``export`` decision against the project (approved,
unexpired, for research, the types within the agreement) and a re-check of the
project's signed ethics approval; a refusal is an audited 403. The job is a
row (``records_export_job``) that a worker thread runs patient by patient:

- each patient's newest rows of the requested types are read and decrypted
  alone (the population is never loaded), and each is asked of the policy as
  the research ``read`` it is, under the project's verified approval: opted-out
  patients are left out, sensitive labels withheld, per the same rules as a
  single read;
- what is released is de-identified at the project's level (or stricter, if
  the decision says so) by the read path's rule set (``deident.py``), the
  patient named by a pseudonym keyed on the project, so pseudonyms are stable
  within a project and differ between projects;
- output is buffered per type and written as parts encrypted with the job's
  own AES-256-GCM key (wrapped by the KEK): no plaintext reaches the database
  or the disk. The cursor (the last patient stored) advances in the same
  transaction as the parts, so a restart resumes after it;
- only the patients the project's cohort criteria admit (``cohort.py``) are
  members of its Group; the others are neither exported nor counted;
- each included patient gets an audit event (``disclosure``, naming the
  project and the export) and, through the gate, a ``research_use`` notice;
  a batch's events are published in one Kafka transaction (one round trip per
  batch, not per patient) before its parts commit; the export as a whole gets
  one event naming the project, recipient, counts, the ``_elements`` and
  ``_typeFilter`` it was narrowed by and the SHA-256 of each output file;
- ``_elements`` and ``_typeFilter`` (``bulk_params.py``) shape each resource
  after de-identification: filters read only what may leave.

Excluded patients are counted by reason, never named.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, func
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.auth import Caller
from services.adapters.documents import DocumentRefused
from services.adapters.keys import KeyProvider
from services.adapters.policy import PolicyClient
from services.adapters.sql import AdvisoryLocks, UnitOfWork
from services.contracts import errors
from services.contracts.events import ResourceRef, utcnow
from services.contracts.ids import is_fhir_id
from services.contracts.policy import Decision, Legal
from services.records import bulk_params, deident
from services.records.access import DIRECTORY_KEY, Asker, Authority, load_facts
from services.records.cohort import Cohort, CohortInvalid
from services.records.gate import Gate, audit_event
from services.records.projects import ProjectRegistry, facts, utc
from services.records.store import ExportJob, ExportPart, Project, Record, newest_per_key
from services.records.vault import Shredded, Vault

log = logging.getLogger(__name__)

STRICTNESS = {"none": 0, "pseudonymize": 1, "safe_harbor": 2, "aggregate_only": 3}
ACTIVE = ("queued", "running")


def part_aad(job: str, rtype: str, index: int) -> bytes:
    """Binds an output part to its job, type and place: a part moved to another job does not open."""
    return f"export|{job}|{rtype}|{index}".encode()


@dataclass
class Batch:
    """What a batch of patients adds to a job: lines per type, counts, included patients."""

    lines: dict[str, list[bytes]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    withheld: dict[str, int] = field(default_factory=dict)
    included: list[tuple[str, list[ResourceRef]]] = field(default_factory=list)
    unmatched: int = 0  # patients of whom no resource passed the job's _typeFilter (counted as done, no more)


@dataclass
class Exporter:
    engine: Any
    vault: Vault
    policy: PolicyClient
    gate: Gate
    projects: ProjectRegistry
    keyring: KeyProvider
    retention: timedelta = timedelta(hours=24)
    batch_patients: int = 50
    part_lines: int = 5000
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _locks: AdvisoryLocks = field(init=False)

    def __post_init__(self) -> None:
        self._locks = AdvisoryLocks(self.engine)

    # --- kick-off ------------------------------------------------------------------

    def kickoff(self, caller: Caller, authority: Authority, project_id: str, types: list[str] | None,
                since: datetime | None, request_url: str, elements: dict[str, frozenset[str]] | None = None,
                filters: list[bulk_params.TypeFilter] | None = None) -> str:
        """Decide the export against the project and queue its job; a refusal is an audited 403.

        ``elements`` (``_elements``) are part of the policy's question: one outside the agreement is refused
        and audited like a type outside it. ``_elements`` or ``_typeFilter`` naming a type the export does not
        include is a 400: it would otherwise be silently ignored."""
        elements, filters = elements or {}, filters or []
        try:
            project = self.projects.get(project_id)
        except errors.NotFound:
            project = None
        if project is None or project.org != caller.org:  # another org's project is refused as a missing one
            self.projects.ask(caller, authority, "export", {"id": project_id} if project is None else
                              {**facts(project), "org": project.org}, types or [])
            raise errors.NotFound("no such project")
        requested = sorted(set(types)) if types else orjson.loads(project.types)
        self.projects.ask(caller, authority, "export", facts(project), requested,
                          bulk_params.asked_elements(elements, requested))
        narrowed = bulk_params.expand_elements(elements, requested)
        by_type = bulk_params.filters_by_type(filters, requested)
        try:
            self.projects.approval_facts(project)
        except DocumentRefused as exc:
            raise self.gate.refuse(caller, authority, None, Decision(allow=False, reasons=[exc.reason]),
                                   details={"action": "export", "project": project.id,
                                            "refused": exc.kind.name}) from exc
        kid, kek = self.keyring.active()
        job = ExportJob(id=uuid.uuid4().hex, project=project.id, org=caller.org, caller=caller.id, role=caller.role,
                        request=request_url, types=orjson.dumps(requested).decode(), since=since, kek_id=kid,
                        elements=orjson.dumps(narrowed).decode(), type_filters=orjson.dumps(by_type).decode(),
                        wrapped_key=crypto.wrap_key(kek, crypto.new_key()))
        with UnitOfWork(self.engine) as uow:
            uow.session.add(job)
            uow.commit()
        self._wake.set()
        return job.id

    # --- status, cancel, download ----------------------------------------------------

    def job_of(self, caller: Caller, job_id: str) -> ExportJob:
        """The job, to its own organisation only: to anyone else it does not exist."""
        if not is_fhir_id(job_id):
            raise errors.NotFound("no such export job")
        with Session(self.engine) as s:
            job = s.get(ExportJob, job_id)
        if job is None or job.org != caller.org:
            raise errors.NotFound("no such export job")
        return job

    def parts(self, job_id: str) -> list[tuple[int, str, int]]:
        with Session(self.engine) as s:
            rows = s.exec(select(ExportPart.pk, ExportPart.rtype, ExportPart.count)
                          .where(ExportPart.job == job_id).order_by(ExportPart.pk)).all()  # type: ignore[arg-type]
        return [(int(pk), rtype, int(n)) for pk, rtype, n in rows]

    def cancel(self, caller: Caller, job_id: str) -> None:
        """DELETE: stop the job (if running) and delete its output."""
        job = self.job_of(caller, job_id)
        with UnitOfWork(self.engine) as uow:
            row = uow.session.get(ExportJob, job.id)
            assert row is not None
            row.status = "cancelled"
            uow.session.add(row)
            uow.session.exec(delete(ExportPart).where(ExportPart.job == job.id))  # type: ignore[call-overload]
            uow.commit()

    def download(self, caller: Caller, job_id: str, part: int) -> bytes:
        """One output file, decrypted for the organisation the job belongs to."""
        job = self.job_of(caller, job_id)
        if job.status != "completed":
            raise errors.NotFound("no such file")
        with Session(self.engine) as s:
            row = s.get(ExportPart, part)
            if row is None or row.job != job.id:
                raise errors.NotFound("no such file")
            index = s.exec(select(func.count()).select_from(ExportPart).where(
                ExportPart.job == job.id, ExportPart.pk < part)).one()  # type: ignore[operator]
        return self._key(job).decrypt(row.ciphertext, part_aad(job.id, row.rtype, int(index)))

    def _key(self, job: ExportJob) -> crypto.DataKey:
        return crypto.DataKey(crypto.unwrap_key(self.keyring.get(job.kek_id), job.wrapped_key))

    # --- the worker ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="export-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.expire()
                for job_id in self._active():
                    if self._stop.is_set():
                        break
                    self.run(job_id)
            except Exception:  # the worker must outlive one bad job or a database hiccup; it retries
                log.exception("export worker iteration failed")
            self._wake.wait(2.0)
            self._wake.clear()

    def _active(self) -> list[str]:
        with Session(self.engine) as s:
            return list(s.exec(select(ExportJob.id).where(ExportJob.status.in_(ACTIVE))  # type: ignore[attr-defined]
                               .order_by(ExportJob.created_at)).all())

    def expire(self) -> int:
        """Delete the output of jobs past their expiry; the job row stays, saying it expired."""
        now = datetime.now(UTC)
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            jobs = [j for j in s.exec(select(ExportJob).where(ExportJob.status == "completed")).all()
                    if j.expires_at is not None and utc(j.expires_at) <= now]
            for job in jobs:
                s.exec(delete(ExportPart).where(ExportPart.job == job.id))  # type: ignore[call-overload]
                job.status = "expired"
                s.add(job)
            uow.commit()
        return len(jobs)

    def _patients(self, after: str | None, limit: int) -> list[str]:
        with Session(self.engine) as s:
            query = select(Record.patient).where(Record.patient != DIRECTORY_KEY).distinct()
            if after is not None:
                query = query.where(Record.patient > after)
            return list(s.exec(query.order_by(Record.patient).limit(limit)).all())

    def _count_patients(self) -> int:
        with Session(self.engine) as s:
            return int(s.exec(select(func.count(func.distinct(Record.patient)))
                              .where(Record.patient != DIRECTORY_KEY)).one())

    def run(self, job_id: str) -> None:
        """Run (or resume) one job, unless another records process is running it."""
        with self._sole_runner(job_id) as mine:
            if mine:
                self._run(job_id)

    @contextlib.contextmanager
    def _sole_runner(self, job_id: str) -> Iterator[bool]:
        """Hold the job's PostgreSQL advisory lock while it runs: one runner per job however many records
        processes share the database. The lock is on a connection of its own, outside the pool, and goes with
        the process, so a job whose runner died is resumed by the next worker that looks. SQLite serves one
        process, which runs its jobs one at a time."""
        if not self._locks.available:
            yield True
            return
        held = self._locks.try_acquire("export-job", job_id)
        try:
            yield held is not None
        finally:
            self._locks.release(held)  # ends the session and its lock

    def _run(self, job_id: str) -> None:
        """Run (or resume) one job to its end, batch by batch; stops if it is cancelled meanwhile."""
        with UnitOfWork(self.engine) as uow:
            job = uow.session.get(ExportJob, job_id)
            if job is None or job.status not in ACTIVE:
                return
            if job.status == "queued":
                job.status, job.patients_total = "running", self._count_patients()
                uow.session.add(job)
                uow.commit()
            job = ExportJob.model_validate(job.model_dump())
        project = self.projects.get(job.project)
        caller = Caller(id=job.caller, org=job.org, org_type="research", role=job.role, purpose="HRESCH")
        try:
            approval = self.projects.approval_facts(project)
        except DocumentRefused as exc:
            self._fail(job.id, f"ethics approval refused: {exc.reason}")
            return
        authority = Authority(purpose="HRESCH", legal=Legal(ethics_approval=approval), request_id=job.id)
        try:
            cohort = Cohort.parse(orjson.loads(project.cohort))
        except CohortInvalid as exc:  # never export past criteria that cannot be read: fail closed
            self._fail(job.id, f"cohort criteria: {exc}")
            return
        try:
            shape = bulk_params.Shape.of(orjson.loads(project.elements or "{}"), orjson.loads(job.elements or "{}"),
                                         orjson.loads(job.type_filters or "{}"))
        except bulk_params.ParameterInvalid as exc:  # a filter that cannot be applied must not widen: fail closed
            self._fail(job.id, f"parameters: {exc}")
            return
        key = self._key(job)
        while not self._stop.is_set():
            current = self.projects.get(job.project)
            if current.status != "approved" or utc(current.expires_at) <= datetime.now(UTC):
                self._fail(job.id, f"the project is {current.status if current.status != 'approved' else 'expired'}")
                return
            patients = self._patients(job.cursor, self.batch_patients)
            if not patients:
                self._finish(job.id, caller, authority, project)
                return
            batch = Batch()
            for patient in patients:
                self._one_patient(batch, caller, authority, project, job, cohort, shape, patient)
            if not self._store(job, batch, key, patients[-1], caller, authority, project):
                return  # cancelled meanwhile
            job.cursor = patients[-1]

    def _one_patient(self, batch: Batch, caller: Caller, authority: Authority, project: Project, job: ExportJob,
                     cohort: Cohort, shape: bulk_params.Shape, patient: str) -> None:
        types = set(orjson.loads(job.types))
        since = utc(job.since) if job.since is not None else None
        with Session(self.engine) as s:
            # Membership is decided on the patient's whole record (not only on what changed since ``_since``),
            # so the cohort's types are read in full; only the requested types are exported.
            query = select(Record).where(Record.patient == patient,
                                         Record.rtype.in_(sorted(types | cohort.needs())))  # type: ignore[attr-defined]
            newest = sorted(newest_per_key(s.exec(query).all(), key=lambda r: r.rid_index,
                                           version=lambda r: r.version).values(), key=lambda r: r.pk or 0)
            rows = [r for r in newest if r.rtype in types and (since is None or utc(r.created_at) >= since)]
            if not rows:
                return
            state = load_facts(s, self.vault, patient, caller.org)
            if state.erased:
                batch.excluded["erased"] = batch.excluded.get("erased", 0) + 1
                return
            try:
                wanted = {r.pk for r in rows}
                opened = {r.pk: self.vault.open_row(s, r, state.key) for r in newest
                          if r.pk in wanted or r.rtype in cohort.needs()}
            except Shredded:
                batch.excluded["erased"] = batch.excluded.get("erased", 0) + 1
                return
        if not cohort.admits((p.resource for p in opened.values() if p.row.rtype in cohort.needs()),
                             utc(job.transaction_time).date()):
            return  # not in the project's Group: not a member, so neither exported nor counted as excluded
        plains = [opened[r.pk] for r in rows]
        asker = Asker(self.policy, self.vault, caller, "read", authority, patient, state)
        asker.prefetch((p.row.rtype, p.labels, p.row.hospital) for p in plains)
        pseudo = self.vault.recipient_pseudonym(f"project:{project.id}", patient)
        patient_id = self._patient_id(plains, patient)
        refs: list[ResourceRef] = []
        refusal: list[str] = []
        withheld = 0
        for plain in plains:
            d = asker.decide(plain.row.rtype, plain.labels, plain.row.hospital)
            if not d.allow:
                refusal = refusal or d.reasons
                continue
            hidden = sorted(set(plain.labels) & set(d.obligations.redact_labels))
            if hidden:
                reason = "redacted:" + ",".join(hidden)
                batch.withheld[reason] = batch.withheld.get(reason, 0) + 1
                withheld += 1
                continue
            level = max(project.deidentify, d.obligations.deidentify, key=lambda m: STRICTNESS.get(m, 3))
            if level not in deident.DEIDENTIFIERS:  # counts only: no row of it may leave in an export
                batch.withheld[level] = batch.withheld.get(level, 0) + 1
                withheld += 1
                continue
            # De-identified first, then cut: filters and _elements see only what may leave.
            shaped = shape.apply(plain.row.rtype, deident.DEIDENTIFIERS[level](plain.resource, patient_id, pseudo))
            if shaped is None:
                continue  # the client's _typeFilter does not ask for it: not released, not withheld
            batch.lines.setdefault(plain.row.rtype, []).append(orjson.dumps(shaped))
            refs.append(ResourceRef(type=plain.row.rtype, id=str(shaped.get("id") or pseudo),
                                    version=str(plain.row.version)))
        if refs:
            batch.included.append((patient, refs))
        elif refusal or withheld:
            reason = ",".join(sorted(refusal)) if refusal else "all_resources_withheld"
            batch.excluded[reason] = batch.excluded.get(reason, 0) + 1
        else:  # nothing of theirs matched the filters, so nothing of theirs left: neither included nor excluded
            batch.unmatched += 1

    def _patient_id(self, plains: list[Any], patient: str) -> str | None:
        """The patient's FHIR id as their own records name it (the de-identifier replaces it)."""
        for p in plains:
            if p.row.rtype == "Patient" and self.vault.pseudonym(str(p.resource.get("id"))) == patient:
                return str(p.resource.get("id"))
        for p in plains:
            for pid in sorted(deident.patient_refs(p.resource)):
                if self.vault.pseudonym(pid) == patient:
                    return pid
        return None

    def _store(self, job: ExportJob, batch: Batch, key: crypto.DataKey, cursor: str, caller: Caller,
               authority: Authority, project: Project) -> bool:
        """Write the batch's parts, counts, per-patient events and notices, and advance the cursor, at once."""
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            row = s.get(ExportJob, job.id)
            if row is None or row.status != "running":
                return False
            index = int(s.exec(select(func.count()).select_from(ExportPart)
                               .where(ExportPart.job == job.id)).one())
            for rtype in sorted(batch.lines):
                for chunk in _chunks(batch.lines[rtype], self.part_lines):
                    body = b"\n".join(chunk) + b"\n"
                    s.add(ExportPart(job=job.id, rtype=rtype, count=len(chunk), digest=crypto.sha256_hex(body),
                                     ciphertext=key.encrypt(body, part_aad(job.id, rtype, index))))
                    index += 1
            decision = Decision(allow=True, reasons=["research_project_export"])
            decision.obligations.notify_patient = True
            decision.obligations.deidentify = project.deidentify  # type: ignore[assignment]
            # One event per included patient (their trail, their notice, their Merkle leaf), all published in
            # one transaction before the batch's parts and cursor commit: no part is stored without its events.
            self.gate.record_all([audit_event(kind="disclosure", caller=caller, authority=authority, patient=patient,
                                              decision=decision, resources=refs, details={
                                                  "project": project.id, "export": job.id,
                                                  "deidentified": project.deidentify})
                                  for patient, refs in batch.included], decision, session=s)
            row.cursor, row.patients_done = cursor, row.patients_done + len(batch.included) + sum(
                batch.excluded.values()) + batch.unmatched
            row.excluded = _merge(row.excluded, batch.excluded)
            row.withheld = _merge(row.withheld, batch.withheld)
            s.add(row)
            uow.commit()
        return True

    def _finish(self, job_id: str, caller: Caller, authority: Authority, project: Project) -> None:
        """The export's one summary event (project, recipient, counts, file digests), then completed."""
        with Session(self.engine) as s:
            parts = s.exec(select(ExportPart.rtype, ExportPart.count, ExportPart.digest)
                           .where(ExportPart.job == job_id).order_by(ExportPart.pk)).all()  # type: ignore[arg-type]
            job = s.get(ExportJob, job_id)
        assert job is not None
        counts: dict[str, int] = {}
        for rtype, n, _ in parts:
            counts[rtype] = counts.get(rtype, 0) + int(n)
        decision = Decision(allow=True, reasons=["research_project_export"])
        decision.obligations.deidentify = project.deidentify  # type: ignore[assignment]
        event = self.gate.record(kind="disclosure", caller=caller, authority=authority, patient=None,
                                 decision=decision, details={
                                     "project": project.id, "export": job_id, "recipient": job.org,
                                     "counts": counts, "excluded": orjson.loads(job.excluded),
                                     "withheld": orjson.loads(job.withheld),
                                     "elements": orjson.loads(job.elements or "{}"),
                                     "type_filters": orjson.loads(job.type_filters or "{}"),
                                     "files": [{"type": t, "count": n, "sha256": d} for t, n, d in parts]})
        with UnitOfWork(self.engine) as uow:
            row = uow.session.get(ExportJob, job_id)
            if row is not None and row.status == "running":
                row.status, row.event_id = "completed", event.event_id
                row.expires_at = utcnow() + self.retention
                uow.session.add(row)
                uow.commit()

    def _fail(self, job_id: str, why: str) -> None:
        with UnitOfWork(self.engine) as uow:
            row = uow.session.get(ExportJob, job_id)
            if row is not None and row.status in ACTIVE:
                row.status, row.withheld = "failed", _merge(row.withheld, {f"failed: {why}": 0})
                uow.session.exec(delete(ExportPart).where(ExportPart.job == job_id))  # type: ignore[call-overload]
                uow.session.add(row)
                uow.commit()


def _chunks(lines: list[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(lines), size):
        yield lines[i:i + size]


def _merge(stored: str, more: dict[str, int]) -> str:
    total: dict[str, int] = orjson.loads(stored or "{}")
    for k, v in more.items():
        total[k] = total.get(k, 0) + v
    return orjson.dumps(total).decode()
