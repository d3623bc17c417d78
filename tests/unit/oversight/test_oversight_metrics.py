"""Quality metrics and the score on hand-made counters with known answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from services.contracts.events import QualityReport, TypeQuality
from services.oversight.metrics import (
    coverage,
    hospital_metrics,
    lag_percentile,
    ranked,
    report_rows,
    score,
    warning_rows,
)

START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=10)


def test_a_report_becomes_counter_rows() -> None:
    rep = QualityReport(hospital="h1", submission_id="s", outcome="accepted", types={
        "Encounter": TypeQuality(count=3, accepted=2, rejected=1, reasons={"required": 1}, fields={"class": 2,
                                 "period": 1}, fields_expected=8, codings=4, recognised=3, lag={"6": 1, "inf": 1}),
        "unknown": TypeQuality(count=1, rejected=1, reasons={"structure": 1, "required": 1})})
    rows, reasons = report_rows(rep, START)
    enc = next(r for r in rows if r["rtype"] == "Encounter")
    assert (enc["day"], enc["resources"], enc["fields_present"], enc["lag_6"], enc["lag_inf"], enc["lag_24"]) == (
        "2026-11-01", 3, 3, 1, 1, 0)
    assert reasons == [{"hospital": "h1", "day": "2026-11-01", "reason": "required", "n": 2},
                       {"hospital": "h1", "day": "2026-11-01", "reason": "structure", "n": 1}]


def test_warnings_become_rows_per_rule_summed_over_types() -> None:
    rep = QualityReport(hospital="h1", submission_id="s", outcome="accepted", types={
        "Encounter": TypeQuality(count=2, accepted=2, warnings=3, warning_rules={"per-1": 1, "code-system": 2}),
        "Condition": TypeQuality(count=1, accepted=1, warnings=1, warning_rules={"code-system": 1}),
        "Patient": TypeQuality(count=1, accepted=1)})
    assert warning_rows(rep, START) == [{"hospital": "h1", "day": "2026-11-01", "rule": "code-system", "n": 3},
                                        {"hospital": "h1", "day": "2026-11-01", "rule": "per-1", "n": 1}]


def test_top_warnings_are_the_most_frequent_rules_first() -> None:
    m = hospital_metrics("h1", [], {}, [], start=START, end=END, cadence_hours=24,
                         warning_rules={"a": 1, "b": 7, "c": 3, "d": 3, "e": 2, "f": 9})
    assert m.top_warnings == [("f", 9), ("b", 7), ("c", 3), ("d", 3), ("e", 2)]
    assert m.as_json()["top_warnings"][0] == {"rule": "f", "n": 9}


def test_lag_percentiles_are_bucket_upper_bounds() -> None:
    buckets = {"lag_1": 5, "lag_6": 3, "lag_24": 1, "lag_inf": 1}
    assert lag_percentile(buckets, 0.5) == 1
    assert lag_percentile(buckets, 0.8) == 6
    assert lag_percentile(buckets, 0.9) == 24
    assert lag_percentile(buckets, 0.95) == math.inf
    assert lag_percentile({}, 0.5) is None


def test_coverage_counts_reporting_periods_with_a_submission() -> None:
    daily = [START + timedelta(days=d, hours=3) for d in (0, 1, 1, 4)]
    assert coverage(daily, START, END, 24) == 0.3  # days 0, 1, 4 of 10
    assert coverage(daily, START, END, 24 * 7) == 0.5  # weeks: 2 expected (ceil 10/7), 1 covered
    assert coverage([], START, END, 24) == 0.0


def perfect_rows() -> list[dict[str, int]]:
    return [{"resources": 10, "accepted": 10, "fields_present": 30, "fields_expected": 30, "codings": 10,
             "recognised": 10, "lag_1": 10}]


def test_a_perfect_hospital_scores_100_and_each_overdue_review_costs_5() -> None:
    every_day = [START + timedelta(days=d) for d in range(10)]
    m = hospital_metrics("h1", perfect_rows(), {}, every_day, start=START, end=END, cadence_hours=24)
    assert (m.coverage, m.timeliness, m.rejection_rate, m.completeness, m.validity) == (1.0, 1.0, 0.0, 1.0, 1.0)
    assert m.score == 100.0
    late = hospital_metrics("h1", perfect_rows(), {}, every_day, start=START, end=END, cadence_hours=24,
                            overdue_reviews=2)
    assert late.score == 90.0
    worst = hospital_metrics("h1", perfect_rows(), {}, every_day, start=START, end=END, cadence_hours=24,
                             overdue_reviews=9)
    assert worst.score == 75.0  # the penalty is capped at 25


def test_the_score_weighs_the_components() -> None:
    rows = [{"resources": 10, "accepted": 8, "rejected": 2, "fields_present": 15, "fields_expected": 30,
             "codings": 10, "recognised": 5, "defaults": 0, "duplicates": 0, "lag_inf": 8}]
    m = hospital_metrics("h2", rows, {"required": 2}, [START], start=START, end=END, cadence_hours=24)
    # coverage .1, timeliness 0, acceptance .8, completeness .5, validity .5, defaults 1, duplicates 1
    expected = 100 * (0.2 * 0.1 + 0.2 * 0 + 0.15 * 0.8 + 0.15 * 0.5 + 0.15 * 0.5 + 0.075 + 0.075)
    assert m.score == round(expected, 1) == 44.0
    assert m.top_reasons == [("required", 2)]


def test_missing_components_are_left_out_and_nothing_sent_scores_zero() -> None:
    nothing = hospital_metrics("h3", [], {}, [], start=START, end=END, cadence_hours=24)
    assert nothing.score == 0.0 and nothing.timeliness is None
    no_codes = hospital_metrics("h4", [{"resources": 1, "accepted": 1, "lag_1": 1}], {}, [START + timedelta(days=d)
                                for d in range(10)], start=START, end=END, cadence_hours=24)
    assert no_codes.validity is None and no_codes.completeness is None
    assert no_codes.score == 100.0 == score(no_codes)


def test_ranked_best_first() -> None:
    a = hospital_metrics("a", [], {}, [], start=START, end=END, cadence_hours=24)
    b = hospital_metrics("b", perfect_rows(), {}, [START], start=START, end=END, cadence_hours=24)
    assert [(m.hospital, m.rank) for m in ranked([a, b])] == [("b", 1), ("a", 2)]
