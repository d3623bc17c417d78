"""FHIR R4 validation and OperationOutcome errors, shared by every service that accepts FHIR.

Two layers. Structure and types: ``validate_resource``, against the table
``structure.py`` makes from the specification's StructureDefinitions (it
replaced the fhir.resources models, at a fraction of their cost; the unit
tests hold it to their verdicts); the same walk finds empty elements
(ele-1). The rules that need the specification's value sets and invariants
(required bindings, FHIRPath invariants) come from ``rules.py``, contained
ids are checked here, and ``check_resource``
gives each resource its ``Verdict``: rejected when it has errors, accepted
with the warnings it has otherwise (an extensible binding not met, a clinical
code in no recognised code system). The warnings are returned to the sender
and are what data-quality reporting counts: each is an ``Issue`` with a
severity, an OperationOutcome issue code, a FHIRPath-style expression, the
rule that found it and a message.
Every problem is reported with where it is: the Bundle entry or NDJSON line and
the element path, so an integration engineer can fix the sending system.
Diagnostics never echo submitted values: an OperationOutcome may be logged or
stored, and it must not carry PHI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.contracts import errors
from services.contracts.ids import RULE, is_fhir_id
from services.fhir.rules import Finding, rules
from services.fhir.structure import structure

MAX_ISSUES_PER_RESOURCE = 20
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, which some Windows tools write at the start of a file
# Names the rule behind an issue in OperationOutcome.issue.details, so reports can count by rule.
RULE_SYSTEM = "https://healthgov.example/fhir/validation-rule"
IssueTuple = tuple[str, str | None, str, str, str | None]

# Code systems recognised for clinical codes (SNOMED CT, ICD-10, LOINC, RxNorm, ATC, CVX); a deployment adds its
# national ones (IngestSettings.recognised_code_systems).
RECOGNISED_CODE_SYSTEMS = frozenset({
    "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm",
    "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm", "http://www.whocc.no/atc",
    "http://hl7.org/fhir/sid/cvx",
})
# The clinical codes whose systems are checked: what a record is about, per resource type.
CLINICAL_CODES: dict[str, tuple[str, ...]] = {
    "Condition": ("code",), "Observation": ("code",), "Procedure": ("code",), "DiagnosticReport": ("code",),
    "AllergyIntolerance": ("code",), "Immunization": ("vaccineCode",), "Medication": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",), "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",), "Encounter": ("reasonCode",),
}


@dataclass
class Issue:
    """One OperationOutcome issue; ``rule`` names the rule that found it (``per-1``, ``binding``, …)."""

    diagnostics: str
    expression: str | None = None
    code: str = "invalid"
    severity: str = "error"
    rule: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.rule:
            out["details"] = {"coding": [{"system": RULE_SYSTEM, "code": self.rule}]}
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = [self.expression]
        return out

    def as_tuple(self) -> IssueTuple:
        """A picklable, comparable form (worker processes return these)."""
        return (self.diagnostics, self.expression, self.code, self.severity, self.rule)


@dataclass
class Verdict:
    """One resource's verdict: rejected when it has errors, else accepted with its warnings."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    # The objects holding a ``reference`` string and their trails, found by the structure's walk, so that
    # ingest rewrites references (references.rewrite_held) without walking the resource again.
    holders: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    # The objects holding a code the sensitivity labels look up (Structure.check), for the same reason.
    coded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.errors


class InvalidSubmission(errors.Invalid):
    """The submission is rejected as a whole; ``issues`` say what and where."""

    def __init__(self, issues: list[Issue], status: int = 400) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues[:3]), status=status)
        self.issues = issues

    def fhir_issues(self) -> list[dict[str, Any]]:
        return [i.to_fhir() for i in self.issues]


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def validate_resource(doc: Any, where: str) -> list[Issue]:
    """Structure and type issues with one resource; ``where`` prefixes each path (``Bundle.entry[3].resource``)."""
    return structural(doc, where)[0]


def structural(doc: Any, where: str, holders: list[tuple[dict[str, Any], Any]] | None = None,
               coded: list[dict[str, Any]] | None = None) -> tuple[list[Issue], list[str]]:
    """Structure and type issues, and the paths of empty elements (ele-1), from one walk over the resource.

    ``holders`` and ``coded`` receive the objects holding a reference and a code (``Structure.check``).
    """
    if isinstance(doc, dict) and "id" in doc and not is_fhir_id(doc["id"]):
        return [Issue(f"{where}.id: {RULE}", f"{where}.id", "value")], []
    empty: list[str] = []
    try:
        problems = structure().check(doc, where, empty, holders, coded)
    except RecursionError:  # no FHIR resource nests hundreds of levels deep; answer, do not crash
        return [Issue(f"{where}: elements are nested too deeply", where, "too-costly")], []
    return [Issue(f"{path}: {what}", path, code) for path, what, code in problems], empty


def _spell(trail: Any, where: str) -> str:
    parts: list[str] = []
    while trail is not None:
        trail, step = trail
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return where + "".join(reversed(parts))


def _contained_ids(doc: dict[str, Any], where: str) -> list[Issue]:
    out = []
    for i, res in enumerate(doc.get("contained") or []):
        if isinstance(res, dict) and "id" in res and not is_fhir_id(res["id"]):
            out.append(Issue(f"{where}.contained[{i}].id: {RULE}", f"{where}.contained[{i}].id", "value", rule="id"))
    return out


def _code_systems(doc: dict[str, Any], where: str, systems: frozenset[str]) -> list[Issue]:
    out = []
    for element in CLINICAL_CODES.get(doc.get("resourceType", ""), ()):
        value = doc.get(element)
        for i, concept in enumerate(value if isinstance(value, list) else [value] if value else []):
            codings = concept.get("coding") if isinstance(concept, dict) else None
            if not isinstance(codings, list):
                continue
            if not any(isinstance(c, dict) and c.get("system") in systems for c in codings):
                path = f"{where}.{element}" + (f"[{i}]" if isinstance(value, list) else "")
                out.append(Issue(f"{path}: no code from a recognised code system (SNOMED CT, ICD-10, LOINC, "
                                 "RxNorm, ATC, CVX or a national one)", path, "code-invalid", "warning",
                                 "code-system"))
    return out


def _issue(f: Finding, where: str) -> Issue:
    path = _spell(f.trail, where)
    return Issue(f"{path}: {f.message}", path, f.code, f.severity, f.rule)


def check_resource(doc: Any, where: str, systems: Iterable[str] = RECOGNISED_CODE_SYSTEMS) -> Verdict:
    """The verdict on one resource: structure and types, then the specification's own rules.

    ele-1 (no empty elements) is checked natively, in the structure's walk:
    FHIRPath at every node would cost more than the rest of ingest.
    """
    holders: list[tuple[dict[str, Any], Any]] = []
    coded: list[dict[str, Any]] = []
    errors, empty = structural(doc, where, holders, coded)
    if errors:
        return Verdict(errors)
    errors = [Issue(f"{path}: ele-1: an element has a value or children; empty arrays, empty "
                    "objects and nulls are not FHIR", path, "invalid", rule="ele-1")
              for path in empty[:MAX_ISSUES_PER_RESOURCE]]
    errors += _contained_ids(doc, where)
    warnings: list[Issue] = []
    for finding in rules().check(doc):
        (errors if finding.severity == "error" else warnings).append(_issue(finding, where))
    warnings += _code_systems(doc, where, systems if isinstance(systems, frozenset) else frozenset(systems))
    return Verdict(errors[:MAX_ISSUES_PER_RESOURCE], warnings[:MAX_ISSUES_PER_RESOURCE], holders, coded)


def parse_json(body: bytes, where: str = "body") -> Any:
    try:
        return orjson.loads(body.removeprefix(BOM))
    except orjson.JSONDecodeError as exc:
        raise InvalidSubmission([Issue(f"{where}: {malformed(exc)}", where, "structure")]) from exc


def malformed(exc: orjson.JSONDecodeError) -> str:
    """Where the JSON breaks, in our words (the parser's own message is not part of our answers)."""
    return f"malformed JSON at line {exc.lineno} column {exc.colno}"

