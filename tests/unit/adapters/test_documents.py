"""Warrants and ethics approvals: only what the issuing court or board signed, for this org, counts."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.adapters import crypto
from services.adapters.auth import Caller, PurposeRefused, purpose_of_use
from services.adapters.documents import (
    ETHICS_APPROVAL,
    WARRANT,
    DocumentRefused,
    DocumentVerifier,
    issue_document,
)

ORGS = {
    "court": {"type": "court", "suspended": False},
    "closed-court": {"type": "court", "suspended": True},
    "irb": {"type": "ethics_board", "suspended": False},
    "hospital": {"type": "hospital", "suspended": False},
    "police": {"type": "law_enforcement", "suspended": False},
    "uni": {"type": "research", "suspended": False},
}
KEYS = {org: crypto.ed25519_generate() for org in [*ORGS, "stranger"]}
VERIFIER = DocumentVerifier({"orgs": ORGS},
                            {org: Ed25519PublicKey.from_public_bytes(KEYS[org][1]) for org in ORGS})


def warrant(issuer: str = "court", to: str = "police", key_of: str | None = None, **kw: Any) -> str:
    claims = {"patient": "p-1", "labels": ["PSY"], **kw.pop("claims", {})}
    return issue_document(WARRANT, issuer=issuer, private_key=KEYS[key_of or issuer][0], to=to, claims=claims, **kw)


def refused(raw: Any, kind: Any = WARRANT, org: str = "police", purpose: str = "HLEGAL") -> str:
    with pytest.raises(DocumentRefused) as exc:
        VERIFIER.verify(kind, raw, org=org, purpose=purpose)
    return exc.value.reason


def test_a_signed_warrant_gives_the_policy_verified_facts() -> None:
    facts = VERIFIER.verify(WARRANT, warrant(claims={"types": ["Condition"], "sealed_until": "2099-01-01T00:00:00Z"}),
                            org="police", purpose="HLEGAL")
    assert facts["verified"] is True and facts["issuer"] == "court" and facts["org"] == "police"
    assert facts["patient"] == "p-1" and facts["labels"] == ["PSY"] and facts["types"] == ["Condition"]
    assert facts["sealed_until"] == "2099-01-01T00:00:00Z" and facts["id"].startswith("warrant-")
    assert facts["expires"] > facts["issued"]


def test_what_the_caller_writes_is_not_a_warrant() -> None:
    unsigned = json.dumps({"id": "w-1", "court": "court", "patient": "p-1", "expires": "2099-01-01T00:00:00Z"})
    assert refused(unsigned) == "warrant_unsigned"
    assert refused({"id": "w-1"}) == "warrant_unsigned"
    assert refused("a.b.c") == "warrant_unsigned"
    header, body, _ = warrant().split(".")
    assert refused(f"{header}.{body}.") == "warrant_signature_invalid"  # the signature stripped


def test_a_tampered_warrant_is_refused() -> None:
    header, body, sig = warrant().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["patient"] = "p-2"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(f"{header}.{forged}.{sig}") == "warrant_signature_invalid"


def test_only_a_registered_court_in_good_standing_issues_warrants() -> None:
    assert refused(warrant(issuer="hospital")) == "warrant_issuer_not_a_court"
    assert refused(warrant(issuer="irb")) == "warrant_issuer_not_a_court"
    assert refused(warrant(key_of="hospital")) == "warrant_signature_invalid"  # claims a court, signed elsewhere
    assert refused(warrant(issuer="stranger")) == "warrant_issuer_unknown"
    assert refused(warrant(issuer="closed-court")) == "warrant_issuer_suspended"


def test_a_warrant_serves_only_its_org_its_purpose_and_its_time() -> None:
    assert refused(warrant(to="hospital")) == "warrant_for_another_org"
    assert refused(warrant(), purpose="TREAT") == "warrant_purpose_mismatch"
    assert refused(warrant(days=-1)) == "warrant_expired"
    assert refused(warrant(issued_at=time.time() + 3600)) == "warrant_not_yet_valid"
    assert refused(warrant(claims={"patient": ""})) == "warrant_malformed"
    assert refused(warrant(claims={"labels": "PSY"})) == "warrant_malformed"


def test_a_document_of_one_kind_is_not_another() -> None:
    approval = issue_document(ETHICS_APPROVAL, issuer="irb", private_key=KEYS["irb"][0], to="uni",
                              claims={"project": "cohort"})
    assert VERIFIER.verify(ETHICS_APPROVAL, approval, org="uni", purpose="HRESCH")["project"] == "cohort"
    assert refused(approval, org="uni") == "warrant_malformed"  # an approval presented as a warrant
    court_signed = issue_document(ETHICS_APPROVAL, issuer="court", private_key=KEYS["court"][0], to="uni",
                                  claims={"project": "cohort"})
    assert refused(court_signed, ETHICS_APPROVAL, "uni", "HRESCH") == "ethics_approval_issuer_not_an_ethics_board"
    assert refused(approval, ETHICS_APPROVAL, "police", "HRESCH") == "ethics_approval_for_another_org"


def caller(purpose: Any = None, **claims: Any) -> Caller:
    return Caller(id="u", org="hospital", org_type="hospital", role="clinician", purpose=purpose,
                  claims={"purpose": purpose, **claims})


def test_the_signed_purpose_decides_and_a_header_only_restates_it() -> None:
    assert purpose_of_use(caller("TREAT")) == "TREAT"
    assert purpose_of_use(caller("TREAT"), "TREAT") == "TREAT"
    assert purpose_of_use(caller(None), default="HCOMPL") == "HCOMPL"
    assert purpose_of_use(caller(["TREAT"])) == ""  # a purpose that is not a code is none
    for signed, stated in [("TREAT", "ETREAT"), (None, "TREAT"), ("ETREAT", "TREAT"), ("TREAT", "treat")]:
        with pytest.raises(PurposeRefused):
            purpose_of_use(caller(signed), stated)


def test_break_glass_needs_the_organisations_signature() -> None:
    assert purpose_of_use(caller("TREAT", break_glass_allowed=True), "ETREAT") == "ETREAT"
    with pytest.raises(PurposeRefused):
        purpose_of_use(caller("TREAT", break_glass_allowed="yes"), "ETREAT")
    with pytest.raises(PurposeRefused):
        purpose_of_use(caller("HPAYMT", break_glass_allowed=True), "ETREAT")
