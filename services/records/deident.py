"""De-identification obligations applied to a response (DESIGN §5).

- ``pseudonymize``: patient ids become a per-recipient keyed pseudonym; direct
  identifiers (names, telecom, address lines, identifiers, photos, contacts)
  and the human-readable ``display`` of patient references are dropped.
- ``safe_harbor``: also dates reduced to the year, ages over 89 to "90+",
  narrative and attachments dropped.
- ``aggregate_only`` is handled by the caller: counts, never rows.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from typing import Any

from services.adapters import crypto

DIRECT_IDENTIFIERS = ("name", "telecom", "address", "identifier", "photo", "contact")
_DATE = re.compile(r"^(\d{4})(-\d{2}(-\d{2}([T ][0-9:.+\-Z]*)?)?)?$")


def recipient_pseudonym(key: bytes, recipient: str, patient_id: str) -> str:
    return "rp-" + crypto.keyed_digest(key, "recipient", recipient, patient_id)[:24]


def _walk_refs(node: Any, patient_id: str, pseudo: str) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in (f"Patient/{patient_id}", f"urn:uuid:{patient_id}"):
            node["reference"] = f"Patient/{pseudo}"
            node.pop("display", None)
        for value in node.values():
            _walk_refs(value, patient_id, pseudo)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(value, patient_id, pseudo)


def _years_only(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _years_only(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_years_only(v) for v in node]
    if isinstance(node, str):
        m = _DATE.match(node)
        if m and m.group(2):
            return m.group(1)
    return node


def pseudonymize(resource: dict[str, Any], patient_id: str | None, pseudo: str | None) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    if patient_id and pseudo:
        if out.get("resourceType") == "Patient":
            out["id"] = pseudo
        _walk_refs(out, patient_id, pseudo)
    if out.get("resourceType") == "Patient":
        for element in DIRECT_IDENTIFIERS:
            out.pop(element, None)
        out["extension"] = [e for e in out.get("extension", [])
                            if "mothersMaidenName" not in e.get("url", "")
                            and "birthPlace" not in e.get("url", "")]
    else:
        out.pop("identifier", None)
    return out


def safe_harbor(resource: dict[str, Any], patient_id: str | None, pseudo: str | None) -> dict[str, Any]:
    out = pseudonymize(resource, patient_id, pseudo)
    out.pop("text", None)
    if out.get("resourceType") == "DocumentReference":
        out.pop("content", None)
    if out.get("resourceType") == "Patient" and isinstance(out.get("birthDate"), str):
        born = int(out["birthDate"][:4])
        if date.today().year - born > 89:
            out["birthDate"] = None
            out["extension"] = [*out.get("extension", []),
                                {"url": "https://healthgov.example/age-group", "valueString": "90+"}]
    return _years_only(out)
