"""A per-hospital token bucket: a burst is fine, a flood gets 429 with Retry-After.

In memory, per ingest process: each instance protects itself, and the limit
across N instances is N times this one (documented in the settings).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from services.contracts import errors


class RateLimited(errors.Throttled):
    """Too many requests from one hospital; ``retry_after`` is in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after}s", retry_after=retry_after)


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # org -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, org: str, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens of ``org``'s bucket or raise ``RateLimited``."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(org, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < cost:
                self._buckets[org] = (tokens, now)
                raise RateLimited(max(1, math.ceil((cost - tokens) / self.rate)))
            self._buckets[org] = (tokens - cost, now)
