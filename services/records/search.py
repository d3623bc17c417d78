"""FHIR search parameters ``code`` and ``date`` over decrypted resources.

Resource content lives only inside ciphertext, so these filters run on the
patient's decrypted rows, after the rows were located by pseudonym (an index
on clinical codes would be a plaintext leak). Semantics follow FHIR R4 search:

- ``code``: a token, ``[system]|[code]``, ``code`` alone (any system) or
  ``system|`` (any code in that system); a comma means OR.
- ``date``: ``[prefix]value`` with prefixes ``eq ne gt lt ge le sa eb ap``;
  each value is a range (``2020`` is the whole year) compared with the
  resource's own date or period as FHIR does. Several ``date`` parameters must
  all hold (AND).

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.contracts import errors

# Which element a search parameter reads, per resource type (after the FHIR R4
# search parameters). For ``date`` the first element present counts: a
# Condition's onset, else the date it was recorded.
CODE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("code",), "Observation": ("code",), "Procedure": ("code",),
    "AllergyIntolerance": ("code",), "DiagnosticReport": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",), "Immunization": ("vaccineCode",),
    "Encounter": ("type",), "DocumentReference": ("type",), "CarePlan": ("category",),
    "Device": ("type",), "Claim": ("type",), "ExplanationOfBenefit": ("type",),
}
DATE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "AllergyIntolerance": ("recordedDate",), "DiagnosticReport": ("effectiveDateTime", "effectivePeriod"),
    "MedicationRequest": ("authoredOn",), "Immunization": ("occurrenceDateTime",),
    "Encounter": ("period",), "DocumentReference": ("date",), "CarePlan": ("period",),
    "Device": ("manufactureDate",), "Claim": ("billablePeriod", "created"),
    "ExplanationOfBenefit": ("billablePeriod", "created"), "Patient": ("birthDate",),
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


class InvalidSearch(errors.Invalid):
    """A search parameter that cannot be understood (answered with 400)."""


_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, held at the ends of the calendar (a range may end after 9999-12-31)."""
    try:
        return moment + delta
    except OverflowError:
        return _MAX if delta > timedelta(0) else _MIN


def _next_year(start: datetime) -> datetime:
    return start.replace(year=start.year + 1) if start.year < _MAX.year else _MAX


@dataclass(frozen=True)
class Range:
    """A half-open instant range [start, end)."""

    start: datetime
    end: datetime


def parse_range(value: str) -> Range:
    """A FHIR date/dateTime as the range it denotes (its precision sets the width)."""
    m = _DATE.match(value)
    if not m:
        raise InvalidSearch(f"{value!r} is not a FHIR date or dateTime")
    year, month, day, hh, _mm, ss, frac, _tz = m.groups()
    try:
        if month is None:
            start = datetime(int(year), 1, 1, tzinfo=UTC)
            return Range(start, _next_year(start))
        if day is None:
            start = datetime(int(year), int(month), 1, tzinfo=UTC)
            if start.month == 12:
                return Range(start, _next_year(start).replace(month=1) if start.year < _MAX.year else _MAX)
            return Range(start, start.replace(month=start.month + 1))
        if hh is None:
            start = datetime(int(year), int(month), int(day), tzinfo=UTC)
            return Range(start, _shift(start, timedelta(days=1)))
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)  # a zone offset near the calendar's ends must not overflow later
    except (ValueError, OverflowError) as exc:
        raise InvalidSearch(f"{value!r} is not a valid date") from exc
    width = timedelta(seconds=1) if ss is not None and frac is None else (
        timedelta(microseconds=1) if frac is not None else timedelta(minutes=1))
    return Range(moment, _shift(moment, width))


def _element_ranges(value: Any) -> list[Range]:
    """The ranges a date-valued element covers (a dateTime string or a Period)."""
    if isinstance(value, str):
        try:
            return [parse_range(value)]
        except InvalidSearch:
            return []
    if isinstance(value, dict) and ("start" in value or "end" in value):
        try:
            start = parse_range(value["start"]).start if value.get("start") else _MIN
            end = parse_range(value["end"]).end if value.get("end") else _MAX
        except (InvalidSearch, TypeError):
            return []
        return [Range(start, end)]
    return []


def _matches_date(target: Range, prefix: str, param: Range) -> bool:
    """FHIR R4 §3.1.1.4.3 (search on dates), with ``ap`` as ±10% of the gap to now, at least a day."""
    if prefix == "eq":
        return param.start <= target.start and target.end <= param.end
    if prefix == "ne":
        return not (param.start <= target.start and target.end <= param.end)
    if prefix == "gt":
        return target.end > param.end
    if prefix == "lt":
        return target.start < param.start
    if prefix == "ge":
        return target.end > param.start
    if prefix == "le":
        return target.start < param.end
    if prefix == "sa":
        return target.start >= param.end
    if prefix == "eb":
        return target.end <= param.start
    slack = max(abs(datetime.now(UTC) - param.start) / 10, timedelta(days=1))
    return target.start < _shift(param.end, slack) and target.end > _shift(param.start, -slack)


@dataclass(frozen=True)
class Filters:
    """Parsed ``code`` and ``date`` parameters of one search."""

    codes: tuple[tuple[str | None, str | None], ...] = ()
    dates: tuple[tuple[str, Range], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.codes and not self.dates


def parse_filters(code: str | None, dates: list[str]) -> Filters:
    codes: list[tuple[str | None, str | None]] = []
    for token in (code.split(",") if code else []):
        if not token:
            raise InvalidSearch("empty code")
        if "|" in token:
            system, _, value = token.partition("|")
            codes.append((system or "", value or None))
        else:
            codes.append((None, token))
    parsed: list[tuple[str, Range]] = []
    for value in dates:
        prefix = value[:2] if value[:2] in PREFIXES else "eq"
        parsed.append((prefix, parse_range(value[2:] if value[:2] in PREFIXES else value)))
    return Filters(codes=tuple(codes), dates=tuple(parsed))


def _codings(resource: dict[str, Any], element: str) -> list[dict[str, Any]]:
    value = resource.get(element)
    concepts = value if isinstance(value, list) else [value]
    return [c for concept in concepts if isinstance(concept, dict) for c in concept.get("coding") or []]


def _matches_code(resource: dict[str, Any], codes: tuple[tuple[str | None, str | None], ...]) -> bool:
    elements = CODE_ELEMENTS.get(resource.get("resourceType", ""), ("code",))
    codings = [c for element in elements for c in _codings(resource, element)]
    for system, code in codes:
        for coding in codings:
            system_ok = system is None or (coding.get("system") or "") == system
            if system_ok and (code is None or coding.get("code") == code):
                return True
    return False


def matches(resource: dict[str, Any], filters: Filters) -> bool:
    """Whether the resource satisfies every parameter (a resource without the element never does)."""
    if filters.codes and not _matches_code(resource, filters.codes):
        return False
    if filters.dates:
        elements = DATE_ELEMENTS.get(resource.get("resourceType", ""), ())
        present = next((resource[e] for e in elements if resource.get(e) is not None), None)
        ranges = _element_ranges(present)
        if not ranges:
            return False
        for prefix, param in filters.dates:
            if not any(_matches_date(target, prefix, param) for target in ranges):
                return False
    return True
