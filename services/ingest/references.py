"""Reference resolution at ingest (FHIR transaction rules).

- ``urn:uuid:``/``urn:oid:`` references point at another entry of the same
  Bundle (its ``fullUrl``); they are rewritten to ``Type/id``. One that points
  nowhere is an error: in a transaction it fails the whole Bundle.
- Conditional references (``Practitioner?identifier=system|value``) are
  resolved against the Bundle's own resources when one carries that
  identifier; otherwise they are kept as a logical reference
  (``Reference.type`` + ``Reference.identifier``), which is valid FHIR to store.
  Other search parameters cannot be resolved here and are rejected.

The rewriting is deterministic, so a resubmission stores identical content.
Diagnostics name the element path, never the reference value (it may be PHI).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from services.ingest.fhir import Issue

_CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?(.*)$")
IdentifierIndex = dict[tuple[str, str, str], str]  # (type, system, value) -> "Type/id"


def identifier_index(resources: list[dict[str, Any]]) -> IdentifierIndex:
    """Which ``Type/id`` in a Bundle carries each business identifier."""
    out: IdentifierIndex = {}
    for res in resources:
        rid = res.get("id")
        if not rid:
            continue
        for ident in res.get("identifier") or []:
            if isinstance(ident, dict) and ident.get("value"):
                out[(res["resourceType"], ident.get("system") or "", ident["value"])] = f"{res['resourceType']}/{rid}"
    return out


def _conditional(ref: dict[str, Any], rtype: str, query: str, ids: IdentifierIndex | None) -> str | None:
    """Resolve or keep one conditional reference; returns an error text or None."""
    name, _, raw = query.partition("=")
    if name != "identifier" or not raw or "&" in raw:
        return "conditional references are supported only as Type?identifier=system|value"
    token = unquote(raw)
    system, bar, value = token.partition("|")
    if not bar:
        system, value = "", token
    if not value:
        return "conditional reference has an empty identifier value"
    target = (ids or {}).get((rtype, system, value))
    if target is not None:
        ref["reference"] = target
        return None
    del ref["reference"]
    ref["type"] = rtype
    ref.setdefault("identifier", {"system": system, "value": value} if system else {"value": value})
    return None


def rewrite(resource: dict[str, Any], where: str, *, full_urls: dict[str, str] | None,
            ids: IdentifierIndex | None) -> list[Issue]:
    """Rewrite every Reference in ``resource`` in place; issues for those that cannot stand."""
    issues: list[Issue] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                fix(node, ref, path)
            for key, value in node.items():
                if isinstance(value, dict | list):
                    visit(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, dict | list):
                    visit(value, f"{path}[{i}]")

    def fix(node: dict[str, Any], ref: str, path: str) -> None:
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            target = (full_urls or {}).get(ref)
            if target is None:
                issues.append(Issue(f"{path}.reference: reference does not resolve to an entry of this Bundle",
                                    f"{path}.reference", "not-found"))
            else:
                node["reference"] = target
            return
        m = _CONDITIONAL.match(ref)
        if m:
            error = _conditional(node, m.group(1), m.group(2), ids)
            if error:
                issues.append(Issue(f"{path}.reference: {error}", f"{path}.reference", "not-supported"))

    visit(resource, where)
    return issues


def needs_rewrite(raw: bytes) -> bool:
    """Cheap pre-check on the serialised resource: most lines have nothing to rewrite."""
    return b"urn:" in raw or b"?" in raw
