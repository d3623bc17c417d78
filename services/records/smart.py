"""SMART Backend Services for Bulk Data clients: a research organisation's system gets an access token.

healthgov's own callers send a fresh organisation-signed JWT with every
request (``adapters/auth.py``). An off-the-shelf Bulk Data client does what
the SMART Backend Services profile says instead: it reads
``.well-known/smart-configuration``, posts a ``client_credentials`` grant whose
``client_assertion`` is a JWT signed with its private key (RFC 7523,
``private_key_jwt``), and reuses the access token it gets back for the kick-off,
the polling and the downloads. Here:

- the client is a registered organisation (``client_id`` = its id) and the
  assertion is checked exactly as healthgov checks an organisation's token:
  its registered Ed25519 key (``EdDSA``), ``iss`` = ``sub`` = the client,
  ``aud`` = this token endpoint, at most five minutes of life, a ``jti`` never
  seen before, the organisation not suspended. Only research organisations
  are served: Bulk Data export is research use;
- the access token is records' own HS256 JWT (key ``records-access-token`` in
  the state directory), valid five minutes, for the export routes only
  (``bulk_caller``); it names the organisation and carries purpose ``HRESCH``
  and role ``researcher``, and every export request made with it is still
  decided by the policy against the organisation's own data-use project;
- errors are OAuth 2.0's (RFC 6749 §5.2): 400/401 with ``error``, never a 5xx;
- a token is a credential to de-identified population data, so issuing one is
  an accountable act: each issued token is an audit event (kind
  ``access_token``: the organisation, the granted scopes, the expiry and the
  token's ``jti``, never the token nor a digest of it) published through the
  disclosure gate before the token leaves, and each refused attempt a
  ``denial`` naming the client it claimed to be and why. If the event cannot
  be made durable (Kafka down) no token is issued: 503 with Retry-After.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.adapters.auth import MAX_LIFETIME_S, Authenticator, AuthError, Caller, bearer
from services.adapters.web import current_caller
from services.contracts import errors
from services.contracts.events import rfc3339
from services.contracts.policy import Decision
from services.records.access import Authority
from services.records.gate import Gate

ISSUER = "healthgov-records-smart"
AUDIENCE = "healthgov-records-bulk"
TOKEN_TTL_S = 300
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE_ACCESS = ("read", "rs", "*")
MAX_SCOPES = 50
MAX_CLAIMED = 64  # how much of an unverified client id a denial event repeats
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 error answer; ``client`` is the organisation that proved itself, if it did."""

    def __init__(self, error: str, description: str, status: int = 400, client: Caller | None = None) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.client = error, description, status, client


@dataclass(frozen=True)
class Issued:
    """A token granted: the answer for the client, and what its audit event says about it."""

    answer: dict[str, Any]
    caller: Caller
    scopes: list[str]
    expires: int
    jti: str


def _scopes(raw: str) -> list[str]:
    """The requested scopes, all ``system/<Type or *>.<read|rs|*>``; anything else is ``invalid_scope``."""
    scopes = raw.split()
    if not scopes:
        raise OAuthError("invalid_scope", "ask for system/<type>.read scopes")
    if len(scopes) > MAX_SCOPES:  # each is in the token and in its audit event: bounded
        raise OAuthError("invalid_scope", f"at most {MAX_SCOPES} scopes")
    for s in scopes:
        context, _, rest = s.partition("/")
        rtype, _, access = rest.partition(".")
        if context != "system" or not (rtype == "*" or (rtype.isalpha() and rtype[:1].isupper() and
                                                        len(rtype) <= 64)) or access not in SCOPE_ACCESS:
            raise OAuthError("invalid_scope", f"not a read scope this server grants: {s[:80]}")
    return scopes


class TokenService:
    """Checks client assertions and issues and verifies the access tokens of the Bulk Data routes."""

    def __init__(self, authenticator: Authenticator, key: bytes) -> None:
        self.auth = authenticator
        self.key = key

    def issue(self, form: dict[str, str], token_url: str) -> Issued:
        """The token for a valid grant. The client is verified before the scopes, so that a refusal for a
        scope names the organisation that asked (its assertion's ``jti`` is spent either way)."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError("invalid_request", f"a client_assertion of type {ASSERTION_TYPE} is required")
        caller = self._client(form["client_assertion"], token_url)
        try:
            scopes = _scopes(form.get("scope", ""))
        except OAuthError as exc:
            exc.client = caller
            raise
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": caller.id, "org": caller.org, "scope": " ".join(scopes),
                  "iat": now, "exp": now + TOKEN_TTL_S, "jti": str(uuid.uuid4())}
        answer = {"access_token": jwt.encode(claims, self.key, algorithm="HS256"), "token_type": "bearer",
                  "expires_in": TOKEN_TTL_S, "scope": " ".join(scopes)}
        return Issued(answer=answer, caller=caller, scopes=scopes, expires=int(claims["exp"]), jti=str(claims["jti"]))

    def _client(self, assertion: str, token_url: str) -> Caller:
        """The organisation the assertion proves, or ``invalid_client``."""
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            iss = unverified.get("iss") if isinstance(unverified, dict) else None
            key = self.auth.keys.get(iss) if isinstance(iss, str) else None
            org = self.auth.registry.get("orgs", {}).get(iss) if isinstance(iss, str) else None
            if key is None or org is None:
                raise OAuthError("invalid_client", "the client is not a registered organisation", 401)
            claims = jwt.decode(assertion, key, algorithms=["EdDSA"], audience=token_url, issuer=iss,
                                leeway=5, options={"require": ["iss", "sub", "aud", "exp", "jti"]})
        except (jwt.PyJWTError, RecursionError) as exc:
            raise OAuthError("invalid_client", f"the client assertion does not verify ({type(exc).__name__})",
                             401) from exc
        if claims.get("sub") != iss or not isinstance(claims.get("jti"), str):
            raise OAuthError("invalid_client", "the assertion's iss and sub must both be the client id", 401)
        exp = float(claims["exp"])
        if exp - time.time() > MAX_LIFETIME_S + 5:
            raise OAuthError("invalid_client", f"the assertion may live at most {MAX_LIFETIME_S} seconds", 401)
        proven = Caller(id=iss, org=iss, org_type=str(org.get("type", "unknown")), role="client")
        if org.get("suspended", False):
            raise OAuthError("invalid_client", "the organisation is suspended", 401, proven)
        if org.get("type") != "research":
            raise OAuthError("unauthorized_client", "Bulk Data export is for research organisations", client=proven)
        if not self.auth.replays.check_and_add(iss, "smart:" + claims["jti"], exp):
            raise OAuthError("invalid_client", "the assertion was already used (jti)", 401, proven)
        return Caller(id=iss, org=iss, org_type="research", role="researcher", purpose="HRESCH")

    def caller(self, token: str) -> Caller | None:
        """The caller an access token of ours names; None if the token is not one of ours (another scheme)."""
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, RecursionError):
            return None
        if header.get("alg") != "HS256":
            return None
        try:
            claims = jwt.decode(token, self.key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                                options={"require": ["iss", "aud", "sub", "exp", "org"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("access token expired") from exc
        except (jwt.PyJWTError, RecursionError) as exc:
            raise AuthError("access token does not verify") from exc
        org = self.auth.registry.get("orgs", {}).get(claims["org"])
        if org is None or org.get("suspended", False):
            raise AuthError("organisation is suspended or unknown", status=403, reason="org_suspended")
        return Caller(id=str(claims["sub"]), org=str(claims["org"]), org_type=str(org["type"]), role="researcher",
                      purpose="HRESCH", jti=str(claims.get("jti", "")), claims=claims)


def bulk_caller_dependency(tokens: TokenService) -> Callable[..., Awaitable[Caller]]:
    """The export routes' caller: a SMART access token of ours, or else healthgov's usual signed token."""

    async def bulk_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
        token = bearer(authorization)
        return tokens.caller(token) or await current_caller(request, authorization)

    return bulk_caller


def _claimed(form: dict[str, str]) -> str:
    """Who an unverified grant says it is (the assertion's ``iss``, else ``client_id``), cut short and printable:
    a denial names the claim so that an organisation under attack can be told, never trusting it."""
    claim: Any = form.get("client_id")
    try:
        unverified = jwt.decode(form.get("client_assertion", ""), options={"verify_signature": False})
        if isinstance(unverified, dict) and isinstance(unverified.get("iss"), str):
            claim = unverified["iss"]
    except (jwt.PyJWTError, RecursionError, ValueError, TypeError):
        pass
    if not isinstance(claim, str) or not claim:
        return "unknown"
    return _printable(claim)


def _printable(text: str) -> str:
    """A caller's text as an audit event may repeat it: short and printable (the log is kept for years)."""
    return "".join(c if c.isprintable() else "?" for c in text[:MAX_CLAIMED])


class TokenDesk:
    """``POST /auth/token`` as an accountable act: grant or refusal, each through the disclosure gate."""

    def __init__(self, tokens: TokenService, gate: Gate) -> None:
        self.tokens, self.gate = tokens, gate

    def answer(self, form: dict[str, str], token_url: str, unreadable: str | None = None) -> JSONResponse:
        """Issue and audit, or refuse and audit; the token leaves only once its event is durable."""
        authority = Authority(purpose="HRESCH", request_id=str(uuid.uuid4()))
        try:
            if unreadable is not None:
                raise OAuthError("invalid_request", f"the body is not a form: {unreadable}")
            issued = self.tokens.issue(form, token_url)
        except OAuthError as exc:
            return self._refuse(exc, form, authority)
        event = self.gate.record(kind="access_token", caller=issued.caller, authority=authority, patient=None,
                                 decision=None, details={
                                     "action": "access_token", "client": issued.caller.org,
                                     "scopes": issued.scopes, "expires": rfc3339(
                                         datetime.fromtimestamp(issued.expires, UTC)),
                                     "token_id": issued.jti})
        return JSONResponse(issued.answer, headers={**NO_STORE, errors.EVENT_HEADER: event.event_id})

    def _refuse(self, exc: OAuthError, form: dict[str, str], authority: Authority) -> JSONResponse:
        claimed = exc.client.org if exc.client is not None else _claimed(form)
        # A claim no key proved is not the organisation's act: its accessor is "unverified", so that forgeries
        # cannot be counted against the organisation they name; the claim itself is in the details.
        who = exc.client or Caller(id=f"unverified:{claimed}", org="unverified", org_type="unverified",
                                   role="client")
        scope = form.get("scope", "")
        denied = self.gate.refuse(who, authority, None, Decision(allow=False, reasons=[f"token_{exc.error}"]),
                                  details={"action": "access_token", "client": claimed,
                                           "client_verified": exc.client is not None, "error": exc.error,
                                           "why": exc.description[:200],
                                           "scopes": [_printable(x) for x in scope.split()[:20]]})
        return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                            headers={**NO_STORE, errors.EVENT_HEADER: denied.event_id})


def install_smart_routes(app: FastAPI, tokens: TokenService, gate: Gate) -> Any:
    """``.well-known/smart-configuration`` (at the root and under ``/fhir``) and ``POST /auth/token``."""
    desk = TokenDesk(tokens, gate)

    def configuration(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({
            "token_endpoint": f"{base}/auth/token", "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
            "scopes_supported": ["system/*.read", "system/*.rs"],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"]})

    app.get("/.well-known/smart-configuration")(configuration)
    app.get("/fhir/.well-known/smart-configuration")(configuration)

    @app.post("/auth/token")
    async def token(request: Request) -> JSONResponse:
        fields: dict[str, str] = {}
        unreadable = None
        try:
            form = await request.form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        except (ValueError, AssertionError) as exc:  # a body that is no form at all
            unreadable = str(exc)[:200]
        try:
            return await run_in_threadpool(desk.answer, fields, str(request.url).split("?", 1)[0], unreadable)
        except errors.Unavailable as exc:  # no durable event, no token (and no refusal without its event either)
            return JSONResponse({"error": "temporarily_unavailable", "error_description": exc.message},
                                status_code=503, headers={**NO_STORE, **exc.headers})

    return Depends(bulk_caller_dependency(tokens))
