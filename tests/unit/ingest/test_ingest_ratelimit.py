"""The per-hospital token bucket."""

from __future__ import annotations

import pytest

from services.ingest.ratelimit import RateLimited, RateLimiter


def test_burst_then_429_with_retry_after_then_refill() -> None:
    now = [100.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("gy-hosp-001")
    with pytest.raises(RateLimited) as err:
        limiter.take("gy-hosp-001")
    assert err.value.retry_after == 1
    limiter.take("gy-hosp-002")  # another hospital has its own bucket
    now[0] += 0.5
    limiter.take("gy-hosp-001")  # one token back after half a second at 2/s
    with pytest.raises(RateLimited):
        limiter.take("gy-hosp-001")


def test_zero_rate_means_unlimited() -> None:
    limiter = RateLimiter(rate_per_s=0, burst=0)
    for _ in range(1000):
        limiter.take("x")
