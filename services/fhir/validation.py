"""FHIR R4 validation and OperationOutcome errors, shared by every service that accepts FHIR.

Validation uses the fhir.resources models (R4B, which accepts R4 content).
Every problem is reported with where it is: the Bundle entry or NDJSON line and
the element path, so an integration engineer can fix the sending system.
Diagnostics never echo submitted values: an OperationOutcome may be logged or
stored, and it must not carry PHI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from services.contracts import errors
from services.contracts.ids import RULE, is_fhir_id

MAX_ISSUES_PER_RESOURCE = 20


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

    def as_tuple(self) -> tuple[str, str | None, str, str]:
        """A picklable, comparable form (worker processes return these)."""
        return (self.diagnostics, self.expression, self.code, self.severity)


class InvalidSubmission(errors.Invalid):
    """The submission is rejected as a whole; ``issues`` say what and where."""

    def __init__(self, issues: list[Issue], status: int = 400) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues[:3]), status=status)
        self.issues = issues

    def fhir_issues(self) -> list[dict[str, Any]]:
        return [i.to_fhir() for i in self.issues]


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
    if "id" in doc and not is_fhir_id(doc["id"]):
        return [Issue(f"{where}.id: {RULE}", f"{where}.id", "value")]
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):  # fhir.resources raises ValueError for an unknown type
        return [Issue(f"{where}: unknown resourceType", f"{where}.resourceType", "not-supported")]
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return [
            Issue(f"{where}{_path(err['loc'])}: {err['msg']}", f"{where}{_path(err['loc'])}")
            for err in exc.errors(include_input=False, include_url=False)[:MAX_ISSUES_PER_RESOURCE]
        ]
    except LookupError:  # fhir_core raises KeyError, not a ValidationError, for a nested resource of unknown type
        return [Issue(f"{where}: a contained or nested resource has an unknown resourceType", where, "not-supported")]
    except (ValueError, TypeError) as exc:  # a validator that raised outside pydantic's wrapping
        return [Issue(f"{where}: {type(exc).__name__}", where)]
    except RecursionError:  # no FHIR resource nests hundreds of levels deep; answer, do not crash
        return [Issue(f"{where}: elements are nested too deeply", where, "too-costly")]
    return []


def parse_json(body: bytes, where: str = "body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidSubmission([Issue(f"{where}: {malformed(exc)}", where, "structure")]) from exc


def malformed(exc: orjson.JSONDecodeError) -> str:
    """Where the JSON breaks, in our words (the parser's own message is not part of our answers)."""
    return f"malformed JSON at line {exc.lineno} column {exc.colno}"

