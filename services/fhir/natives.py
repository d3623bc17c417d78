"""Native Python forms of the invariants every hospital's data hits, each tied to its exact FHIRPath text.

Why: fhirpathpy interprets an expression tree in Python; ``per-1`` (a period
does not end before it starts) costs it about 90 µs per Period, and Synthea-shaped
data carries a Period in nearly every Encounter, Claim and CarePlan. Its answer
cannot be memoised (every period is different), so it was the largest part of
the rules' cost per resource. The Condition and AllergyIntolerance status
invariants (``con-4``, ``con-5``, ``ait-1``, ``ait-2``) read an abatement date
or a status coding, different for every record too.

Each native answers ``True`` (passes), ``False`` (fails) or ``None``: "not
decided here", and the caller then evaluates the FHIRPath with fhirpathpy as
before. A native decides only the shapes whose answer is exact and the same as
fhirpathpy's (with ``rules.install_datetime_fix``), which are what hospitals
send: two dateTimes of the same shape, or two instants to the second with an
offset. The rest (different precisions, a time without an offset, anything
malformed) goes to fhirpathpy, whose answers there follow its own reading of
FHIRPath's partial-precision rules. ``tests/unit/fhir/test_native_invariants.py``
checks every native against fhirpathpy on a corpus of such cases.

A native is bound to the invariant's key *and* its expression text: when a
newer edition of the definitions changes the expression, the native no longer
applies and fhirpathpy evaluates the new one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

# FHIR's dateTime (year, year-month, date, or date and time to the second with an offset), the optional
# fraction limited to what datetime.fromisoformat reads exactly (microseconds).
_DATETIME = re.compile(
    r"(?P<date>[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?)"
    r"(T(?P<time>([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?)(?P<tz>Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00))?")
_OFFSET = re.compile(r"(Z|[+-]\d\d:\d\d)$")


def _same_shape(x: str, y: str) -> bool:
    """Whose string order is their time order: the same length and the same offset at the same place.

    The same test as ``rules._same_shape``, which makes fhirpathpy compare such
    values as text; written again here so this module needs no fhirpathpy.
    """
    if len(x) != len(y):
        return False
    if len(x) <= 10 or "T" not in x:
        return True
    mx, my = _OFFSET.search(x), _OFFSET.search(y)
    return mx is not None and my is not None and mx.group(0) == my.group(0) and mx.start() == my.start()


def per_1(node: dict[str, Any]) -> bool | None:
    """``start.hasValue().not() or end.hasValue().not() or (start <= end)`` on a Period.

    Missing (or null) start or end: passes. Two well-formed dateTimes of the
    same shape: their text order. Two instants to the second, both with an
    offset (one precision for fhirpathpy, whatever their fractions): compared
    as instants, through the POSIX timestamp as fhirpathpy compares them.
    Anything else: not decided here.
    """
    if "_start" in node or "_end" in node:  # a value's extension: fhirpathpy reads these nodes its own way
        return None
    start, end = node.get("start"), node.get("end")
    if start is None or end is None:  # no value on one side: the invariant holds
        return True
    if type(start) is not str or type(end) is not str:
        return None
    ms, me = _DATETIME.fullmatch(start), _DATETIME.fullmatch(end)
    if ms is None or me is None:
        return None
    if _same_shape(start, end):
        return start <= end
    if ms.group("tz") and me.group("tz"):
        return datetime.fromisoformat(start).timestamp() <= datetime.fromisoformat(end).timestamp()
    return None


def _codings(node: dict[str, Any], element: str) -> list[Any] | None:
    """The codings of a CodeableConcept element, ``[]`` when it is absent; ``None`` for an unexpected shape."""
    concept = node.get(element)
    if concept is None:
        return [] if element not in node else None
    if type(concept) is not dict:
        return None
    codings = concept.get("coding", [])
    return codings if type(codings) is list else None


def _has_code(codings: list[Any], system: str, codes: frozenset[str]) -> bool:
    """``coding.where(system = S and (code = a or code = b ...)).exists()`` (missing system or code: no match)."""
    return any(type(c) is dict and c.get("system") == system and c.get("code") in codes for c in codings)


def _present(node: dict[str, Any], element: str) -> bool | None:
    """``element.exists()`` for a CodeableConcept element; ``None`` for a null (left to fhirpathpy)."""
    if element not in node:
        return False
    value = node[element]
    return None if value is None else True


CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
_NOT_ACTIVE = frozenset({"resolved", "remission", "inactive"})
_ENTERED_IN_ERROR = frozenset({"entered-in-error"})
# Condition.abatement[x]: its five types, each with the ``_`` form a primitive's extension takes.
_ABATEMENT = frozenset(f"{p}abatement{t}" for p in ("", "_") for t in ("DateTime", "Age", "Period", "Range", "String"))


def con_4(node: dict[str, Any]) -> bool | None:
    """If a condition is abated, its clinical status is resolved, remission or inactive."""
    codings = _codings(node, "clinicalStatus")
    if codings is None:
        return None
    abated = False
    for key in _ABATEMENT:
        if key in node:
            if node[key] is None:
                return None
            abated = True
    return not abated or _has_code(codings, CONDITION_CLINICAL, _NOT_ACTIVE)


def con_5(node: dict[str, Any]) -> bool | None:
    """A condition entered in error has no clinical status."""
    codings, clinical = _codings(node, "verificationStatus"), _present(node, "clinicalStatus")
    if codings is None or clinical is None:
        return None
    return not _has_code(codings, CONDITION_VER_STATUS, _ENTERED_IN_ERROR) or not clinical


def ait_1(node: dict[str, Any]) -> bool | None:
    """An allergy has a clinical status unless it was entered in error."""
    codings, clinical = _codings(node, "verificationStatus"), _present(node, "clinicalStatus")
    if codings is None or clinical is None:
        return None
    return _has_code(codings, ALLERGY_VERIFICATION, _ENTERED_IN_ERROR) or clinical


def ait_2(node: dict[str, Any]) -> bool | None:
    """An allergy entered in error has no clinical status."""
    codings, clinical = _codings(node, "verificationStatus"), _present(node, "clinicalStatus")
    if codings is None or clinical is None:
        return None
    return not _has_code(codings, ALLERGY_VERIFICATION, _ENTERED_IN_ERROR) or not clinical


Native = Callable[[dict[str, Any]], "bool | None"]

# (key, the FHIR 4.0.1 expression exactly as the definitions write it) -> its native form.
NATIVE: dict[tuple[str, str], Native] = {
    ("per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)"): per_1,
    ("con-4", "abatement.empty() or clinicalStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/"
              "condition-clinical' and (code='resolved' or code='remission' or code='inactive')).exists()"): con_4,
    ("con-5", "verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-ver-status' "
              "and code='entered-in-error').empty() or clinicalStatus.empty()"): con_5,
    ("ait-1", "verificationStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/"
              "allergyintolerance-verification' and code = 'entered-in-error').exists() or clinicalStatus.exists()"):
        ait_1,
    ("ait-2", "verificationStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/"
              "allergyintolerance-verification' and code = 'entered-in-error').empty() or clinicalStatus.empty()"):
        ait_2,
}


def native_for(key: str, expression: str) -> Native | None:
    """The native form of this invariant, if it has one for exactly this expression."""
    return NATIVE.get((key, expression))
