"""Rate limits of PROTOCOL.md's Limits table, as small clocks-in-arguments objects."""

import asyncio
import time
import uuid
import weakref
from collections import deque

import redis.asyncio as redis
from django.conf import settings

from chat import redis_clients


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
    """`wrong_password` answers per client address over the last minute, in this
    process: right for one process on the in-memory layer."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self.windows: dict[str, SlidingWindow] = {}

    async def blocked(self, address: str, now: float | None = None) -> bool:
        window = self.windows.get(address)
        if window is None:
            return False
        failures = window.count(now)
        if failures == 0:
            del self.windows[address]
            return False
        return failures >= settings.JOIN_FAILURES_PER_MINUTE

    async def record(self, address: str, now: float | None = None) -> None:
        self.windows.setdefault(address, SlidingWindow(self.WINDOW)).add(now)


class RedisJoinFailures:
    """The same counters in Redis, shared by every server process: one sorted set of
    failure times per address, trimmed to the last minute. Without it an attacker
    spread over N processes would get N times the limit."""

    WINDOW = 60.0

    def __init__(self, host: str | dict, prefix: str) -> None:
        self.host = host  # a URL, or channels_redis's {"sentinels": ..., "master_name": ...}
        self.prefix = prefix
        # redis.asyncio clients belong to the event loop that made them.
        self.clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def client(self) -> redis.Redis:
        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            client = redis_clients.client(self.host, timeout=settings.REDIS_SOCKET_TIMEOUT)
            self.clients[loop] = client
        return client

    def key(self, address: str) -> str:
        return f"{self.prefix}:join-failures:{address}"

    async def blocked(self, address: str) -> bool:
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.key(address), 0, time.time() - self.WINDOW)
            pipe.zcard(self.key(address))
            _, failures = await pipe.execute()
        return failures >= settings.JOIN_FAILURES_PER_MINUTE

    async def record(self, address: str) -> None:
        now = time.time()
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.zadd(self.key(address), {f"{now}:{uuid.uuid4().hex[:8]}": now})
            pipe.expire(self.key(address), int(self.WINDOW) + 1)
            await pipe.execute()


_local = JoinFailures()
_shared: dict[tuple[str, str], RedisJoinFailures] = {}


def join_failures() -> JoinFailures | RedisJoinFailures:
    """Redis when the channel layer is channels_redis (its first host and prefix),
    else this process's counters."""
    hosts = redis_clients.layer_hosts()
    if not hosts:
        return _local
    host, prefix = hosts[0], settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    place = (repr(host), prefix)
    if place not in _shared:
        _shared[place] = RedisJoinFailures(host, prefix)
    return _shared[place]
