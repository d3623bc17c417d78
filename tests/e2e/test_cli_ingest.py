"""``healthgov ingest`` on the running platform: every type sent is in the summary, rejections grouped by reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from services.contracts.topics import MAX_RESOURCE_BYTES
from tests.e2e.test_ingest_large import _sized
from tests.integration.ingest.support import condition, new_patient, wait_readable


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli.main", "ingest", *args],
                          capture_output=True, text=True, timeout=600)


def test_the_summary_lists_every_type_sent_and_groups_the_reasons(stack, token, settings, tmp_path: Path) -> None:
    patients = [new_patient() for _ in range(2)]
    conditions = [condition(p["id"]) for p in patients for _ in range(3)]
    broken = [condition(patients[0]["id"]) | {"onsetDateTime": f"day {n}"} for n in range(2)]
    too_big = [_sized(p["id"], MAX_RESOURCE_BYTES + 1 + n) for n, p in enumerate(patients)]
    (tmp_path / "Patient.ndjson").write_bytes(b"\n".join(orjson.dumps(p) for p in patients))
    (tmp_path / "Condition.ndjson").write_bytes(b"\n".join(orjson.dumps(c) for c in [*conditions, *broken]))
    # Every DocumentReference is too large: the type must still appear, with its rejections.
    (tmp_path / "DocumentReference.ndjson").write_bytes(b"\n\n".join(orjson.dumps(d) for d in too_big))
    report = tmp_path / "rejected.ndjson"

    done = _run(str(tmp_path), "--org", "gy-hosp-001", "--report", str(report))
    assert done.returncode == 1, done.stderr[-2000:]
    out = done.stderr
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()
            if ln.strip() and ln.split()[0] in ("Patient", "Condition", "DocumentReference")}
    assert rows["Patient"] == ["2", "2", "0"]
    assert rows["Condition"] == ["8", "6", "2"]
    assert rows["DocumentReference"] == ["2", "0", "2"]  # sent, accepted, rejected
    assert "rejected 4" in out
    reasons = out.split("rejections by reason")[1]
    assert "2 x 413 too-costly: the DocumentReference resource is N bytes" in reasons
    assert "DocumentReference.ndjson line 1: " in reasons  # the first example, with its file and line
    assert "2 x 400 invalid: Condition.onsetDateTime" in reasons
    lines = [orjson.loads(ln) for ln in report.read_text().splitlines()]
    assert sorted((x["file"], x["where"], x["status"]) for x in lines if x["type"] == "DocumentReference") == [
        ("DocumentReference.ndjson", "DocumentReference.ndjson line 1", "413"),
        ("DocumentReference.ndjson", "DocumentReference.ndjson line 3", "413")]  # line 2 is blank
    wait_readable(settings, token, "Condition", conditions[-1]["id"])


def test_async_jobs_are_reported_per_line_too(stack, token, settings, tmp_path: Path) -> None:
    patient = new_patient()
    lines = [patient, condition(patient["id"]), _sized(patient["id"], MAX_RESOURCE_BYTES + 1)]
    (tmp_path / "mixed.ndjson").write_bytes(b"\n".join(orjson.dumps(x) for x in lines))
    done = _run(str(tmp_path), "--org", "gy-hosp-001", "--async")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "mixed.ndjson line 3 (DocumentReference)" in done.stderr
    rows = {ln.split()[0]: ln.split()[1:] for ln in done.stderr.splitlines()
            if ln.strip() and ln.split()[0] in ("Patient", "Condition", "DocumentReference")}
    assert rows == {"Patient": ["1", "1", "0"], "Condition": ["1", "1", "0"], "DocumentReference": ["1", "0", "1"]}
