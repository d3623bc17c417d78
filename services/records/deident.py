"""De-identification obligations applied to a response (DESIGN §5).

- ``pseudonymize``: patient ids become a per-recipient keyed pseudonym; direct
  identifiers (names, telecom, address lines, identifiers, photos, contacts)
  and the human-readable ``display`` of patient references are dropped. Free
  text (narrative, attachment data) is dropped too: clinical notes name the
  patient, so keeping them would undo the pseudonym.
- ``safe_harbor``: also dates reduced to the year, ages over 89 to "90+".
- ``aggregate_only`` is handled by the caller: counts, never rows.

Pure functions, no I/O: the caller supplies the recipient pseudonym.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from typing import Any

DIRECT_IDENTIFIERS = ("name", "telecom", "address", "identifier", "photo", "contact")
IDENTIFYING_EXTENSIONS = ("mothersMaidenName", "birthPlace")
_DATE = re.compile(r"^(\d{4})(-\d{2}(-\d{2}([T ][0-9:.+\-Z]*)?)?)?$")
AGE_GROUP_URL = "https://healthgov.example/age-group"


def patient_refs(node: Any) -> set[str]:
    """The logical ids of every patient the resource references (``Patient/x``, ``urn:uuid:x``)."""
    found: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            ref = n.get("reference")
            if isinstance(ref, str):
                if ref.startswith("Patient/"):
                    found.add(ref.split("/", 1)[1])
                elif ref.startswith("urn:uuid:"):
                    found.add(ref[len("urn:uuid:"):])
            for value in n.values():
                walk(value)
        elif isinstance(n, list):
            for value in n:
                walk(value)

    walk(node)
    return found


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


def _drop_patient_displays(node: Any) -> None:
    """Names shown next to any patient reference go, whichever patient it is."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and (ref.startswith("Patient/") or ref.startswith("urn:uuid:")):
            node.pop("display", None)
        for value in node.values():
            _drop_patient_displays(value)
    elif isinstance(node, list):
        for value in node:
            _drop_patient_displays(value)


def _drop_attachments(node: Any) -> None:
    if isinstance(node, dict):
        for key in ("data", "url"):
            if key in node and "contentType" in node:
                node.pop(key, None)
        for value in node.values():
            _drop_attachments(value)
    elif isinstance(node, list):
        for value in node:
            _drop_attachments(value)


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
    _drop_patient_displays(out)
    if out.get("resourceType") == "Patient":
        for element in DIRECT_IDENTIFIERS:
            out.pop(element, None)
        out["extension"] = [e for e in out.get("extension", [])
                            if not any(x in e.get("url", "") for x in IDENTIFYING_EXTENSIONS)]
        if not out["extension"]:
            out.pop("extension")
    else:
        out.pop("identifier", None)
    out.pop("text", None)
    _drop_attachments(out)
    return out


def safe_harbor(resource: dict[str, Any], patient_id: str | None, pseudo: str | None,
                today: date | None = None) -> dict[str, Any]:
    out = pseudonymize(resource, patient_id, pseudo)
    if out.get("resourceType") == "DocumentReference":
        out.pop("content", None)
    if out.get("resourceType") == "Patient" and isinstance(out.get("birthDate"), str):
        born = int(out["birthDate"][:4])
        if (today or date.today()).year - born > 89:
            out.pop("birthDate")
            out["extension"] = [*out.get("extension", []), {"url": AGE_GROUP_URL, "valueString": "90+"}]
    return _years_only(out)


DEIDENTIFIERS = {"pseudonymize": pseudonymize, "safe_harbor": safe_harbor}
