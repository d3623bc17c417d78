"""The oversight consumers: quality reports and audit events folded into the metrics tables.

Each batch is one database transaction, committed before the loop commits
the offsets (``ConsumerLoop``); redelivery after a crash is harmless because
a report or an event already stored (its id is the primary key) is skipped,
so counters never count twice. A quality report that can never be read goes to
the dead-letter topic with the reason; an unreadable audit event is skipped (the
audit service, the topic's owner, dead-letters it already). Either way the
consumer moves on.

After each batch of audit events the access rules (``rules.py``) run for the
accessors the batch touched, over their own recent events, and store what
they find as flags (one per rule, accessor and window).
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Table, case, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from services.adapters.kafka import Message
from services.contracts.events import AUDIT_EVENT_SCHEMA, QUALITY_REPORT_SCHEMA, AuditEvent, DeadLetter, QualityReport
from services.contracts.topics import INGEST_DEADLETTER
from services.oversight import store
from services.oversight.metrics import report_rows, warning_rows
from services.oversight.rules import Access, Flag, Thresholds, accessor_rules, break_glass_above_peers
from services.oversight.store import ACCESS_COUNTERS, QUALITY_COUNTERS

log = logging.getLogger(__name__)
ACCESS_KINDS = frozenset({"disclosure", "denial", "break_glass"})
REVIEW_KIND = "break_glass_review"
VERDICTS = ("justified", "not_justified")
RECENT_EVENTS = 5_000  # at most this many of one accessor's last day are judged per batch
BASELINE_DAYS = 14
PEER_DAYS = 30


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes: every time here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_time(text: str) -> datetime:
    return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _insert(conn: Connection, table: Table) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def add_counters(conn: Connection, table: Table, keys: Sequence[str], counters: Sequence[str],
                 rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` to the counters of their keys (a row per key created when missing)."""
    if not rows:
        return
    ins = _insert(conn, table)
    conn.execute(ins.on_conflict_do_update(index_elements=list(keys),
                                           set_={c: table.c[c] + ins.excluded[c] for c in counters}), rows)


def insert_new(conn: Connection, table: Table, keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys)), rows)


def _merge(rows: Iterable[dict[str, Any]], keys: Sequence[str], counters: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of one key summed, so one statement never touches the same key twice."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in keys)
        have = out.get(k)
        if have is None:
            out[k] = dict(row)
        else:
            for c in counters:
                have[c] = have.get(c, 0) + row.get(c, 0)
    return list(out.values())


def _dead(rec: Any, reason: str) -> Message:
    dl = DeadLetter(topic=rec.topic, partition=rec.partition, offset=rec.offset, reason=reason,
                    original=base64.b64encode(rec.value or b"").decode())
    return Message(INGEST_DEADLETTER.name, dl.model_dump_json(by_alias=True).encode(), rec.key)


class _Handler:
    def __init__(self, engine: Engine, dead_letters: Any) -> None:
        self.engine = engine
        self.dead_letters = dead_letters
        self.consumed = 0
        self.dead_lettered = 0

    def _send_dead(self, dead: list[Message]) -> None:
        if dead:
            self.dead_letters.send_all(dead)
            self.dead_lettered += len(dead)


class QualityHandler(_Handler):
    """``ingest.quality.v1`` → ``oversight_report``, ``oversight_quality``, ``oversight_reason``, ``_warning``."""

    def __call__(self, records: list[Any]) -> None:
        reports: dict[str, tuple[QualityReport, datetime]] = {}
        dead: list[Message] = []
        for rec in records:
            try:
                doc = orjson.loads(rec.value)
                if not isinstance(doc, dict) or doc.get("schema") != QUALITY_REPORT_SCHEMA:
                    raise ValueError("not a healthgov.quality.report.v1 message")
                rep = QualityReport.model_validate(doc)
                reports[rep.report_id] = (rep, parse_time(rep.received_at))
            except Exception as exc:  # pure parsing: whatever fails is this message's fault
                log.error("oversight: dead-letter %s@%s: %r", rec.topic, rec.offset, exc)
                dead.append(_dead(rec, str(exc)[:500]))
        self.apply(list(reports.values()))
        self._send_dead(dead)
        self.consumed += len(records)

    def apply(self, reports: list[tuple[QualityReport, datetime]]) -> None:
        if not reports:
            return
        with self.engine.begin() as conn:
            seen = set(conn.execute(select(store.report.c.report_id).where(
                store.report.c.report_id.in_([r.report_id for r, _ in reports]))).scalars())
            fresh = [(r, t) for r, t in reports if r.report_id not in seen]
            if not fresh:
                return
            conn.execute(store.report.insert(), [
                {"report_id": r.report_id, "hospital": r.hospital, "submission_id": r.submission_id,
                 "received_at": t, "outcome": r.outcome, "resources": sum(q.count for q in r.types.values()),
                 "rejected": sum(q.rejected for q in r.types.values())} for r, t in fresh])
            quality: list[dict[str, Any]] = []
            reasons: list[dict[str, Any]] = []
            warnings: list[dict[str, Any]] = []
            for r, t in fresh:
                rows, why = report_rows(r, t)
                quality.extend(rows)
                reasons.extend(why)
                warnings.extend(warning_rows(r, t))
            add_counters(conn, store.quality, ("hospital", "day", "rtype"), QUALITY_COUNTERS,
                         _merge(quality, ("hospital", "day", "rtype"), QUALITY_COUNTERS))
            add_counters(conn, store.reason, ("hospital", "day", "reason"), ("n",),
                         _merge(reasons, ("hospital", "day", "reason"), ("n",)))
            add_counters(conn, store.warning, ("hospital", "day", "rule"), ("n",),
                         _merge(warnings, ("hospital", "day", "rule"), ("n",)))


def _record(ev: AuditEvent) -> str | None:
    """The first resource an event names ("Type/id"), for the repeated-record rule."""
    return f"{ev.resources[0].type}/{ev.resources[0].id}" if ev.resources else None


class AuditHandler(_Handler):
    """``audit.events.v1`` → the searchable projection, access counters, care, reviews, and flags."""

    def __init__(self, engine: Engine, dead_letters: Any, *, thresholds: Thresholds, review_days: float) -> None:
        super().__init__(engine, dead_letters)
        self.thresholds = thresholds
        self.review_days = review_days
        self.flags_raised = 0
        self.skipped = 0  # unreadable events: the audit service, their owner, dead-letters them

    def __call__(self, records: list[Any]) -> None:
        events: dict[str, tuple[AuditEvent, datetime, str]] = {}
        for rec in records:
            try:
                doc = orjson.loads(rec.value)
                if not isinstance(doc, dict) or doc.get("schema") != AUDIT_EVENT_SCHEMA:
                    raise ValueError("not a healthgov.audit.event.v1 message")
                ev = AuditEvent.model_validate(doc)
                events[ev.event_id] = (ev, parse_time(ev.occurred_at), rec.value.decode())
            except Exception as exc:  # the audit service dead-letters it; a second copy would only be noise
                log.error("oversight: skipped unreadable audit event %s@%s: %r", rec.topic, rec.offset, exc)
                self.skipped += 1
        self.apply(list(events.values()))
        self.consumed += len(records)

    def apply(self, events: list[tuple[AuditEvent, datetime, str]]) -> None:
        if not events:
            return
        with self.engine.begin() as conn:
            seen = set(conn.execute(select(store.event.c.event_id).where(
                store.event.c.event_id.in_([e.event_id for e, _, _ in events]))).scalars())
            fresh = [(e, t, b) for e, t, b in events if e.event_id not in seen]
            if not fresh:
                return
            conn.execute(store.event.insert(), [
                {"event_id": e.event_id, "occurred_at": t, "kind": e.kind, "accessor_id": e.accessor.id,
                 "accessor_org": e.accessor.org, "org_type": e.accessor.org_type, "role": e.accessor.role,
                 "purpose": e.purpose, "patient": e.patient,
                 "allowed": None if e.decision is None else e.decision.allow, "resources": len(e.resources),
                 "record": _record(e), "body": b} for e, t, b in fresh])
            add_counters(conn, store.event_count, ("accessor_org", "kind"), ("n",), _merge(
                ({"accessor_org": e.accessor.org, "kind": e.kind, "n": 1} for e, _, _ in fresh),
                ("accessor_org", "kind"), ("n",)))
            self._fold(conn, fresh)
            flags = self._judge(conn, [(e, t) for e, t, _ in fresh if e.kind in ACCESS_KINDS])
            if flags:
                self._store_flags(conn, flags)

    def _fold(self, conn: Connection, fresh: list[tuple[AuditEvent, datetime, str]]) -> None:
        counters: list[dict[str, Any]] = []
        care: list[dict[str, Any]] = []
        reviews: list[dict[str, Any]] = []
        for e, t, _ in fresh:
            if e.kind in ACCESS_KINDS:
                counters.append({"org": e.accessor.org, "accessor_id": e.accessor.id, "org_type": e.accessor.org_type,
                                 "hour": t.replace(minute=0, second=0, microsecond=0),
                                 "reads": int(e.kind != "denial"), "denials": int(e.kind == "denial"),
                                 "break_glass": int(e.kind == "break_glass")})
            if e.kind == "care_relationship" and e.patient:
                care.append({"org": e.accessor.org, "patient": e.patient, "since": t})
            if e.kind == "break_glass":
                reviews.append({"event_id": e.event_id, "hospital": e.accessor.org, "accessor_id": e.accessor.id,
                                "patient": e.patient, "occurred_at": t,
                                "due_at": t + timedelta(days=self.review_days),
                                "reason": e.details.get("break_glass_reason"), "state": "open"})
        add_counters(conn, store.access, ("org", "accessor_id", "hour"), ACCESS_COUNTERS,
                     _merge(counters, ("org", "accessor_id", "hour"), ACCESS_COUNTERS))
        self._seen(conn, counters)
        insert_new(conn, store.care, ("org", "patient"), care)
        insert_new(conn, store.review, ("event_id",), reviews)
        for e, t, _ in fresh:  # a review is itself an event: the log is what the queue shows
            if (e.kind == REVIEW_KIND and isinstance(e.details.get("reviewed_event"), str)
                    and e.details.get("verdict") in VERDICTS):
                conn.execute(store.review.update().where(store.review.c.event_id == e.details["reviewed_event"])
                             .values(state=e.details.get("verdict"), note=e.details.get("note"),
                                     reviewer=f"{e.accessor.org}/{e.accessor.id}", reviewed_at=t,
                                     review_event_id=e.event_id))

    def _seen(self, conn: Connection, counters: list[dict[str, Any]]) -> None:
        """Each accessor's newest active hour (the peers of the break-glass rule)."""
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for c in counters:
            key = (c["org"], c["accessor_id"])
            if key not in last or c["hour"] > last[key]["last_hour"]:
                last[key] = {"org": c["org"], "accessor_id": c["accessor_id"], "org_type": c["org_type"],
                             "last_hour": c["hour"]}
        if not last:
            return
        ins = _insert(conn, store.accessor)
        table = store.accessor.c
        conn.execute(ins.on_conflict_do_update(index_elements=["org", "accessor_id"], set_={
            "last_hour": case((table.last_hour >= ins.excluded.last_hour, table.last_hour),
                              else_=ins.excluded.last_hour)}), list(last.values()))

    def _judge(self, conn: Connection, accesses: list[tuple[AuditEvent, datetime]]) -> list[Flag]:
        """The rules over the recent events of every accessor this batch touched (a few queries a batch)."""
        if not accesses:
            return []
        newest: dict[tuple[str, str], datetime] = {}
        for e, t in accesses:
            key = (e.accessor.org, e.accessor.id)
            newest[key] = max(newest.get(key, t), t)
        keys = list(newest)
        since = min(newest.values()) - timedelta(days=1)
        e_, c_ = store.event.c, store.care.c
        recent: dict[tuple[str, str], list[Access]] = defaultdict(list)
        for r in conn.execute(
                select(e_.accessor_org, e_.accessor_id, e_.event_id, e_.occurred_at, e_.kind, e_.patient, e_.record)
                .where(tuple_(e_.accessor_org, e_.accessor_id).in_(keys), e_.kind.in_(ACCESS_KINDS),
                       e_.occurred_at > since)).all():
            key = (r.accessor_org, r.accessor_id)
            at = aware(r.occurred_at)
            if newest[key] - timedelta(days=1) < at <= newest[key]:
                recent[key].append(Access(r.event_id, at, r.kind, key[0], key[1], r.patient, r.record))
        judged = {key: sorted(recent.get(key, []), key=lambda a: a.at)[-RECENT_EVENTS:] for key in keys}
        baseline = self._baselines(conn, {key: newest[key] for key, events in judged.items() if self._hot(events)})
        patients = {a.patient for events in judged.values() for a in events if a.patient}
        care: set[tuple[str, str]] = set()
        if patients:
            care = {(r.org, r.patient) for r in conn.execute(select(c_.org, c_.patient).where(
                c_.org.in_({k[0] for k in keys}), c_.patient.in_(patients))).all()}
        flags: list[Flag] = []
        for key, events in judged.items():
            flags.extend(accessor_rules(events, baseline.get(key, []), care, self.thresholds))
        if any(e.kind == "break_glass" for e, _ in accesses):
            flags.extend(self._peers(conn, max(newest.values())))
        return flags

    def _hot(self, events: list[Access]) -> bool:
        """Whether the newest hour has enough reads that the accessor's baseline can matter.

        ``reads_above_baseline`` never flags an hour below ``baseline_min_reads``
        whatever the baseline, so only these accessors' past hours are read: the
        rule's answer is the same, and a batch no longer reads two weeks of
        counters for every accessor it touched.
        """
        if not events:
            return False
        hour = events[-1].at.replace(minute=0, second=0, microsecond=0)
        reads = sum(1 for a in events if a.is_read and a.at >= hour)
        return reads >= self.thresholds.baseline_min_reads

    def _baselines(self, conn: Connection, newest: dict[tuple[str, str], datetime]) -> dict[tuple[str, str], list[int]]:
        """Each accessor's read counts of their active hours in the two weeks before their newest hour."""
        baseline: dict[tuple[str, str], list[int]] = defaultdict(list)
        if not newest:
            return baseline
        a_ = store.access.c
        since = min(newest.values()).replace(minute=0, second=0, microsecond=0) - timedelta(days=BASELINE_DAYS)
        for r in conn.execute(select(a_.org, a_.accessor_id, a_.hour, a_.reads).where(
                tuple_(a_.org, a_.accessor_id).in_(list(newest)), a_.reads > 0, a_.hour >= since)).all():
            key = (r.org, r.accessor_id)
            hour = newest[key].replace(minute=0, second=0, microsecond=0)
            if hour - timedelta(days=BASELINE_DAYS) <= aware(r.hour) < hour:
                baseline[key].append(int(r.reads))
        return baseline

    def _peers(self, conn: Connection, last: datetime) -> list[Flag]:
        """Break-glass per accessor of the hospitals over the last days, against their peers.

        Only accessors who used break-glass are summed (a partial index holds
        just those hours); the peers who read without it are counted from
        ``oversight_accessor``, so the cost follows the break-glass, not the
        whole month of reads.
        """
        a_, p_ = store.access.c, store.accessor.c
        since = last - timedelta(days=PEER_DAYS)
        counts = {(r.org, r.accessor_id): int(r.n) for r in conn.execute(
            select(a_.org, a_.accessor_id, func.sum(a_.break_glass).label("n"))
            .where(a_.break_glass > 0, a_.hour >= since, a_.org_type == "hospital")
            .group_by(a_.org, a_.accessor_id)).all()}
        active = conn.execute(select(func.count()).select_from(store.accessor).where(
            p_.org_type == "hospital", p_.last_hour >= since)).scalar_one()
        flags = break_glass_above_peers(counts, {}, last, self.thresholds, idle=max(0, active - len(counts)))
        if flags:
            e_ = store.event.c
            ids: dict[tuple[str, str], list[str]] = defaultdict(list)
            for r in conn.execute(select(e_.accessor_org, e_.accessor_id, e_.event_id).where(
                    e_.kind == "break_glass", e_.occurred_at >= since,
                    tuple_(e_.accessor_org, e_.accessor_id).in_([(f.org, f.accessor) for f in flags]))
                    .order_by(e_.occurred_at)).all():
                ids[(r.accessor_org, r.accessor_id)].append(r.event_id)
            for f in flags:
                f.event_ids = ids[(f.org, f.accessor)]
        return flags

    def _store_flags(self, conn: Connection, flags: list[Flag]) -> None:
        """A finding seen again keeps its id; its evidence and events grow to what is seen now."""
        rows = {f.flag_id: {"flag_id": f.flag_id, "rule": f.rule, "hospital": f.org, "accessor_id": f.accessor,
                            "raised_at": f.window, "evidence": orjson.dumps(f.evidence).decode(),
                            "event_ids": orjson.dumps(f.event_ids).decode()} for f in flags}
        before = set(conn.execute(select(store.flag.c.flag_id).where(
            store.flag.c.flag_id.in_(list(rows)))).scalars())
        ins = _insert(conn, store.flag)
        conn.execute(ins.on_conflict_do_update(index_elements=["flag_id"], set_={
            "evidence": ins.excluded.evidence, "event_ids": ins.excluded.event_ids}), list(rows.values()))
        self.flags_raised += len(set(rows) - before)
