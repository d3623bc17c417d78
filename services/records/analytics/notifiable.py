"""Notifiable-disease counts per district and ISO week: a named analytic query (docs/architecture.md §16).

Public health and the regulator watch a fixed list of diseases the law makes
notifiable. Each disease is a value set (``notifiable.json`` beside this
module, or ``HEALTHGOV_NOTIFIABLE_DISEASES_FILE``): SNOMED CT and ICD-10
codes, matched exactly. The named query is, per disease, the ordinary
declarative query (``query.py``) "people with a Condition of the value set,
by week and district" over the period asked, so every cell goes through the
same disclosure control as any other answer, and the rates per 100,000 are
computed from the released counts (``rates.py``).

Why a named query and not just the general API: the regulator may ask this
one question and no other (``regulator_notifiable_disease_counts`` in
``policies/healthgov/access/analytics.rego``), and the policy can only tell
the question apart if it has a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from services.contracts import errors
from services.records.analytics import query as q
from services.records.analytics.flatten import DISTRICT_PATTERN

NAME = "notifiable_diseases"
DEFAULT_FILE = Path(__file__).with_name("notifiable.json")
DEFAULT_WEEKS = 12
MAX_WEEKS = 106  # two years of weeks per answer
MAX_DISTRICTS = 50


class DiseaseFileError(ValueError):
    """The notifiable-disease file is unreadable or one of its value sets is not valid."""


@dataclass(frozen=True)
class Disease:
    id: str
    name: dict[str, str]  # by language: "en", "zh_CN"
    category: str | None
    types: list[str]
    codes: list[q.Codes]

    def about(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "category": self.category, "types": self.types,
                "codes": [c.model_dump() for c in self.codes]}


def load(path: Path | None = None) -> dict[str, Disease]:
    """The diseases of the file, in its order, each value set checked as a query's ``include`` would be."""
    path = path or DEFAULT_FILE
    try:
        doc = orjson.loads(path.read_bytes())
        diseases: dict[str, Disease] = {}
        for d in doc["diseases"]:
            cohort = q.Cohort(types=d.get("types") or ["Condition"], include=d["codes"])
            if not q.HOSPITAL_PATTERN.fullmatch(d["id"]) or d["id"] in diseases or not d["codes"]:
                raise DiseaseFileError(f"{path}: disease ids are unique, short and plain; each has codes")
            diseases[d["id"]] = Disease(id=d["id"], name={k: str(v) for k, v in d["name"].items()},
                                        category=d.get("category"), types=cohort.types, codes=list(cohort.include))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise DiseaseFileError(f"{path}: not a valid notifiable-disease file ({exc.__class__.__name__})") from exc
    if not diseases:
        raise DiseaseFileError(f"{path}: no disease")
    return diseases


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def iso_week(day: date) -> str:
    """The store's week label, ``YYYY-Www`` (ISO 8601 week-numbering year)."""
    y, w, _ = day.isocalendar()
    return f"{y:04d}-W{w:02d}"


@dataclass(frozen=True)
class Request:
    """What was asked: whole ISO weeks from ``since``'s Monday to ``until``'s Sunday, some diseases, districts."""

    since: date  # a Monday
    until: date  # a Sunday
    diseases: list[str]
    districts: list[str] | None

    def weeks(self) -> list[str]:
        return [iso_week(self.since + timedelta(weeks=i)) for i in range((self.until - self.since).days // 7 + 1)]

    def canonical(self) -> dict[str, Any]:
        return {"named": NAME, "since": self.since.isoformat(), "until": self.until.isoformat(),
                "diseases": self.diseases, "districts": self.districts}

    def query(self, disease: Disease) -> q.Query:
        """The ordinary analytic query this disease's counts are: its value set, by week and district."""
        return q.Query(cohort=q.Cohort(types=disease.types, include=disease.codes, districts=self.districts,
                                       period=q.Period(start=self.since, end=self.until)),
                       measure=q.Measure(by=["week", "district"], rate="per_100000"))


def _day(params: dict[str, list[str]], name: str) -> date | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise errors.Invalid(f"'{name}' is given once")
    if not values or not values[0]:
        return None
    try:
        return date.fromisoformat(values[0])
    except ValueError as exc:
        raise errors.Invalid(f"'{name}' is a date, YYYY-MM-DD") from exc


def _listed(params: dict[str, list[str]], name: str) -> list[str]:
    """A repeated or comma-separated parameter, blanks dropped."""
    return [v.strip() for raw in params.get(name) or [] for v in raw.split(",") if v.strip()]


def parse(params: dict[str, list[str]], diseases: dict[str, Disease], today: date) -> Request:
    """The request from parameters ``since``, ``until``, ``disease`` and ``district``; a 400 says what is wrong."""
    unknown = sorted(set(params) - {"since", "until", "disease", "district"})
    if unknown:
        raise errors.Invalid(f"unknown parameters {unknown[:5]}: since, until, disease, district")
    until = _day(params, "until") or today
    since = _day(params, "since") or until - timedelta(weeks=DEFAULT_WEEKS - 1)
    if since > until:
        raise errors.Invalid("'since' is after 'until'")
    since, until = monday(since), monday(until) + timedelta(days=6)
    if (until - since).days // 7 + 1 > MAX_WEEKS:
        raise errors.Invalid(f"at most {MAX_WEEKS} weeks per answer")
    wanted = _listed(params, "disease")
    if set(wanted) - set(diseases):
        raise errors.Invalid(f"unknown disease; the notifiable diseases are {sorted(diseases)}")
    chosen = [d for d in diseases if d in wanted] if wanted else list(diseases)
    districts = sorted(set(_listed(params, "district"))) or None
    if districts is not None and (len(districts) > MAX_DISTRICTS
                                  or not all(DISTRICT_PATTERN.fullmatch(d) for d in districts)):
        raise errors.Invalid(f"'district' names at most {MAX_DISTRICTS} districts")
    return Request(since=since, until=until, diseases=chosen, districts=districts)
