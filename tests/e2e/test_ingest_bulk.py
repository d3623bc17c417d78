"""Bulk NDJSON: every fixture line loads, sensitive codes come out labelled, async jobs report per line."""

from __future__ import annotations

import gzip
import re
import uuid

import httpx
import orjson
from sqlalchemy import create_engine
from sqlmodel import Session, select

from services.cli.ingest import patients_first
from services.records.store import Record
from services.records.vault import Vault
from tests.conftest import DIRECTORY_TYPES, FIXTURES, auth, wait_for
from tests.integration.ingest.support import condition, ingest, new_patient, read, wait_readable
from tests.unit.ingest.test_ingest_labels import EXPECTED

NDJSON = {"Content-Type": "application/fhir+ndjson"}
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _fresh(body: bytes) -> bytes:
    """The same data under new ids (every UUID rewritten consistently), so it is stored anew."""
    salt = uuid.uuid4().hex
    return _UUID.sub(lambda m: str(uuid.uuid5(uuid.UUID(int=0), salt + m.group().decode())).encode(), body)


def _job(settings, token, body: bytes, org: str = "gy-hosp-001") -> tuple[str, dict]:
    r = ingest(settings, token, "/fhir/$import", content=body, org=org,
               headers={**NDJSON, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    url = r.headers["Content-Location"]
    final: dict = {}

    def done() -> bool:
        s = httpx.get(url, headers=auth(token(org, "ingest", role="integration")), timeout=30)
        assert s.status_code in (200, 202), s.text
        final.update(s.json())
        return s.status_code == 200

    wait_for(done, 240, "the import job")
    return url, final


def test_every_line_of_both_fixture_sets_loads_with_zero_rejections(loaded, token, settings) -> None:
    # The 100-patient set's directory files (Organization, Location, Practitioner, PractitionerRole) are
    # checked line by line through the same pipeline in tests/unit/ingest/test_ingest_prepare.py: storing
    # them here would change the directory the other end-to-end tests count.
    files = sorted((FIXTURES / "synthea-10-patients").glob("*.ndjson.gz"), key=lambda f: patients_first(f.name)) + [
        f for f in sorted((FIXTURES / "synthea-100-patients").glob("*.ndjson.gz"), key=lambda f: patients_first(f.name))
        if f.name.split(".")[0] not in DIRECTORY_TYPES]
    assert len(files) == 17
    for f in files:
        body = gzip.decompress(f.read_bytes())
        lines = [ln for ln in body.splitlines() if ln.strip()]
        r = ingest(settings, token, "/fhir/$import", content=body, headers=NDJSON)
        assert r.status_code == 200, (f.name, r.text[:500])
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses == ["201 Created"] * len(lines), (f.name, [s for s in statuses if s[0] != "2"][:3])
        last = orjson.loads(lines[-1])
        wait_readable(settings, token, last["resourceType"], last["id"])


def test_fixture_codes_in_sensitive_categories_are_stored_labelled(loaded, ten_patients, keys, settings) -> None:
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    engine = create_engine(settings.database_url)
    checked = 0
    with Session(engine) as s:
        for r in ten_patients:
            codes = {c["code"] for el in ("code", "type", "medicationCodeableConcept")
                     for concept in (r.get(el) if isinstance(r.get(el), list) else [r.get(el)])
                     if isinstance(concept, dict) for c in concept.get("coding", [])}
            wanted = set().union(*(EXPECTED[c] for c in codes if c in EXPECTED))
            if not wanted:
                continue
            rows = s.exec(select(Record).where(Record.rid_index == vault.rid_index(r["resourceType"], r["id"]))).all()
            assert rows, f"{r['resourceType']}/{r['id']} not stored"
            for row in rows:
                assert wanted <= set(vault.open_row(s, row).labels), (r["resourceType"], codes)
            checked += 1
    engine.dispose()
    assert checked > 150


def test_an_async_import_reports_progress_counts_and_per_line_errors(stack, token, settings) -> None:
    patient = new_patient()
    good = [condition(patient["id"]) for _ in range(5)]
    lines = [orjson.dumps(patient), *[orjson.dumps(c) for c in good[:2]],
             b'{"resourceType": "Condition", "subject": ',  # line 4: malformed JSON
             orjson.dumps({"resourceType": "Consent", "status": "draft"} | {"id": str(uuid.uuid4())}),  # 5: invalid
             orjson.dumps({"resourceType": "Sandwich"}),  # line 6: no such type
             orjson.dumps(good[2] | {"recordedDate": "someday"}),  # line 7: invalid element
             *[orjson.dumps(c) for c in good[3:]]]
    url, job = _job(settings, token, b"\n".join(lines))
    assert job["status"] == "completed", job
    assert (job["lines"], job["processed"], job["accepted"], job["rejected"]) == (9, 9, 5, 4)
    assert job["counts"] == {"Patient": 1, "Condition": 4}
    errors = {e["line"]: e["issue"][0] for e in job["errors"]}
    assert set(errors) == {4, 5, 6, 7}
    assert errors[4]["code"] == "structure"
    assert errors[6]["expression"] == ["Sandwich.resourceType"]
    assert errors[7]["expression"] == ["Condition.recordedDate"] and errors[7]["diagnostics"].startswith("line 7")
    assert job["event_id"] and job["progress"] == 100.0
    for c in good[:2] + good[3:]:
        wait_readable(settings, token, "Condition", c["id"])
    assert read(settings, token, "Condition", good[2]["id"]).status_code == 404
    # Another hospital cannot see the job.
    peek = httpx.get(url, headers=auth(token("gy-hosp-002", "ingest", role="integration")), timeout=30)
    assert peek.status_code == 404


def test_an_accepted_job_survives_an_ingest_restart(stack, token, settings) -> None:
    hundred = FIXTURES / "synthea-100-patients"  # the patients first: a hospital writes only about its own
    body = _fresh(b"\n".join(gzip.decompress((hundred / f"{rtype}.000.ndjson.gz").read_bytes()).strip()
                             for rtype in ("Patient", "Immunization")))
    lines = [ln for ln in body.splitlines() if ln.strip()]
    r = ingest(settings, token, "/fhir/$import", content=body, headers={**NDJSON, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    stack.stop("ingest")  # mid-job or before it started: accepted work is in the database
    stack.start("ingest")
    final: dict = {}

    def done() -> bool:
        s = httpx.get(r.headers["Content-Location"], timeout=30,
                      headers=auth(token("gy-hosp-001", "ingest", role="integration")))
        final.update(s.json())
        return s.status_code == 200

    wait_for(done, 300, "the resumed job")
    assert final["status"] == "completed" and final["accepted"] == len(lines) and final["rejected"] == 0
    for raw in (lines[0], lines[len(lines) // 2], lines[-1]):
        doc = orjson.loads(raw)
        wait_readable(settings, token, doc["resourceType"], doc["id"])
