"""The PHI-free quality report of one submission (docs/architecture.md §14).

Ingest is the only place that sees a hospital's resources in the clear before
they are sealed, and the only place that knows why a resource was refused. So
it counts here, as it validates, what the regulator's quality metrics need,
and publishes one ``QualityReport`` per submission on ``ingest.quality.v1``
(inside the submission's Kafka transaction when it was accepted). The report
holds resource types, counts, issue codes, field names, code-system verdicts
and lag buckets: nothing that names or describes a patient.

``Tally`` is filled resource by resource (in the validation workers for
NDJSON, in the request thread for Bundles), merged, and turned into the
report by ``build_report``, whose one call site is ``Ingestor.report``.

Warnings: validation's verdict (``services.fhir.validation.Verdict``) accepts a
resource with warnings; ``observe`` counts them per resource type and per rule
that found them (``per-1``, ``binding``, …): the rule names the specification's
constraint, never a value, so the report stays PHI-free.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.adapters import telemetry
from services.contracts.events import LAG_BUCKETS_H, QualityReport, TypeQuality

# The rule a warning is counted under when validation named none.
UNNAMED_RULE = "unnamed"

# Priority fields per resource type (an operator may override them: ``HEALTHGOV_PRIORITY_FIELDS``).
# A field is "present" when the element is there and not empty; ``a|b`` accepts either (a choice type).
DEFAULT_PRIORITY_FIELDS: dict[str, tuple[str, ...]] = {
    "Patient": ("identifier", "birthDate", "gender", "address"),
    "Encounter": ("class", "period", "reasonCode|reasonReference", "serviceProvider"),
    "Condition": ("code", "onsetDateTime|onsetPeriod|onsetAge|onsetString", "clinicalStatus"),
    "Observation": ("code", "effectiveDateTime|effectivePeriod|effectiveInstant", "value*|component", "status"),
    "Immunization": ("vaccineCode", "occurrenceDateTime|occurrenceString", "status"),
    "MedicationRequest": ("medicationCodeableConcept|medicationReference", "authoredOn", "dosageInstruction"),
    "Procedure": ("code", "performedDateTime|performedPeriod", "status"),
    "DiagnosticReport": ("code", "effectiveDateTime|effectivePeriod", "issued"),
}

# Code systems the regulator recognises (SNOMED CT, ICD-10 in its editions, LOINC, RxNorm, ATC, CVX).
RECOGNISED_SYSTEMS = frozenset({
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.156.10011.2.3.3.11",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://www.whocc.no/atc",
    "http://hl7.org/fhir/sid/cvx",
})
# HL7's own code systems (statuses, classes, categories) are structure, not clinical coding: not counted.
_STRUCTURAL_PREFIXES = ("http://terminology.hl7.org/", "http://hl7.org/fhir/", "urn:ietf:bcp:47", "urn:iso:std:")
_RECOGNISED_SIDS = frozenset(s for s in RECOGNISED_SYSTEMS if s.startswith("http://hl7.org/fhir/sid/"))

# Values that say "unknown" rather than what is known.
DEFAULT_CODES = frozenset({"UNK", "ASKU", "NI", "NA", "NASK", "unknown", "261665006"})
_DEFAULT_CODES = frozenset(c.encode() for c in DEFAULT_CODES)
DEFAULT_BIRTH_DATES = frozenset({"1900-01-01", "1900-01-01T00:00:00Z"})

# Where each type keeps its clinical time (the first present wins).
CLINICAL_TIME: dict[str, tuple[tuple[str, ...], ...]] = {
    "Encounter": (("period", "end"), ("period", "start")),
    "Observation": (("effectiveDateTime",), ("effectivePeriod", "end"), ("effectiveInstant",), ("issued",)),
    "Condition": (("recordedDate",), ("onsetDateTime",)),
    "Procedure": (("performedDateTime",), ("performedPeriod", "end"), ("performedPeriod", "start")),
    "Immunization": (("occurrenceDateTime",), ("recorded",)),
    "MedicationRequest": (("authoredOn",),),
    "DiagnosticReport": (("issued",), ("effectiveDateTime",), ("effectivePeriod", "end")),
    "Claim": (("created",),),
    "ExplanationOfBenefit": (("created",),),
    "DocumentReference": (("date",),),
    "CarePlan": (("period", "start"),),
    "AllergyIntolerance": (("recordedDate",),),
}

_IGNORED_FOR_DUPLICATES = ("id", "meta", "text")


_ENTRY = re.compile(r"^(Bundle\.entry\[\d+\]\.resource|line \d+|Resource)\.?")
_INDEX = re.compile(r"\[\d+\]")


def reason(code: str, expression: str | None, rtype: str | None) -> str:
    """``code element``: the element path without entry or line numbers and array indexes."""
    if not expression:
        return code
    path = _INDEX.sub("", _ENTRY.sub("", expression))
    kind = rtype if isinstance(rtype, str) and rtype.isidentifier() else ""
    if kind and not path.startswith(kind):
        path = f"{kind}.{path}" if path else kind
    return f"{code} {path[:120]}" if path else code


def lag_bucket(hours: float) -> str:
    """The label of the bucket ``hours`` falls in: its upper bound in hours, or ``inf``."""
    for bound in LAG_BUCKETS_H:
        if hours <= bound:
            return f"{bound:g}"
    return "inf"


def _parse_time(value: Any) -> datetime | None:
    """A FHIR date or dateTime as an aware UTC instant (a date alone: its start; no zone: UTC)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value.replace("Z", "+00:00")
    try:
        if len(text) == 4:
            moment = datetime(int(text), 1, 1)
        elif len(text) == 7:
            moment = datetime(int(text[:4]), int(text[5:7]), 1)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def clinical_time(resource: Mapping[str, Any]) -> datetime | None:
    """The moment the record is about (encounter end, observation time, issue date), when it has one."""
    for path in CLINICAL_TIME.get(str(resource.get("resourceType")), ()):
        node: Any = resource
        for step in path:
            node = node.get(step) if type(node) is dict or isinstance(node, Mapping) else None
        if node is None:
            continue
        moment = _parse_time(node)
        if moment is not None:
            return moment
    return None


@functools.lru_cache(maxsize=1024)
def _alternatives(spec: str) -> tuple[tuple[str, bool], ...]:
    """``a|b|value*`` as ((name, is a prefix), ...), split once per spec and process."""
    return tuple((alt[:-1], True) if alt.endswith("*") else (alt, False) for alt in spec.split("|"))


def _present(resource: Mapping[str, Any], spec: str) -> bool:
    """Whether any alternative of ``spec`` is present and not empty (``value*``: any key with that prefix)."""
    for name, prefix in _alternatives(spec):
        if prefix:
            if any(k.startswith(name) and v not in _EMPTY for k, v in resource.items()):
                return True
        elif resource.get(name) not in _EMPTY:
            return True
    return False


_EMPTY = (None, "", [], {})


# Codings found in the resource's JSON, not by walking it in Python (the walk cost more than validation's
# memoised share): every ``"coding":[...]`` list, its systems and its codes. Codings are flat objects, so a
# list ends at the first ``]``; a coding without a system counts as one in no recognised system.
_CODING_LIST = re.compile(rb'"coding":\[([^\]]*)\]')
_SYSTEM = re.compile(rb'"system":"([^"]*)"')
_CODE = re.compile(rb'"code":"([^"]*)"')


def codings_of(raw: bytes) -> tuple[list[bytes], list[bytes], int]:
    """(systems, codes, codings without a system) of every Coding in a resource's compact JSON."""
    systems: list[bytes] = []
    codes: list[bytes] = []
    for m in _CODING_LIST.finditer(raw):
        seg = m.group(1)
        systems += _SYSTEM.findall(seg)
        codes += _CODE.findall(seg)
    return systems, codes, max(0, len(codes) - len(systems))


def _clinical(system: str) -> bool:
    """A coding a regulator grades: anything but HL7's own structural code systems."""
    return system in _RECOGNISED_SIDS or not system.startswith(_STRUCTURAL_PREFIXES)


# Each system's grade, (clinical, recognised), by its bytes as found in the JSON: a hospital's data names a
# few dozen systems over and over, so decoding and prefix tests run once per system and process.
_GRADES: dict[bytes, tuple[bool, bool]] = {}
_GRADES_LIMIT = 4096  # a sender inventing systems cannot grow it without bound


def _grade(system: bytes) -> tuple[bool, bool]:
    found = _GRADES.get(system)
    if found is None:
        text = system.decode(errors="replace")
        found = (_clinical(text), text in RECOGNISED_SYSTEMS)
        if len(_GRADES) >= _GRADES_LIMIT:
            _GRADES.clear()
        _GRADES[system] = found
    return found


def _is_default(resource: Mapping[str, Any], codes: Iterable[bytes]) -> bool:
    if resource.get("gender") == "unknown" or resource.get("birthDate") in DEFAULT_BIRTH_DATES:
        return True
    if any(c in _DEFAULT_CODES for c in codes):
        return True
    return "dataAbsentReason" in resource


@dataclass
class _Type:
    count: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    warnings: int = 0
    warning_rules: Counter[str] = field(default_factory=Counter)
    fields: Counter[str] = field(default_factory=Counter)
    fields_expected: int = 0
    codings: int = 0
    recognised: int = 0
    defaults: int = 0
    duplicates: int = 0
    lag: Counter[str] = field(default_factory=Counter)
    lag_unknown: int = 0


@dataclass
class Tally:
    """Counts of one submission so far, by resource type (picklable, so workers return theirs)."""

    types: dict[str, _Type] = field(default_factory=dict)
    digests: set[tuple[str, bytes]] = field(default_factory=set)  # (type, content SHA-256) seen so far

    def _of(self, rtype: str | None) -> _Type:
        found = self.types.get(rtype) if type(rtype) is str else None  # type: ignore[arg-type]
        if found is not None:  # only identifiers are ever keys
            return found
        key = rtype if isinstance(rtype, str) and rtype.isidentifier() else "unknown"
        found = self.types.get(key)
        if found is None:
            found = self.types[key] = _Type()
        return found

    def rejected(self, rtype: str | None, issues: Sequence[tuple[str, str | None]]) -> None:
        """One refused resource (or unreadable line) and its OperationOutcome issues (code, expression).

        A reason is the issue code and the element it is about (``invalid Observation.status``), never
        a value: what an integration engineer needs to fix, and nothing about a patient.
        """
        t = self._of(rtype)
        t.count += 1
        t.rejected += 1
        t.reasons.update({reason(code, where, rtype) for code, where in issues} or {"invalid"})

    def observe(self, resource: Mapping[str, Any], *, warnings: Iterable[str | None] = (),
                received: datetime | None = None,
                priority: Mapping[str, Sequence[str]] = DEFAULT_PRIORITY_FIELDS) -> None:
        """One accepted resource: validity warnings, completeness, coding, defaults, duplicates, lag.

        ``warnings``: the rule of each warning validation's verdict gave it
        (``Issue.rule``; ``None`` for a warning no named rule raised).
        """
        rtype = str(resource.get("resourceType"))
        t = self._of(rtype)
        t.count += 1
        t.accepted += 1
        for rule in warnings:
            t.warnings += 1
            t.warning_rules[rule or UNNAMED_RULE] += 1
        wanted = priority.get(rtype, ())
        t.fields_expected += len(wanted)
        for spec in wanted:
            if _present(resource, spec):
                t.fields[spec] += 1
        # One serialisation serves the codings and the duplicate check (keys in the order sent: the same
        # system sends the same record the same way).
        content = dict(resource)
        for key in _IGNORED_FOR_DUPLICATES:
            content.pop(key, None)
        raw = orjson.dumps(content)
        systems, codes, unsystematic = codings_of(raw)
        clinical = recognised = 0
        for system in systems:
            graded, known = _grade(system)
            if graded:
                clinical += 1
                recognised += known
        t.codings += clinical + unsystematic
        t.recognised += recognised
        if _is_default(resource, codes):
            t.defaults += 1
        digest = (rtype, hashlib.sha256(raw).digest())
        if digest in self.digests:
            t.duplicates += 1
        else:
            self.digests.add(digest)
        moment = clinical_time(resource)
        if moment is None:
            t.lag_unknown += 1
        else:
            hours = max(0.0, ((received or datetime.now(UTC)) - moment).total_seconds() / 3600)
            t.lag[lag_bucket(hours)] += 1

    def merge(self, other: Tally) -> None:
        """Add another part's counts (a worker's chunk); duplicates across parts are found too."""
        for key, o in other.types.items():
            t = self._of(key)
            for name in ("count", "accepted", "rejected", "warnings", "fields_expected", "codings", "recognised",
                         "defaults", "duplicates", "lag_unknown"):
                setattr(t, name, getattr(t, name) + getattr(o, name))
            t.reasons.update(o.reasons)
            t.warning_rules.update(o.warning_rules)
            t.fields.update(o.fields)
            t.lag.update(o.lag)
        # a resource repeated in two chunks is a duplicate too, found when the second chunk joins
        for rtype, _ in self.digests & other.digests:
            self._of(rtype).duplicates += 1
        self.digests |= other.digests


def build_report(*, hospital: str, submission_id: str, transport: str, accepted: bool,
                 tally: Tally) -> QualityReport:
    """The report of one submission, from its tally."""
    return QualityReport(
        hospital=hospital, submission_id=submission_id, transport=transport,
        outcome="accepted" if accepted else "refused",
        types={k: TypeQuality(count=t.count, accepted=t.accepted, rejected=t.rejected, reasons=dict(t.reasons),
                              warnings=t.warnings, warning_rules=dict(t.warning_rules), fields=dict(t.fields),
                              fields_expected=t.fields_expected,
                              codings=t.codings, recognised=t.recognised, defaults=t.defaults,
                              duplicates=t.duplicates, lag=dict(t.lag), lag_unknown=t.lag_unknown)
               for k, t in sorted(tally.types.items())})


def count_report(report: QualityReport) -> None:
    """Add a submission's report to the service's metrics: resources by outcome, refusals by issue code.

    Only the issue code of a reason reaches a metric label (a closed set), not
    its element path; a submission refused whole counts all its resources refused.
    """
    accepted = sum(t.accepted for t in report.types.values()) if report.outcome == "accepted" else 0
    total = sum(t.count for t in report.types.values())
    reasons: Counter[str] = Counter()
    for t in report.types.values():
        reasons.update(t.reasons)
    telemetry.count_ingest(report.transport, accepted, total - accepted, dict(reasons))
