"""Differential privacy of research answers: the budget arithmetic, the terms, OpenDP's calibration."""

from __future__ import annotations

import statistics
from types import SimpleNamespace

import pytest

from services.contracts import errors
from services.records.analytics.privacy import (
    Budget,
    BudgetSpent,
    Terms,
    dp_default,
    laplace_scale,
    micro,
    noisy_count,
    parse_terms,
)


def test_ten_answers_of_a_tenth_spend_exactly_one() -> None:
    terms = parse_terms({"epsilon": 1.0, "epsilon_per_query": 0.1})
    assert terms == Terms(budget=1_000_000, per_query=100_000)
    budget = Budget(terms.budget, 0)
    for _ in range(10):
        budget = budget.after(terms.per_query)
    assert budget == Budget(1_000_000, 1_000_000) and budget.remaining == 0  # no float drift either way
    with pytest.raises(BudgetSpent):
        budget.after(terms.per_query)
    assert sum([0.1] * 10) != 1.0  # what counting in floats would have got wrong


def test_a_cost_is_rounded_up_never_down() -> None:
    assert micro(0.1) == 100_000
    assert micro(1e-7) == 1  # a tiny cost still costs
    assert micro(0.3333333333) == 333_334


def test_an_answer_that_would_overspend_is_refused_even_with_budget_left() -> None:
    budget = Budget(total=250_000, spent=200_000)
    assert budget.allows(50_000) and not budget.allows(50_001)
    with pytest.raises(BudgetSpent) as refused:
        budget.after(100_000)
    assert refused.value.budget == budget and refused.value.cost == 100_000


@pytest.mark.parametrize("doc", [
    {"epsilon": 1.0},
    {"epsilon": 0, "epsilon_per_query": 0},
    {"epsilon": -1, "epsilon_per_query": 0.1},
    {"epsilon": float("inf"), "epsilon_per_query": 0.1},
    {"epsilon": 11, "epsilon_per_query": 0.1},
    {"epsilon": True, "epsilon_per_query": 0.1},
    {"epsilon": "1", "epsilon_per_query": 0.1},
    {"epsilon": 0.5, "epsilon_per_query": 1.0},
    {"epsilon": 1.0, "epsilon_per_query": 0.1, "delta": 1e-6},
    [1.0],
])
def test_bad_terms_are_a_400(doc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.Invalid):
        parse_terms(doc)


def test_no_terms_and_no_deployment_budget_means_no_noise() -> None:
    assert parse_terms(None) is None
    off = SimpleNamespace(analytics_dp_epsilon_budget=0.0, analytics_dp_epsilon_per_query=0.1)
    assert dp_default(off) is None
    on = SimpleNamespace(analytics_dp_epsilon_budget=2.0, analytics_dp_epsilon_per_query=0.5)
    assert dp_default(on) == Terms(2_000_000, 500_000)


def test_the_noise_is_calibrated_to_epsilon() -> None:
    assert laplace_scale(1.0) == pytest.approx(1.0, rel=1e-6)
    assert laplace_scale(0.1) == pytest.approx(10.0, rel=1e-6)
    draws = [noisy_count(1000, 0.5) for _ in range(400)]
    assert all(isinstance(d, int) for d in draws) and len(set(draws)) > 5  # noise, in whole people
    assert abs(statistics.mean(draws) - 1000) < 1.0  # unbiased: mean error about scale*sqrt(2)/sqrt(400) = 0.14
    spread = statistics.pstdev(draws)
    assert 1.8 < spread < 3.9  # discrete Laplace of scale 2: standard deviation about 2.8
