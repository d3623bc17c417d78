"""Attacks on authority: a caller raises its own purpose, or writes its own warrant or ethics approval.

Authority is proven, not asserted. The purpose of use is the one the caller's
organisation signed into its token; a warrant is signed by a registered court
and an ethics approval by a registered ethics board, for the organisation that
presents it, and current. Each attack below is refused with a 403
OperationOutcome *and* leaves a denial on the audit log that names the reason,
the caller, the request and (where the request names them) the patient, so
the attempt is visible to the regulator and the patient.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from services.adapters import crypto
from tests.conftest import first_patient
from tests.integration.records.support import DEPRESSION, HYPERTENSION, bearer, condition, fresh_patient, ingest
from tests.integration.records.support import logged_event as _logged_event

EVENT = "X-Healthgov-Event-Id"


@pytest.fixture(scope="module")
def victim(stack, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A patient of gy-hosp-001 only, with a plain and a PSY-labelled condition."""
    p = fresh_patient(first_patient())
    plain, psy = condition(p["id"], HYPERTENSION, "2019-05-01"), condition(p["id"], DEPRESSION, "2020-02-01")
    ingest(settings, token, p, plain, psy)
    return {"id": p["id"], "plain": plain["id"], "psy": psy["id"]}


def conditions(settings, pid: str, headers: dict[str, str]) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(f"{settings.records_url}/fhir/Condition", params={"patient": pid}, timeout=60,
                     headers={**headers, "X-Request-Id": str(uuid.uuid4())})


def police(token, **headers: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("gy-police", role="investigator", purpose="HLEGAL"), **headers)


def research(token, **headers: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"), **headers)


def assert_refused_and_audited(r: httpx.Response, reason: str, settings, token, keys,  # type: ignore[no-untyped-def]
                               org: str, patient: str) -> dict[str, Any]:
    """403, an OperationOutcome that releases nothing, and the denial on the log naming reason and patient."""
    assert r.status_code == 403, (r.status_code, r.text[:300])
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and reason in body["issue"][0]["diagnostics"]
    assert "entry" not in body
    event = _logged_event(settings, token, r.headers[EVENT])
    assert event["kind"] == "denial" and event["decision"]["allow"] is False
    assert event["decision"]["reasons"] == [reason]
    assert event["accessor"]["org"] == org and event["request_id"] == r.request.headers["X-Request-Id"]
    assert event["patient"] == crypto.pseudonym(keys.pseudonym_key(), patient)
    assert event["resources"] == [] and event["data_digest"] is None
    assert event["details"]["route"] == "GET /fhir/{rtype}" and patient not in json.dumps(event)  # pseudonyms only
    return event


# --- the purpose of use -----------------------------------------------------------------


def test_a_header_cannot_raise_a_treating_token_to_break_glass(victim, token, settings, keys) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    reason = {"X-Break-Glass-Reason": "curious"}
    # gy-hosp-002 has no care relationship: break-glass is the only way in, and its token says TREAT.
    escalated = conditions(settings, pid, bearer(token("gy-hosp-002", purpose="TREAT"),
                                                 **{"X-Purpose-Of-Use": "ETREAT"}, **reason))
    event = assert_refused_and_audited(escalated, "purpose_not_in_token", settings, token, keys, "gy-hosp-002", pid)
    assert event["purpose"] == "TREAT" and event["details"]["stated_purpose"] == "ETREAT"
    # A token with no purpose at all gains none from a header either.
    bare = conditions(settings, pid, bearer(token("gy-hosp-002"), **{"X-Purpose-Of-Use": "ETREAT"}, **reason))
    assert_refused_and_audited(bare, "purpose_not_in_token", settings, token, keys, "gy-hosp-002", pid)
    # A header cannot lower a signed break-glass purpose to something else either.
    lowered = conditions(settings, pid, bearer(token("gy-hosp-002", purpose="ETREAT"),
                                               **{"X-Purpose-Of-Use": "TREAT"}, **reason))
    assert_refused_and_audited(lowered, "purpose_not_in_token", settings, token, keys, "gy-hosp-002", pid)


def test_break_glass_is_what_the_organisation_signed(victim, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    reason = {"X-Break-Glass-Reason": "unconscious in ER"}
    signed = conditions(settings, pid, bearer(token("gy-hosp-002", purpose="ETREAT"), **reason))
    assert signed.status_code == 200, signed.text
    # A treating token the organisation marked as allowed to break the glass may be raised by the header.
    allowed = conditions(settings, pid, bearer(token("gy-hosp-002", purpose="TREAT", break_glass_allowed=True),
                                               **{"X-Purpose-Of-Use": "ETREAT"}, **reason))
    assert allowed.status_code == 200, allowed.text
    for r in (signed, allowed):
        event = _logged_event(settings, token, r.headers[EVENT])
        assert event["kind"] == "break_glass" and event["purpose"] == "ETREAT"
        assert event["decision"]["obligations"]["review"] is True
    restated = conditions(settings, pid, bearer(token("gy-hosp-001", purpose="TREAT"), **{"X-Purpose-Of-Use": "TREAT"}))
    assert restated.status_code == 200 and restated.json()["total"] == 2


# --- warrants -------------------------------------------------------------------------------


def test_an_unsigned_json_warrant_is_refused(victim, token, settings, keys) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    written = json.dumps({"id": "w-self-made", "court": "gy-intermediate-court", "patient": pid,
                          "expires": "2099-01-01T00:00:00Z", "labels": ["PSY"], "sealed_until": None})
    r = conditions(settings, pid, police(token, **{"X-Warrant": written}))
    assert_refused_and_audited(r, "warrant_unsigned", settings, token, keys, "gy-police", pid)
    # The same JSON as a claim in the police's own (signed) token is still the police's own writing.
    claim = conditions(settings, pid, bearer(token("gy-police", role="investigator", purpose="HLEGAL",
                                                   warrant=json.loads(written))))
    assert_refused_and_audited(claim, "warrant_unsigned", settings, token, keys, "gy-police", pid)


def test_a_tampered_warrant_is_refused(victim, token, settings, keys, documents) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    header, body, signature = documents.warrant(pid, labels=[]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["labels"] = ["PSY"]  # open what the court kept closed
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    r = conditions(settings, pid, police(token, **{"X-Warrant": f"{header}.{forged}.{signature}"}))
    assert_refused_and_audited(r, "warrant_signature_invalid", settings, token, keys, "gy-police", pid)


def test_an_expired_warrant_is_refused(victim, token, settings, keys, documents) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    r = conditions(settings, pid, police(token, **{"X-Warrant": documents.warrant(pid, days=-1)}))
    assert_refused_and_audited(r, "warrant_expired", settings, token, keys, "gy-police", pid)


def test_a_warrant_issued_to_another_org_is_refused(victim, token, settings, keys, documents) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    r = conditions(settings, pid, police(token, **{"X-Warrant": documents.warrant(pid, to="gy-cdc")}))
    assert_refused_and_audited(r, "warrant_for_another_org", settings, token, keys, "gy-police", pid)


def test_a_warrant_signed_by_a_hospital_is_refused(victim, token, settings, keys, documents) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    # A hospital signs in its own name: it is registered, but it is not a court.
    own_name = conditions(settings, pid, police(token, **{"X-Warrant": documents.warrant(pid, court="gy-hosp-001")}))
    assert_refused_and_audited(own_name, "warrant_issuer_not_a_court", settings, token, keys, "gy-police", pid)
    # A hospital signs in the court's name: the court's registered key did not sign it.
    court_name = conditions(settings, pid, police(token, **{"X-Warrant": documents.warrant(pid, signer="gy-hosp-001")}))
    assert_refused_and_audited(court_name, "warrant_signature_invalid", settings, token, keys, "gy-police", pid)
    # A court the registry does not know.
    unknown = conditions(settings, pid, police(token, **{"X-Warrant": documents.warrant(pid, court="kangaroo-court")}))
    assert_refused_and_audited(unknown, "warrant_issuer_unknown", settings, token, keys, "gy-police", pid)


def test_a_signed_warrant_allows_the_read_it_names(victim, token, settings, keys, documents) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    warrant = documents.warrant(pid, labels=["PSY"], jti=f"w-{uuid.uuid4().hex[:8]}")
    r = conditions(settings, pid, police(token, **{"X-Warrant": warrant}))
    assert r.status_code == 200, r.text
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == sorted([victim["plain"], victim["psy"]])
    event = _logged_event(settings, token, r.headers[EVENT])
    claims = json.loads(base64.urlsafe_b64decode(warrant.split(".")[1] + "=="))
    assert event["kind"] == "disclosure" and event["legal"] == {"warrant": claims["jti"]}
    assert event["decision"]["reasons"] == ["lawful_warrant"] and event["decision"]["obligations"]["review"] is True
    # Signed, but naming someone else: the policy sees the verified patient and refuses.
    other = conditions(settings, pid, police(token, **{"X-Warrant": documents.warrant(str(uuid.uuid4()))}))
    assert other.status_code == 403 and "warrant_patient_mismatch" in other.text
    # Signed, but only for other types of record.
    encounters = documents.warrant(pid, types=["Encounter"])
    encounters_only = conditions(settings, pid, police(token, **{"X-Warrant": encounters}))
    assert encounters_only.status_code == 403 and "warrant_type_not_covered" in encounters_only.text
    # The warrant may also travel inside the police's token.
    in_token = conditions(settings, pid, bearer(token("gy-police", role="investigator", purpose="HLEGAL",
                                                      warrant=documents.warrant(pid))))
    assert in_token.status_code == 200, in_token.text


# --- ethics approvals -------------------------------------------------------------------------


def test_an_ethics_approval_from_a_non_board_is_refused(victim, token, settings, keys, documents) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    by_court = conditions(settings, pid, research(token, **{
        "X-Ethics-Approval": documents.ethics_approval(board="gy-intermediate-court")}))
    assert_refused_and_audited(by_court, "ethics_approval_issuer_not_an_ethics_board", settings, token, keys,
                               "gz-uni-research", pid)
    by_itself = conditions(settings, pid, research(token, **{
        "X-Ethics-Approval": documents.ethics_approval(board="gz-uni-research")}))
    assert_refused_and_audited(by_itself, "ethics_approval_issuer_not_an_ethics_board", settings, token, keys,
                               "gz-uni-research", pid)
    written = json.dumps({"id": "irb-self", "board": "gz-med-univ-irb", "project": "p",
                          "expires": "2099-01-01T00:00:00Z"})
    unsigned = conditions(settings, pid, research(token, **{"X-Ethics-Approval": written}))
    assert_refused_and_audited(unsigned, "ethics_approval_unsigned", settings, token, keys, "gz-uni-research", pid)
    elsewhere = conditions(settings, pid, research(token, **{
        "X-Ethics-Approval": documents.ethics_approval(to="gy-datamart")}))
    assert_refused_and_audited(elsewhere, "ethics_approval_for_another_org", settings, token, keys,
                               "gz-uni-research", pid)
    approved = conditions(settings, pid, research(token, **{"X-Ethics-Approval": documents.ethics_approval()}))
    assert approved.status_code == 200, approved.text
    assert _logged_event(settings, token, approved.headers[EVENT])["decision"]["obligations"]["deidentify"] == \
        "pseudonymize"
