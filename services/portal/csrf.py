"""Synchroniser tokens for the portal's forms (OWASP's HMAC-based token pattern).

Every form that changes something carries a hidden ``csrf_token`` that the
server checks before acting. The token is an HMAC, under a key derived from
the portal's key, of the session id (signed-in forms) or of a random sign-in
nonce kept in its own cookie (the sign-in form, so nobody can sign a victim
into an attacker's account). Both cookies are HttpOnly and SameSite=Strict:
a page on another site can neither read the token nor the value it is made
from, so it cannot forge one. Nothing is stored: the token is recomputed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "healthgov_signin"


class CsrfTokens:
    def __init__(self, portal_key: bytes) -> None:
        self._key = hmac.new(portal_key, b"healthgov.portal.csrf.v1", hashlib.sha256).digest()

    def _mac(self, scope: str, value: str) -> str:
        return hmac.new(self._key, f"{scope}|{value}".encode(), hashlib.sha256).hexdigest()

    def for_session(self, sid: str | None) -> str:
        return self._mac("session", sid) if sid else ""

    def for_sign_in(self, nonce: str | None) -> str:
        return self._mac("sign-in", nonce) if nonce else ""

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def matches(expected: str, supplied: str | None) -> bool:
        return bool(expected) and bool(supplied) and hmac.compare_digest(expected, supplied or "")
