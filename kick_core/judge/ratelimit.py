"""A thread-safe client-side rate limit: at most `rate` request starts per second, evenly spaced."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Spaces calls to :meth:`wait` at least ``1/rate`` seconds apart, across threads.

    Even spacing (rather than bursts) keeps a judge run under per-minute API quotas without
    waiting for 429s; the ``openai`` client still backs off if the server sends one anyway.
    """

    def __init__(self, rate: float):
        if not rate > 0:
            raise ValueError(f"rate={rate!r} must be > 0 requests per second")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this caller may start a request; returns the seconds waited."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)
        return delay
