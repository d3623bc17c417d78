"""Sign-in throttling: failed attempts per account and per client address, with Retry-After.

argon2id makes each guess slow, but not rare: without a limit anyone may try
a dictionary against one account, or one password against every account.
Failures are counted in a sliding window per username (unknown names too, so
the answer does not tell who has an account) and per client address; when
either reaches its limit, sign-in answers 429 with Retry-After until the
oldest failure leaves the window, whatever the password. A success clears
the account's count, not the address's. One portal process holds the counts
in memory: they are a brake on guessing, not a record, and a restart only
forgets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 100_000  # bounded memory however many names or addresses are tried


class Window:
    """Failure times per key within ``window_s``; ``limit`` failures lock the key."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: str, now: float) -> float:
        times = self._recent(key, now)
        if len(times) < self.limit:
            return 0.0
        return times[len(times) - self.limit] + self.window_s - now

    def fail(self, key: str, now: float) -> None:
        if key not in self._failures and len(self._failures) >= MAX_KEYS:
            self._failures.pop(next(iter(self._failures)))  # the oldest key goes first
        self._failures.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class SignInThrottle:
    def __init__(self, *, account_limit: int, account_window_s: float, address_limit: int,
                 address_window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts = Window(account_limit, account_window_s)
        self.addresses = Window(address_limit, address_window_s)
        self.clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def _account(username: str) -> str:
        return username.strip().casefold()

    def retry_after(self, username: str, address: str) -> int:
        """Whole seconds to wait before another attempt is heard (0: go ahead)."""
        with self._lock:
            now = self.clock()
            wait = max(self.accounts.retry_after(self._account(username), now),
                       self.addresses.retry_after(address, now))
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            now = self.clock()
            self.accounts.fail(self._account(username), now)
            self.addresses.fail(address, now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self.accounts.clear(self._account(username))
