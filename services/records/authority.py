"""Why a caller asks, established from what was signed, before any policy sees it.

A request to records carries its purpose of use and its legal or emergency
authority. The purpose is the one in the caller's token (``purpose_of_use``:
an ``X-Purpose-Of-Use`` header may restate it, never change it). A warrant or
an ethics approval is a document signed by the issuing court or ethics board
(``services.adapters.documents``), from the ``X-Warrant``/``X-Ethics-Approval``
header or the token's ``warrant``/``ethics_approval`` claim; only its verified
facts go into the policy input. A break-glass reason comes from
``X-Break-Glass-Reason`` or the ``break_glass_reason`` claim: it is the
clinician's own account, and the token's purpose says whether they may give it.

Whatever fails here is refused the way a policy denial is: an AuditEvent of
kind ``denial`` naming the reason is published (acks=all) and the caller gets a
403 that names the event. An attempt to raise one's own authority is exactly
what the audit trail is for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from services.adapters.auth import Caller, PurposeRefused, purpose_of_use, signed_purpose
from services.adapters.documents import ETHICS_APPROVAL, WARRANT, DocumentKind, DocumentRefused, DocumentVerifier
from services.contracts.policy import PURPOSES, Decision, Legal
from services.records.access import Authority, Denied
from services.records.gate import Gate

__all__ = ["AuthorityReader"]


@dataclass
class AuthorityReader:
    """Reads a request's authority; refuses, audited, what its signatures do not back."""

    verifier: DocumentVerifier
    gate: Gate
    pseudonym: Callable[[str], str]  # a patient's record id → the pseudonym the audit log names them by

    def __call__(self, request: Request, caller: Caller) -> Authority:
        h, claims = request.headers, caller.claims or {}
        reason = h.get("x-break-glass-reason") or claims.get("break_glass_reason")
        base = Authority(purpose=signed_purpose(caller), break_glass={"reason": reason} if reason else None,
                         request_id=h.get("x-request-id"))
        try:
            purpose = purpose_of_use(caller, h.get("x-purpose-of-use"))
        except PurposeRefused as exc:
            stated = exc.stated if exc.stated in PURPOSES else "unrecognised"  # the log holds no free text
            raise self._refuse(request, caller, base, exc.reason, {"stated_purpose": stated}) from exc
        authority = Authority(purpose=purpose, break_glass=base.break_glass, request_id=base.request_id)
        try:
            legal = Legal(warrant=self._document(WARRANT, h.get("x-warrant") or claims.get("warrant"),
                                                 caller, purpose),
                          ethics_approval=self._document(ETHICS_APPROVAL, h.get("x-ethics-approval")
                                                         or claims.get("ethics_approval"), caller, purpose))
        except DocumentRefused as exc:
            raise self._refuse(request, caller, authority, exc.reason, {"refused": exc.kind.name}) from exc
        return Authority(purpose=purpose, legal=legal, break_glass=base.break_glass, request_id=base.request_id)

    def _document(self, kind: DocumentKind, raw: Any, caller: Caller, purpose: str) -> dict[str, Any] | None:
        if raw is None or raw == "":
            return None
        return self.verifier.verify(kind, raw, org=caller.org, purpose=purpose)

    def _refuse(self, request: Request, caller: Caller, authority: Authority, reason: str,
                details: dict[str, Any]) -> Denied:
        """Publish the denial (log before answering) and return the exception that answers 403."""
        route = request.scope.get("route")  # the route's template: the path itself may hold a patient's id
        return self.gate.refuse(caller, authority, self._patient(request), Decision(allow=False, reasons=[reason]),
                                details={"route": f"{request.method} {getattr(route, 'path', '?')}", **details})

    def _patient(self, request: Request) -> str | None:
        """The patient the request names outright (path or ``patient=``), so they can see the attempt."""
        named = request.path_params.get("pid") or request.query_params.get("patient")
        if not isinstance(named, str) or not named:
            return None
        return self.pseudonym(named.removeprefix("Patient/"))
