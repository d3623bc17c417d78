"""The access rules on hand-made trails with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.oversight.rules import (
    Access,
    Thresholds,
    accessor_rules,
    after_hours_burst,
    break_glass_above_peers,
    patients_without_care,
    reads_above_baseline,
    repeated_record,
)

T = Thresholds()
NOON_SHANGHAI = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
MIDNIGHT_SHANGHAI = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)  # 00:00 in Asia/Shanghai


def reads(n: int, start: datetime, step: timedelta, *, kind: str = "disclosure", who: str = "dr-li",
          patient: str | None = "p1", record: str | None = "Condition/c1", prefix: str = "e") -> list[Access]:
    return [Access(f"{prefix}{i}", start + i * step, kind, "gy-hosp-001", who, patient, record) for i in range(n)]


def test_break_glass_far_above_peers_is_flagged_with_its_events() -> None:
    counts = {("h1", "a"): 1, ("h1", "b"): 0, ("h2", "c"): 2, ("h2", "d"): 1, ("h3", "e"): 9}
    flags = break_glass_above_peers(counts, {("h3", "e"): ["x1", "x2"]}, NOON_SHANGHAI, T)
    assert [(f.rule, f.accessor) for f in flags] == [("break_glass_above_peers", "e")]
    assert flags[0].evidence["peer_median"] == 1 and flags[0].evidence["break_glass"] == 9
    assert flags[0].event_ids == ["x1", "x2"]


def test_break_glass_among_similar_peers_is_not_flagged() -> None:
    assert break_glass_above_peers({("h", "a"): 3, ("h", "b"): 4, ("h", "c"): 3, ("h", "d"): 4}, {},
                                   NOON_SHANGHAI, T) == []
    assert break_glass_above_peers({("h", "a"): 9, ("h", "b"): 0}, {}, NOON_SHANGHAI, T) == []  # too few peers


def test_reads_far_above_own_baseline() -> None:
    hour = reads(30, NOON_SHANGHAI, timedelta(seconds=60), record=None)
    flags = reads_above_baseline(hour, [4, 5, 6], T)
    assert len(flags) == 1 and flags[0].evidence["reads"] == 30 and flags[0].evidence["threshold"] == 25.0
    assert len(flags[0].event_ids) == 30
    assert reads_above_baseline(hour, [8, 8, 8], T) == []  # 30 < 5 x 8
    assert reads_above_baseline(hour[:19], [], T) == []  # a newcomer needs 20 reads in the hour


def test_many_patients_without_care_including_refusals() -> None:
    events = [Access(f"e{i}", NOON_SHANGHAI + timedelta(minutes=i), "denial" if i % 2 else "disclosure",
                     "gy-hosp-001", "dr-li", f"p{i}") for i in range(6)]
    care = {("gy-hosp-001", "p0")}
    flags = patients_without_care(events, care, T)
    assert len(flags) == 1
    assert flags[0].evidence == {"patients": 5, "threshold": 5, "denied": 3}
    assert flags[0].event_ids == ["e1", "e2", "e3", "e4", "e5"]
    assert patients_without_care(events, care | {("gy-hosp-001", "p1")}, T) == []


def test_after_hours_burst_in_shanghai_time() -> None:
    night = reads(10, MIDNIGHT_SHANGHAI, timedelta(minutes=5), record=None)
    flags = after_hours_burst(night, T)
    assert len(flags) == 1 and flags[0].evidence["reads"] == 10
    assert flags[0].evidence["local_start"].startswith("2026-11-23T00:00:00+08:00")
    assert after_hours_burst(reads(10, NOON_SHANGHAI, timedelta(minutes=5)), T) == []  # working hours
    assert after_hours_burst(reads(10, MIDNIGHT_SHANGHAI, timedelta(minutes=7)), T) == []  # over 63 minutes


def test_same_record_many_times_in_seconds() -> None:
    burst = reads(6, NOON_SHANGHAI, timedelta(seconds=1))
    flags = repeated_record(burst, T)
    assert len(flags) == 1 and flags[0].evidence["reads"] == 6 and flags[0].evidence["span_seconds"] == 5.0
    assert flags[0].evidence["record"] == "Condition/c1"
    assert repeated_record(reads(6, NOON_SHANGHAI, timedelta(seconds=3)), T) == []  # 5 reads need 12 s
    mixed = [Access(f"m{i}", NOON_SHANGHAI + timedelta(seconds=i), "disclosure", "h", "dr", "p", f"Obs/{i}")
             for i in range(6)]
    assert repeated_record(mixed, T) == []  # six different records


def test_denials_are_not_reads() -> None:
    assert repeated_record(reads(6, NOON_SHANGHAI, timedelta(seconds=1), kind="denial"), T) == []


def test_the_same_finding_keeps_its_id() -> None:
    burst = reads(6, NOON_SHANGHAI, timedelta(seconds=1))
    again = repeated_record(burst + reads(2, NOON_SHANGHAI + timedelta(minutes=10), timedelta(seconds=1),
                                          prefix="f"), T)
    assert repeated_record(burst, T)[0].flag_id == again[0].flag_id


def test_accessor_rules_run_together() -> None:
    trail = reads(6, MIDNIGHT_SHANGHAI, timedelta(seconds=1)) + reads(
        6, MIDNIGHT_SHANGHAI + timedelta(minutes=1), timedelta(seconds=30), patient=None, record=None, prefix="n")
    rules = sorted(f.rule for f in accessor_rules(trail, [], {("gy-hosp-001", "p1")}, T))
    assert rules == ["after_hours_burst", "repeated_record"]


def test_idle_peers_given_as_a_number_judge_exactly_as_listed_zeros() -> None:
    """The consumer passes the peers without break-glass as a count: the verdicts equal listing each zero."""
    import random

    rnd = random.Random(11)
    for _ in range(400):
        counts = {("h", f"a{i}"): rnd.choice([1, 1, 2, 3, 4, 6, 9, 15, 30]) for i in range(rnd.randrange(0, 8))}
        idle = rnd.randrange(0, 12)
        listed = {**counts, **{("h", f"z{i}"): 0 for i in range(idle)}}
        expect = break_glass_above_peers(listed, {}, NOON_SHANGHAI, T)
        got = break_glass_above_peers(counts, {}, NOON_SHANGHAI, T, idle=idle)
        assert [(f.accessor, f.evidence) for f in got] == [(f.accessor, f.evidence) for f in expect]
