"""From a patient's FHIR resources to de-identified fact rows (docs/architecture.md §16).

One row per (resource, coding): the resource type, its clinical date (and
month, ISO week, year), a code and its system, the patient's age and age band
at that date, sex, district, the sending hospital, whether the patient opted
out of research, and a keyed pseudonym of the patient. That is all: no names,
identifiers, addresses below the district, free text, display strings or
resource ids. A value that is not a plausible code (free text typed into a
code field) is dropped, never stored.

Why a row per coding: a cohort asks "any of these codes, in any of these
systems"; one row per coding keeps that a plain equality test on both engines
(DuckDB and Spark), with no list functions whose names differ between them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

SCHEMA = pa.schema([
    ("person", pa.int64()),  # keyed pseudonym of the patient (63 bits of an HMAC)
    ("rtype", pa.string()),
    ("period", pa.string()),  # the year: the store's partition besides the type
    ("event_date", pa.date32()),
    ("month", pa.string()),  # YYYY-MM
    ("week", pa.string()),  # ISO week, YYYY-Www
    ("system", pa.string()),
    ("code", pa.string()),
    ("age", pa.int16()),
    ("age_band", pa.string()),
    ("sex", pa.string()),
    ("district", pa.string()),
    ("hospital", pa.string()),
    ("research_opt_out", pa.bool_()),
])
COLUMNS = tuple(SCHEMA.names)

# Where each type keeps its clinical date and its codes (first date found wins).
DATES: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate", "abatementDateTime"),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Encounter": ("period.start", "period.end"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "AllergyIntolerance": ("onsetDateTime", "recordedDate"),
}
CODES: dict[str, tuple[str, ...]] = {
    "Condition": ("code",),
    "Observation": ("code",),
    "Encounter": ("type", "reasonCode", "class"),
    "Procedure": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "DiagnosticReport": ("code",),
    "AllergyIntolerance": ("code",),
}
TYPES = frozenset(DATES)
CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_:]{0,63}")
SYSTEM_PATTERN = re.compile(r"(https?://|urn:oid:|urn:iso:)[A-Za-z0-9.\-_:/]{1,200}")
DISTRICT_PATTERN = re.compile(r"[\w .'\-]{1,64}")
SEXES = frozenset({"female", "male", "other", "unknown"})
BANDS = ((0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 79), (80, 89))


@dataclass(frozen=True)
class Person:
    """What the store keeps about the patient: pseudonym, birth date (for ages), sex, district, opt-out."""

    person: int
    birth: date | None
    sex: str
    district: str | None
    research_opt_out: bool


def age_band(age: int | None) -> str | None:
    if age is None or age < 0:
        return None
    for lo, hi in BANDS:
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "90+"


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def full_date(value: Any) -> date | None:
    """The calendar date a FHIR date, dateTime or instant starts with, if it has a day (as written, no zone shift)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _codings(resource: dict[str, Any], rtype: str) -> list[tuple[Any, Any]]:
    """The raw (system, code) of every coding under the type's code elements, plausible or not."""
    out: list[tuple[Any, Any]] = []
    for path in CODES.get(rtype, ()):
        value = resource.get(path)
        concepts = value if isinstance(value, list) else [value]
        for concept in concepts:
            if not isinstance(concept, dict):
                continue
            codings = concept.get("coding") if "coding" in concept else [concept]  # Encounter.class is a Coding
            for c in codings if isinstance(codings, list) else []:
                if isinstance(c, dict):
                    out.append((c.get("system"), c.get("code")))
    return out


def clinical_date(candidates: Iterable[Any]) -> date | None:
    """The first candidate that is a full date (a year or a month alone is no date a period can hold)."""
    return next((d for d in map(full_date, candidates) if d is not None), None)


def plausible_codings(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[str | None, str | None]]:
    """The distinct plausible (system, code) pairs, sorted; ``[(None, None)]`` if there are none.

    A code that is not a plausible code (free text typed into a code field) is
    dropped; an implausible system is dropped but its code kept. A resource
    without any code still counts (one row with no code), so "people with an
    Encounter" does not depend on how well the sender coded it.
    """
    out: set[tuple[str | None, str | None]] = set()
    for system, code in pairs:
        if isinstance(code, str) and CODE_PATTERN.fullmatch(code):
            ok_system = isinstance(system, str) and SYSTEM_PATTERN.fullmatch(system)
            out.add((system if ok_system else None, code))
    return sorted(out, key=lambda sc: (sc[0] or "", sc[1] or "")) or [(None, None)]


def sex_of(gender: Any) -> str:
    """The administrative gender if it is one of FHIR's four codes, else ``unknown``."""
    return gender if isinstance(gender, str) and gender in SEXES else "unknown"


def district_of(addresses: Iterable[tuple[Any, Any]]) -> str | None:
    """From each address's (district, city) in order: the first district, else city, that is a plausible name."""
    for district, city in addresses:
        value = district or city
        if isinstance(value, str) and DISTRICT_PATTERN.fullmatch(value.strip()):
            return value.strip()
    return None


def person_of(patient: dict[str, Any] | None, person: int, research_opt_out: bool) -> Person:
    """The patient's stored attributes from their Patient resource (none known if it was never sent)."""
    patient = patient or {}
    addresses = ((a.get("district"), a.get("city")) for a in patient.get("address") or [] if isinstance(a, dict))
    return Person(person=person, birth=full_date(patient.get("birthDate")), sex=sex_of(patient.get("gender")),
                  district=district_of(addresses), research_opt_out=research_opt_out)


def fact_rows(who: Person, rtype: str, when: date, codings: list[tuple[str | None, str | None]],
              hospital: str) -> list[dict[str, Any]]:
    """The rows of one resource: its date's month, week and year, the age at it, one row per coding."""
    age = None
    if who.birth is not None:
        age = when.year - who.birth.year - ((when.month, when.day) < (who.birth.month, who.birth.day))
        age = age if 0 <= age <= 150 else None
    iso = when.isocalendar()
    return [{"person": who.person, "rtype": rtype, "period": f"{when.year:04d}", "event_date": when,
             "month": f"{when.year:04d}-{when.month:02d}", "week": f"{iso.year:04d}-W{iso.week:02d}",
             "system": system, "code": code, "age": age, "age_band": age_band(age), "sex": who.sex,
             "district": who.district, "hospital": hospital, "research_opt_out": who.research_opt_out}
            for system, code in codings]


def rows(who: Person, resources: Iterable[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
    """The fact rows of one patient's current resources, each with the hospital that sent it.

    The fast path: the same rows as the ViewDefinitions in ``views/`` give
    through ``viewdef.py`` (``tests/unit/records/test_analytics_viewdefs.py``
    holds them equal), read straight from the JSON.
    """
    out: list[dict[str, Any]] = []
    for resource, hospital in resources:
        rtype = resource.get("resourceType")
        if rtype not in TYPES:
            continue
        when = clinical_date(_get(resource, p) for p in DATES[rtype])
        if when is None:
            continue  # no clinical date: it belongs to no period a query can ask about
        out.extend(fact_rows(who, rtype, when, plausible_codings(_codings(resource, rtype)), hospital))
    return out
