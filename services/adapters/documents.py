"""Signed legal documents: court warrants and ethics approvals.

A warrant or an ethics approval is only worth something if the court or the
board that issued it can be shown to have issued it. Each is a compact JWS
(a JWT, ``alg`` EdDSA) signed with the issuer's Ed25519 key, the same kind of
key every registered organisation holds; the organisation registry says which
organisations are courts (``type: court``) and ethics boards
(``type: ethics_board``), and holds their public keys.

Claims:

- ``iss``: the issuing court or board (a registry org id);
- ``aud``: the organisation the document authorises (the police force, the
  research institute): nobody else can use it;
- ``jti``: the document id, ``iat``/``exp``: issued and expiry (required);
- ``purpose``: HLEGAL for a warrant, HRESCH for an ethics approval;
- a warrant: ``patient`` (the person's record id as the court names it),
  ``labels`` (the sensitive labels it opens), ``types`` (the resource types it
  covers; absent: all), ``sealed_until`` (optional, RFC 3339);
- an ethics approval: ``project``.

The JOSE ``typ`` header says which kind of document it is, so an approval is
never read as a warrant, nor an access token as either. ``DocumentVerifier``
checks all of it and hands the policy only verified facts (``verified: true``);
whatever fails is a ``DocumentRefused`` naming why, which records answers with
an audited 403.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LEEWAY_S = 5


@dataclass(frozen=True)
class DocumentKind:
    """One kind of legal document: how it is named, typed, issued and used."""

    name: str  # the policy input's field, and the prefix of every refusal reason
    typ: str  # the JOSE ``typ`` header
    issuer_type: str  # the registry org type that may issue it
    purpose: str  # the purpose of use it serves
    content: tuple[str, ...]  # required claims beyond the common ones
    not_issuer: str  # the refusal when the signer is registered but of another type


WARRANT = DocumentKind(name="warrant", typ="warrant+jwt", issuer_type="court", purpose="HLEGAL",
                       content=("patient",), not_issuer="warrant_issuer_not_a_court")
ETHICS_APPROVAL = DocumentKind(name="ethics_approval", typ="ethics-approval+jwt", issuer_type="ethics_board",
                               purpose="HRESCH", content=("project",),
                               not_issuer="ethics_approval_issuer_not_an_ethics_board")
KINDS = {k.name: k for k in (WARRANT, ETHICS_APPROVAL)}

COMMON_CLAIMS = ["iss", "aud", "jti", "iat", "exp", "purpose"]


class DocumentRefused(Exception):
    """A presented document is not a valid one of its kind for this caller; ``reason`` says why."""

    def __init__(self, kind: DocumentKind, problem: str, detail: str) -> None:
        self.kind = kind
        self.reason = problem if problem.startswith(kind.name) else f"{kind.name}_{problem}"
        super().__init__(f"{self.reason}: {detail}")


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class DocumentVerifier:
    """Checks warrants and ethics approvals against the organisation registry and its keys."""

    def __init__(self, registry: dict[str, Any], public_keys: dict[str, Ed25519PublicKey]) -> None:
        self.orgs: dict[str, Any] = registry.get("orgs", {})
        self.keys = public_keys

    def verify(self, kind: DocumentKind, raw: Any, *, org: str, purpose: str) -> dict[str, Any]:
        """The verified facts of ``raw`` for the policy, or ``DocumentRefused``.

        In order: a compact JWS at all (else ``unsigned``: the JSON a caller
        writes itself), of this kind, from a registered issuer of the right
        type in good standing, with a signature by that issuer's registered
        key (else ``signature_invalid``: tampered, or signed by someone else),
        addressed to ``org``, current, for ``purpose``, with its content.
        """
        if not isinstance(raw, str) or raw.count(".") != 2:
            raise DocumentRefused(kind, "unsigned", f"a {kind.name} must be a JWS signed by its issuer")
        try:
            header = jwt.get_unverified_header(raw)
            claimed = jwt.decode(raw, options={"verify_signature": False})
        except (jwt.PyJWTError, RecursionError) as exc:  # RecursionError: JSON nested deeper than the parser goes
            raise DocumentRefused(kind, "unsigned", f"not a readable JWS ({type(exc).__name__})") from exc
        if header.get("alg") != "EdDSA" or header.get("typ") != kind.typ:
            raise DocumentRefused(kind, "malformed", f"expected an EdDSA JWS of type {kind.typ}")
        issuer = claimed.get("iss")
        entry = self.orgs.get(issuer) if isinstance(issuer, str) else None
        key = self.keys.get(issuer) if isinstance(issuer, str) else None
        if entry is None or key is None:
            raise DocumentRefused(kind, "issuer_unknown", "the issuer is not a registered organisation")
        if entry.get("type") != kind.issuer_type:
            raise DocumentRefused(kind, kind.not_issuer, f"only a registered {kind.issuer_type} issues a {kind.name}")
        if entry.get("suspended") is not False:
            raise DocumentRefused(kind, "issuer_suspended", "the issuer is suspended")
        try:
            claims = jwt.decode(raw, key, algorithms=["EdDSA"], audience=org, issuer=issuer, leeway=LEEWAY_S,
                                options={"require": COMMON_CLAIMS})
        except jwt.InvalidSignatureError as exc:
            raise DocumentRefused(kind, "signature_invalid", "the issuer's registered key did not sign it") from exc
        except jwt.InvalidAudienceError as exc:
            raise DocumentRefused(kind, "for_another_org", f"it was not issued to {org}") from exc
        except jwt.ExpiredSignatureError as exc:
            raise DocumentRefused(kind, "expired", "it has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise DocumentRefused(kind, "not_yet_valid", "it is not valid yet") from exc
        except jwt.PyJWTError as exc:
            raise DocumentRefused(kind, "malformed", str(exc)) from exc
        return self._facts(kind, claims, org, purpose)

    @staticmethod
    def _facts(kind: DocumentKind, claims: dict[str, Any], org: str, purpose: str) -> dict[str, Any]:
        if claims["purpose"] != purpose:
            raise DocumentRefused(kind, "purpose_mismatch", f"it is for {claims['purpose']!r}, not {purpose!r}")
        missing = [c for c in kind.content if not isinstance(claims.get(c), str) or not claims[c]]
        if not isinstance(claims["jti"], str) or missing:
            raise DocumentRefused(kind, "malformed", f"missing or invalid claims: {['jti', *missing]}")
        facts: dict[str, Any] = {"id": claims["jti"], "issuer": claims["iss"], "org": org,
                                 "purpose": claims["purpose"], "issued": _rfc3339(claims["iat"]),
                                 "expires": _rfc3339(claims["exp"]), "verified": True}
        facts.update({c: claims[c] for c in kind.content})
        if kind is WARRANT:
            labels, types, sealed = claims.get("labels", []), claims.get("types"), claims.get("sealed_until")
            if not _strings(labels) or (types is not None and not _strings(types)) or \
                    (sealed is not None and not isinstance(sealed, str)):
                raise DocumentRefused(kind, "malformed", "labels and types are lists of strings, sealed_until a date")
            facts.update(labels=labels, sealed_until=sealed)
            if types is not None:
                facts["types"] = types
        return facts


def issue_document(kind: DocumentKind, *, issuer: str, private_key: bytes, to: str, days: float = 30,
                   claims: dict[str, Any] | None = None, issued_at: float | None = None) -> str:
    """Sign a ``kind`` document as ``issuer`` for organisation ``to`` (what a court's or board's system does)."""
    now = int(time.time() if issued_at is None else issued_at)
    body: dict[str, Any] = {"iss": issuer, "aud": to, "jti": f"{kind.name}-{uuid.uuid4()}", "iat": now,
                            "exp": now + int(days * 86400), "purpose": kind.purpose, **(claims or {})}
    return jwt.encode(body, Ed25519PrivateKey.from_private_bytes(private_key), algorithm="EdDSA",
                      headers={"typ": kind.typ})
