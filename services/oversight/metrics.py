"""Per-hospital quality metrics and the score (docs/architecture.md §14): pure functions, tested by hand.

The consumer folds each quality report into additive counters
(``report_rows``); the API reads the counters of a period and computes here
what a regulator reads: volume, coverage against the hospital's reporting
cadence, timeliness, rejections, completeness, validity, defaults,
duplicates, and one score.

**The score** (0-100) is a weighted mean of components in [0, 1], minus a
penalty for break-glass reviews that are overdue::

    score = 100 x sum(w_i x c_i) / sum(w_i over the components that have data)
            - min(25, 5 x overdue reviews)

=============  ======  ==========================================================
component      weight  c_i
=============  ======  ==========================================================
coverage       0.20    reporting periods (the hospital's cadence) with an accepted submission / periods
timeliness     0.20    resources arriving within 24 h of their clinical time / resources with a clinical time
acceptance     0.15    1 - rejected resources / resources submitted
completeness   0.15    priority fields present / priority fields expected
validity       0.15    clinical codings in a recognised system / clinical codings
defaults       0.075   1 - resources with a default or unknown value / accepted resources
duplicates     0.075   1 - duplicate resources / accepted resources
=============  ======  ==========================================================

A component without data (no codings at all, no clinical times) is left out
and the weights of the others renormalised; a hospital that sent nothing
scores 0 (its coverage is 0 and nothing else has data).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.contracts.events import LAG_BUCKETS_H, QualityReport
from services.oversight.store import LAG_COLUMNS, QUALITY_COUNTERS

WEIGHTS: dict[str, float] = {"coverage": 0.20, "timeliness": 0.20, "acceptance": 0.15, "completeness": 0.15,
                             "validity": 0.15, "defaults": 0.075, "duplicates": 0.075}
OVERDUE_PENALTY = 5.0
OVERDUE_PENALTY_CAP = 25.0
# The lag bucket labels a report uses, in the order of ``LAG_COLUMNS``.
LAG_LABELS = (*(f"{b:g}" for b in LAG_BUCKETS_H), "inf")
LAG_UPPER_H = (*LAG_BUCKETS_H, math.inf)


def day_of(moment: datetime) -> str:
    return moment.date().isoformat()


def report_rows(rep: QualityReport, received: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A report as counter rows: (hospital, day, type) quality deltas and (hospital, day, reason) counts."""
    day = day_of(received)
    rows: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    for rtype, q in rep.types.items():
        row: dict[str, Any] = {"hospital": rep.hospital, "day": day, "rtype": rtype, "resources": q.count,
                               "accepted": q.accepted, "rejected": q.rejected, "warnings": q.warnings,
                               "fields_present": sum(q.fields.values()), "fields_expected": q.fields_expected,
                               "codings": q.codings, "recognised": q.recognised, "defaults": q.defaults,
                               "duplicates": q.duplicates, "lag_unknown": q.lag_unknown}
        for label, column in zip(LAG_LABELS, LAG_COLUMNS, strict=True):
            row[column] = q.lag.get(label, 0)
        rows.append(row)
        reasons.update(q.reasons)
    return rows, [{"hospital": rep.hospital, "day": day, "reason": r, "n": n} for r, n in sorted(reasons.items())]


def warning_rows(rep: QualityReport, received: datetime) -> list[dict[str, Any]]:
    """A report's validity warnings as (hospital, day, rule) counts, summed over its resource types."""
    rules: Counter[str] = Counter()
    for q in rep.types.values():
        rules.update(q.warning_rules)
    day = day_of(received)
    return [{"hospital": rep.hospital, "day": day, "rule": r, "n": n} for r, n in sorted(rules.items()) if n > 0]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def lag_percentile(buckets: Mapping[str, int], p: float) -> float | None:
    """The ``p`` percentile of lag in hours, as the upper bound of the bucket it falls in (None: no data)."""
    total = sum(buckets.get(c, 0) for c in LAG_COLUMNS)
    if not total:
        return None
    rank = p * total
    seen = 0
    for column, upper in zip(LAG_COLUMNS, LAG_UPPER_H, strict=True):
        seen += buckets.get(column, 0)
        if seen >= rank:
            return upper
    return math.inf


def coverage(received: Iterable[datetime], start: datetime, end: datetime, cadence_hours: float) -> float:
    """Share of the hospital's reporting periods in ``[start, end)`` with at least one accepted submission."""
    period = timedelta(hours=cadence_hours)
    expected = max(1, math.ceil((end - start) / period))
    covered = {int((t - start) / period) for t in received if start <= t < end}
    return min(1.0, len(covered) / expected)


@dataclass
class HospitalMetrics:
    """What the hospitals table shows for one hospital over one period."""

    hospital: str
    name: str = ""
    volume: int = 0
    resources: int = 0
    rejected: int = 0
    coverage: float = 0.0
    timeliness: float | None = None
    lag_p50_h: float | None = None
    lag_p90_h: float | None = None
    rejection_rate: float | None = None
    completeness: float | None = None
    validity: float | None = None
    defaults_rate: float | None = None
    duplicates_rate: float | None = None
    warnings: int = 0
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    top_warnings: list[tuple[str, int]] = field(default_factory=list)  # validity rules, most warnings first
    open_flags: int = 0
    overdue_reviews: int = 0
    open_reviews: int = 0
    score: float = 0.0
    rank: int = 0

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["top_reasons"] = [{"reason": r, "n": n} for r, n in self.top_reasons]
        out["top_warnings"] = [{"rule": r, "n": n} for r, n in self.top_warnings]
        for key in ("lag_p50_h", "lag_p90_h"):
            if out[key] == math.inf:
                out[key] = "inf"
        return out


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The sum of each counter over quality rows."""
    out = dict.fromkeys(QUALITY_COUNTERS, 0)
    for row in rows:
        for k in QUALITY_COUNTERS:
            out[k] += int(row.get(k) or 0)
    return out


def hospital_metrics(hospital: str, rows: Iterable[Mapping[str, Any]], reasons: Mapping[str, int],
                     received: Iterable[datetime], *, start: datetime, end: datetime, cadence_hours: float,
                     open_flags: int = 0, overdue_reviews: int = 0, open_reviews: int = 0,
                     name: str = "", warning_rules: Mapping[str, int] | None = None) -> HospitalMetrics:
    """One hospital's metrics and score from its counters of the period."""
    t = totals(rows)
    within = sum(t[c] for c, upper in zip(LAG_COLUMNS, LAG_UPPER_H, strict=True) if upper <= 24)
    timed = sum(t[c] for c in LAG_COLUMNS)
    m = HospitalMetrics(
        hospital=hospital, name=name, volume=t["accepted"], resources=t["resources"], rejected=t["rejected"],
        coverage=coverage(received, start, end, cadence_hours), timeliness=_ratio(within, timed),
        lag_p50_h=lag_percentile(t, 0.5), lag_p90_h=lag_percentile(t, 0.9),
        rejection_rate=_ratio(t["rejected"], t["resources"]),
        completeness=_ratio(t["fields_present"], t["fields_expected"]),
        validity=_ratio(t["recognised"], t["codings"]),
        defaults_rate=_ratio(t["defaults"], t["accepted"]), duplicates_rate=_ratio(t["duplicates"], t["accepted"]),
        warnings=t["warnings"], top_reasons=Counter(reasons).most_common(5), open_flags=open_flags,
        overdue_reviews=overdue_reviews, open_reviews=open_reviews,
        top_warnings=sorted(Counter(warning_rules or {}).most_common(), key=lambda x: (-x[1], x[0]))[:5])
    m.score = score(m)
    return m


def score(m: HospitalMetrics) -> float:
    """The documented formula (module docstring), rounded to one decimal."""
    parts: dict[str, float | None] = {
        "coverage": m.coverage, "timeliness": m.timeliness,
        "acceptance": None if m.rejection_rate is None else 1 - m.rejection_rate,
        "completeness": m.completeness, "validity": m.validity,
        "defaults": None if m.defaults_rate is None else 1 - m.defaults_rate,
        "duplicates": None if m.duplicates_rate is None else 1 - m.duplicates_rate,
    }
    known = {k: v for k, v in parts.items() if v is not None}
    weight = sum(WEIGHTS[k] for k in known)
    base = 100 * sum(WEIGHTS[k] * v for k, v in known.items()) / weight if weight else 0.0
    penalty = min(OVERDUE_PENALTY_CAP, OVERDUE_PENALTY * m.overdue_reviews)
    return round(max(0.0, base - penalty), 1)


def ranked(metrics: list[HospitalMetrics]) -> list[HospitalMetrics]:
    """Best score first; ties by hospital id (a stable order); ``rank`` 1 is the best."""
    out = sorted(metrics, key=lambda m: (-m.score, m.hospital))
    for i, m in enumerate(out, 1):
        m.rank = i
    return out
