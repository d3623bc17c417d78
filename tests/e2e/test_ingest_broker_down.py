"""Kafka down: 503 with Retry-After and nothing half-written; an accepted async job still completes."""

from __future__ import annotations

import httpx
import orjson

from tests.conftest import auth, wait_for
from tests.integration.ingest.support import assert_never_stored, condition, ingest, new_patient, wait_readable
from tests.unit.ingest.hl7_messages import adt


def test_with_kafka_stopped_nothing_is_acknowledged_or_half_written(stack, token, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    cond = condition(pid)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in (patient, cond)]}
    later = new_patient()
    job_body = b"\n".join(orjson.dumps(r) for r in (later, condition(later["id"])))
    stack.stop("kafka")
    try:
        for what, path, kwargs in [
            ("transaction", "/fhir", {"json": bundle}),
            ("NDJSON", "/fhir/$import", {"content": orjson.dumps(patient),
                                         "headers": {"Content-Type": "application/fhir+ndjson"}}),
        ]:
            r = ingest(settings, token, path, **kwargs)
            assert r.status_code == 503, (what, r.text)
            assert int(r.headers["Retry-After"]) > 0
            assert r.json()["issue"][0]["code"] == "transient"
        hl7 = httpx.post(f"{settings.ingest_url}/hl7v2", content=adt(mrn="MRN-DOWN").encode(), timeout=60,
                         headers=auth(token("gy-hosp-001", "ingest", role="integration")))
        assert hl7.status_code == 503 and "MSA|AR|" in hl7.text and hl7.headers["Retry-After"]
        # An async import is accepted durably (ingest's database) even now...
        job = ingest(settings, token, "/fhir/$import", content=job_body,
                     headers={"Content-Type": "application/fhir+ndjson", "Prefer": "respond-async"})
        assert job.status_code == 202, job.text
    finally:
        stack.start("kafka")
    # ...and completes once the broker is back.
    final: dict = {}

    def done() -> bool:
        s = httpx.get(job.headers["Content-Location"], timeout=30,
                      headers=auth(token("gy-hosp-001", "ingest", role="integration")))
        final.update(s.json())
        return s.status_code == 200

    wait_for(done, 180, "the import job after the broker came back")
    assert final["status"] == "completed" and final["accepted"] == 2
    wait_readable(settings, token, "Patient", later["id"])
    # The refused transaction left nothing behind, and the same Bundle goes through now.
    assert_never_stored(settings, token, pid, [("Patient", pid), ("Condition", cond["id"])])
    again = ingest(settings, token, "/fhir", json=bundle)
    assert again.status_code == 200, again.text
    wait_readable(settings, token, "Condition", cond["id"])
