"""Attacks on the SMART Backend Services token endpoint and its access tokens, on the running platform.

Every refusal is an OAuth error (400/401 with ``error``), never a 5xx; an access
token opens only the Bulk Data routes, only for the organisation it names. Every
token issued is an audit event, every refused attempt a denial.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.records.support import logged_event

RESEARCH = "gz-uni-research"
TOKEN_PATH = "/auth/token"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(keys, org: str = RESEARCH, *, signer: str | None = None, aud: str | None = None,  # type: ignore[no-untyped-def]
              ttl: int = 120, jti: str | None = None, sub: str | None = None, settings: Any = None) -> str:
    private, _ = keys.org_signer(signer or org)
    now = int(time.time())
    claims = {"iss": org, "sub": sub or org, "aud": aud or f"{settings.records_url}{TOKEN_PATH}", "exp": now + ttl,
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, Ed25519PrivateKey.from_private_bytes(private), algorithm="EdDSA")


def grant(settings, signed: str, **overrides: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    form = {"grant_type": "client_credentials", "scope": "system/Patient.read system/Condition.read",
            "client_assertion_type": ASSERTION, "client_assertion": signed, **overrides}
    return httpx.post(f"{settings.records_url}{TOKEN_PATH}", data=form, timeout=30)


def test_the_configuration_names_the_token_endpoint(stack, settings) -> None:  # type: ignore[no-untyped-def]
    conf = httpx.get(f"{settings.records_url}/fhir/.well-known/smart-configuration", timeout=30).json()
    assert conf["token_endpoint"] == f"{settings.records_url}{TOKEN_PATH}"
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]


def test_a_research_organisation_gets_a_reusable_token_for_the_export_routes_only(stack, settings, keys) -> None:  # type: ignore[no-untyped-def]
    r = grant(settings, assertion(keys, settings=settings))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] <= 300 and r.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    for _ in range(2):  # reused, as a Bulk Data client does: kick-off, polls, downloads
        assert httpx.get(f"{settings.records_url}/export-jobs/{uuid.uuid4().hex}", headers=headers,
                         timeout=30).status_code == 404
    # Not a credential anywhere else: reads, projects, consents stay with healthgov's signed tokens.
    assert httpx.get(f"{settings.records_url}/fhir/Patient/x", headers=headers, timeout=30).status_code == 401
    assert httpx.post(f"{settings.records_url}/projects", json={}, headers=headers, timeout=30).status_code == 401


@pytest.mark.parametrize("attack", ["other_key", "wrong_aud", "replayed", "long_lived", "sub_differs", "not_research",
                                    "unknown_org", "garbage"])
def test_forged_or_stale_assertions_get_no_token(stack, settings, keys, attack: str) -> None:  # type: ignore[no-untyped-def]
    kw: dict[str, Any] = {"settings": settings}
    if attack == "other_key":
        signed = assertion(keys, signer="gz-insurer-1", **kw)
    elif attack == "wrong_aud":
        signed = assertion(keys, aud="https://elsewhere.example/token", **kw)
    elif attack == "replayed":
        signed = assertion(keys, **kw)
        assert grant(settings, signed).status_code == 200
    elif attack == "long_lived":
        signed = assertion(keys, ttl=3600, **kw)
    elif attack == "sub_differs":
        signed = assertion(keys, sub="someone-else", **kw)
    elif attack == "not_research":
        signed = assertion(keys, "gz-insurer-1", **kw)
    elif attack == "unknown_org":
        signed = jwt.encode({"iss": "nobody", "sub": "nobody", "aud": "x", "exp": int(time.time()) + 60,
                             "jti": "j"}, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    else:
        signed = "not.a.jwt"
    r = grant(settings, signed)
    assert r.status_code in (400, 401), r.text
    assert r.json()["error"] in ("invalid_client", "unauthorized_client")
    assert "access_token" not in r.json()


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"client_assertion_type": "basic"}, "invalid_request"),
    ({"scope": "patient/*.read"}, "invalid_scope"),
    ({"scope": "system/*.write"}, "invalid_scope"),
    ({"scope": ""}, "invalid_scope"),
])
def test_malformed_grants_are_oauth_errors(stack, settings, keys, form: dict[str, str], error: str) -> None:  # type: ignore[no-untyped-def]
    r = grant(settings, assertion(keys, settings=settings), **form)
    assert r.status_code == 400 and r.json()["error"] == error, r.text


def test_a_body_that_is_no_form_is_a_400(stack, settings) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{settings.records_url}{TOKEN_PATH}", content=b"\xff\x00{", timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_a_forged_access_token_opens_nothing(stack, settings) -> None:  # type: ignore[no-untyped-def]
    forged = jwt.encode({"iss": "healthgov-records-smart", "aud": "healthgov-records-bulk", "sub": RESEARCH,
                         "org": RESEARCH, "exp": int(time.time()) + 60}, "guessed-key-guessed-key-guessed-key",
                        algorithm="HS256")
    r = httpx.get(f"{settings.records_url}/export-jobs/{uuid.uuid4().hex}",
                  headers={"Authorization": f"Bearer {forged}"}, timeout=30)
    assert r.status_code == 401


def test_an_issued_token_is_an_audit_event_naming_client_scopes_and_expiry(stack, settings, keys,  # type: ignore[no-untyped-def]
                                                                          token) -> None:
    before = time.time()
    r = grant(settings, assertion(keys, settings=settings))
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "access_token" and event["patient"] is None
    assert event["accessor"]["org"] == RESEARCH and event["details"]["client"] == RESEARCH
    assert event["details"]["scopes"] == ["system/Patient.read", "system/Condition.read"]
    expires = datetime.fromisoformat(event["details"]["expires"]).timestamp()
    assert before + 250 <= expires <= time.time() + 301
    assert event["details"]["token_id"] == jwt.decode(access, options={"verify_signature": False})["jti"]
    # Neither the token nor anything that stands for it: the log is read by many, a token opens exports.
    logged = json.dumps(event)
    for secret in (access, access.split(".")[2], hashlib.sha256(access.encode()).hexdigest()):
        assert secret not in logged


def test_each_refused_attempt_is_a_denial_event(stack, settings, keys, token) -> None:  # type: ignore[no-untyped-def]
    """A forged key, an unknown client, a replayed assertion, a scope not granted: each a denial naming the
    client it claimed to be (verified only where its key proved it), never the assertion."""
    stranger = "nobody-" + uuid.uuid4().hex[:8]
    replayed = assertion(keys, settings=settings)
    assert grant(settings, replayed).status_code == 200
    attempts = [  # (assertion, form overrides, error, claimed client, verified)
        (assertion(keys, signer="gz-insurer-1", settings=settings), {}, "invalid_client", RESEARCH, False),
        (jwt.encode({"iss": stranger, "sub": stranger, "aud": "x", "exp": int(time.time()) + 60, "jti": "j"},
                    Ed25519PrivateKey.generate(), algorithm="EdDSA"), {}, "invalid_client", stranger, False),
        (replayed, {}, "invalid_client", RESEARCH, True),
        (assertion(keys, settings=settings), {"scope": "system/*.write"}, "invalid_scope", RESEARCH, True),
        (assertion(keys, settings=settings), {"scope": " ".join(["system/" + "X" * 5000 + ".read"] * 50)},
         "invalid_scope", RESEARCH, True),
    ]
    answers = [grant(settings, signed, **form) for signed, form, *_ in attempts]
    for (signed, _, error, claimed, verified), r in zip(attempts, answers, strict=True):
        assert r.status_code in (400, 401) and r.json()["error"] == error, r.text
        event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
        assert event["kind"] == "denial" and event["decision"]["allow"] is False
        assert event["details"]["action"] == "access_token" and event["details"]["error"] == error
        assert event["details"]["client"] == claimed and event["details"]["client_verified"] is verified
        assert event["accessor"]["org"] == (claimed if verified else "unverified")
        assert signed not in json.dumps(event)
        assert len(event["details"]["scopes"]) <= 20 and all(len(x) <= 64 for x in event["details"]["scopes"])
