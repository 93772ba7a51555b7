"""Rate limits of PROTOCOL.md's Limits table, as small clocks-in-arguments objects."""

import time
from collections import deque

from django.conf import settings


class TokenBucket:
    """`burst` frames at once, refilled at `rate` per second (chat, per connection)."""

    def __init__(self, burst: float, rate: float, now: float | None = None) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = burst
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SlidingWindow:
    """Counts events in the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.stamps: deque[float] = deque()

    def add(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        self.stamps.append(now)
        return self.count(now)

    def count(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        while self.stamps and self.stamps[0] <= now - self.window:
            self.stamps.popleft()
        return len(self.stamps)


class JoinFailures:
    """`wrong_password` answers per client address over the last minute.

    Kept in this process: with several processes each counts its own share, so an
    attacker spread over N processes gets N times the limit (issue 7 moves the
    counters to Redis when it is configured).
    """

    WINDOW = 60.0

    def __init__(self) -> None:
        self.windows: dict[str, SlidingWindow] = {}

    def blocked(self, address: str, now: float | None = None) -> bool:
        window = self.windows.get(address)
        if window is None:
            return False
        failures = window.count(now)
        if failures == 0:
            del self.windows[address]
            return False
        return failures >= settings.JOIN_FAILURES_PER_MINUTE

    def record(self, address: str, now: float | None = None) -> None:
        self.windows.setdefault(address, SlidingWindow(self.WINDOW)).add(now)


join_failures = JoinFailures()
