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
- errors are OAuth 2.0's (RFC 6749 §5.2): 400/401 with ``error``, never a 5xx.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse

from services.adapters.auth import MAX_LIFETIME_S, Authenticator, AuthError, Caller, bearer
from services.adapters.web import current_caller

ISSUER = "healthgov-records-smart"
AUDIENCE = "healthgov-records-bulk"
TOKEN_TTL_S = 300
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE_ACCESS = ("read", "rs", "*")


class OAuthError(Exception):
    """An RFC 6749 error answer."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def _scopes(raw: str) -> list[str]:
    """The requested scopes, all ``system/<Type or *>.<read|rs|*>``; anything else is ``invalid_scope``."""
    scopes = raw.split()
    if not scopes:
        raise OAuthError("invalid_scope", "ask for system/<type>.read scopes")
    for s in scopes:
        context, _, rest = s.partition("/")
        rtype, _, access = rest.partition(".")
        if context != "system" or not (rtype == "*" or (rtype.isalpha() and rtype[:1].isupper())) or \
                access not in SCOPE_ACCESS:
            raise OAuthError("invalid_scope", f"not a read scope this server grants: {s[:80]}")
    return scopes


class TokenService:
    """Checks client assertions and issues and verifies the access tokens of the Bulk Data routes."""

    def __init__(self, authenticator: Authenticator, key: bytes) -> None:
        self.auth = authenticator
        self.key = key

    def issue(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError("invalid_request", f"a client_assertion of type {ASSERTION_TYPE} is required")
        scopes = _scopes(form.get("scope", ""))
        caller = self._client(form["client_assertion"], token_url)
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": caller.id, "org": caller.org, "scope": " ".join(scopes),
                  "iat": now, "exp": now + TOKEN_TTL_S, "jti": str(uuid.uuid4())}
        return {"access_token": jwt.encode(claims, self.key, algorithm="HS256"), "token_type": "bearer",
                "expires_in": TOKEN_TTL_S, "scope": " ".join(scopes)}

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
        if org.get("suspended", False):
            raise OAuthError("invalid_client", "the organisation is suspended", 401)
        if org.get("type") != "research":
            raise OAuthError("unauthorized_client", "Bulk Data export is for research organisations")
        if not self.auth.replays.check_and_add(iss, "smart:" + claims["jti"], exp):
            raise OAuthError("invalid_client", "the assertion was already used (jti)", 401)
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


def install_smart_routes(app: FastAPI, tokens: TokenService) -> Any:
    """``.well-known/smart-configuration`` (at the root and under ``/fhir``) and ``POST /auth/token``."""

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
        try:
            form = await request.form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            out = tokens.issue(fields, str(request.url).split("?", 1)[0])
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                                headers={"Cache-Control": "no-store"})
        except (ValueError, AssertionError) as exc:  # a body that is no form at all
            return JSONResponse({"error": "invalid_request", "error_description": str(exc)[:200]}, status_code=400,
                                headers={"Cache-Control": "no-store"})
        return JSONResponse(out, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return Depends(bulk_caller_dependency(tokens))
