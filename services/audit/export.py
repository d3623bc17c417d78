"""Event pages as JSON, CSV (an accounting of disclosures) or a FHIR Bundle of AuditEvents."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import orjson

from services.audit import balp

CSV_COLUMNS = ("index", "event_id", "occurred_at", "kind", "outcome", "accessor_id", "accessor_org",
               "accessor_org_type", "accessor_role", "purpose", "patient", "resources", "reasons",
               "policy_version", "notify_patient", "notify_after", "legal", "request_id", "data_digest")


def events_json(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"index": int(r.idx), **orjson.loads(r.body)} for r in rows]


def _csv_row(index: int, ev: dict[str, Any]) -> list[str]:
    acc = ev.get("accessor") or {}
    decision = ev.get("decision") or {}
    obligations = decision.get("obligations") or {}
    resources = ";".join(f"{r.get('type')}/{r.get('id')}" + (f"/_history/{r['version']}" if r.get("version") else "")
                         for r in ev.get("resources") or [])
    legal = ";".join(f"{k}={v}" for k, v in sorted((ev.get("legal") or {}).items()))
    outcome = "denied" if ev.get("kind") == "denial" or decision.get("allow") is False else "allowed"
    return [str(index), ev.get("event_id", ""), ev.get("occurred_at", ""), ev.get("kind", ""), outcome,
            acc.get("id", ""), acc.get("org", ""), acc.get("org_type", ""), acc.get("role", ""),
            ev.get("purpose") or "", ev.get("patient") or "", resources, ";".join(decision.get("reasons", [])),
            decision.get("policy_version") or "", str(bool(obligations.get("notify_patient"))).lower(),
            obligations.get("notify_after") or "", legal, ev.get("request_id") or "", ev.get("data_digest") or ""]


def _safe(cell: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a cell may come from a caller's token."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def events_csv(rows: Sequence[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_safe(c) for c in _csv_row(int(r.idx), orjson.loads(r.body))])
    return out.getvalue()


def events_fhir(rows: Sequence[Any], self_url: str, next_url: str | None) -> dict[str, Any]:
    """A FHIR R4 searchset Bundle of AuditEvents, with a ``next`` link when there is more."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {"resourceType": "Bundle", "type": "searchset", "link": links,
            "entry": [{"fullUrl": f"urn:uuid:{orjson.loads(r.body)['event_id']}",
                       "resource": balp.to_fhir(orjson.loads(r.body), int(r.idx)),
                       "search": {"mode": "match"}} for r in rows]}
