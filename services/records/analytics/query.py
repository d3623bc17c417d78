"""The declarative analytic query and its one SQL text, run unchanged by every engine.

A query is a cohort (who counts) and a measure (how they are counted):

```json
{"cohort": {"types": ["Condition"],
            "include": [{"system": "http://snomed.info/sct", "codes": ["44054006"]},
                        {"system": "http://hl7.org/fhir/sid/icd-10", "codes": ["E11"]}],
            "exclude": [{"system": "http://snomed.info/sct", "codes": ["46635009"]}],
            "age": {"min": 18, "max": 64}, "sex": ["female", "male"],
            "districts": ["Nanming"], "hospitals": ["gy-hosp-001"],
            "period": {"start": "2020-01-01", "end": "2024-12-31"}},
 "measure": {"count": "patients", "by": ["month", "district"], "rate": "per_100000"},
 "project": "prj-…", "feasibility": false}
```

A patient is in the cohort if one of their resources of ``types`` dated in
``period`` matches an ``include`` coding (any, across systems; none given:
any resource) and the filters, and none of their resources in the period
matches an ``exclude`` coding. ``by`` groups the matching events' people by
month, ISO week, age band (at the event), sex, district or hospital.
``rate`` adds to each district's released count its rate per 100,000 people
(``rates.py``: from the released count, so it reveals nothing more).

The SQL is the same text for DuckDB and Spark: values are validated against
closed patterns and written as quoted literals (no engine-specific parameter
syntax), and only functions both engines share are used. It returns distinct
(group, person) pairs; counting happens after, in ``sdc.py``, which needs
the sets to stop differencing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.contracts import errors
from services.records.analytics.flatten import CODE_PATTERN, DISTRICT_PATTERN, SEXES, SYSTEM_PATTERN, TYPES

GROUPS = {"month": "month", "week": "week", "age_band": "age_band", "sex": "sex", "district": "district",
          "hospital": "hospital", "type": "rtype"}
HOSPITAL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]{0,63}")
MAX_CODES = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Codes(_Strict):
    system: str
    codes: Annotated[list[str], Field(min_length=1, max_length=MAX_CODES)]

    @field_validator("system")
    @classmethod
    def _system(cls, v: str) -> str:
        if not SYSTEM_PATTERN.fullmatch(v):
            raise ValueError("a code system is a URI (http(s)://, urn:oid:)")
        return v

    @field_validator("codes")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not CODE_PATTERN.fullmatch(c)]
        if bad:
            raise ValueError("codes are 1-64 letters, digits and . - _ :")
        return sorted(set(v))


class AgeRange(_Strict):
    min: Annotated[int, Field(ge=0, le=150)] = 0
    max: Annotated[int, Field(ge=0, le=150)] = 150


class Period(_Strict):
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.start and self.end and self.start > self.end:
            raise ValueError("the period's start is after its end")
        return self


class Cohort(_Strict):
    types: Annotated[list[str], Field(min_length=1, max_length=len(TYPES))]
    include: Annotated[list[Codes], Field(max_length=20)] = []
    exclude: Annotated[list[Codes], Field(max_length=20)] = []
    age: AgeRange | None = None
    sex: list[str] | None = None
    districts: Annotated[list[str], Field(max_length=500)] | None = None
    hospitals: Annotated[list[str], Field(max_length=500)] | None = None
    period: Period = Period()

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - TYPES)
        if unknown:
            raise ValueError(f"the analytic store holds {sorted(TYPES)}; not {unknown}")
        return sorted(set(v))

    @field_validator("sex")
    @classmethod
    def _sex(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or set(v) - SEXES):
            raise ValueError(f"sex is a non-empty list of {sorted(SEXES)}")
        return sorted(set(v)) if v is not None else None

    @field_validator("districts")
    @classmethod
    def _districts(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not all(DISTRICT_PATTERN.fullmatch(d) for d in v)):
            raise ValueError("districts is a non-empty list of district names")
        return sorted(set(v)) if v is not None else None

    @field_validator("hospitals")
    @classmethod
    def _hospitals(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not all(HOSPITAL_PATTERN.fullmatch(h) for h in v)):
            raise ValueError("hospitals is a non-empty list of organisation ids")
        return sorted(set(v)) if v is not None else None


class Measure(_Strict):
    count: Literal["patients"] = "patients"
    by: Annotated[list[Literal["month", "week", "age_band", "sex", "district", "hospital", "type"]],
                  Field(max_length=2)] = []
    rate: Literal["per_100000"] | None = None

    @field_validator("by")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each grouping once")
        return v

    @model_validator(mode="after")
    def _rate_needs_districts(self) -> Measure:
        if self.rate and "district" not in self.by:
            raise ValueError("a rate per population is per district: 'by' must include 'district'")
        return self


class Query(_Strict):
    cohort: Cohort
    measure: Measure = Measure()
    project: Annotated[str, Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")] | None = None
    feasibility: bool = False

    @model_validator(mode="after")
    def _feasibility_is_a_count(self) -> Query:
        if self.feasibility and self.measure.by:
            raise ValueError("a feasibility query is one total count: no 'by'")
        return self

    def canonical(self) -> bytes:
        """The query in one canonical form: the answer cache's key (with the audience and store version)."""
        return self.model_dump_json(exclude_none=True).encode()


def parse(doc: object) -> Query:
    """The query a caller sent, or a 400 that says what is wrong (never the value sent)."""
    try:
        return Query.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'query'}: {e['msg']}"
                             for e in exc.errors(include_input=False)[:5])
        raise errors.Invalid(f"not a valid analytic query: {problems}") from exc


def _quote(value: str) -> str:
    """A SQL string literal; every value reaching here matched a closed pattern, quotes doubled regardless."""
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(_quote(v) for v in values)})"


def _codes(groups: list[Codes]) -> str:
    return "(" + " OR ".join(f"(system = {_quote(g.system)} AND {_in('code', g.codes)})" for g in groups) + ")"


@dataclass(frozen=True)
class Scope:
    """The part of the store a query can touch: its types and, if it names a period, those years.

    The SQL restricts every row it reads (included and excluded alike) to the same types and period,
    so an engine may leave every other file unopened.
    """

    types: list[str]
    years: tuple[int, int] | None


def scope(q: Query) -> Scope:
    p = q.cohort.period
    years = None if p.start is None and p.end is None else (
        p.start.year if p.start else 1, p.end.year if p.end else 9999)
    return Scope(types=list(q.cohort.types), years=years)


def sql(q: Query, *, research: bool, table: str = "facts") -> str:
    """The SELECT of distinct (group columns, person) pairs for ``q``; ``research`` leaves opted-out people out."""
    c = q.cohort
    where = [_in("rtype", c.types)]
    if c.period.start:
        where.append(f"event_date >= DATE '{c.period.start.isoformat()}'")
    if c.period.end:
        where.append(f"event_date <= DATE '{c.period.end.isoformat()}'")
    scope = list(where)
    if research:
        scope.append("research_opt_out = FALSE")
    if c.include:
        where.append(_codes(c.include))
    if c.age:
        where.append(f"age BETWEEN {int(c.age.min)} AND {int(c.age.max)}")
    if c.sex:
        where.append(_in("sex", c.sex))
    if c.districts:
        where.append(_in("district", c.districts))
    if c.hospitals:
        where.append(_in("hospital", c.hospitals))
    if research:
        where.append("research_opt_out = FALSE")
    groups = [GROUPS[g] for g in q.measure.by]
    cols = ", ".join([*groups, "person"])
    text = f"SELECT DISTINCT {cols} FROM {table} WHERE {' AND '.join(where)}"  # noqa: S608 (validated, quoted)
    if c.exclude:
        excluded = f"SELECT DISTINCT person FROM {table} WHERE {' AND '.join([*scope, _codes(c.exclude)])}"  # noqa: S608
        text += f" AND person NOT IN ({excluded})"
    return text
