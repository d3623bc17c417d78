"""Metrics, traces and logs of the running platform after real traffic (docs/architecture.md §17).

The stack runs with ``HEALTHGOV_TRACE_EXPORTER=file`` and the access log on
(deploy/test.sh), so each service writes its spans to
``<state>/traces/<service>.jsonl`` and a JSON line per request to its log.
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.adapters.config import PlatformSettings
from services.cli import visits
from tests.conftest import auth, wait_for

pytestmark = pytest.mark.stack
SERVICES = ("ingest", "records", "audit", "oversight", "portal")
OBSERVATIONS = 210  # over ingest's pool threshold (200): the validation workers take part
FAMILY = "Qwxzyvonk"  # a name found nowhere else: what must not reach a log or a metric


def url_of(settings: PlatformSettings, service: str) -> str:
    return str(getattr(settings, f"{service}_url"))


def scrape(settings: PlatformSettings, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one service's /metrics, keyed by name and labels."""
    r = httpx.get(f"{url_of(settings, service)}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def spans(settings: PlatformSettings, service: str) -> list[dict[str, Any]]:
    path = Path(settings.state_dir, "traces", f"{service}.jsonl")
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def traffic(stack, token, settings: PlatformSettings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One traced NDJSON submission (a Patient, 210 Observations, one invalid) and one traced read."""
    before = {s: scrape(settings, s) for s in SERVICES}
    pid = f"tel-{uuid.uuid4().hex[:12]}"
    patient = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1980-04-02",
               "name": [{"family": FAMILY, "given": ["Ada"]}]}
    obs = [{"resourceType": "Observation", "id": f"{pid}-o{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}}
           for i in range(OBSERVATIONS)]
    bad = {"resourceType": "Observation", "id": f"{pid}-bad", "status": "not-a-status",
           "code": {"text": "pulse"}, "subject": {"reference": f"Patient/{pid}"}}
    body = b"\n".join(orjson.dumps(r) for r in [patient, *obs, bad])
    submit_trace, submit_parent = traceparent()
    r = httpx.post(f"{settings.ingest_url}/fhir/$import", content=body, timeout=120,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration"),
                                **{"Content-Type": "application/fhir+ndjson", "traceparent": submit_parent,
                                   "X-Request-ID": "submission-1"}))
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "submission-1"
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses.count("201 Created") == OBSERVATIONS + 1 and len(statuses) == OBSERVATIONS + 2
    admitted = visits.admit(settings.ingest_url, token("gy-hosp-001", "ingest", role="integration"),
                            "gy-hosp-001", [pid])
    assert admitted.status_code == 200, admitted.text
    def reader() -> dict[str, str]:
        return auth(token("gy-hosp-001", purpose="TREAT"))  # a token is good for one request (its jti)

    wait_for(lambda: httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", headers=reader(),
                               timeout=30).status_code == 200, 60, "the submitted patient to be readable")
    read_trace, read_parent = traceparent()
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", timeout=30,
                  headers={**reader(), "traceparent": read_parent})
    assert r.status_code == 200, r.text
    return {"before": before, "pid": pid, "submit_trace": submit_trace, "read_trace": read_trace,
            "read_request_id": r.headers["x-request-id"]}


def test_metrics_count_the_traffic(traffic: dict[str, Any], settings: PlatformSettings) -> None:
    before = traffic["before"]

    def after_minus_before(service: str, name: str, **labels: str) -> float:
        return total(scrape(settings, service), name, **labels) - total(before[service], name, **labels)

    # Requests by route template, with their latency.
    assert after_minus_before("ingest", "healthgov_http_requests_total", route="/fhir/$import", status="200") == 1
    assert after_minus_before("ingest", "healthgov_http_request_duration_seconds_count", route="/fhir/$import") == 1
    assert after_minus_before("records", "healthgov_http_requests_total", route="/fhir/{rtype}/{rid}",
                              status="200") >= 2
    # The ingest submission's resources, its refusal by reason, the validation pool, the broker.
    assert after_minus_before("ingest", "healthgov_ingest_resources_total", transport="ndjson",
                              outcome="accepted") >= OBSERVATIONS + 1
    assert after_minus_before("ingest", "healthgov_ingest_resources_total", transport="ndjson",
                              outcome="rejected") == 1
    assert after_minus_before("ingest", "healthgov_ingest_rejections_total", transport="ndjson") >= 1
    assert after_minus_before("ingest", "healthgov_validation_pool_tasks_total") >= 1
    assert total(scrape(settings, "ingest"), "healthgov_validation_pool_workers") >= 1
    assert after_minus_before("ingest", "healthgov_kafka_produced_messages_total", topic="ingest.resources.v1") >= 1
    assert after_minus_before("ingest", "healthgov_policy_decision_duration_seconds_count") >= 1
    # Records consumed it, decided the reads with OPA; audit appended their events.
    assert after_minus_before("records", "healthgov_kafka_consumed_messages_total", topic="ingest.resources.v1") >= 1
    assert after_minus_before("records", "healthgov_policy_decisions_total", outcome="allow") >= 1
    wait_for(lambda: after_minus_before("audit", "healthgov_audit_appended_entries_total") >= 3, 30,
             "audit to append the submission's, the visit's and the reads' events")
    audit = scrape(settings, "audit")
    assert total(audit, "healthgov_audit_tree_size") >= 3
    assert total(audit, "healthgov_kafka_consumer_up", topic="audit.events.v1") == 1
    lags = [v for (n, ls), v in audit.items() if n == "healthgov_kafka_consumer_lag"
            and dict(ls).get("topic") == "audit.events.v1"]
    assert lags and all(v >= 0 for v in lags)


def test_metrics_carry_no_ids_or_phi(traffic: dict[str, Any], settings: PlatformSettings) -> None:
    for service in SERVICES:
        text = httpx.get(f"{url_of(settings, service)}/metrics", timeout=10).text
        assert traffic["pid"] not in text and FAMILY not in text, service
        assert "gy-hosp-001" not in text, service  # no organisation either
        routes = set(re.findall(r'route="([^"]*)"', text))
        assert all(r.startswith("/") or r == "<unmatched>" for r in routes), routes


def test_one_trace_follows_a_submission_and_a_read(traffic: dict[str, Any], settings: PlatformSettings) -> None:
    def services_in(trace_id: str) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for service in ("ingest", "records", "audit"):
            found[service] = [s for s in spans(settings, service) if s["trace_id"] == trace_id]
        return found

    submit = traffic["submit_trace"]
    wait_for(lambda: all(services_in(submit).values()), 30, "the submission's spans in ingest, records and audit")
    found = services_in(submit)
    assert {s["name"] for s in found["ingest"]} >= {"POST /fhir/$import", "opa decide"}
    assert any(s["name"] == "consume ingest.resources.v1" and s["kind"] == "CONSUMER" for s in found["records"])
    assert any(s["name"] == "consume audit.events.v1" for s in found["audit"])
    server = next(s for s in found["ingest"] if s["kind"] == "SERVER")
    assert server["attributes"]["http.route"] == "/fhir/$import"
    assert server["attributes"]["healthgov.request_id"] == "submission-1"

    read = traffic["read_trace"]
    wait_for(lambda: bool(services_in(read)["records"] and services_in(read)["audit"]), 30,
             "the read's spans in records and audit")
    found = services_in(read)
    names = {s["name"] for s in found["records"]}
    assert {"GET /fhir/{rtype}/{rid}", "opa decide"} <= names
    # No span names or attributes hold the patient's id or name.
    for service in ("ingest", "records", "audit"):
        raw = Path(settings.state_dir, "traces", f"{service}.jsonl").read_text()
        assert traffic["pid"] not in raw and FAMILY not in raw, service


def test_request_ids_are_echoed_or_made(stack, settings: PlatformSettings) -> None:  # type: ignore[no-untyped-def]
    mine = httpx.get(f"{settings.records_url}/healthz", headers={"X-Request-ID": "abc.DEF-123_x"}, timeout=10)
    assert mine.headers["x-request-id"] == "abc.DEF-123_x"
    made = httpx.get(f"{settings.records_url}/healthz", timeout=10).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    # An id that could carry anything (too long, other characters) is replaced, not logged or audited.
    for sent in ("x" * 65, "a b", "<script>"):
        got = httpx.get(f"{settings.records_url}/healthz", headers={"X-Request-ID": sent}, timeout=10)
        assert re.fullmatch(r"[0-9a-f]{32}", got.headers["x-request-id"]), sent


def test_logs_are_json_with_the_request_id_and_no_phi(traffic: dict[str, Any], stack,  # type: ignore[no-untyped-def]
                                                       settings: PlatformSettings) -> None:
    def access_lines() -> list[dict[str, Any]]:
        lines = stack.log_file("records").read_bytes().splitlines()
        parsed = [orjson.loads(line) for line in lines if line.startswith(b"{")]
        return [p for p in parsed if p.get("logger") == "healthgov.access"]

    wait_for(lambda: any(p.get("request_id") == traffic["read_request_id"] for p in access_lines()), 10,
             "the read's access line")
    line = next(p for p in access_lines() if p["request_id"] == traffic["read_request_id"])
    assert line["route"] == "/fhir/{rtype}/{rid}" and line["status"] == 200 and line["service"] == "records"
    assert line["trace_id"] == traffic["read_trace"]
    for service in SERVICES:
        raw = stack.log_file(service).read_text(errors="replace")
        assert traffic["pid"] not in raw and FAMILY not in raw, service
