"""Rates per 100,000 people from released counts and district populations (docs/architecture.md §16).

A rate is computed from the count *as released* (rounded, or withheld), never
from the raw count: the population is public, so a rate worked out from the
raw count would let anyone divide it back into the exact count that rounding
and suppression were there to hide. A withheld count gives a withheld rate
(with the count's reason); a district with no known population gives none
(``no_population``).

The populations are a data file (``populations.json`` beside this module, or
``HEALTHGOV_DISTRICT_POPULATIONS_FILE``); the shipped figures are illustrative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from services.records.analytics.flatten import DISTRICT_PATTERN

DEFAULT_FILE = Path(__file__).with_name("populations.json")
PER = 100_000
NO_POPULATION = "no_population"
DECIMALS = 2


class PopulationFileError(ValueError):
    """The populations file is unreadable or holds a district or a figure that is not one."""


@dataclass(frozen=True)
class Populations:
    """People per district, and where the figures come from (shown beside every rate)."""

    districts: dict[str, int]
    source: str
    year: int | None
    illustrative: bool

    def about(self) -> dict[str, Any]:
        return {"source": self.source, "year": self.year, "illustrative": self.illustrative, "per": PER}


def load(path: Path | None = None) -> Populations:
    """The populations file, checked: a bad file stops records at start, not a query later."""
    path = path or DEFAULT_FILE
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PopulationFileError(f"{path}: not a readable JSON file") from exc
    districts = doc.get("districts") if isinstance(doc, dict) else None
    if not isinstance(districts, dict) or not districts:
        raise PopulationFileError(f"{path}: 'districts' must map district names to populations")
    for name, people in districts.items():
        if not DISTRICT_PATTERN.fullmatch(name) or not isinstance(people, int) or isinstance(people, bool) \
                or people <= 0:
            raise PopulationFileError(f"{path}: {name!r} needs a positive whole population")
    year = doc.get("year")
    return Populations(districts=dict(districts), source=str(doc.get("source") or path.name),
                       year=year if isinstance(year, int) else None, illustrative=bool(doc.get("illustrative")))


def rate(count: int | None, population: int | None) -> float | None:
    """People per 100,000 for a released count (None when the count was withheld or the population unknown)."""
    if count is None or not population:
        return None
    return round(count * PER / population, DECIMALS)


def add_rates(rows: list[dict[str, Any]], populations: Populations) -> list[dict[str, Any]]:
    """Each released row (with a ``district`` and its released ``count``) with its rate and, if none, why."""
    out = []
    for row in rows:
        population = populations.districts.get(str(row.get("district")))
        value = rate(row.get("count"), population)
        why = None
        if value is None:
            why = row.get("suppressed") or (NO_POPULATION if population is None else None)
        out.append({**row, "rate_per_100000": value, "rate_suppressed": why})
    return out
