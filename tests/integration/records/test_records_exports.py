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
from sqlmodel import Session

from services.adapters.auth import Caller
from services.adapters.documents import DocumentVerifier
from services.adapters.policy import PolicyClient
from services.adapters.web import build_authenticator
from services.records.access import Authority
from services.records.exports import Exporter
from services.records.projects import ProjectRegistry
from services.records.store import ExportJob, Project, Record
from tests.integration.records.support import use_case

RESEARCHER = Caller(id="prof", org="gz-uni-research", org_type="research", role="researcher", purpose="HRESCH")
PATIENTS = [f"export-patient-{i}" for i in range(5)]


def needle(i: int) -> str:
    return f"Needlename{i}x"


def store_patients(engine: Any, vault: Any) -> None:
    with Session(engine) as s:
        for i, pid in enumerate(PATIENTS):
            patient = vault.pseudonym(pid)
            dk = vault.data_key(s, patient, create=True)
            for rtype, rid, body in (
                    ("Patient", pid, {"name": [{"family": needle(i)}], "birthDate": "1960-01-01"}),
                    ("Condition", f"{pid}-c", {"subject": {"reference": f"Patient/{pid}"},
                                               "note": [{"text": f"free text {needle(i)}"}],
                                               "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                    "code": "38341003"}]}})):
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
