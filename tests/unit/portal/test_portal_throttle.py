"""Sign-in throttling as pure logic: sliding windows per account and per address."""

from __future__ import annotations

from services.portal.throttle import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock) -> SignInThrottle:
    return SignInThrottle(account_limit=3, account_window_s=60, address_limit=5, address_window_s=10, clock=clock)


def test_an_account_locks_after_its_limit_and_opens_when_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    t = throttle(clock)
    for i in range(3):
        assert t.retry_after("Alice", f"10.0.0.{i}") == 0
        t.failed("Alice", f"10.0.0.{i}")
        clock.now += 5
    assert t.retry_after("alice ", "10.9.9.9") == 45  # any address, any spelling of the name: 1000 + 60 - 1015
    clock.now += 45
    assert t.retry_after("alice", "10.9.9.9") == 0


def test_a_success_clears_the_account_but_not_the_address() -> None:
    clock = Clock()
    t = throttle(clock)
    for name in ("a", "b", "c", "d"):
        t.failed(name, "10.0.0.1")
    t.failed("e", "10.0.0.1")
    assert t.retry_after("someone-else", "10.0.0.1") == 10  # the address sprayed five names
    t.succeeded("a")
    assert t.retry_after("someone-else", "10.0.0.1") == 10
    assert t.retry_after("a", "10.0.0.2") == 0


def test_a_name_nobody_has_is_counted_like_any_other() -> None:
    clock = Clock()
    t = throttle(clock)
    for i in range(3):
        t.failed("nobody-has-this-name", f"10.1.0.{i}")
    assert t.retry_after("nobody-has-this-name", "10.2.0.1") > 0
