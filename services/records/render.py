"""Shape what a decision released into the FHIR response, applying its obligations.

Each released resource carries its own decision, so obligations apply per
resource: ``pseudonymize``/``safe_harbor`` rewrite it (``deident``), and
``aggregate_only`` turns it into a count, never a row. Withheld resources are
not in the response at all; the Bundle says how many were left out and why,
in ``meta.extension`` (``WITHHELD_URL``), and the response header repeats the
total.

Pure functions, no I/O: the bytes returned are exactly the bytes the audit
event's ``data_digest`` covers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.contracts.policy import Decision
from services.records import deident

WITHHELD_URL = "https://healthgov.example/withheld"
AGGREGATE_URL = "https://healthgov.example/aggregate"


@dataclass
class Released:
    """One decrypted resource version on its way out."""

    rtype: str
    version: int
    hospital: str | None
    labels: list[str]
    resource: dict[str, Any]
    patient: str  # platform pseudonym (or the directory slot)

    def ref_id(self) -> str:
        """The id the audit event names: never a patient's own FHIR id, their pseudonym instead."""
        return self.patient if self.rtype == "Patient" else str(self.resource.get("id"))

    def referenced_patients(self) -> set[str]:
        return deident.patient_refs(self.resource)


PseudonymFor = Callable[[Released], tuple[str | None, str]]


def _shaped(item: Released, d: Decision, pseudonym_for: PseudonymFor) -> dict[str, Any]:
    mode = d.obligations.deidentify
    if mode not in deident.DEIDENTIFIERS:
        return item.resource
    patient_id, pseudo = pseudonym_for(item)
    return deident.DEIDENTIFIERS[mode](item.resource, patient_id, pseudo)


def _counts(items: list[Released]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.rtype] = counts.get(item.rtype, 0) + 1
    return {"resourceType": "Parameters",
            "parameter": [{"name": t, "valueInteger": n} for t, n in sorted(counts.items())]}


def _history_entry(item: Released, resource: dict[str, Any]) -> dict[str, Any]:
    rid = resource.get("id")
    meta = item.resource.get("meta") or {}
    response: dict[str, Any] = {"status": "200 OK", "etag": f'W/"{item.version}"'}
    if meta.get("lastUpdated"):
        response["lastModified"] = meta["lastUpdated"]
    return {"fullUrl": f"{item.rtype}/{rid}/_history/{item.version}", "resource": resource,
            "request": {"method": "PUT", "url": f"{item.rtype}/{rid}"}, "response": response}


def render(kind: str, released: list[tuple[Released, Decision]], withheld: dict[str, int],
           pseudonym_for: PseudonymFor) -> bytes:
    """``kind`` is ``single`` (the resource itself), ``searchset`` or ``history`` (a Bundle)."""
    rows = [(i, _shaped(i, d, pseudonym_for)) for i, d in released if d.obligations.deidentify != "aggregate_only"]
    counted = [i for i, d in released if d.obligations.deidentify == "aggregate_only"]
    if kind == "single":
        return orjson.dumps(rows[0][1] if rows else _counts(counted))
    if kind == "history":
        entries = [_history_entry(i, r) for i, r in sorted(rows, key=lambda x: -x[0].version)]
    else:
        entries = [{"fullUrl": f"{r['resourceType']}/{r.get('id')}", "resource": r, "search": {"mode": "match"}}
                   for _, r in rows]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": kind, "total": len(entries), "entry": entries}
    extensions = []
    if counted:
        extensions.append({"url": AGGREGATE_URL, "extension": [
            {"url": p["name"], "valueInteger": p["valueInteger"]} for p in _counts(counted)["parameter"]]})
    if withheld:
        extensions.append({"url": WITHHELD_URL, "extension": [
            {"url": reason, "valueInteger": n} for reason, n in sorted(withheld.items())]})
    if extensions:
        bundle["meta"] = {"extension": extensions}
    return orjson.dumps(bundle)
