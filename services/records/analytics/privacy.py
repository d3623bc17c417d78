"""Differential privacy of research answers under a per-project privacy budget (docs/architecture.md §16).

Optional and off by default: a research project's agreement asks for it
(``privacy`` in the application: ``{"epsilon": budget, "epsilon_per_query": cost}``),
or a deployment sets a budget for every project that names none
(``HEALTHGOV_ANALYTICS_DP_EPSILON_BUDGET``). Then:

- the released count is the true count plus discrete Laplace noise from
  OpenDP, its scale the smallest for which OpenDP's own privacy map gives at
  most the per-query epsilon (one person changes a count of distinct people
  by at most one); small noisy counts are still withheld and the rest rounded
  (post-processing, which costs no privacy);
- each answer spends its epsilon from the project's budget, recorded in
  records' database (``ledger.py``: ``records_dp_spend``) under the same lock
  as the release, so two processes cannot both spend the last of it; once it
  is spent a new question is refused (``privacy_budget_spent``);
- an identical question is answered from the cache, so its noise is drawn
  once and cannot be averaged away by asking again (nor does it spend again).

Budgets are counted in millionths of epsilon (integers), so that ten queries
of 0.1 spend exactly 1.0 and not a float's 0.9999999999999999 or 1.0000000000000002.

Only totals are offered under differential privacy: the cells of a grouped
answer exist only where someone is counted, so which cells appear is itself
data that needs a thresholded mechanism and a per-person contribution bound.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import opendp.prelude as dp

from services.contracts import errors

dp.enable_features("contrib")  # OpenDP's vetted-by-contributors mechanisms (the discrete Laplace among them)

MICRO = 1_000_000
MAX_EPSILON = 10.0  # beyond this no meaningful privacy is left: a budget above it is a mistake, not a choice
MECHANISM = "discrete_laplace"


def micro(epsilon: float) -> int:
    """Epsilon in millionths, rounded up (a cost is never under-counted)."""
    try:
        value = Decimal(str(epsilon))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {epsilon!r}") from exc
    return int((value * MICRO).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Terms:
    """A project's differential-privacy terms: its whole budget and what one answer spends, in millionths."""

    budget: int
    per_query: int

    @property
    def epsilon(self) -> float:
        return self.per_query / MICRO

    def as_json(self) -> dict[str, float]:
        return {"epsilon": self.budget / MICRO, "epsilon_per_query": self.per_query / MICRO}


def parse_terms(doc: Any) -> Terms | None:
    """An agreement's ``privacy`` terms (None when it asks for none), or a 400 naming what is wrong."""
    if doc is None:
        return None
    if not isinstance(doc, dict) or set(doc) != {"epsilon", "epsilon_per_query"}:
        raise errors.Invalid("'privacy' must be {\"epsilon\": budget, \"epsilon_per_query\": cost}")
    budget, cost = doc["epsilon"], doc["epsilon_per_query"]
    for name, value in (("epsilon", budget), ("epsilon_per_query", cost)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 < value <= MAX_EPSILON:
            raise errors.Invalid(f"'privacy.{name}' must be a number in (0, {MAX_EPSILON}]")
    terms = Terms(budget=micro(budget), per_query=micro(cost))
    if terms.per_query > terms.budget:
        raise errors.Invalid("'privacy.epsilon_per_query' must not exceed 'privacy.epsilon'")
    return terms


def dp_default(settings: Any) -> Terms | None:
    """The deployment's terms for projects that name none (``analytics_dp_epsilon_*``); None when off."""
    if not settings.analytics_dp_epsilon_budget:
        return None
    return parse_terms({"epsilon": settings.analytics_dp_epsilon_budget,
                        "epsilon_per_query": settings.analytics_dp_epsilon_per_query})


@dataclass(frozen=True)
class Budget:
    """A project's budget as recorded: what it may spend and what its answers have spent (millionths)."""

    total: int
    spent: int

    def allows(self, cost: int) -> bool:
        return self.spent + cost <= self.total

    def after(self, cost: int) -> Budget:
        if not self.allows(cost):
            raise BudgetSpent(self, cost)
        return Budget(self.total, self.spent + cost)

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.spent)


class BudgetSpent(Exception):
    """The project's privacy budget cannot pay for another answer."""

    def __init__(self, budget: Budget, cost: int) -> None:
        super().__init__(f"privacy budget spent: {budget.spent}/{budget.total} millionths, answer costs {cost}")
        self.budget = budget
        self.cost = cost


@functools.lru_cache(maxsize=64)
def laplace_scale(epsilon: float) -> float:
    """The smallest discrete Laplace scale whose OpenDP privacy map gives at most ``epsilon`` for one person."""
    space = dp.atom_domain(T=int), dp.absolute_distance(T=int)
    return float(dp.binary_search_param(lambda s: space >> dp.m.then_laplace(scale=s), d_in=1, d_out=epsilon))


def noisy_count(count: int, epsilon: float) -> int:
    """``count`` with discrete Laplace noise calibrated to ``epsilon`` (OpenDP; its own sampler and checks)."""
    space = dp.atom_domain(T=int), dp.absolute_distance(T=int)
    measurement = space >> dp.m.then_laplace(scale=laplace_scale(epsilon))
    if measurement.map(1) > epsilon:  # the calibration is OpenDP's; this only refuses to release if it ever is not
        raise RuntimeError("noise calibration exceeds the per-query epsilon")
    return int(measurement(count))
