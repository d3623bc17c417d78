"""Caller authentication: org-signed JWTs (RFC 7523 style, docs/architecture.md §5).

A caller presents a short-lived JWT signed with its organisation's Ed25519 key.
We check the signature against the key registered for ``iss``, the audience,
that the token lives at most five minutes, that its ``jti`` was never seen, and
that the organisation is registered and not suspended. Only the portal's key
may carry a ``patient`` claim.

The purpose of use is the one the organisation signed into the token
(``purpose_of_use``): a request may restate it, never change it, so an
organisation limits what its people may do (break-glass above all) through the
tokens it issues.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.contracts import errors
from services.contracts.events import Accessor
from services.contracts.policy import Subject

MAX_LIFETIME_S = 300
LEEWAY_S = 5


class AuthError(errors.Unauthenticated):
    """The caller is not authenticated (401), or is but may not call at all (403: suspended, wrong claim).

    ``who`` is set when the token's signature proved who is asking (a suspended
    organisation, a patient claim from the wrong key, a replayed token): such a
    refusal is an audit event like any other (``web.install_error_handlers``).
    """

    def __init__(self, message: str, status: int = 401, who: Caller | None = None, reason: str = "") -> None:
        super().__init__(message, status=status)
        if status != 401:
            self.code = "forbidden"
            self.headers.pop("WWW-Authenticate", None)
        self.who = who
        self.reason = reason


def _jwt_problem(exc: jwt.PyJWTError) -> str:
    """Our own words for what is wrong with a token (the library's text is not part of our answers)."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature does not verify"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not valid yet"
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return "token is issued in the future"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm must be EdDSA"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer does not match"
    return "invalid token"


def _numeric_date(claims: dict[str, Any], name: str) -> int:
    """An RFC 7519 NumericDate as an integer; anything else (a string, a bool, a float) is refused."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuthError(f"token claim {name!r} must be an integer NumericDate")
    return value


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise AuthError(f"token claim {name!r} must be a string")
    return value


@dataclass(frozen=True)
class Caller:
    """An authenticated caller, as the token and the registry describe it."""

    id: str
    org: str
    org_type: str
    role: str
    patient: str | None = None
    purpose: str | None = None
    jti: str = ""
    claims: dict[str, Any] | None = None

    def accessor(self) -> Accessor:
        """Who asked, as every audit event names them: the one mapping from a caller to the log."""
        return Accessor(id=self.id, org=self.org, org_type=self.org_type, role=self.role)

    def subject(self, patient: str | None = None) -> Subject:
        """Who asks, as the policy sees them (``patient``: the caller's own pseudonym, for a patient)."""
        return Subject(id=self.id, org=self.org, org_type=self.org_type, role=self.role, patient=patient)


BREAK_GLASS = "ETREAT"
# The claim by which an organisation lets a treating token be escalated to break-glass.
BREAK_GLASS_ALLOWED = "break_glass_allowed"


class PurposeRefused(Exception):
    """The request states a purpose the caller's token does not carry (a 403, audited)."""

    reason = "purpose_not_in_token"

    def __init__(self, signed: str, stated: str) -> None:
        super().__init__(f"the token's purpose is {signed or 'not set'!r}; a request may restate it, "
                         f"not change it to {stated!r}")
        self.signed = signed
        self.stated = stated


def signed_purpose(caller: Caller) -> str:
    """The purpose in the caller's token, or "" when the token names none (or names it wrongly)."""
    purpose = caller.purpose
    return purpose if isinstance(purpose, str) else ""


def purpose_of_use(caller: Caller, stated: str | None = None, default: str = "") -> str:
    """The one rule for the purpose of use, for every service.

    The token is signed by the caller's organisation and the request is not,
    so the token decides: ``stated`` (an ``X-Purpose-Of-Use`` header) may only
    repeat the token's purpose. The single exception is one the organisation
    signed itself: a token for TREAT that carries ``break_glass_allowed: true``
    may be raised to ETREAT. A token without a purpose gets ``default`` (a
    service's fixed purpose, or "" for the policy to refuse as unknown), and
    any stated purpose is refused, since nothing signed backs it.
    """
    signed = signed_purpose(caller)
    if not stated or stated == signed:
        return signed or default
    claims = caller.claims or {}
    if stated == BREAK_GLASS and signed == "TREAT" and claims.get(BREAK_GLASS_ALLOWED) is True:
        return BREAK_GLASS
    raise PurposeRefused(signed, stated)


def load_registry(path: Path) -> dict[str, Any]:
    """The org registry document (the same JSON OPA sees as data)."""
    return json.loads(path.read_text())


class ReplayCache:
    """Remembers ``(iss, jti)`` until the token would have expired anyway.

    Every request carries a fresh ``jti``, so the cache holds one entry per
    request of the last five minutes: tens of thousands under load. Entries
    leave in expiry order from a heap, so a check costs O(log n) however full
    the cache is (sweeping the whole dict on each check made every request
    pay for every other request still in its lifetime).
    """

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[float, str, str]] = []  # heap of (exp, iss, jti)
        self._lock = threading.Lock()

    def check_and_add(self, iss: str, jti: str, exp: float) -> bool:
        horizon = time.time() - LEEWAY_S
        with self._lock:
            while self._expiry and self._expiry[0][0] < horizon:
                _, old_iss, old_jti = heapq.heappop(self._expiry)
                self._seen.discard((old_iss, old_jti))
            if (iss, jti) in self._seen:
                return False
            self._seen.add((iss, jti))
            heapq.heappush(self._expiry, (exp, iss, jti))
            return True

    def __len__(self) -> int:
        return len(self._seen)


class Authenticator:
    """Verifies tokens addressed to one service (``audience``)."""

    def __init__(
        self,
        *,
        audience: str,
        registry: dict[str, Any],
        public_keys: dict[str, bytes],
        portal_org: str,
    ) -> None:
        self.audience = audience
        self.registry = registry
        self.keys = {org: Ed25519PublicKey.from_public_bytes(k) for org, k in public_keys.items()}
        self.portal_org = portal_org
        self.replays = ReplayCache()

    def verify(self, token: str) -> Caller:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, RecursionError) as exc:  # RecursionError: a deeply nested JSON payload
            raise AuthError("malformed token") from exc
        if not isinstance(unverified, dict):
            raise AuthError("malformed token")
        iss = unverified.get("iss")
        key = self.keys.get(iss) if isinstance(iss, str) else None
        org = self.registry.get("orgs", {}).get(iss) if isinstance(iss, str) else None
        if key is None or org is None:
            raise AuthError("token issuer is not a registered organisation")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=self.audience,
                issuer=iss,
                leeway=LEEWAY_S,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"token audience is not {self.audience!r}") from exc
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(_jwt_problem(exc)) from exc
        exp, iat = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
        for name in ("sub", "jti", "role", "patient", "purpose", "break_glass_reason"):
            _optional_str(claims, name)
        if exp - iat > MAX_LIFETIME_S:
            raise AuthError(f"token lifetime exceeds {MAX_LIFETIME_S} seconds")
        who = Caller(id=str(claims["sub"]), org=iss, org_type=str(org["type"]), role=str(claims.get("role", "")))
        if org.get("suspended", False):
            raise AuthError("organisation is suspended", status=403, who=who, reason="org_suspended")
        patient = claims.get("patient")
        if patient is not None and iss != self.portal_org:
            raise AuthError("only the portal may assert a patient claim", status=403, who=who,
                            reason="patient_claim_not_from_portal")
        if not self.replays.check_and_add(iss, str(claims["jti"]), float(exp)):
            raise AuthError("token replayed (jti already used)", who=who, reason="token_replayed")
        return Caller(
            id=str(claims["sub"]),
            org=iss,
            org_type=str(org["type"]),
            role=str(claims.get("role", "")),
            patient=patient,
            purpose=claims.get("purpose"),
            jti=str(claims["jti"]),
            claims=claims,
        )


def issue_token(
    *,
    org: str,
    private_key: bytes,
    subject: str,
    audience: str | list[str],
    role: str,
    patient: str | None = None,
    purpose: str | None = None,
    ttl_s: int = 120,
    extra: dict[str, Any] | None = None,
) -> str:
    """Sign a short-lived token as ``org`` (the org's own systems do this)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": org,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_s,
        "jti": str(uuid.uuid4()),
        "role": role,
    }
    if patient is not None:
        claims["patient"] = patient
    if purpose is not None:
        claims["purpose"] = purpose
    claims.update(extra or {})
    return jwt.encode(claims, Ed25519PrivateKey.from_private_bytes(private_key), algorithm="EdDSA")


def bearer(authorization: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer`` header."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError("missing bearer token")
    return authorization[7:].strip()
