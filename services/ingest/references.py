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
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from services.fhir.structure import spell
from services.fhir.validation import Issue

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


Trail = tuple[Any, ...] | None  # (parent trail, key or index): a path, spelt out only for an issue


def _spell(trail: Trail, where: str) -> str:
    parts: list[str] = []
    while trail is not None:
        trail, step = trail
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return where + "".join(reversed(parts))


def rewrite(resource: dict[str, Any], where: str, *, full_urls: dict[str, str] | None,
            ids: IdentifierIndex | None) -> list[Issue]:
    """Rewrite every Reference in ``resource`` in place; issues for those that cannot stand.

    Most lines of bulk data have references to rewrite, and an element path built as a
    string at every node of the walk cost more than the walk: the path is kept as a
    chain of (parent, step) pairs and spelt out only when an issue names it.
    """
    issues: list[Issue] = []

    def visit(node: Any, trail: Trail) -> None:  # exact type checks: JSON holds no subclasses
        if type(node) is dict:
            ref = node.get("reference")
            if type(ref) is str:
                _fix(node, ref, lambda: _spell(trail, where), full_urls, ids, issues)
            for key, value in node.items():
                kind = type(value)
                if kind is dict or kind is list:
                    visit(value, (trail, key))
        else:
            for i, value in enumerate(node):
                kind = type(value)
                if kind is dict or kind is list:
                    visit(value, (trail, i))

    if type(resource) in (dict, list):
        visit(resource, None)
    return issues


def rewrite_held(holders: list[tuple[dict[str, Any], Any]], *, full_urls: dict[str, str] | None,
                 ids: IdentifierIndex | None) -> list[Issue]:
    """``rewrite`` over the objects the structure's walk found holding a reference (``Verdict.holders``).

    The same rewriting and issues, without a walk of its own: for NDJSON, where
    nearly every line has a reference to look at, that walk cost as much as the
    structure check.
    """
    issues: list[Issue] = []
    for node, trail in holders:
        ref = node.get("reference")
        if type(ref) is str:
            _fix(node, ref, lambda t=trail: spell(t), full_urls, ids, issues)
    return issues


def _fix(node: dict[str, Any], ref: str, path_of: Callable[[], str], full_urls: dict[str, str] | None,
         ids: IdentifierIndex | None, issues: list[Issue]) -> None:
    """Rewrite one reference in place, or add the issue that names it (``path_of`` spells its location)."""
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        target = (full_urls or {}).get(ref)
        if target is None:
            path = path_of()
            issues.append(Issue(f"{path}.reference: reference does not resolve to an entry of this Bundle",
                                f"{path}.reference", "not-found"))
        else:
            node["reference"] = target
        return
    if "?" not in ref:
        return
    m = _CONDITIONAL.match(ref)
    if m:
        error = _conditional(node, m.group(1), m.group(2), ids)
        if error:
            path = path_of()
            issues.append(Issue(f"{path}.reference: {error}", f"{path}.reference", "not-supported"))


def needs_rewrite(raw: bytes) -> bool:
    """Cheap pre-check on the serialised resource: most lines have nothing to rewrite."""
    return b"urn:" in raw or b"?" in raw
