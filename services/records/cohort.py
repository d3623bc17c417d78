"""A data-use project's cohort: which patients its approval covers.

The regulator approves a study of a population, not of everyone the platform
holds, so an export takes only the patients its project's cohort criteria
admit (the FHIR Bulk Data "Group" of the project). The criteria are part of
the agreement the applicant signs and the regulator approves:

- ``conditions``: codes (``"code"`` or ``"system|code"``); a member has a
  Condition with one of them (entered-in-error and refuted ones do not count);
- ``period``: ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`` (either may be
  left out); the qualifying Condition's onset (or, lacking one, its recorded
  date) lies within it. Without ``conditions`` any Condition in the period
  qualifies;
- ``age``: ``{"min": years, "max": years}``, whole years on the day of the
  export; a birth date known only to the year or month admits the patient
  only if every day it could stand for is within the bounds;
- ``sex``: administrative genders (``female``, ``male``, ``other``, ``unknown``).

Criteria combine with AND; ``{}`` admits everyone. A criterion this module does
not know is refused when the project is applied for, and fails an export of a
project that somehow holds one: an unknown criterion is never silently
ignored, which would export patients the approval did not cover.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

SEXES = frozenset({"female", "male", "other", "unknown"})
KNOWN = frozenset({"conditions", "period", "age", "sex"})
NOT_EVIDENCE = frozenset({"entered-in-error", "refuted"})
MAX_CODES = 500
MAX_AGE = 150


class CohortInvalid(ValueError):
    """The criteria do not parse; the message says which and why."""


@dataclass(frozen=True)
class Cohort:
    codes: frozenset[str] = frozenset()  # "code" or "system|code"
    start: date | None = None
    end: date | None = None
    min_age: int | None = None
    max_age: int | None = None
    sexes: frozenset[str] | None = None

    @classmethod
    def parse(cls, doc: Any) -> Cohort:
        """The criteria of ``doc`` (a project's ``cohort`` object), or ``CohortInvalid``."""
        if not isinstance(doc, dict):
            raise CohortInvalid("'cohort' must be an object of cohort criteria")
        unknown = sorted(set(doc) - KNOWN)
        if unknown:
            raise CohortInvalid(f"unknown cohort criteria {unknown}; known: {sorted(KNOWN)}")
        codes = doc.get("conditions", [])
        if not isinstance(codes, list) or len(codes) > MAX_CODES or not all(
                isinstance(c, str) and c.strip() and len(c) <= 256 for c in codes):
            raise CohortInvalid(f"cohort 'conditions' must be a list of at most {MAX_CODES} codes")
        start, end = _period(doc.get("period", {}))
        min_age, max_age = _ages(doc.get("age", {}))
        sexes = doc.get("sex")
        if sexes is not None and (not isinstance(sexes, list) or not sexes or not set(sexes) <= SEXES):
            raise CohortInvalid(f"cohort 'sex' must be a non-empty list of {sorted(SEXES)}")
        return cls(codes=frozenset(c.strip() for c in codes), start=start, end=end, min_age=min_age,
                   max_age=max_age, sexes=frozenset(sexes) if sexes is not None else None)

    def needs(self) -> set[str]:
        """The resource types a patient's membership is decided on."""
        out: set[str] = set()
        if self.codes or self.start or self.end:
            out.add("Condition")
        if self.min_age is not None or self.max_age is not None or self.sexes is not None:
            out.add("Patient")
        return out

    def admits(self, resources: Iterable[dict[str, Any]], today: date) -> bool:
        """Whether the patient whose (decrypted) resources these are is a member on ``today``."""
        patients, conditions = [], []
        for r in resources:
            kind = r.get("resourceType")
            if kind == "Patient":
                patients.append(r)
            elif kind == "Condition":
                conditions.append(r)
        if "Patient" in self.needs() and not (patients and all(self._person(p, today) for p in patients)):
            return False
        return "Condition" not in self.needs() or any(self._evidence(c) for c in conditions)

    def _person(self, patient: dict[str, Any], today: date) -> bool:
        if self.sexes is not None and patient.get("gender") not in self.sexes:
            return False
        if self.min_age is None and self.max_age is None:
            return True
        born = _date_range(patient.get("birthDate"))
        if born is None:
            return False  # no birth date: the age criterion cannot be shown to hold
        youngest, oldest = _age(born[1], today), _age(born[0], today)
        return (self.min_age is None or youngest >= self.min_age) and (self.max_age is None or oldest <= self.max_age)

    def _evidence(self, condition: dict[str, Any]) -> bool:
        status = {c.get("code") for c in ((condition.get("verificationStatus") or {}).get("coding") or [])}
        if status & NOT_EVIDENCE:
            return False
        if self.codes:
            codings = (condition.get("code") or {}).get("coding") or []
            names = {str(c.get("code")) for c in codings} | {f"{c.get('system')}|{c.get('code')}" for c in codings}
            if not names & self.codes:
                return False
        if self.start is None and self.end is None:
            return True
        onset = condition.get("onsetDateTime") or (condition.get("onsetPeriod") or {}).get("start") \
            or condition.get("recordedDate")
        when = _date_range(onset[:10] if isinstance(onset, str) else None)
        if when is None:
            return False
        return (self.start is None or when[0] >= self.start) and (self.end is None or when[1] <= self.end)


def _period(raw: Any) -> tuple[date | None, date | None]:
    if not isinstance(raw, dict) or set(raw) - {"start", "end"}:
        raise CohortInvalid("cohort 'period' must be {\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}")
    try:
        start, end = (date.fromisoformat(raw[k]) if raw.get(k) is not None else None for k in ("start", "end"))
    except (TypeError, ValueError) as exc:
        raise CohortInvalid("cohort 'period' dates must be YYYY-MM-DD") from exc
    if start and end and start > end:
        raise CohortInvalid("cohort 'period' starts after it ends")
    return start, end


def _ages(raw: Any) -> tuple[int | None, int | None]:
    if not isinstance(raw, dict) or set(raw) - {"min", "max"}:
        raise CohortInvalid("cohort 'age' must be {\"min\": years, \"max\": years}")
    bounds = [raw.get("min"), raw.get("max")]
    if not all(b is None or (type(b) is int and 0 <= b <= MAX_AGE) for b in bounds):
        raise CohortInvalid(f"cohort 'age' bounds must be whole years from 0 to {MAX_AGE}")
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise CohortInvalid("cohort 'age' min is above max")
    return bounds[0], bounds[1]


def _date_range(raw: Any) -> tuple[date, date] | None:
    """The first and last day a FHIR date (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``) can stand for."""
    if not isinstance(raw, str):
        return None
    try:
        if len(raw) == 4:
            return date(int(raw), 1, 1), date(int(raw), 12, 31)
        if len(raw) == 7:
            year, month = int(raw[:4]), int(raw[5:7])
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        day = date.fromisoformat(raw[:10])
        return day, day
    except ValueError:
        return None


def _age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
