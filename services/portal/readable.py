"""A patient's record in words: the ``$everything`` Bundle turned into sections a person reads.

Pure functions, no I/O. A hospital's FHIR is written for machines: codes,
references, instants in UTC, statuses from value sets. The patient reads the
name of the thing (the resource's own text, then a coding's display, then the
portal's glossary of common codes, ``terms.py``), the hospital by its name in
the registry, dates as Guiyang's calendar shows them, and whether it is still
current or in the past. Codes are never what a row says; a resource with no
name at all says so in words and keeps its code only as a hint.

Each section groups its items into "current" and "past" by the resource's own
status (the value sets named beside each rule); results group the newest value
of each test as current and earlier values as past.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from services.portal import terms
from services.portal.i18n import N_, local_date

# The sections of the page and the PDF, in order: key, heading (msgid), the FHIR types read into it.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("conditions", N_("Conditions"), ("Condition",)),
    ("medications", N_("Medicines"), ("MedicationRequest", "MedicationStatement")),
    ("allergies", N_("Allergies"), ("AllergyIntolerance",)),
    ("results", N_("Test results"), ("Observation",)),
    ("visits", N_("Visits"), ("Encounter",)),
    ("vaccinations", N_("Vaccinations"), ("Immunization",)),
    ("documents", N_("Documents"), ("DocumentReference",)),
)
CURRENT_WORDS = {
    "conditions": N_("Current"), "medications": N_("Taking now"), "allergies": N_("Current"),
    "results": N_("Latest result of each test"), "visits": N_("Ongoing or planned"),
    "vaccinations": N_("All vaccinations"), "documents": N_("Current"),
}
# condition-clinical and allergyintolerance-clinical: these mean the problem is there now.
_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
# medicationrequest-status / medication-statement-status: still being taken or about to be.
_ACTIVE_MEDICATION = {"active", "on-hold", "draft", "intended"}
# encounter-status: not over yet.
_ACTIVE_ENCOUNTER = {"planned", "arrived", "triaged", "in-progress", "onleave"}
# Statuses a patient reads as a word (msgids); any other status code is shown as it is.
STATUS_WORDS = {
    "active": N_("active"), "recurrence": N_("come back"), "relapse": N_("come back"),
    "inactive": N_("past"), "remission": N_("in remission"), "resolved": N_("resolved"),
    "on-hold": N_("paused"), "stopped": N_("stopped"), "completed": N_("finished"),
    "cancelled": N_("cancelled"), "entered-in-error": N_("recorded in error"), "draft": N_("not yet started"),
    "intended": N_("not yet started"), "not-taken": N_("not taken"), "finished": N_("finished"),
    "in-progress": N_("in progress"), "planned": N_("planned"), "not-done": N_("not given"),
    "superseded": N_("replaced by a newer version"), "current": N_("current"),
    "final": N_("final"), "preliminary": N_("preliminary"), "amended": N_("corrected"),
}
INTERPRETATION_WORDS = {"H": N_("high"), "HH": N_("very high"), "L": N_("low"), "LL": N_("very low"),
                        "A": N_("abnormal"), "N": N_("normal")}
CRITICALITY_WORDS = {"high": N_("serious"), "low": N_("mild"), "unable-to-assess": N_("severity unknown")}
# SNOMED CT's semantic tag ("Stress (finding)", "Mold (organism)"): a classifier's word, not a patient's.
_SEMANTIC_TAG = re.compile(r"\s*\((finding|disorder|procedure|situation|substance|organism|environment|"
                           r"observable entity|qualifier value|product|regime/therapy|event|morphologic abnormality|"
                           r"body structure|physical object|person)\)\s*$")
UNNAMED = N_("A record without a name")


@dataclass
class Item:
    """One row the patient reads; ``name`` is a display name or a msgid (``name_is_msgid``)."""

    name: str
    date: str = ""  # the Guiyang calendar date the row is about ('' when the record has none)
    end: str = ""
    status: str = ""  # a status code, put in words by STATUS_WORDS
    hospital: str | None = None  # registry id (meta.source), named by the page in its language
    detail: str = ""  # a value with its unit, a dose, a reason: already words
    flag: str = ""  # an interpretation code (H, L...) or criticality, worded by the tables above
    name_is_msgid: bool = False
    code_hint: str = ""  # "SNOMED CT 38341003" when the record has no name at all


@dataclass
class Section:
    key: str
    title: str
    current_title: str
    current: list[Item] = field(default_factory=list)
    past: list[Item] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.current and not self.past


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def concept_name(concept: Any) -> tuple[str, bool, str]:
    """(name, is_msgid, code_hint) for a CodeableConcept: its text, a display, the glossary, else nothing."""
    if not isinstance(concept, dict):
        return UNNAMED, True, ""
    codings = _codings(concept)
    for c in codings:  # the glossary first: its wording is plain and it is translated
        known = terms.lookup(c.get("system"), c.get("code"))
        if known:
            return known, True, ""
    text = concept.get("text")
    if isinstance(text, str) and text.strip():
        return plain(text), False, ""
    for c in codings:
        if isinstance(c.get("display"), str) and c["display"].strip():
            return plain(c["display"]), False, ""
    hint = next((f"{terms.system_name(c.get('system'))} {c.get('code')}".strip() for c in codings if c.get("code")),
                "")
    return UNNAMED, True, hint


def plain(display: str) -> str:
    """A display without SNOMED CT's semantic tag ("Acute bronchitis (disorder)" → "Acute bronchitis")."""
    return _SEMANTIC_TAG.sub("", display.strip()) or display.strip()


def _code(concept: Any) -> str:
    return next((str(c.get("code")) for c in _codings(concept) if c.get("code")), "")


def _first(*values: Any) -> str:
    return next((str(v) for v in values if isinstance(v, str) and v), "")


def _period(res: dict[str, Any], key: str) -> tuple[str, str]:
    period = res.get(key) if isinstance(res.get(key), dict) else {}
    return _first(period.get("start")), _first(period.get("end"))


def quantity(q: Any) -> str:
    """``7.2 mmol/L``: a Quantity's value with its unit (the human unit first, else the UCUM code)."""
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    value = q["value"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    unit = _first(q.get("unit"), q.get("code"))
    return f"{value} {unit}".strip()


def observation_value(res: dict[str, Any]) -> str:
    """The result in words: a quantity, a coded answer, text, or the components (blood pressure ``120/80 mmHg``)."""
    if "valueQuantity" in res:
        return quantity(res["valueQuantity"])
    if "valueCodeableConcept" in res:
        name, is_msgid, _ = concept_name(res["valueCodeableConcept"])
        return "" if is_msgid else name
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in res:
            return str(res[key])
    parts = [quantity(c.get("valueQuantity")) for c in res.get("component") or [] if isinstance(c, dict)]
    parts = [p for p in parts if p]
    if len(parts) == 2 and parts[0].split(" ", 1)[1:] == parts[1].split(" ", 1)[1:]:
        unit = parts[0].split(" ", 1)[1] if " " in parts[0] else ""
        return f"{parts[0].split(' ', 1)[0]}/{parts[1]}".strip() if unit else "/".join(parts)
    return ", ".join(parts)


def _status(res: dict[str, Any], key: str) -> str:
    return _code(res.get(key)) if isinstance(res.get(key), dict) else _first(res.get(key))


def _shown(status: str, *plain: str) -> str:
    """The status a row shows: none when it only repeats what its group's heading says ("active" under "Current")."""
    return "" if status in plain else status


def _item(res: dict[str, Any], concept: Any, **kw: Any) -> Item:
    name, is_msgid, hint = concept_name(concept)
    hospital = (res.get("meta") or {}).get("source") if isinstance(res.get("meta"), dict) else None
    return Item(name=name, name_is_msgid=is_msgid, code_hint=hint,
                hospital=hospital if isinstance(hospital, str) else None, **kw)


def _condition(res: dict[str, Any]) -> tuple[Item, bool]:
    status = _status(res, "clinicalStatus")
    item = _item(res, res.get("code"), date=local_date(_first(res.get("onsetDateTime"), res.get("recordedDate"))),
                 end=local_date(_first(res.get("abatementDateTime"))), status=_shown(status, "active"))
    current = status in _ACTIVE_CLINICAL if status else not item.end
    return item, current


def _medication(res: dict[str, Any]) -> tuple[Item, bool]:
    status = _first(res.get("status"))
    concept = res.get("medicationCodeableConcept")
    if concept is None and isinstance(res.get("medicationReference"), dict):
        concept = {"text": res["medicationReference"].get("display")}
    dosage = next((d.get("text") for d in res.get("dosageInstruction") or res.get("dosage") or []
                   if isinstance(d, dict) and isinstance(d.get("text"), str)), "")
    start, end = _period(res, "effectivePeriod")
    item = _item(res, concept, date=local_date(_first(res.get("authoredOn"), res.get("effectiveDateTime"), start)),
                 end=local_date(end), status=_shown(status, "active"), detail=dosage)
    return item, status in _ACTIVE_MEDICATION


def _allergy(res: dict[str, Any]) -> tuple[Item, bool]:
    status = _status(res, "clinicalStatus")
    reactions = [concept_name(m) for r in res.get("reaction") or [] if isinstance(r, dict)
                 for m in r.get("manifestation") or []]
    item = _item(res, res.get("code"), date=local_date(_first(res.get("onsetDateTime"), res.get("recordedDate"))),
                 status=_shown(status, "active"), flag=_first(res.get("criticality")),
                 detail=", ".join(n for n, is_msgid, _ in reactions if not is_msgid))
    return item, status in _ACTIVE_CLINICAL if status else True


def _encounter(res: dict[str, Any]) -> tuple[Item, bool]:
    status = _first(res.get("status"))
    types = [t for t in res.get("type") or [] if isinstance(t, dict)]
    start, end = _period(res, "period")
    concept = types[0] if types else None
    if concept is None and isinstance(res.get("class"), dict):
        concept = {"coding": [res["class"]]}
    reasons = [concept_name(r) for r in res.get("reasonCode") or []]
    item = _item(res, concept, date=local_date(start), end=local_date(end), status=_shown(status, "finished"),
                 detail=", ".join(n for n, is_msgid, _ in reasons if not is_msgid))
    return item, status in _ACTIVE_ENCOUNTER


def _immunization(res: dict[str, Any]) -> tuple[Item, bool]:
    status = _first(res.get("status"))
    item = _item(res, res.get("vaccineCode"), date=local_date(_first(res.get("occurrenceDateTime"))),
                 status=_shown(status, "completed"))
    return item, True


def _document(res: dict[str, Any]) -> tuple[Item, bool]:
    status = _first(res.get("status"))
    titles = [a.get("title") for c in res.get("content") or [] if isinstance(c, dict)
              for a in [c.get("attachment") or {}] if isinstance(a, dict) and isinstance(a.get("title"), str)]
    item = _item(res, res.get("type"), date=local_date(_first(res.get("date"))),
                 status=_shown(status, "current"), detail=_first(res.get("description"), *titles))
    return item, status != "superseded" and status != "entered-in-error"


def _observation(res: dict[str, Any]) -> tuple[Item, bool]:
    start, _ = _period(res, "effectivePeriod")
    flags = [_code(i) for i in res.get("interpretation") or []]
    status = _first(res.get("status"))
    item = _item(res, res.get("code"), date=local_date(_first(res.get("effectiveDateTime"), start,
                                                                res.get("issued"))),
                 status=_shown(status, "final"), detail=observation_value(res),
                 flag=next((f for f in flags if f in INTERPRETATION_WORDS and f != "N"), ""))
    return item, True  # grouped afterwards: the newest of each test is current


_READERS = {"Condition": _condition, "MedicationRequest": _medication, "MedicationStatement": _medication,
            "AllergyIntolerance": _allergy, "Encounter": _encounter, "Immunization": _immunization,
            "DocumentReference": _document, "Observation": _observation}


def readable_record(bundle: dict[str, Any]) -> list[Section]:
    """The sections of the patient's record, newest first within each group."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") in _READERS:
            by_type.setdefault(res["resourceType"], []).append(res)
    sections = []
    for key, title, types in SECTIONS:
        section = Section(key=key, title=title, current_title=CURRENT_WORDS[key])
        for rtype in types:
            for res in by_type.get(rtype, []):
                item, current = _READERS[rtype](res)
                (section.current if current else section.past).append(item)
        for group in (section.current, section.past):
            group.sort(key=lambda i: i.date, reverse=True)
        if key == "results":
            seen: set[tuple[str, bool]] = set()
            newest, older = [], []
            for item in section.current:
                (older if (item.name, item.name_is_msgid) in seen else newest).append(item)
                seen.add((item.name, item.name_is_msgid))
            section.current, section.past = newest, older
        sections.append(section)
    return sections


def hospitals_of(sections: list[Section]) -> list[str]:
    """Every hospital the record came from (registry ids), in order of first appearance."""
    seen: dict[str, None] = {}
    for s in sections:
        for item in (*s.current, *s.past):
            if item.hospital:
                seen.setdefault(item.hospital)
    return list(seen)
