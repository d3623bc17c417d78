"""The Bulk Data kick-off's ``_elements`` and ``_typeFilter`` (HL7 Bulk Data Access IG v2), parsed and applied.

``_elements``: comma-separated root elements, ``Type.element`` or ``element``
(for every exported type). An export restricted by it carries, per resource,
the elements named plus the mandatory ``id``, ``meta`` and ``resourceType``,
and ``meta.tag`` SUBSETTED. It only narrows: the data-use agreement may itself
list the elements of a type (``Project.elements``), and an element outside it
is the policy's refusal, not a wider export. A choice element is named by its
base (``value`` selects ``valueQuantity``, ``onset`` selects ``onsetDateTime``).

``_typeFilter``: FHIR search queries per type (``Condition?code=sys|44054006``),
the parameter repeated or comma-separated; several for one type are ORed, the
parameters within one are ANDed, a comma inside a token value ORs as in FHIR
search. The subset healthgov honours (anything else is refused, since the IG
says a server that cannot apply a filter must fail rather than return more):

- ``code``: token on the type's code element (``search.CODE_ELEMENTS``);
- ``category``: token on ``category`` (Observation, Condition, ...);
- ``status``: a code on ``status`` (MedicationRequest, Observation, ...);
- ``clinical-status``: token on Condition/AllergyIntolerance ``clinicalStatus``;
- ``date``: ``geYYYY[-MM[-DD]]`` or ``le...`` on the type's clinical date
  (``search.DATE_ELEMENTS``); several ``date`` parameters all hold.

Filters and ``_elements`` are applied to the de-identified resource, already
cut to the agreement's elements: a filter reads only what the recipient may
receive (a day-precise date filter cannot probe a date Safe Harbor reduced to
its year, nor an element the agreement withholds), and no element
de-identification removed can come back.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from services.contracts import errors
from services.records import search

MANDATORY = frozenset({"id", "meta", "resourceType"})
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
MAX_ELEMENTS = 100
MAX_FILTERS = 20
MAX_FILTER_LEN = 1024
_TYPE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_ELEMENT = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_SYSTEM = re.compile(r"^(?:https?://|urn:oid:|urn:uuid:)[A-Za-z0-9\-._~:/#%]{1,240}$")
_DATE_VALUE = re.compile(r"^\d{4}(?:-\d{2}(?:-\d{2})?)?$")
_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]{0,63}\?)")  # a comma that starts the next query, not one inside a value
# The suffixes a choice element ``name[x]`` takes in JSON (the FHIR R4 data types used as choices).
CHOICE_SUFFIXES = frozenset({
    "Boolean", "Integer", "Decimal", "String", "Uri", "Url", "Canonical", "Code", "Date", "DateTime", "Instant",
    "Time", "Period", "Quantity", "Age", "Range", "Ratio", "SampledData", "CodeableConcept", "Coding",
    "Reference", "Attachment", "Timing", "Duration", "Money", "Identifier", "Annotation", "PositiveInt",
    "UnsignedInt", "Base64Binary", "Markdown", "Oid", "Uuid", "Id", "Count", "Distance", "Signature", "Address",
    "ContactPoint", "HumanName", "Expression", "Dosage", "Meta", "ContactDetail", "UsageContext",
})
CATEGORY_TYPES = frozenset({"Observation", "Condition", "MedicationRequest", "CarePlan", "DiagnosticReport",
                            "Procedure", "DocumentReference", "Encounter"})
STATUS_TYPES = frozenset({"Observation", "MedicationRequest", "Procedure", "Encounter", "DiagnosticReport",
                          "Immunization", "CarePlan", "DocumentReference", "Claim", "ExplanationOfBenefit",
                          "Device"})
CLINICAL_STATUS_TYPES = frozenset({"Condition", "AllergyIntolerance"})
DATE_PREFIXES = ("ge", "le")


class ParameterInvalid(errors.Invalid):
    """A ``_elements`` or ``_typeFilter`` healthgov cannot honour exactly: 400 with an OperationOutcome."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not-supported")


def _safe(text: str) -> str:
    """A caller's text repeated in an error message: short and printable."""
    return "".join(c if c.isprintable() else "?" for c in text[:80])


# ------------------------------------------------------------------ _elements


def parse_elements(values: list[str]) -> dict[str, frozenset[str]]:
    """``_elements`` as ``{type or "*": elements}`` ("*": named without a type); empty if not given."""
    entries = [e.strip() for v in values for e in v.split(",")]
    if values and not any(entries):
        raise ParameterInvalid("_elements is empty: name root elements, as Type.element or element")
    if len(entries) > MAX_ELEMENTS:
        raise ParameterInvalid(f"_elements names at most {MAX_ELEMENTS} elements")
    out: dict[str, set[str]] = {}
    for entry in entries:
        rtype, dot, name = entry.partition(".")
        if not dot:
            rtype, name = "*", entry
        if (rtype != "*" and not _TYPE.match(rtype)) or not (_ELEMENT.match(name) or name == "resourceType"):
            raise ParameterInvalid(f"_elements: {_safe(entry)!r} is not Type.element or element (root elements "
                                   "only, e.g. Condition.code or code)")
        out.setdefault(rtype, set()).add(name)
    return {t: frozenset(names) for t, names in out.items()}


def expand_elements(requested: dict[str, frozenset[str]], types: list[str]) -> dict[str, list[str]]:
    """Per exported type, the elements it is narrowed to (an element without a type applies to every one).

    A type for which nothing is named is not narrowed by ``_elements`` (the agreement still narrows it). An
    element naming a type the export does not include is refused: it would silently do nothing.
    """
    stray = sorted(set(requested) - set(types) - {"*"})
    if stray:
        raise ParameterInvalid(f"_elements names types this export does not include: {', '.join(stray)}")
    out: dict[str, list[str]] = {}
    for rtype in types:
        names = requested.get(rtype, frozenset()) | requested.get("*", frozenset())
        if names:
            out[rtype] = sorted(names)
    return out


def asked_elements(requested: dict[str, frozenset[str]], types: list[str]) -> list[str]:
    """What the policy is asked to allow: every ``Type.element`` named beyond the mandatory ones (an element
    without a type, for each exported type), including those of types outside the agreement."""
    out = set()
    for rtype, names in requested.items():
        for name in names - MANDATORY:
            out.update(f"{t}.{name}" for t in (types if rtype == "*" else [rtype]))
    return sorted(out)


def _selects(key: str, names: frozenset[str]) -> bool:
    if key in names or key in MANDATORY:
        return True
    return any(key.startswith(name) and key[len(name):] in CHOICE_SUFFIXES for name in names)


def restrict(resource: dict[str, Any], names: list[str] | frozenset[str] | None) -> dict[str, Any]:
    """The resource cut to ``names`` plus the mandatory elements; ``None``: as it is."""
    if names is None:
        return resource
    chosen = frozenset(names)
    return {k: v for k, v in resource.items() if _selects(k, chosen)}


def tag_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    """``meta.tag`` SUBSETTED, as FHIR asks of a resource returned with elements left out."""
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if isinstance(t, dict) and t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    return {**resource, "meta": meta}


# ----------------------------------------------------------------- _typeFilter


@dataclass(frozen=True)
class Param:
    """One search parameter of a filter: its name and its OR-ed values (dates: one prefixed value)."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class TypeFilter:
    """One ``Type?query``: every parameter must hold (AND)."""

    rtype: str
    params: tuple[Param, ...]
    source: str

    def matches(self, resource: dict[str, Any]) -> bool:
        return all(_holds(self.rtype, p, resource) for p in self.params)


def _token(name: str, value: str) -> str:
    system, bar, code = value.rpartition("|")
    if not bar:
        system, code = "", value
    if (bar and system and not _SYSTEM.match(system)) or not _CODE.match(code):
        raise ParameterInvalid(f"_typeFilter: {name}={_safe(value)!r} is not a token (system|code or code; "
                               "letters, digits and . _ : - in codes)")
    return value


def _param(rtype: str, name: str, value: str) -> Param:
    """One ``name=value`` of the supported subset, validated; anything else is refused."""
    if (name == "code" and rtype in search.CODE_ELEMENTS) or (name == "category" and rtype in CATEGORY_TYPES) \
            or (name == "clinical-status" and rtype in CLINICAL_STATUS_TYPES):
        return Param(name, tuple(_token(name, v) for v in value.split(",")))
    if name == "status" and rtype in STATUS_TYPES:
        codes = tuple(value.split(","))
        if not all(_CODE.match(c) for c in codes):
            raise ParameterInvalid(f"_typeFilter: status={_safe(value)!r} is not a list of codes")
        return Param(name, codes)
    if name == "date" and rtype in search.DATE_ELEMENTS:
        prefix, day = value[:2], value[2:]
        if prefix not in DATE_PREFIXES or not _DATE_VALUE.match(day):
            raise ParameterInvalid(f"_typeFilter: date={_safe(value)!r}: only geYYYY[-MM[-DD]] or "
                                   "leYYYY[-MM[-DD]] are supported")
        try:
            search.parse_range(day)  # a calendar date (2026-02-30 is refused here)
        except search.InvalidSearch as exc:
            raise ParameterInvalid(f"_typeFilter: date={_safe(value)!r} is not a calendar date") from exc
        return Param(name, (value,))
    raise ParameterInvalid(f"_typeFilter: {rtype} search parameter {_safe(name)!r} is not supported; supported: "
                           "code, category, status, clinical-status (tokens), date (ge/le)")


def parse_type_filters(values: list[str]) -> list[TypeFilter]:
    """``_typeFilter`` values (repeated or comma-separated) as filters; empty if not given."""
    queries = [q for v in values for q in _SPLIT.split(v)]
    if len(queries) > MAX_FILTERS:
        raise ParameterInvalid(f"_typeFilter: at most {MAX_FILTERS} queries")
    out = []
    for query in queries:
        if len(query) > MAX_FILTER_LEN:
            raise ParameterInvalid(f"_typeFilter: a query is at most {MAX_FILTER_LEN} characters")
        rtype, mark, rest = query.partition("?")
        if not mark or not _TYPE.match(rtype) or not rest:
            raise ParameterInvalid(f"_typeFilter: {_safe(query)!r} is not Type?parameter=value[&...]")
        try:
            pairs = parse_qsl(rest, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise ParameterInvalid(f"_typeFilter: {_safe(query)!r} is not a search query") from exc
        params = []
        for name, value in pairs:
            if not value:
                raise ParameterInvalid(f"_typeFilter: {_safe(name)!r} has no value")
            params.append(_param(rtype, name, value))
        out.append(TypeFilter(rtype=rtype, params=tuple(params), source=query))
    return out


def filters_by_type(filters: list[TypeFilter], types: list[str]) -> dict[str, list[str]]:
    """The filters' queries per exported type (stored with the job); a filter for another type is refused."""
    stray = sorted({f.rtype for f in filters} - set(types))
    if stray:
        raise ParameterInvalid(f"_typeFilter names types this export does not include: {', '.join(stray)}")
    out: dict[str, list[str]] = {}
    for f in filters:
        out.setdefault(f.rtype, []).append(f.source)
    return out


def _codes_of(resource: dict[str, Any], elements: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for element in elements:
        value = resource.get(element)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, dict):
                out.extend(c for c in concept.get("coding") or [] if isinstance(c, dict))
    return out


def _token_matches(codings: list[dict[str, Any]], value: str) -> bool:
    system, bar, code = value.rpartition("|")
    for coding in codings:
        if coding.get("code") != (code if bar else value):
            continue
        if not bar or (coding.get("system") or "") == system:
            return True
    return False


def _holds(rtype: str, p: Param, resource: dict[str, Any]) -> bool:
    if p.name == "status":
        return resource.get("status") in p.values
    if p.name == "date":  # the search API's own date semantics (a resource without the date never matches)
        value = p.values[0]
        return search.matches({**resource, "resourceType": rtype},
                              search.Filters(dates=((value[:2], search.parse_range(value[2:])),)))
    elements = {"code": search.CODE_ELEMENTS.get(rtype, ("code",)), "category": ("category",),
                "clinical-status": ("clinicalStatus",)}[p.name]
    codings = _codes_of(resource, elements)
    return any(_token_matches(codings, v) for v in p.values)


def matches_any(filters: list[TypeFilter], resource: dict[str, Any]) -> bool:
    """Whether the resource passes one of its type's filters (OR); a type without filters passes."""
    return not filters or any(f.matches(resource) for f in filters)


@dataclass(frozen=True)
class Shape:
    """How one export job cuts each released (already de-identified) resource, in this order: to the
    agreement's elements, through the ``_typeFilter`` of its type, to the ``_elements`` asked for."""

    agreement: dict[str, list[str]]
    narrowed: dict[str, list[str]]
    filters: dict[str, list[TypeFilter]]

    @classmethod
    def of(cls, agreement: dict[str, list[str]], narrowed: dict[str, list[str]],
           queries: dict[str, list[str]]) -> Shape:
        """From the stored terms and job; raises ``ParameterInvalid`` if a stored query no longer parses."""
        filters: dict[str, list[TypeFilter]] = {}
        for f in parse_type_filters([q for qs in queries.values() for q in qs]):
            filters.setdefault(f.rtype, []).append(f)
        return cls(agreement=agreement, narrowed=narrowed, filters=filters)

    def apply(self, rtype: str, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The resource as released, or None if no filter of its type admits it."""
        cut, subset = resource, False
        if rtype in self.agreement:
            cut, subset = restrict(cut, self.agreement[rtype]), True
        if not matches_any(self.filters.get(rtype, []), cut):
            return None
        if rtype in self.narrowed:
            cut, subset = restrict(cut, self.narrowed[rtype]), True
        return tag_subsetted(cut) if subset else cut
