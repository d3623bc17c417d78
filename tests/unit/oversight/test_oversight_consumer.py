"""The consumers fold reports and events into counters once, however often they arrive (SQLite in a temp dir)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.contracts.events import Accessor, AuditDecision, AuditEvent, QualityReport, ResourceRef, TypeQuality
from services.oversight import store
from services.oversight.consumer import AuditHandler, QualityHandler
from services.oversight.rules import Thresholds

NIGHT = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # 01:00 in Asia/Shanghai


@dataclass
class Rec:
    value: bytes
    topic: str = "t"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


class Sink:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send_all(self, messages: list[object]) -> None:
        self.sent.extend(messages)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return store.make_engine(f"sqlite:///{tmp_path / 'oversight.db'}")


def report(rid: str) -> Rec:
    rep = QualityReport(report_id=rid, hospital="h1", submission_id="s", outcome="accepted",
                        received_at="2026-11-22T10:00:00Z",
                        types={"Patient": TypeQuality(count=2, accepted=1, rejected=1, reasons={"required": 1},
                                                      lag={"1": 1})})
    return Rec(rep.model_dump_json(by_alias=True).encode())


def test_reports_are_counted_once_and_poison_is_dead_lettered(engine: Engine) -> None:
    sink = Sink()
    handler = QualityHandler(engine, sink)
    handler([report("r1"), report("r2"), Rec(b"{not json")])
    handler([report("r1")])  # redelivered
    with engine.connect() as conn:
        row = conn.execute(select(store.quality)).one()
        reasons = conn.execute(select(store.reason.c.reason, store.reason.c.n)).all()
    assert (row.hospital, row.day, row.rtype, row.resources, row.rejected, row.lag_1) == (
        "h1", "2026-11-22", "Patient", 4, 2, 2)
    assert reasons == [("required", 2)]
    assert len(sink.sent) == 1


def read(i: int, at: datetime, *, kind: str = "disclosure", who: str = "dr-li", patient: str = "p1") -> Rec:
    ev = AuditEvent(event_id=f"00000000-0000-7000-8000-{i:012d}", occurred_at=at.isoformat().replace("+00:00", "Z"),
                    kind=kind, accessor=Accessor(id=who, org="gy-hosp-001", org_type="hospital", role="clinician"),
                    purpose="ETREAT" if kind == "break_glass" else "TREAT", patient=patient,
                    resources=[ResourceRef(type="Condition", id="c1", version="1")],
                    decision=AuditDecision(allow=kind != "denial"),
                    details={"break_glass_reason": "unconscious"} if kind == "break_glass" else {})
    return Rec(ev.canonical())


def _warned(rid: str, hospital: str, received_at: str, rules: dict[str, int]) -> Rec:
    rep = QualityReport(report_id=rid, hospital=hospital, submission_id="s", outcome="accepted",
                        received_at=received_at,
                        types={"Encounter": TypeQuality(count=5, accepted=5, warnings=sum(rules.values()),
                                                        warning_rules=rules)})
    return Rec(rep.model_dump_json(by_alias=True).encode())


def test_warnings_are_counted_per_hospital_rule_and_day_once(engine: Engine) -> None:
    from services.oversight import queries

    handler = QualityHandler(engine, Sink())
    handler([_warned("w1", "h1", "2026-11-22T10:00:00Z", {"code-system": 2, "per-1": 1}),
             _warned("w2", "h1", "2026-11-22T11:00:00Z", {"code-system": 3}),
             _warned("w3", "h1", "2026-11-23T09:00:00Z", {"binding-extensible": 4}),
             _warned("w4", "h2", "2026-11-22T09:00:00Z", {"per-1": 9})])
    handler([_warned("w2", "h1", "2026-11-22T11:00:00Z", {"code-system": 3})])  # redelivered: not counted again
    with engine.connect() as conn:
        rows = sorted(tuple(r) for r in conn.execute(select(store.warning)).all())
    assert rows == [("h1", "2026-11-22", "code-system", 5), ("h1", "2026-11-22", "per-1", 1),
                    ("h1", "2026-11-23", "binding-extensible", 4), ("h2", "2026-11-22", "per-1", 9)]
    period = queries.Period(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC))
    series = queries.hospital_series(engine, "h1", period)
    assert series["warnings"] == [{"rule": "code-system", "n": 5}, {"rule": "binding-extensible", "n": 4},
                                  {"rule": "per-1", "n": 1}]
    hospitals = {h: queries.Hospital(h, h, 24) for h in ("h1", "h2")}
    table = {m.hospital: m for m in queries.hospitals_table(engine, hospitals, period, period.end)}
    assert table["h1"].top_warnings == [("code-system", 5), ("binding-extensible", 4), ("per-1", 1)]
    assert table["h2"].top_warnings == [("per-1", 9)]


def test_a_burst_of_reads_raises_flags_once_and_break_glass_opens_a_review(engine: Engine) -> None:
    handler = AuditHandler(engine, Sink(), thresholds=Thresholds(), review_days=7)
    burst = [read(i, NIGHT + timedelta(seconds=i)) for i in range(12)]
    handler(burst[:6])
    handler([*burst[6:], read(99, NIGHT, kind="break_glass", who="dr-wu")])
    sink = handler.dead_letters
    handler([*burst, Rec(b"not an event")])  # redelivered: nothing counts twice; poison skipped
    assert handler.skipped == 1 and sink.sent == []  # the audit service dead-letters its own topic's poison
    with engine.connect() as conn:
        flags = {r.rule: r for r in conn.execute(select(store.flag)).all()}
        reads = conn.execute(select(store.access.c.reads).where(store.access.c.accessor_id == "dr-li")).scalar()
        review = conn.execute(select(store.review)).one()
    assert reads == 12
    assert set(flags) == {"repeated_record", "after_hours_burst"}  # p1 has no care, but is one patient
    assert len(flags["repeated_record"].event_ids) > 2
    assert (review.accessor_id, review.state, review.reason) == ("dr-wu", "open", "unconscious")
    assert review.due_at.replace(tzinfo=UTC) == NIGHT + timedelta(days=7)
    assert handler.flags_raised == 2


def test_a_review_event_judges_its_break_glass_once_and_a_malformed_one_changes_nothing(engine: Engine) -> None:
    handler = AuditHandler(engine, Sink(), thresholds=Thresholds(), review_days=7)
    broke = read(1, NIGHT, kind="break_glass", who="dr-wu")
    handler([broke])
    reviewed = "00000000-0000-7000-8000-000000000001"

    def review(i: int, details: dict[str, object]) -> Rec:
        return Rec(AuditEvent(event_id=f"00000000-0000-7000-9000-{i:012d}", kind="break_glass_review",
                              accessor=Accessor(id="insp", org="gz-nhc", org_type="regulator", role="regulator"),
                              details=details).canonical())

    handler([review(1, {"reviewed_event": reviewed})])  # no verdict: ignored, not a poison batch
    with engine.connect() as conn:
        assert conn.execute(select(store.review.c.state)).scalar() == "open"
    handler([review(2, {"reviewed_event": reviewed, "verdict": "not_justified", "note": "no emergency"})])
    with engine.connect() as conn:
        row = conn.execute(select(store.review)).one()
    assert (row.state, row.note, row.reviewer) == ("not_justified", "no emergency", "gz-nhc/insp")


def test_peers_who_only_read_count_toward_the_break_glass_norm(engine: Engine) -> None:
    """One clinician's break-glass stands out only against the colleagues who read without it."""
    handler = AuditHandler(engine, Sink(), thresholds=Thresholds(), review_days=7)
    noon = NIGHT + timedelta(hours=12)
    glass = [read(i, noon + timedelta(minutes=i), kind="break_glass", who="dr-wu", patient=f"p{i}") for i in range(4)]
    handler(glass)  # alone: too few peers to compare with
    assert handler.flags_raised == 0
    handler([read(100 + i, noon + timedelta(hours=1, minutes=i), who=f"dr-{i}", patient="p1") for i in range(5)])
    handler([read(200, noon + timedelta(hours=2), kind="break_glass", who="dr-wu", patient="p9")])
    with engine.connect() as conn:
        flags = conn.execute(select(store.flag).where(store.flag.c.rule == "break_glass_above_peers")).all()
    assert [(f.accessor_id, len(json.loads(f.event_ids))) for f in flags] == [("dr-wu", 5)]
    assert '"peers":6' in flags[0].evidence.replace(" ", "")


def test_an_hour_of_reads_is_judged_against_the_accessors_own_past_hours(engine: Engine) -> None:
    """25 reads in an hour: far above two a hour for one clinician, ordinary for one who reads ten."""
    handler = AuditHandler(engine, Sink(), thresholds=Thresholds(), review_days=7)
    noon = NIGHT + timedelta(hours=12)  # 09:00 in Asia/Shanghai, so no after-hours rule
    past = [read(1000 * h + i, noon - timedelta(hours=h, minutes=-i), who=who, patient=f"p{i}")
            for who, per_hour in (("dr-quiet", 2), ("dr-busy", 10)) for h in range(1, 11) for i in range(per_hour)]
    handler(past)
    now = [read(50_000 + 100 * k + i, noon + timedelta(minutes=2 * i), who=who, patient=f"q{i % 3}")
           for k, who in enumerate(("dr-quiet", "dr-busy")) for i in range(25)]
    handler(now)
    with engine.connect() as conn:
        flagged = conn.execute(select(store.flag.c.accessor_id).where(
            store.flag.c.rule == "reads_above_baseline")).scalars().all()
    assert flagged == ["dr-quiet"]


def test_the_audit_search_totals_from_counters_equal_the_rows_counted(engine: Engine) -> None:
    """Unfiltered, by hospital, by kind: the totals kept per batch are the rows there are, redelivery or not."""
    from services.oversight import queries

    handler = AuditHandler(engine, Sink(), thresholds=Thresholds(), review_days=7)
    trail = [read(i, NIGHT + timedelta(minutes=i), kind=("disclosure", "denial", "break_glass")[i % 3],
                  who=f"dr-{i % 4}", patient=f"p{i % 9}") for i in range(40)]
    handler(trail[:25])
    handler(trail[10:])  # 15 redelivered
    with engine.connect() as conn:
        stored = conn.execute(select(store.event.c.accessor_org, store.event.c.kind)).all()
    assert len(stored) == 40
    for hospital in (None, "gy-hosp-001", "gy-hosp-999"):
        for kind in (None, "disclosure", "denial", "break_glass", "care_relationship"):
            found = queries.events(engine, queries.EventQuery(hospital=hospital, kind=kind), 1, 5)
            expect = sum(1 for org, k in stored if hospital in (None, org) and kind in (None, k))
            assert found["total"] == expect, (hospital, kind)
    assert queries.events(engine, queries.EventQuery(), 1, 5)["total"] == 40
