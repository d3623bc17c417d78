"""Governed Bulk Data export throughput, beside the raw read+decrypt of the same rows in the same run.

    .venv/bin/python bench/export.py [--copies 72] [--store postgresql|sqlite] [--batch 50]

Needs the running platform's OPA and Kafka (``healthgov stack up``, same
HEALTHGOV_* environment) and, for ``--store postgresql``, its PostgreSQL. The
10-patient Synthea set is replicated ``--copies`` times under fresh ids (72
copies: 503,064 patient resources, 936 patients) and sealed straight into a
scratch records database with the vault's own code (the ingest path is
measured by bench/ingest.py; here it would take most of the run), copy by copy
so the load itself stays small in memory. Then, in this process:

1. raw: every patient's newest rows read and decrypted, patient by patient, as
   the exporter reads them (the patient's key row read once), and nothing else (no policy, no de-identification,
   no audit, no output);
2. export: a data-use project (pseudonymised, every type the set has) is
   approved and its export job run by ``Exporter`` to completion: per-patient
   policy decisions on the platform's OPA, de-identification, the batch's
   per-patient audit events in one Kafka transaction, the encrypted output
   parts and cursor committed per batch, the summary event;
3. download: every output file fetched and decrypted as a download serves it,
   with p50/p99 per file.

Printed: resources/s of each, the per-batch p50/p99 of the export, the per-file
p50/p99 of the download, and the peak resident memory of this process during
the export (VmHWM after resetting it), which must not grow with the population.
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlmodel import Session, select

from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller
from services.adapters.config import REPO_ROOT, PlatformSettings
from services.adapters.documents import ETHICS_APPROVAL, DocumentVerifier, issue_document
from services.adapters.kafka import Producer
from services.adapters.keys import PlatformKeys
from services.adapters.policy import PolicyClient
from services.adapters.web import build_authenticator
from services.cli.ingest import patients_first
from services.fhir.compartment import patient_id_of
from services.records.access import DIRECTORY_KEY, Authority
from services.records.exports import Exporter
from services.records.gate import Gate
from services.records.notices import NoticeOutbox
from services.records.projects import ProjectRegistry
from services.records.store import ExportJob, PatientKey, Project, Record, make_engine, newest_per_key
from services.records.vault import Vault

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_common import scratch_database

TEN = REPO_ROOT / "deploy" / "demo" / "fixtures" / "synthea-10-patients"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HOSPITAL = "gy-hosp-001"
RESEARCHER = Caller(id="bench", org="gz-uni-research", org_type="research", role="researcher", purpose="HRESCH")


def ethics_approval(keys: PlatformKeys, org: str, project: str) -> str:
    """An approval signed by the demo ethics board, as tests/conftest.py ``Documents`` signs one."""
    private, _ = keys.org_signer("gz-med-univ-irb")
    return issue_document(ETHICS_APPROVAL, issuer="gz-med-univ-irb", private_key=private, to=org, days=1,
                          claims={"project": project})


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def peak_rss_reset() -> None:
    """Reset this process's peak RSS (VmHWM), so the next reading is the peak of what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def base_lines() -> bytes:
    return b"\n".join(ln for f in sorted(TEN.glob("*.ndjson.gz"), key=lambda f: patients_first(f.name))
                      for ln in gzip.decompress(f.read_bytes()).splitlines() if ln.strip())


def load(engine: Any, vault: Vault, copies: int) -> tuple[int, set[str]]:
    """Seal ``copies`` fresh-id copies of the set into the database, one copy in memory at a time."""
    raw, stored, types = base_lines(), 0, set()
    for c in range(copies):
        salt = uuid.uuid4().hex

        def fresh(m: re.Match[bytes], salt: str = salt) -> bytes:
            return str(uuid.uuid5(uuid.UUID(int=0), salt + m.group().decode())).encode()

        with Session(engine) as s, s.no_autoflush:
            dks: dict[str, Any] = {}
            for line in _UUID.sub(fresh, raw).splitlines():
                res = orjson.loads(line)
                pid = patient_id_of(res)
                patient = vault.pseudonym(pid) if pid else DIRECTORY_KEY
                dk = dks.get(patient) or dks.setdefault(patient, vault.data_key(s, patient, create=True))
                row = Record(patient=patient, rtype=res["resourceType"], version=1, hospital=HOSPITAL,
                             rid_index=vault.rid_index(res["resourceType"], res["id"]),
                             content_index=vault.content_index(line), submission_id=f"bench-{c}", ciphertext=b"")
                vault.seal_row(dk, row, res, [])
                s.add(row)
                if pid:
                    stored += 1
                    types.add(res["resourceType"])
            s.commit()
        print(f"\rloaded {c + 1}/{copies} copies, {stored:,} patient resources", end="", flush=True)
    print()
    return stored, types


def raw_read(engine: Any, vault: Vault, types: set[str]) -> tuple[int, float]:
    """Every patient's newest rows read and decrypted, patient by patient: the floor under the export."""
    started, n = time.perf_counter(), 0
    with Session(engine) as s:
        patients = list(s.exec(select(Record.patient).where(Record.patient != DIRECTORY_KEY).distinct()
                               .order_by(Record.patient)).all())
    for patient in patients:
        with Session(engine) as s:
            rows = newest_per_key(s.exec(select(Record).where(Record.patient == patient, Record.rtype.in_(
                sorted(types)))).all(), key=lambda r: r.rid_index, version=lambda r: r.version)  # type: ignore[attr-defined]
            key = s.get(PatientKey, patient)  # read once per patient, as the exporter reads it
            for row in rows.values():
                vault.open_row(s, row, key)
                n += 1
    return n, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=72, help="copies of the 10-patient set (72: 503,064 resources)")
    ap.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--batch", type=int, default=50, help="patients per export batch (one audit transaction each)")
    args = ap.parse_args()

    settings = PlatformSettings()
    workdir = Path(tempfile.mkdtemp())
    keys = PlatformKeys(workdir / "state")  # the scratch database's own keys; documents are signed by the platform's
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    with scratch_database(args.store, workdir) as url:
        engine = make_engine(url)
        started = time.perf_counter()
        total, types = load(engine, vault, args.copies)
        print(f"load: {total:,} patient resources of {len(types)} types in {time.perf_counter() - started:.0f} s")

        n_raw, raw_s = raw_read(engine, vault, types)
        print(f"raw read+decrypt: {n_raw:,} resources in {raw_s:.1f} s = {n_raw / raw_s:,.0f} resources/s")

        policy = PolicyClient(settings.opa_url, timeout_s=5.0)
        gate = Gate(AuditLog(Producer(settings.kafka_bootstrap, "healthgov-bench-export")), NoticeOutbox(engine))
        auth = build_authenticator(settings, "records")
        projects = ProjectRegistry(engine=engine, policy=policy, gate=gate,
                                   verifier=DocumentVerifier(auth.registry, auth.keys))
        with Session(engine) as s:
            s.add(Project(id="prj-bench", org=RESEARCHER.org, title="bench", description="bench", status="approved",
                          types=orjson.dumps(sorted(types)).decode(), deidentify="pseudonymize",
                          expires_at=datetime.now(UTC) + timedelta(days=1), approval_id="bench",
                          approval=ethics_approval(PlatformKeys(settings.state_dir), RESEARCHER.org, "bench")))
            s.commit()
        exporter = Exporter(engine=engine, vault=vault, policy=policy, gate=gate, projects=projects,
                            keyring=keys.keyring(), batch_patients=args.batch)
        batches: list[float] = []
        store = exporter._store

        def timed_store(*a: Any, **kw: Any) -> bool:
            batches.append(time.perf_counter() - timed_store.last)  # type: ignore[attr-defined]
            ok = store(*a, **kw)
            timed_store.last = time.perf_counter()  # type: ignore[attr-defined]
            return ok

        exporter._store = timed_store  # type: ignore[method-assign]
        job_id = exporter.kickoff(RESEARCHER, Authority(purpose="HRESCH"), "prj-bench", None, None, "/fhir/$export")
        peak_rss_reset()
        before = peak_rss_mb()
        started = timed_store.last = time.perf_counter()  # type: ignore[attr-defined]
        exporter.run(job_id)
        export_s = time.perf_counter() - started
        peak = peak_rss_mb()
        with Session(engine) as s:
            job = s.get(ExportJob, job_id)
            assert job is not None and job.status == "completed", job
        parts = exporter.parts(job_id)
        exported = sum(n for _, _, n in parts)
        print(f"export: {exported:,} resources of {job.patients_done} patients in {export_s:.1f} s = "
              f"{exported / export_s:,.0f} resources/s ({exported / (n_raw / raw_s) / export_s:.0%} of raw); "
              f"per batch of {args.batch} patients p50 {pct(batches, 50):.2f} s, p99 {pct(batches, 99):.2f} s; "
              f"excluded {orjson.loads(job.excluded)}, withheld {orjson.loads(job.withheld)}")
        print(f"peak RSS of this process during the export: {peak:.0f} MB (at its start {before:.0f} MB)")

        per_file: list[float] = []
        by_type: dict[str, int] = defaultdict(int)
        nbytes = 0
        started = time.perf_counter()
        for pk, rtype, n in parts:
            t0 = time.perf_counter()
            body = exporter.download(RESEARCHER, job_id, pk)
            per_file.append(time.perf_counter() - t0)
            nbytes += len(body)
            by_type[rtype] += n
        dl_s = time.perf_counter() - started
        print(f"download: {len(parts)} files, {nbytes / 1e6:,.0f} MB, {exported / dl_s:,.0f} resources/s; per file "
              f"p50 {1e3 * pct(per_file, 50):.0f} ms, p99 {1e3 * pct(per_file, 99):.0f} ms")
        print("exported per type: " + ", ".join(f"{t} {n:,}" for t, n in sorted(by_type.items())))
        engine.dispose()


if __name__ == "__main__":
    main()
