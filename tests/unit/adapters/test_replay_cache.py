"""The replay cache: a jti is accepted once while its token lives, and forgotten only after."""

from __future__ import annotations

import time

from services.adapters.auth import LEEWAY_S, ReplayCache


def test_a_jti_is_accepted_once() -> None:
    cache = ReplayCache()
    exp = time.time() + 120
    assert cache.check_and_add("hosp-a", "j1", exp)
    assert not cache.check_and_add("hosp-a", "j1", exp)


def test_the_same_jti_from_another_issuer_is_another_token() -> None:
    cache = ReplayCache()
    exp = time.time() + 120
    assert cache.check_and_add("hosp-a", "j1", exp)
    assert cache.check_and_add("hosp-b", "j1", exp)


def test_live_tokens_are_remembered_however_many_arrive() -> None:
    cache = ReplayCache()
    exp = time.time() + 120
    for n in range(20_000):
        assert cache.check_and_add("hosp-a", f"j{n}", exp)
    assert len(cache) == 20_000
    assert not cache.check_and_add("hosp-a", "j0", exp)
    assert not cache.check_and_add("hosp-a", "j19999", exp)


def test_tokens_past_expiry_and_leeway_are_forgotten() -> None:
    cache = ReplayCache()
    now = time.time()
    assert cache.check_and_add("hosp-a", "old", now - LEEWAY_S - 1)
    assert cache.check_and_add("hosp-a", "within-leeway", now - LEEWAY_S + 30)
    assert cache.check_and_add("hosp-a", "new", now + 60)
    assert len(cache) == 2  # "old" can no longer pass the expiry check, so it need not be kept
    assert not cache.check_and_add("hosp-a", "within-leeway", now + 60)
