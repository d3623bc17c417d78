"""What the oversight API reads: counters of a period, flags, the review queue, the audit search.

Every read is an indexed query over the consumers' projection
(``store.py``): sums of counters per hospital and day, never a scan of the
audit log. The audit search is newest first with real paging (``total``,
``page``, ``pages``) over ``oversight_event`` and its indexes.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import BigInteger, and_, cast, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from services.oversight import store
from services.oversight.consumer import aware
from services.oversight.metrics import HospitalMetrics, hospital_metrics, lag_percentile, ranked, totals
from services.oversight.store import ACCESS_COUNTERS, QUALITY_COUNTERS

MAX_PAGE = 500


@dataclass(frozen=True)
class Hospital:
    """A hospital of the registry and the reporting cadence it committed to."""

    id: str
    name: str
    cadence_hours: float


def hospitals_of(registry: dict[str, Any], default_cadence_hours: float) -> dict[str, Hospital]:
    """Every hospital of the registry (``reporting.cadence_hours`` per hospital, else the default)."""
    out: dict[str, Hospital] = {}
    for org, entry in sorted(registry.get("orgs", {}).items()):
        if entry.get("type") != "hospital" or entry.get("suspended"):
            continue  # a suspended hospital cannot submit: it is not measured against a cadence
        cadence = (entry.get("reporting") or {}).get("cadence_hours", default_cadence_hours)
        out[org] = Hospital(org, str(entry.get("name", org)), float(cadence))
    return out


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def first_day(self) -> str:
        return self.start.date().isoformat()

    @property
    def last_day(self) -> str:
        return (self.end - timedelta(microseconds=1)).date().isoformat()


def _sum(*names: str) -> list[Any]:
    """Sums as integers (PostgreSQL sums a bigint as numeric, which Python reads as Decimal)."""
    return [cast(func.coalesce(func.sum(getattr(store.quality.c, n)), 0), BigInteger).label(n) for n in names]


def hospitals_table(engine: Engine, hospitals: dict[str, Hospital], period: Period,
                    now: datetime) -> list[HospitalMetrics]:
    """Every hospital's metrics and score over ``period``, ranked best first."""
    q, r = store.quality.c, store.report.c
    in_days = and_(q.day >= period.first_day, q.day <= period.last_day)
    with engine.connect() as conn:
        counters = {row.hospital: row._mapping for row in conn.execute(
            select(q.hospital, *_sum(*QUALITY_COUNTERS)).where(in_days).group_by(q.hospital)).all()}
        reasons: dict[str, dict[str, int]] = defaultdict(dict)
        for row in conn.execute(select(store.reason.c.hospital, store.reason.c.reason,
                                       func.sum(store.reason.c.n).label("n"))
                                .where(store.reason.c.day >= period.first_day, store.reason.c.day <= period.last_day)
                                .group_by(store.reason.c.hospital, store.reason.c.reason)).all():
            reasons[row.hospital][row.reason] = int(row.n)
        w = store.warning.c
        warnings: dict[str, dict[str, int]] = defaultdict(dict)
        for row in conn.execute(select(w.hospital, w.rule, func.sum(w.n).label("n"))
                                .where(w.day >= period.first_day, w.day <= period.last_day)
                                .group_by(w.hospital, w.rule)).all():
            warnings[row.hospital][row.rule] = int(row.n)
        received: dict[str, list[datetime]] = defaultdict(list)
        for row in conn.execute(select(r.hospital, r.received_at).where(
                r.outcome == "accepted", r.received_at >= period.start, r.received_at < period.end)).all():
            received[row.hospital].append(aware(row.received_at))
        flags = dict(conn.execute(select(store.flag.c.hospital, func.count()).where(
            store.flag.c.raised_at >= period.start).group_by(store.flag.c.hospital)).all())
        v = store.review.c
        open_reviews = dict(conn.execute(select(v.hospital, func.count()).where(v.state == "open")
                                         .group_by(v.hospital)).all())
        overdue = dict(conn.execute(select(v.hospital, func.count()).where(v.state == "open", v.due_at < now)
                                    .group_by(v.hospital)).all())
    out = [hospital_metrics(h.id, [counters[h.id]] if h.id in counters else [], reasons.get(h.id, {}),
                            received.get(h.id, []), start=period.start, end=period.end,
                            cadence_hours=h.cadence_hours, open_flags=int(flags.get(h.id, 0)),
                            overdue_reviews=int(overdue.get(h.id, 0)), open_reviews=int(open_reviews.get(h.id, 0)),
                            name=h.name, warning_rules=warnings.get(h.id, {}))
           for h in hospitals.values()]
    return ranked(out)


SORTABLE = ("rank", "hospital", "name", "score", "volume", "coverage", "timeliness", "rejection_rate",
            "completeness", "validity", "open_flags", "overdue_reviews")


def sort_table(rows: list[HospitalMetrics], key: str, descending: bool) -> list[HospitalMetrics]:
    """Sort by one column; a metric without data sorts last whichever the direction."""
    present = [m for m in rows if getattr(m, key) is not None]
    missing = [m for m in rows if getattr(m, key) is None]
    return sorted(present, key=lambda m: getattr(m, key), reverse=descending) + missing


def _safe(cell: Any) -> str:
    """Neutralise spreadsheet formulas (CSV injection): names and reasons come from callers."""
    text = "" if cell is None else str(cell)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def table_csv(rows: list[HospitalMetrics]) -> str:
    columns = ("rank", "hospital", "name", "score", "volume", "resources", "rejected", "coverage", "timeliness",
               "lag_p50_h", "lag_p90_h", "rejection_rate", "completeness", "validity", "defaults_rate",
               "duplicates_rate", "warnings", "open_flags", "open_reviews", "overdue_reviews")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for m in rows:
        data = m.as_json()
        writer.writerow([_safe(data[c]) for c in columns])
    return buf.getvalue()


def hospital_series(engine: Engine, hospital: str, period: Period) -> dict[str, Any]:
    """Per day: volume, rejections, lag, completeness, validity; reasons, warnings by rule; access and break-glass."""
    q = store.quality.c
    with engine.connect() as conn:
        days = conn.execute(select(q.day, *_sum(*QUALITY_COUNTERS)).where(
            q.hospital == hospital, q.day >= period.first_day, q.day <= period.last_day)
            .group_by(q.day).order_by(q.day)).all()
        types = conn.execute(select(q.rtype, *_sum(*QUALITY_COUNTERS)).where(
            q.hospital == hospital, q.day >= period.first_day, q.day <= period.last_day)
            .group_by(q.rtype).order_by(q.rtype)).all()
        reasons = conn.execute(select(store.reason.c.reason, func.sum(store.reason.c.n).label("n")).where(
            store.reason.c.hospital == hospital, store.reason.c.day >= period.first_day,
            store.reason.c.day <= period.last_day).group_by(store.reason.c.reason)
            .order_by(func.sum(store.reason.c.n).desc())).all()
        w = store.warning.c
        warnings = conn.execute(select(w.rule, func.sum(w.n).label("n")).where(
            w.hospital == hospital, w.day >= period.first_day, w.day <= period.last_day)
            .group_by(w.rule).order_by(func.sum(w.n).desc(), w.rule)).all()
        a = store.access.c
        access = conn.execute(select(a.hour, *[func.sum(getattr(a, c)).label(c) for c in ACCESS_COUNTERS]).where(
            a.org == hospital, a.hour >= period.start, a.hour < period.end).group_by(a.hour).order_by(a.hour)).all()

    def ratio(num: float, den: float) -> float | None:
        return round(num / den, 4) if den else None

    def lag(mapping: Any) -> float | str | None:
        value = lag_percentile(mapping, 0.5)
        return "inf" if value == math.inf else value

    per_day: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ACCESS_COUNTERS, 0))
    for row in access:
        day = aware(row.hour).date().isoformat()
        for c in ACCESS_COUNTERS:
            per_day[day][c] += int(getattr(row, c) or 0)
    return {
        "days": [{"day": d.day, "volume": int(d.accepted), "rejected": int(d.rejected),
                  "rejection_rate": ratio(d.rejected, d.resources), "lag_p50_h": lag(d._mapping),
                  "within_24h": ratio(d.lag_1 + d.lag_6 + d.lag_24, sum(getattr(d, c) for c in store.LAG_COLUMNS)),
                  "completeness": ratio(d.fields_present, d.fields_expected),
                  "validity": ratio(d.recognised, d.codings)} for d in days],
        "types": [{"type": t.rtype, **{k: int(v) for k, v in totals([t._mapping]).items()}} for t in types],
        "reasons": [{"reason": r.reason, "n": int(r.n)} for r in reasons],
        "warnings": [{"rule": r.rule, "n": int(r.n)} for r in warnings],
        "access": [{"day": d, **v} for d, v in sorted(per_day.items())],
    }


def _page(total: int, page: int, per_page: int) -> dict[str, int]:
    return {"total": total, "page": page, "per_page": per_page, "pages": max(1, math.ceil(total / per_page))}


def flags(engine: Engine, *, hospital: str | None, rule: str | None, page: int, per_page: int) -> dict[str, Any]:
    """Anomaly flags, newest window first."""
    f = store.flag.c
    where: list[ColumnElement[bool]] = []
    if hospital:
        where.append(f.hospital == hospital)
    if rule:
        where.append(f.rule == rule)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(store.flag).where(*where)).scalar_one())
        rows = conn.execute(select(store.flag).where(*where).order_by(f.raised_at.desc(), f.flag_id)
                            .limit(per_page).offset((page - 1) * per_page)).all()
    return {**_page(total, page, per_page), "flags": [
        {"flag_id": r.flag_id, "rule": r.rule, "hospital": r.hospital, "accessor": r.accessor_id,
         "window": aware(r.raised_at).isoformat(), "evidence": orjson.loads(r.evidence),
         "event_ids": orjson.loads(r.event_ids)} for r in rows]}


def review_json(r: Any, now: datetime) -> dict[str, Any]:
    due = aware(r.due_at)
    return {"event_id": r.event_id, "hospital": r.hospital, "accessor": r.accessor_id, "patient": r.patient,
            "occurred_at": aware(r.occurred_at).isoformat(), "due_at": due.isoformat(), "reason": r.reason,
            "state": r.state, "overdue": r.state == "open" and due < now, "note": r.note, "reviewer": r.reviewer,
            "reviewed_at": aware(r.reviewed_at).isoformat() if r.reviewed_at else None,
            "review_event_id": r.review_event_id}


def reviews(engine: Engine, *, state: str, hospital: str | None, now: datetime, page: int,
            per_page: int) -> dict[str, Any]:
    """The break-glass review queue: open ones due first; ``overdue`` those past their date."""
    v = store.review.c
    where: list[ColumnElement[bool]] = []
    if state in ("open", "overdue"):
        where.append(v.state == "open")
    elif state != "all":
        where.append(v.state == state)
    if state == "overdue":
        where.append(v.due_at < now)
    if hospital:
        where.append(v.hospital == hospital)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(store.review).where(*where)).scalar_one())
        rows = conn.execute(select(store.review).where(*where).order_by(v.due_at, v.event_id)
                            .limit(per_page).offset((page - 1) * per_page)).all()
    return {**_page(total, page, per_page), "reviews": [review_json(r, now) for r in rows]}


def review_row(engine: Engine, event_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(store.review).where(store.review.c.event_id == event_id)).one_or_none()


@dataclass(frozen=True)
class EventQuery:
    """The audit search's filters (all optional, combined with AND)."""

    hospital: str | None = None  # the accessor's organisation
    accessor: str | None = None
    patient: str | None = None  # pseudonym
    purpose: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        e = store.event.c
        out: list[ColumnElement[bool]] = []
        for column, value in ((e.accessor_org, self.hospital), (e.accessor_id, self.accessor),
                              (e.patient, self.patient), (e.purpose, self.purpose), (e.kind, self.kind)):
            if value:
                out.append(column == value)
        if self.since:
            out.append(e.occurred_at >= self.since)
        if self.until:
            out.append(e.occurred_at < self.until)
        return out


def _total(conn: Connection, query: EventQuery, where: list[ColumnElement[bool]]) -> int:
    """How many events match: from the per-organisation and kind counters when only those filter, else counted."""
    if query.accessor or query.patient or query.purpose or query.since or query.until:
        return int(conn.execute(select(func.count()).select_from(store.event).where(*where)).scalar_one())
    c = store.event_count.c
    kept = [column == value for column, value in ((c.accessor_org, query.hospital), (c.kind, query.kind)) if value]
    return int(conn.execute(select(func.coalesce(func.sum(c.n), 0)).where(*kept)).scalar_one())


def events(engine: Engine, query: EventQuery, page: int, per_page: int) -> dict[str, Any]:
    """One page of the audit trail, newest first, with the total that matches."""
    e = store.event.c
    where = query.where()
    with engine.connect() as conn:
        total = _total(conn, query, where)
        rows = conn.execute(select(e.body).where(*where).order_by(e.occurred_at.desc(), e.event_id.desc())
                            .limit(per_page).offset((page - 1) * per_page)).scalars().all()
    return {**_page(total, page, per_page), "events": [orjson.loads(b) for b in rows]}


EVENT_COLUMNS = ("event_id", "occurred_at", "kind", "accessor_org", "accessor_org_type", "accessor_id",
                 "accessor_role", "purpose", "patient", "allowed", "reasons", "resources", "break_glass_reason")


def events_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EVENT_COLUMNS)
    for ev in rows:
        acc, dec = ev.get("accessor") or {}, ev.get("decision") or {}
        writer.writerow([_safe(c) for c in (ev.get("event_id"), ev.get("occurred_at"), ev.get("kind"), acc.get("org"),
                         acc.get("org_type"), acc.get("id"), acc.get("role"), ev.get("purpose") or "",
                         ev.get("patient") or "", "" if not dec else dec.get("allow"),
                         " ".join(dec.get("reasons") or []),
                         " ".join(f"{r.get('type')}/{r.get('id')}" for r in ev.get("resources") or []),
                         (ev.get("details") or {}).get("break_glass_reason") or "")])
    return buf.getvalue()


def default_period(days: int, now: datetime | None = None) -> Period:
    """The last ``days`` whole days up to the end of today (UTC)."""
    now = now or datetime.now(UTC)
    end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return Period(end - timedelta(days=days), end)
