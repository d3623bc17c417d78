"""Shaping upstream answers into what a person reads: no raw FHIR, no raw events."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from services.contracts import vocabulary
from services.tlog import receipt


def record_summary(bundle: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_type: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "sources": set()})
    conditions = []
    for entry in bundle.get("entry", []):
        res = entry.get("resource", {})
        row = by_type[res.get("resourceType", "?")]
        row["count"] += 1
        if source := res.get("meta", {}).get("source"):
            row["sources"].add(source)
        if res.get("resourceType") == "Condition":
            code = res.get("code", {})
            text = code.get("text") or next((c.get("display") for c in code.get("coding", [])), "")
            status = next((c.get("code") for c in res.get("clinicalStatus", {}).get("coding", [])), "")
            conditions.append({"onset": (res.get("onsetDateTime") or "")[:10], "text": text, "status": status})
    summary = [{"type": t, "count": r["count"], "sources": sorted(r["sources"])}
               for t, r in sorted(by_type.items())]
    return summary, sorted(conditions, key=lambda c: c["onset"], reverse=True)


STATE_TYPES = vocabulary.STATE_ORG_TYPES


def event_rows(events: list[dict[str, Any]], registry: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    orgs = registry.get("orgs", {})
    for e in events:
        acc = e.get("accessor", {})
        decision = e.get("decision") or {}
        rows.append({
            "index": e.get("index"),
            "event_id": e.get("event_id"),
            "when": (e.get("occurred_at") or "")[:19].replace("T", " "),
            "who": orgs.get(acc.get("org"), {}).get("name", acc.get("org")),
            "org_type": acc.get("org_type"),
            "state": acc.get("org_type") in STATE_TYPES,
            "purpose": e.get("purpose"),
            "kind": e.get("kind"),
            "denied": e.get("kind") == "denial",
            "reasons": ", ".join(decision.get("reasons", [])),
            "count": len(e.get("resources", [])),
            "patient": e.get("patient"),
        })
    return rows


def trail_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A patient's trail entries as facts the page puts in words (codes stay codes; the template translates).

    Emergency (break-glass) and state access are flagged so they stand out,
    with the reason the professional gave and the legal document's id.
    """
    rows = []
    for e in events:
        acc = e.get("accessor") or {}
        decision = e.get("decision") or {}
        details = e.get("details") or {}
        types = sorted({str(r.get("type")) for r in e.get("resources") or [] if r.get("type")})
        rows.append({
            "event_id": e.get("event_id"), "at": e.get("occurred_at"), "org": acc.get("org"),
            "org_type": acc.get("org_type"), "guardian": acc.get("id") if acc.get("role") == "guardian" else None,
            "person": acc.get("id") if acc.get("org_type") != "patient" else None,
            "purpose": e.get("purpose"), "kind": e.get("kind"), "denied": e.get("kind") == "denial",
            "reasons": list(decision.get("reasons") or []), "count": len(e.get("resources") or []), "types": types,
            "emergency": e.get("kind") == "break_glass" or e.get("purpose") == "ETREAT",
            "emergency_reason": details.get("break_glass_reason"),
            "state": acc.get("org_type") in STATE_TYPES,
            "legal": {k: v for k, v in (e.get("legal") or {}).items() if v},
            "format": details.get("format") if e.get("kind") == "download" else None,
        })
    return rows


def check_receipt(data: dict[str, Any], verifier_key: str) -> dict[str, Any]:
    """Verify a receipt as a patient could offline: signature, then inclusion."""
    check = receipt.verify(data, verifier_key)
    out: dict[str, Any] = {"ok": check.ok, "key": verifier_key, "index": data.get("index"), "size": check.size,
                           "error": "; ".join(check.problems)}
    if check.event is not None:
        out["event"] = json.dumps(check.event, indent=2)
    return out
