"""Quotas per client address over a sliding window: rooms created (ROOMS_PER_HOUR),
rooms joined (JOINS_PER_ADDRESS_PER_MINUTE), failed admin logins
(ADMIN_LOGIN_FAILURES_PER_MINUTE, chat/admin_login.py).
Each counts in Redis when the channel layer is Redis, so the quota holds across
processes, and in this process otherwise.

A place is claimed before the work it pays for and given back if the work did not
happen, so simultaneous requests from one address never get more than the quota.
"""

import asyncio
import time
import weakref
from collections import deque

import redis.asyncio as redis
from django.conf import settings

from chat import redis_clients
from chat.outbox import ids

HOUR = 3600.0


def remember[T](entries: dict[str, T], address: str, entry: T) -> None:
    """Keep `entry` as `address`'s most recent (last), having forgotten the least recent
    (first) address once ADDRESSES_REMEMBERED are kept: every per-address map of the
    process, least recently used first."""
    if len(entries) >= settings.ADDRESSES_REMEMBERED:
        del entries[next(iter(entries))]
    entries[address] = entry


class LocalQuota:
    """The quota in this process: right for one process on the in-memory layer."""

    def __init__(self, name: str, window: float = HOUR) -> None:
        self.name = name
        self.window = window
        self.claims: dict[str, deque[tuple[float, str]]] = {}

    def _current(self, address: str, now: float) -> deque[tuple[float, str]]:
        claims = self.claims.pop(address, None) or deque()
        while claims and claims[0][0] <= now - self.window:
            claims.popleft()
        remember(self.claims, address, claims)
        return claims

    async def claim(self, address: str, limit: int, now: float | None = None) -> str | None:
        """A place in the address's quota (a token to give it back with), or None when full."""
        now = time.monotonic() if now is None else now
        claims = self._current(address, now)
        if len(claims) >= limit:
            return None
        token = ids.next()
        claims.append((now, token))
        return token

    async def free_in(self, address: str, now: float | None = None) -> float:
        """Seconds until the address's oldest claim leaves the window (0: none held)."""
        now = time.monotonic() if now is None else now
        claims = self.claims.get(address)
        return max(0.0, claims[0][0] + self.window - now) if claims else 0.0

    async def release(self, address: str, token: str) -> None:
        claims = self.claims.get(address)
        if claims:
            for item in claims:
                if item[1] == token:
                    claims.remove(item)
                    break


# Add a claim, then count: a claim past the limit is taken back at once (atomic in Redis).
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""


class RedisQuota:
    """The same quota in Redis, shared by every server process: a sorted set of claim
    times per address, trimmed to the window, claimed by one Lua script (atomic)."""

    def __init__(self, name: str, host: str | dict, prefix: str, window: float = HOUR) -> None:
        self.name = name
        self.host = host
        self.prefix = prefix
        self.window = window
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
        return f"{self.prefix}:{self.name}:{address}"

    async def claim(self, address: str, limit: int) -> str | None:
        token = ids.next()
        claimed = await self.client().eval(
            _CLAIM, 1, self.key(address), time.time(), self.window, limit, token
        )
        return token if claimed else None

    async def free_in(self, address: str) -> float:
        """Seconds until the address's oldest claim leaves the window (0: none held)."""
        oldest = await self.client().zrange(self.key(address), 0, 0, withscores=True)
        return max(0.0, oldest[0][1] + self.window - time.time()) if oldest else 0.0

    async def release(self, address: str, token: str) -> None:
        await self.client().zrem(self.key(address), token)


_local: dict[str, LocalQuota] = {}
_shared: dict[str, dict[tuple[str, str], RedisQuota]] = {}


def quota(name: str, window: float = HOUR) -> LocalQuota | RedisQuota:
    """The quota called `name` (over `window` seconds): in Redis when the channel layer
    is channels_redis (its first host and prefix), else in this process."""
    shared = redis_clients.on_layer_redis(
        _shared.setdefault(name, {}), lambda host, prefix: RedisQuota(name, host, prefix, window)
    )
    if shared is not None:
        return shared
    if name not in _local:
        _local[name] = LocalQuota(name, window)
    return _local[name]


def room_creations() -> LocalQuota | RedisQuota:
    """ROOMS_PER_HOUR: rooms created per client address."""
    return quota("rooms-created")


def address_joins() -> LocalQuota | RedisQuota:
    """JOINS_PER_ADDRESS_PER_MINUTE: CreateRoom and JoinRoom per client address."""
    return quota("joins", window=60.0)
