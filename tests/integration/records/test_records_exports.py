"""Export jobs survive a crash and keep no plaintext, on SQLite and PostgreSQL.

A job is stopped by a failure after its first batch; a new exporter (a
restarted records service) resumes it from the stored cursor, and the output
holds each patient exactly once. The stored parts are ciphertext: no name or
free-text needle of the patients appears in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from services.adapters.auth import Caller
from services.adapters.documents import DocumentVerifier
from services.adapters.policy import PolicyClient
from services.adapters.web import build_authenticator
from services.records.access import Authority
from services.records.exports import Exporter
from services.records.projects import ProjectRegistry
from services.records.store import ExportJob, Notice, Project, Record
from tests.integration.records.support import use_case

RESEARCHER = Caller(id="prof", org="gz-uni-research", org_type="research", role="researcher", purpose="HRESCH")
PATIENTS = [f"export-patient-{i}" for i in range(5)]


def needle(i: int) -> str:
    return f"Needlename{i}x"


def sex(i: int) -> str:
    return "female" if i % 2 == 0 else "male"


def code(i: int) -> str:
    """Hypertension for the first three patients, diabetes for the others."""
    return "38341003" if i < 3 else "44054006"


def store_patients(engine: Any, vault: Any) -> None:
    with Session(engine) as s:
        for i, pid in enumerate(PATIENTS):
            patient = vault.pseudonym(pid)
            dk = vault.data_key(s, patient, create=True)
            for rtype, rid, body in (
                    ("Patient", pid, {"name": [{"family": needle(i)}], "birthDate": "1960-01-01",
                                      "gender": sex(i)}),
                    ("Condition", f"{pid}-c", {"subject": {"reference": f"Patient/{pid}"},
                                               "note": [{"text": f"free text {needle(i)}"}],
                                               "onsetDateTime": "2019-05-01",
                                               "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                    "code": code(i)}]}})):
                row = Record(patient=patient, rtype=rtype, rid_index=vault.rid_index(rtype, rid), version=1,
                             hospital="gy-hosp-001", content_index=rid, submission_id="s", ciphertext=b"")
                vault.seal_row(dk, row, {"resourceType": rtype, "id": rid, **body}, [])
                s.add(row)
        s.commit()


@pytest.fixture
def exporter_parts(engine, vault, settings, private_keys, documents) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    store_patients(engine, vault)
    auth = build_authenticator(settings, "records")
    verifier = DocumentVerifier(auth.registry, auth.keys)
    base = use_case(_Parts, engine, vault, settings)
    projects = ProjectRegistry(engine=engine, policy=base.policy, gate=base.gate, verifier=verifier)
    approval = documents.ethics_approval(project="resume")
    with Session(engine) as s:
        s.add(Project(id="prj-resume", org=RESEARCHER.org, title="t", description="d", status="approved",
                      types='["Condition","Patient"]', deidentify="pseudonymize",
                      expires_at=datetime.now(UTC) + timedelta(days=1), approval=approval, approval_id="a"))
        s.commit()

    def exporter() -> Exporter:
        return Exporter(engine=engine, vault=vault, policy=base.policy, gate=base.gate, projects=projects,
                        keyring=private_keys.keyring(), batch_patients=2)

    return {"exporter": exporter, "projects": projects}


class _Parts:
    """Only to borrow ``use_case``'s policy and gate on the stack's OPA and Kafka."""

    def __init__(self, engine: Any, vault: Any, policy: PolicyClient, gate: Any) -> None:
        self.engine, self.vault, self.policy, self.gate = engine, vault, policy, gate


def test_a_job_resumes_after_a_crash_and_stores_no_plaintext(exporter_parts, engine, db) -> None:  # type: ignore[no-untyped-def]
    first = exporter_parts["exporter"]()
    job_id = first.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-resume", None, None, "/fhir/$export")
    stored = first._store
    calls = {"n": 0}

    def crash_after_one(*args: Any, **kw: Any) -> bool:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("the service stops here")
        return stored(*args, **kw)

    first._store = crash_after_one  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        first.run(job_id)
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "running" and job.patients_done == 2

    restarted = exporter_parts["exporter"]()
    restarted.run(job_id)
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "completed" and job.patients_done == len(PATIENTS)
    lines: list[dict[str, Any]] = []
    for pk, _rtype, _n in restarted.parts(job_id):
        lines += [orjson.loads(x) for x in restarted.download(RESEARCHER, job_id, pk).splitlines() if x]
    patients = [x["id"] for x in lines if x["resourceType"] == "Patient"]
    assert len(patients) == len(set(patients)) == len(PATIENTS)  # each exactly once, none lost
    blob = orjson.dumps(lines)
    assert not any(needle(i).encode() in blob for i in range(len(PATIENTS)))  # de-identified output

    with engine.connect() as c:  # the stored parts are ciphertext
        raw = b"".join(bytes(r[0]) for r in c.execute(text("SELECT ciphertext FROM records_export_part")))
    assert raw and not any(needle(i).encode() in raw for i in range(len(PATIENTS)))
    if db.kind == "sqlite":
        path = engine.url.database
        assert path
        content = Path(path).read_bytes()
        assert not any(needle(i).encode() in content for i in range(len(PATIENTS)))


def add_project(pid: str, types: str, cohort: dict[str, Any], engine: Any, documents: Any) -> None:
    with Session(engine) as s:
        s.add(Project(id=pid, org=RESEARCHER.org, title="t", description="d", status="approved", types=types,
                      deidentify="pseudonymize", cohort=orjson.dumps(cohort).decode(),
                      expires_at=datetime.now(UTC) + timedelta(days=1),
                      approval=documents.ethics_approval(project=pid), approval_id="a"))
        s.commit()


def exported(exporter: Exporter, job_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for pk, _rtype, _n in exporter.parts(job_id):
        lines += [orjson.loads(x) for x in exporter.download(RESEARCHER, job_id, pk).splitlines() if x]
    return lines


def test_only_the_projects_cohort_is_exported(exporter_parts, engine, documents) -> None:  # type: ignore[no-untyped-def]
    """Women with hypertension in 2019: patients 0 and 2 of five; the others are not in the Group at all."""
    add_project("prj-cohort", '["Patient"]', {"conditions": ["38341003"], "sex": ["female"],
                                              "period": {"start": "2019-01-01", "end": "2019-12-31"}},
                engine, documents)
    exporter = exporter_parts["exporter"]()
    job_id = exporter.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-cohort", None, None, "/fhir/$export")
    exporter.run(job_id)
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "completed", job
        assert orjson.loads(job.excluded) == {}  # non-members are not "excluded": the Group never held them
    lines = exported(exporter, job_id)
    members = [i for i in range(len(PATIENTS)) if sex(i) == "female" and code(i) == "38341003"]
    assert members == [0, 2]
    assert sorted(x["gender"] for x in lines) == ["female", "female"]
    assert all(x["resourceType"] == "Patient" for x in lines)  # the Condition decided, but was not exported
    with Session(engine) as s:
        told = s.exec(select(Notice.patient).where(Notice.project == "prj-cohort")).all()
    assert sorted(told) == sorted(exporter.vault.pseudonym(PATIENTS[i]) for i in members)


def test_unreadable_cohort_criteria_fail_the_export_closed(exporter_parts, engine, documents) -> None:  # type: ignore[no-untyped-def]
    add_project("prj-odd", '["Patient"]', {"everyone_over": 18}, engine, documents)
    exporter = exporter_parts["exporter"]()
    job_id = exporter.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-odd", None, None, "/fhir/$export")
    exporter.run(job_id)
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "failed" and "cohort criteria" in job.withheld
        assert s.exec(select(Notice).where(Notice.project == "prj-odd")).all() == []
    assert exporter.parts(job_id) == []


def test_per_patient_events_go_to_the_log_one_transaction_per_batch(exporter_parts, engine, monkeypatch,  # type: ignore[no-untyped-def]
                                                                     settings) -> None:
    """Five patients in batches of two: three transactions of per-patient events and the summary, not six sends."""
    exporter = exporter_parts["exporter"]()
    producer = exporter.gate.log.producer
    trips: list[int] = []  # messages per call that reached the broker (a one-message send_all is a send inside)
    inside: list[bool] = []
    send, send_all = producer.send, producer.send_all

    def counted_send(m: Any, *a: Any, **kw: Any) -> None:
        if not inside:
            trips.append(1)
        send(m, *a, **kw)

    def counted_send_all(ms: Any, *a: Any, **kw: Any) -> None:
        trips.append(len(ms))
        inside.append(True)
        try:
            send_all(ms, *a, **kw)
        finally:
            inside.pop()

    monkeypatch.setattr(producer, "send", counted_send)
    monkeypatch.setattr(producer, "send_all", counted_send_all)
    job_id = exporter.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-resume", None, None, "/fhir/$export")
    exporter.run(job_id)
    assert trips == [2, 2, 1, 1]  # patients per batch, then the export's summary event
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "completed"
        told = s.exec(select(Notice.event_id).where(Notice.project == "prj-resume")).all()
    assert len(told) == len(set(told)) == len(PATIENTS)  # each patient still told, by an event of their own


def test_a_kek_rotation_rewraps_export_keys_so_running_and_finished_jobs_still_open(  # type: ignore[no-untyped-def]
        exporter_parts, engine, vault) -> None:
    """A job half done at a rotation resumes, and a finished job's files download after the old KEK is destroyed."""
    first = exporter_parts["exporter"]()
    job_id = first.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-resume", None, None, "/fhir/$export")
    stored = first._store

    def stop_after_one(*args: Any, **kw: Any) -> bool:
        first._store = _stopped  # type: ignore[method-assign]
        return stored(*args, **kw)

    def _stopped(*args: Any, **kw: Any) -> bool:
        raise RuntimeError("the service stops here")

    first._store = stop_after_one  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        first.run(job_id)
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "running"
        old_kek, old_wrapped = job.kek_id, job.wrapped_key

    rotation = vault.rotate(engine)
    assert old_kek in rotation.retired and vault.keyring.kids() == [rotation.new_kek]
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.kek_id == rotation.new_kek and job.wrapped_key != old_wrapped

    restarted = exporter_parts["exporter"]()
    restarted.run(job_id)  # the first batch's parts, sealed before the rotation, open under the rewrapped key
    assert len([x for x in exported(restarted, job_id) if x["resourceType"] == "Patient"]) == len(PATIENTS)

    again = vault.rotate(engine)  # and a completed job's files survive the next rotation as well
    assert rotation.new_kek in again.retired
    assert len([x for x in exported(exporter_parts["exporter"](), job_id)
                if x["resourceType"] == "Patient"]) == len(PATIENTS)


def test_two_records_processes_never_run_the_same_job_at_once(exporter_parts, engine, db) -> None:  # type: ignore[no-untyped-def]
    """Every records process's worker polls every active job: on PostgreSQL the job's advisory lock lets one run it
    and the other pass; the output holds each patient once. SQLite serves one process, which runs jobs in turn."""
    first, second = exporter_parts["exporter"](), exporter_parts["exporter"]()
    job_id = first.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-resume", None, None, "/fhir/$export")
    if db.kind == "sqlite":
        with first._sole_runner(job_id) as mine, second._sole_runner(job_id) as theirs:
            assert mine and theirs
        return
    stored = first._store
    seen: list[str] = []

    def meanwhile(*args: Any, **kw: Any) -> bool:
        second.run(job_id)  # the other process's worker finds the job while the first is inside it
        with Session(engine) as s:
            job = s.get(ExportJob, job_id)
            assert job is not None
            seen.append(job.status)
        return stored(*args, **kw)

    first._store = meanwhile  # type: ignore[method-assign]
    first.run(job_id)
    assert seen and all(status == "running" for status in seen)  # the second did not finish it meanwhile
    lines = exported(first, job_id)
    patients = [x["id"] for x in lines if x["resourceType"] == "Patient"]
    assert len(patients) == len(set(patients)) == len(PATIENTS)
    with Session(engine) as s:
        job = s.get(ExportJob, job_id)
        assert job is not None and job.status == "completed" and job.patients_done == len(PATIENTS)
