"""Attacks on the APIs' input handling: nothing a caller sends may crash a request (5xx).

Each test sends, to the running platform, one kind of input that used to end
in a 500 (or be accepted when it must be refused) and checks the clear 4xx
answer that replaced it: an OperationOutcome from FHIR endpoints, without
the text of any exception from inside.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from services.adapters.auth import issue_token
from tests.conftest import auth, first_patient
from tests.integration.records.support import fresh_patient

DEEP = 3000  # far deeper than the JSON decoders' recursion limits


def _outcome(r: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """Assert an OperationOutcome answer with ``status``; return it."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers["content-type"]
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"], body
    return body  # type: ignore[no-any-return]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _signed(keys, org: str, aud: str, **claims: Any) -> str:  # type: ignore[no-untyped-def]
    """A token signed with the org's real key but with claims the platform's own minting never writes."""
    now = int(time.time())
    base = {"iss": org, "sub": "user-1", "aud": aud, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()),
            "role": "clinician", "purpose": "TREAT"}
    private, _ = keys.org_signer(org)
    return issue_token(org=org, private_key=private, subject="user-1", audience=aud, role="clinician",
                       extra={**base, **claims})


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("claims", [{"exp": str(int(time.time()) + 60)}, {"iat": str(int(time.time()))},
                                    {"exp": int(time.time()) + 60.5}, {"purpose": {"a": 1}}])
def test_a_token_with_mistyped_claims_is_refused_not_a_crash(stack, settings, keys, claims) -> None:  # type: ignore[no-untyped-def]
    tok = _signed(keys, "gy-hosp-001", "records", **claims)
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{uuid.uuid4()}", headers=auth(tok), timeout=30)
    body = _outcome(r, 401)
    assert r.headers["www-authenticate"] == "Bearer" and body["issue"][0]["code"] == "login"


def test_a_token_whose_payload_is_deeply_nested_json_is_refused(stack, settings) -> None:  # type: ignore[no-untyped-def]
    tok = ".".join([_b64(b'{"alg":"EdDSA","typ":"JWT"}'), _b64(_nested(DEEP).encode()), _b64(b"x" * 64)])
    _outcome(httpx.get(f"{settings.records_url}/fhir/Patient/x", headers=auth(tok), timeout=30), 401)
    _outcome(httpx.post(f"{settings.ingest_url}/fhir/Patient", headers=auth(tok), content=b"{}", timeout=30), 401)


# --- nested JSON in headers and bodies ----------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_deeply_nested_json_in_a_warrant_header_is_refused_not_a_crash(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    header = _b64(b'{"alg":"EdDSA","typ":"warrant+jwt"}')
    for warrant in (_nested(DEEP), f"{header}.{_b64(_nested(DEEP).encode())}.{_b64(b'x' * 64)}",
                    f"{_b64(_nested(DEEP).encode())}.{_b64(b'{}')}.{_b64(b'x' * 64)}"):
        r = httpx.get(f"{settings.records_url}/fhir/Patient/{uuid.uuid4()}/$everything", timeout=30,
                      headers=auth(token("gy-police", purpose="HLEGAL"), **{"X-Warrant": warrant}))
        body = _outcome(r, 403)  # an unreadable warrant is refused like any unsigned one, and audited
        assert "unsigned" in body["issue"][0]["diagnostics"] and r.headers["X-Healthgov-Event-Id"]


def test_deeply_nested_json_bodies_are_a_400(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    pid = first_patient()["id"]
    for path in ("/fhir/Consent", f"/fhir/Patient/{pid}/$refer"):
        r = httpx.post(f"{settings.records_url}{path}", content=_nested(DEEP).encode(), timeout=30,
                       headers=auth(token("gy-hosp-001", purpose="TREAT")))
        _outcome(r, 400)


def test_malformed_json_is_answered_in_our_words_not_the_parsers(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{settings.records_url}/fhir/Consent", content=b'{"resourceType": "Consent",', timeout=30,
                   headers=auth(token("gy-hosp-001", purpose="TREAT")))
    text = json.dumps(_outcome(r, 400))
    assert "line 1" not in text and "char" not in text and "Expecting" not in text


def test_a_resource_nested_hundreds_of_levels_deep_is_an_entry_error(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    depth = 400  # 800 levels of JSON: within what the JSON parser reads, far beyond any real resource
    extension = '{"url": "http://example.org/x", "extension": [' * depth \
        + '{"url": "http://example.org/x", "valueString": "leaf"}' + "]}" * depth
    patient = f'{{"resourceType": "Patient", "id": "{uuid.uuid4()}", "extension": [{extension}]}}'
    r = httpx.post(f"{settings.ingest_url}/fhir/Patient", content=patient.encode(), timeout=60,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration"),
                                **{"Content-Type": "application/fhir+json"}))
    issue = _outcome(r, (400, 413))["issue"][0]  # 413 once the platform sees it cannot be written back
    assert issue["expression"] == ["Patient"] and issue["code"] in ("invalid", "too-costly"), issue
    # 130 levels of extensions (260 of JSON) still validate, but cannot be written back: a per-line error.
    depth = 130
    extension = '{"url": "http://example.org/x", "extension": [' * depth \
        + '{"url": "http://example.org/x", "valueString": "leaf"}' + "]}" * depth
    lines = f'{{"resourceType": "Patient", "id": "{uuid.uuid4()}", "extension": [{extension}]}}\n'.encode() \
        + orjson.dumps(fresh_patient(first_patient()))
    bulk = httpx.post(f"{settings.ingest_url}/fhir/$import", content=lines, timeout=60,
                      headers=auth(token("gy-hosp-001", "ingest", role="integration"),
                                   **{"Content-Type": "application/fhir+ndjson"}))
    assert bulk.status_code == 200, bulk.text
    first, second = (e["response"]["status"] for e in bulk.json()["entry"])
    assert first == "413 Content Too Large" and second == "201 Created", (first, second)


# --- numbers and dates at the edge ----------------------------------------------------------------


@pytest.mark.parametrize("date", ["9999-12-31", "9999-12", "ap9999", "ap0001-01-01", "9999-12-31T23:59:59Z"])
def test_a_search_date_at_the_end_of_the_calendar_is_answered(stack, settings, token, date) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.records_url}/fhir/Observation", timeout=30,
                  params={"patient": str(uuid.uuid4()), "date": date},
                  headers=auth(token("gy-hosp-001", purpose="TREAT")))
    assert r.status_code < 500, r.text
    assert r.status_code in (200, 403, 404), r.text


@pytest.mark.parametrize(("path", "params"), [
    ("/events", {"cursor": 2**64}), ("/events", {"limit": 2**64}), ("/checkpoints", {"since_size": 2**64}),
    ("/proofs/inclusion", {"size": 2**64, "index": 2**63}), ("/proofs/consistency", {"first": 1, "second": 2**64}),
    ("/entries", {"start": 2**64, "end": 2**64 + 1}), ("/leaves", {"start": 0, "end": 2**70}),
])
def test_integers_beyond_64_bits_are_a_400_at_the_audit_service(stack, settings, token, path, params) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.audit_url}{path}", params=params, timeout=30,
                  headers=auth(token("gz-nhc", "audit", role="regulator", purpose="HCOMPL")))
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"] == "invalid"


def test_a_version_beyond_64_bits_is_a_400(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{first_patient()['id']}/_history/{2**64}", timeout=30,
                  headers=auth(token("gy-hosp-001", purpose="TREAT")))
    _outcome(r, 400)


# --- what the framework answers is FHIR too -----------------------------------------------------------


def test_unknown_paths_wrong_methods_and_bad_parameters_answer_operation_outcomes(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    ingest_auth = auth(token("gy-hosp-001", "ingest", role="integration"))
    _outcome(httpx.get(f"{settings.ingest_url}/no/such/path", timeout=30), 404)
    _outcome(httpx.delete(f"{settings.ingest_url}/fhir", headers=ingest_auth, timeout=30), 405)
    _outcome(httpx.get(f"{settings.records_url}/no/such/path", timeout=30), 404)
    bad = httpx.get(f"{settings.records_url}/fhir/Patient/x/_history/not-a-number", timeout=30,
                    headers=auth(token("gy-hosp-001", purpose="TREAT")))
    body = _outcome(bad, 400)
    assert "not-a-number" not in json.dumps(body)  # where and which rule, never the value


# --- ids and media types -------------------------------------------------------------------------------


def test_ingest_refuses_an_unsupported_content_type_with_415(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    patient = orjson.dumps(fresh_patient(first_patient()))
    for path, ctype in (("/fhir/Patient", "text/html"), ("/fhir/Patient", "application/xml"),
                        ("/fhir/$import", "application/fhir+json"), ("/fhir", "multipart/form-data")):
        r = httpx.post(f"{settings.ingest_url}{path}", content=patient, timeout=30,
                       headers=auth(token("gy-hosp-001", "ingest", role="integration"), **{"Content-Type": ctype}))
        body = _outcome(r, 415)
        assert body["issue"][0]["code"] == "not-supported"


def test_ingest_refuses_ids_longer_than_64_characters(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    long_id = "a" * 65
    headers = auth(token("gy-hosp-001", "ingest", role="integration"), **{"Content-Type": "application/fhir+json"})
    put = httpx.put(f"{settings.ingest_url}/fhir/Patient/{long_id}", timeout=30, headers=headers,
                    content=orjson.dumps({**first_patient(), "id": long_id}))
    _outcome(put, 400)
    lines = b"\n".join(orjson.dumps({**fresh_patient(first_patient()), "id": rid})
                       for rid in (long_id, "has space", str(uuid.uuid4())))
    bulk = httpx.post(f"{settings.ingest_url}/fhir/$import", content=lines, timeout=60,
                      headers=auth(token("gy-hosp-001", "ingest", role="integration"),
                                   **{"Content-Type": "application/fhir+ndjson"}))
    assert bulk.status_code == 200, bulk.text
    statuses = [e["response"]["status"] for e in bulk.json()["entry"]]
    assert statuses == ["400 Bad Request", "400 Bad Request", "201 Created"]
    assert bulk.json()["entry"][0]["response"]["outcome"]["issue"][0]["expression"] == ["Patient.id"]


def test_records_paths_with_ids_no_resource_can_have_are_not_found(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    for path in (f"/fhir/Patient/{'a' * 65}", f"/fhir/Observation/{'b' * 200}/_history",
                 f"/fhir/Patient/{'c' * 100}/$everything", "/fhir/Patient/bad%20id"):
        r = httpx.get(f"{settings.records_url}{path}", headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=30)
        _outcome(r, 404)


# --- order of checks ----------------------------------------------------------------------------------------


def test_ingest_refuses_a_caller_who_may_not_write_before_validating_anything(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    broken = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Nope"}}]}
    r = httpx.post(f"{settings.ingest_url}/fhir", json=broken, timeout=30,
                   headers=auth(token("gy-cdc", "ingest", role="integration")))
    body = _outcome(r, 403)
    assert "write_requires_hospital" in body["issue"][0]["diagnostics"]


# --- headers and the audit service's signer ---------------------------------------------------------------


def test_every_service_answers_with_nosniff_and_frame_denial(stack, settings) -> None:  # type: ignore[no-untyped-def]
    for url in (settings.ingest_url, settings.records_url, settings.audit_url, settings.portal_url):
        for path in ("/healthz", "/no/such/path"):
            r = httpx.get(url + path, timeout=30)
            assert r.headers.get("x-content-type-options") == "nosniff", (url, path)
            assert r.headers.get("x-frame-options") == "DENY", (url, path)


def test_only_who_oversees_the_log_can_make_it_sign_a_checkpoint(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    anonymous = httpx.post(f"{settings.audit_url}/checkpoint", timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    hospital = httpx.post(f"{settings.audit_url}/checkpoint", timeout=30,
                          headers=auth(token("gy-hosp-001", "audit", role="clinician")))
    assert hospital.status_code == 403 and hospital.json()["error"] == "forbidden"
    regulator = httpx.post(f"{settings.audit_url}/checkpoint", timeout=30,
                           headers=auth(token("gz-nhc", "audit", role="regulator", purpose="HCOMPL")))
    assert regulator.status_code in (200, 404), regulator.text  # 404 only while the log is still empty
