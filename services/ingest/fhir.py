"""FHIR R4 parsing and validation for ingest, and OperationOutcome errors.

Validation uses the fhir.resources models (R4B, which accepts R4 content);
every problem is reported with where it is: the Bundle entry or NDJSON line and
the element path, so an integration engineer can fix the sending system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

DIRECTORY_TYPES = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole"})
# Elements that point at the patient a resource is about, in order of preference.
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")


@dataclass
class Issue:
    """One OperationOutcome issue."""

    diagnostics: str
    expression: str | None = None
    code: str = "invalid"
    severity: str = "error"

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code,
                               "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = [self.expression]
        return out


class InvalidSubmission(Exception):
    """The submission is rejected as a whole; ``issues`` say what and where."""

    def __init__(self, issues: list[Issue], status: int = 400) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues[:3]))
        self.issues = issues
        self.status = status


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_resource(doc: Any, where: str) -> list[Issue]:
    """Issues with one resource; ``where`` prefixes each path (e.g. ``Bundle.entry[3].resource``)."""
    if not isinstance(doc, dict):
        return [Issue(f"{where}: expected a JSON object", where, "structure")]
    rtype = doc.get("resourceType")
    if not isinstance(rtype, str):
        return [Issue(f"{where}: resourceType is missing", f"{where}.resourceType", "required")]
    try:
        model = get_fhir_model_class(rtype)
    except KeyError:
        return [Issue(f"{where}: unknown resourceType {rtype!r}", f"{where}.resourceType", "not-supported")]
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return [
            Issue(f"{where}{_path(err['loc'])}: {err['msg']}", f"{where}{_path(err['loc'])}")
            for err in exc.errors()[:20]
        ]
    return []


def parse_json(body: bytes, where: str = "body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidSubmission([Issue(f"{where}: malformed JSON: {exc}", where, "structure")]) from exc


@dataclass
class Submission:
    """Validated resources from one request, with what the sender called it."""

    kind: str  # "transaction" | "batch" | "resource" | "ndjson"
    resources: list[dict[str, Any]]
    identifier: str | None = None
    full_urls: dict[str, str] = field(default_factory=dict)


def parse_bundle(doc: Any, max_entries: int) -> Submission:
    issues = validate_resource(doc, "Bundle") if not isinstance(doc, dict) else []
    if issues:
        raise InvalidSubmission(issues)
    if doc.get("resourceType") != "Bundle":
        raise InvalidSubmission([Issue("expected a Bundle at /fhir", "resourceType", "invalid")])
    btype = doc.get("type")
    if btype not in ("transaction", "batch"):
        raise InvalidSubmission([Issue(f"Bundle.type must be transaction or batch, not {btype!r}",
                                       "Bundle.type", "not-supported")])
    entries = doc.get("entry") or []
    if len(entries) > max_entries:
        raise InvalidSubmission(
            [Issue(f"Bundle has {len(entries)} entries; the limit is {max_entries}",
                   "Bundle.entry", "too-costly")], status=413)
    resources: list[dict[str, Any]] = []
    full_urls: dict[str, str] = {}
    all_issues: list[Issue] = []
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}].resource"
        res = entry.get("resource") if isinstance(entry, dict) else None
        found = validate_resource(res, where)
        all_issues.extend(found)
        if not found:
            resources.append(res)
            if entry.get("fullUrl"):
                full_urls[entry["fullUrl"]] = f"{res['resourceType']}/{res.get('id', '')}"
    if all_issues:
        raise InvalidSubmission(all_issues)
    ident = (doc.get("identifier") or {}).get("value")
    return Submission(kind=btype, resources=resources, identifier=ident, full_urls=full_urls)


def parse_ndjson(body: bytes, max_entries: int) -> Submission:
    resources: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for n, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            issues.append(Issue(f"{where}: malformed JSON: {exc}", where, "structure"))
            continue
        found = validate_resource(doc, f"{where}: {doc.get('resourceType', '?') if isinstance(doc, dict) else '?'}")
        issues.extend(found)
        if not found:
            resources.append(doc)
    if issues:
        raise InvalidSubmission(issues)
    if len(resources) > max_entries:
        raise InvalidSubmission([Issue(f"{len(resources)} lines; the limit is {max_entries}",
                                       "body", "too-costly")], status=413)
    return Submission(kind="ndjson", resources=resources)


def patient_id_of(resource: dict[str, Any], full_urls: dict[str, str]) -> str | None:
    """The logical id of the patient a resource belongs to, or None for directory data."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for element in PATIENT_ELEMENTS:
        ref = (resource.get(element) or {}).get("reference") if isinstance(resource.get(element), dict) else None
        if not ref:
            continue
        ref = full_urls.get(ref, ref)
        if ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
        if ref.startswith("urn:uuid:"):
            return ref[len("urn:uuid:"):]
    return None
