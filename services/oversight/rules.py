"""Access-behaviour rules: which patterns in the audit trail a regulator should look at (docs/architecture.md §14).

Pure functions over ``Access`` rows (one per audit event of a read, a denial
or a break-glass access), so each rule is tested on hand-made inputs with
known answers. Every flag names its rule, its evidence (the numbers that
crossed the threshold) and the events that make it up, so a reviewer can open
exactly those entries of the log.

The rules look at the events' own times, never the wall clock: replaying the
same trail raises the same flags. A flag's ``flag_id`` names the rule, the
accessor and the window it fell in (an hour, or a day for break-glass), so a
finding seen again by a later batch is the same flag, not a new one.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

READ_KINDS = frozenset({"disclosure", "break_glass"})


@dataclass(frozen=True)
class Access:
    """One audit event of access: who, when, which patient, what happened."""

    event_id: str
    at: datetime  # timezone-aware
    kind: str  # disclosure, denial, break_glass
    org: str
    accessor: str
    patient: str | None = None
    record: str | None = None  # the first resource touched ("Type/id"), when the event names one

    @property
    def is_read(self) -> bool:
        return self.kind in READ_KINDS


@dataclass
class Flag:
    """A finding for review: the rule, who, the evidence and the events."""

    rule: str
    org: str
    accessor: str
    window: datetime
    evidence: dict[str, Any]
    event_ids: list[str] = field(default_factory=list)

    @property
    def flag_id(self) -> str:
        return f"{self.rule}|{self.org}|{self.accessor}|{self.window.isoformat()}"


@dataclass(frozen=True)
class Thresholds:
    """The rules' knobs (``HEALTHGOV_OVERSIGHT_*`` settings)."""

    break_glass_min: int = 3  # break-glass accesses before the peer comparison counts at all
    break_glass_mads: float = 3.0  # how many median absolute deviations above the peers' median
    baseline_factor: float = 5.0  # reads in an hour above this many times the accessor's usual hour
    baseline_min_reads: int = 20  # and at least this many
    no_care_patients: int = 5  # distinct patients without a care relationship within a day
    after_hours_reads: int = 10  # reads within an hour outside working hours
    working_hours: tuple[int, int] = (8, 20)  # local hours [start, end)
    timezone: str = "Asia/Shanghai"
    repeat_reads: int = 5  # reads of the same record
    repeat_seconds: float = 10.0  # within this many seconds


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _burst(events: Sequence[Access], size: int, span: timedelta) -> list[Access] | None:
    """The first run of at least ``size`` events (sorted by time) within ``span``, extended to its end."""
    start = 0
    for end in range(len(events)):
        while events[end].at - events[start].at > span:
            start += 1
        if end - start + 1 >= size:
            last = end
            while last + 1 < len(events) and events[last + 1].at - events[start].at <= span:
                last += 1
            return list(events[start:last + 1])
    return None


def _median_with(values: Sequence[float], extra: float, copies: int) -> float:
    """The median of sorted ``values`` with ``copies`` more of ``extra`` among them, without building the copies."""
    at = bisect.bisect_left(values, extra)
    n = len(values) + copies

    def nth(i: int) -> float:
        return values[i] if i < at else extra if i < at + copies else values[i - copies]

    return nth(n // 2) if n % 2 else (nth(n // 2 - 1) + nth(n // 2)) / 2


def break_glass_above_peers(counts: Mapping[tuple[str, str], int], ids: Mapping[tuple[str, str], list[str]],
                            day: datetime, t: Thresholds, *, idle: int = 0) -> list[Flag]:
    """Accessors whose break-glass count is far above their peers' (median + k·MAD, robust to the outlier).

    ``counts``: (org, accessor) → break-glass accesses in the period; peers are
    every accessor of the period who used break-glass or read at all (zeros count).
    ``idle``: how many more peers read in the period without any break-glass, so
    the caller never has to list the thousands of zeros of a large platform.
    """
    if len(counts) + idle < 3:
        return []
    values = sorted(counts.values())
    median = _median_with(values, 0, idle)
    mad = _median_with(sorted(abs(v - median) for v in values), median, idle)  # an idle peer is `median` away
    threshold = median + t.break_glass_mads * max(mad, 1.0)
    return [Flag("break_glass_above_peers", org, who, _day(day),
                 {"break_glass": n, "peer_median": median, "peer_mad": mad, "threshold": threshold,
                  "peers": len(values) + idle}, list(ids.get((org, who), [])))
            for (org, who), n in sorted(counts.items()) if n >= t.break_glass_min and n > threshold]


def reads_above_baseline(recent: Sequence[Access], baseline_hours: Sequence[int], t: Thresholds) -> list[Flag]:
    """An accessor's reads in one hour far above their own usual hour (mean of their active past hours).

    ``recent``: one accessor's events of one hour; ``baseline_hours``: their read counts in past hours
    they were active (none: a newcomer is judged by ``baseline_min_reads`` alone).
    """
    reads = [a for a in recent if a.is_read]
    if not reads:
        return []
    usual = statistics.fmean(baseline_hours) if baseline_hours else 0.0
    threshold = max(float(t.baseline_min_reads), t.baseline_factor * usual)
    if len(reads) < threshold:
        return []
    first = reads[0]
    return [Flag("reads_above_baseline", first.org, first.accessor, _hour(first.at),
                 {"reads": len(reads), "baseline_per_hour": round(usual, 2), "threshold": threshold,
                  "baseline_hours": len(baseline_hours)}, [a.event_id for a in reads])]


def patients_without_care(events: Sequence[Access], care: set[tuple[str, str]], t: Thresholds) -> list[Flag]:
    """One accessor reaching (read or refused) many distinct patients their hospital has no care relationship with.

    ``events``: one accessor's events of one day; ``care``: (org, patient) pairs in care.
    """
    outside = [a for a in events if a.patient and a.kind in ("disclosure", "denial", "break_glass")
               and (a.org, a.patient) not in care]
    patients = {a.patient for a in outside}
    if len(patients) < t.no_care_patients:
        return []
    first = outside[0]
    return [Flag("patients_without_care", first.org, first.accessor, _day(first.at),
                 {"patients": len(patients), "threshold": t.no_care_patients,
                  "denied": sum(1 for a in outside if a.kind == "denial")}, [a.event_id for a in outside])]


def after_hours_burst(events: Sequence[Access], t: Thresholds) -> list[Flag]:
    """Many reads by one accessor within an hour, outside working hours in the hospitals' time zone."""
    zone = ZoneInfo(t.timezone)
    start, end = t.working_hours
    late = sorted((a for a in events if a.is_read and not start <= a.at.astimezone(zone).hour < end),
                  key=lambda a: a.at)
    run = _burst(late, t.after_hours_reads, timedelta(hours=1))
    if run is None:
        return []
    first = run[0]
    return [Flag("after_hours_burst", first.org, first.accessor, _hour(first.at),
                 {"reads": len(run), "threshold": t.after_hours_reads,
                  "local_start": first.at.astimezone(zone).isoformat(timespec="seconds"),
                  "working_hours": f"{start:02d}:00-{end:02d}:00 {t.timezone}"}, [a.event_id for a in run])]


def repeated_record(events: Sequence[Access], t: Thresholds) -> list[Flag]:
    """The same record read many times within seconds by one accessor (a script, or a screen left polling)."""
    by_record: dict[str, list[Access]] = defaultdict(list)
    for a in events:
        if a.is_read and (a.record or a.patient):
            by_record[a.record or f"patient:{a.patient}"].append(a)
    out: list[Flag] = []
    for record, reads in sorted(by_record.items()):
        run = _burst(sorted(reads, key=lambda a: a.at), t.repeat_reads, timedelta(seconds=t.repeat_seconds))
        if run is None:
            continue
        first = run[0]
        out.append(Flag("repeated_record", first.org, first.accessor, _hour(first.at),
                        {"reads": len(run), "threshold": t.repeat_reads, "seconds": t.repeat_seconds,
                         "span_seconds": round((run[-1].at - first.at).total_seconds(), 3), "record": record},
                        [a.event_id for a in run]))
    return out


def accessor_rules(events: Iterable[Access], baseline_hours: Sequence[int], care: set[tuple[str, str]],
                   t: Thresholds) -> list[Flag]:
    """Every per-accessor rule over one accessor's recent events (up to a day, newest hour last)."""
    ordered = sorted(events, key=lambda a: a.at)
    if not ordered:
        return []
    newest_hour = _hour(ordered[-1].at)
    last_day = [a for a in ordered if a.at > ordered[-1].at - timedelta(days=1)]
    return [*reads_above_baseline([a for a in ordered if _hour(a.at) == newest_hour], baseline_hours, t),
            *patients_without_care(last_day, care, t), *after_hours_burst(last_day, t),
            *repeated_record(last_day, t)]
