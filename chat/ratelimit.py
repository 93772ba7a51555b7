"""Rate limits of PROTOCOL.md's Limits table, as small clocks-in-arguments objects."""

import bisect
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from django.conf import settings

from chat import redis_clients
from chat.address_limits import RedisQuota, remember
from chat.errors import OverLimit

logger = logging.getLogger(__name__)


class TokenBucket:
    """`burst` tokens at once, refilled at `rate` per second (chat frames, per
    connection; stored bytes, per address). A full bucket lends what one take asks
    beyond it, to be refilled before the next, so an amount over `burst` is slowed
    down, never refused for ever."""

    def __init__(self, burst: float, rate: float, now: float | None = None) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = burst
        self.stamp = time.monotonic() if now is None else now

    def refill(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, now: float | None = None, amount: float = 1) -> bool:
        if self.refill(now) >= min(amount, self.burst):
            self.tokens -= amount
            return True
        return False

    def take_above(self, keep: float, now: float | None = None, amount: float = 1) -> bool:
        """Take only if `keep` tokens are left after it, and lend nothing: what is kept
        is for takes that matter more."""
        if self.refill(now) - amount >= keep:
            self.tokens -= amount
            return True
        return False

    def give_back(self, amount: float = 1) -> None:
        """A take whose frame was refused after all (PROTOCOL.md: a `rate_limited` one
        counts only toward the 1008 rule)."""
        self.tokens = min(self.burst, self.tokens + amount)


class AddressBuckets:
    """A token bucket per client address in this process: what all the address's sockets
    may store together (CHAT_BYTES_PER_ADDRESS_BURST, _SUSTAINED; a per-connection
    limit is no limit for a client that opens fifty). Keyed by a room's id instead, what
    all of a room's sockets may cost (`room_fan_out`). Buckets are kept least recently
    used first; once a second the full ones at the front are forgotten (a new one would
    be the same), and past ADDRESSES_REMEMBERED the least recent go. Forgetting at every
    take cost 2.7 us a message at 5,000 a second from 200 addresses, 0.9 us this way."""

    PRUNE_EVERY = 1.0  # seconds between two passes that forget full buckets
    PRUNE_MOST = 1000  # buckets one pass forgets at most

    def __init__(self, burst_setting: str, rate_setting: str) -> None:
        self.burst_setting = burst_setting
        self.rate_setting = rate_setting
        self.buckets: dict[str, TokenBucket] = {}
        self.pruned_at = float("-inf")

    def take(self, address: str, amount: float, now: float | None = None, keep: float = 0) -> bool:
        """With `keep`, only if that much is left after it, lending nothing
        (TokenBucket.take_above)."""
        now = time.monotonic() if now is None else now
        bucket = self.bucket(address, now)
        return bucket.take_above(keep, now, amount) if keep else bucket.take(now, amount)

    def give_back(self, address: str, amount: float) -> None:
        """What a take's frame, refused after all, did not use."""
        self.bucket(address, time.monotonic()).give_back(amount)

    def spend(self, address: str, amount: float, now: float | None = None) -> None:
        """Take `amount` whatever the bucket holds (what was already sent): it may go
        below nothing, and `left` is then False until it has refilled past it."""
        now = time.monotonic() if now is None else now
        self.bucket(address, now).tokens -= amount

    def left(self, address: str, now: float | None = None) -> bool:
        """Whether the address's bucket holds anything."""
        now = time.monotonic() if now is None else now
        return self.bucket(address, now).tokens > 0

    def bucket(self, address: str, now: float) -> TokenBucket:
        """The address's bucket, refilled to `now` and remembered as its most recent."""
        bucket = self.buckets.pop(address, None)
        if bucket is None:
            burst, rate = getattr(settings, self.burst_setting), getattr(settings, self.rate_setting)
            bucket = TokenBucket(burst, rate, now)
        bucket.refill(now)
        if now - self.pruned_at >= self.PRUNE_EVERY:
            self.forget_full(now)
        remember(self.buckets, address, bucket)
        return bucket

    def forget_full(self, now: float) -> None:
        self.pruned_at = now
        for _ in range(self.PRUNE_MOST):
            oldest = next(iter(self.buckets.values()), None)
            if oldest is None or oldest.refill(now) < oldest.burst:
                return
            del self.buckets[next(iter(self.buckets))]


class SlidingWindow:
    """Counts events in the last `window` seconds.

    The times are a list, oldest first: every socket has four of these, mostly empty,
    and an empty list is 56 bytes where an empty deque is about 600 (bench/README.md,
    idle memory). The limits keep it short, so dropping the old ones from its front
    costs little."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.stamps: list[float] = []

    def add(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        self.stamps.append(now)
        return self.count(now)

    def count(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        if self.stamps and self.stamps[0] <= now - self.window:
            del self.stamps[: bisect.bisect_right(self.stamps, now - self.window)]
        return len(self.stamps)

    def give_back(self) -> None:
        """Drop the newest event: the frame that took it did not count after all."""
        if self.stamps:
            self.stamps.pop()


class JoinFailures:
    """`wrong_password` answers per client address over the last minute, in this
    process: right for one process on the in-memory layer.

    `windows` is kept least recently claimed first, so addresses whose minute has
    passed are forgotten from its front as later calls meet them, and at most
    ADDRESSES_REMEMBERED are remembered (the least recent go first)."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self.windows: dict[str, SlidingWindow] = {}

    def _prune(self, now: float) -> None:
        """Forget the least recently claimed addresses while their windows are empty:
        the first one still counting was claimed after all those before it."""
        while self.windows:
            oldest = next(iter(self.windows))
            if self.windows[oldest].count(now):
                return
            del self.windows[oldest]

    async def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._prune(now)
        window = self.windows.get(address)
        if window is None:
            return False
        failures = window.count(now)
        if failures == 0:
            del self.windows[address]
            return False
        return failures >= settings.JOIN_FAILURES_PER_MINUTE

    async def claim(self, address: str, now: float | None = None) -> float | None:
        """Take a place in the address's limit, or None when none is left. Nothing
        awaits between the count and the add, so on the event loop this is atomic.
        A refused claim still makes the address the most recent: one that keeps
        guessing is not the one the cap forgets."""
        now = time.monotonic() if now is None else now
        self._prune(now)
        window = self.windows.pop(address, None) or SlidingWindow(self.WINDOW)
        remember(self.windows, address, window)
        if window.count(now) >= settings.JOIN_FAILURES_PER_MINUTE:
            return None
        window.add(now)
        return now

    async def release(self, address: str, claim: float) -> None:
        """Give a place back (the password was right, or it was never checked); an
        address with no place left is forgotten."""
        window = self.windows.get(address)
        if window is not None and claim in window.stamps:
            window.stamps.remove(claim)
            if not window.stamps:
                del self.windows[address]


class RedisJoinFailures(RedisQuota):
    """The same counters in Redis, shared by every server process (an attacker spread
    over N processes would otherwise get N times the limit): address_limits' quota over
    the last minute, which a guess claims in one script before its password is checked."""

    WINDOW = 60.0

    def __init__(self, host: str | dict, prefix: str) -> None:
        super().__init__("join-failures", host, prefix, window=self.WINDOW)

    async def blocked(self, address: str) -> bool:
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.key(address), 0, time.time() - self.WINDOW)
            pipe.zcard(self.key(address))
            _, failures = await pipe.execute()
        return failures >= settings.JOIN_FAILURES_PER_MINUTE

    async def claim(self, address: str) -> str | None:
        return await super().claim(address, settings.JOIN_FAILURES_PER_MINUTE)

    async def release(self, address: str, claim: str) -> None:
        """Give a place back. If Redis fails here the place just expires with the window."""
        try:
            await super().release(address, claim)
        except (redis.RedisError, OSError):
            logger.warning("could not give back a join-failure place; it expires in a minute")


_local = JoinFailures()
_shared: dict[tuple[str, str], RedisJoinFailures] = {}


def join_failures() -> JoinFailures | RedisJoinFailures:
    """Redis when the channel layer is channels_redis (its first host and prefix),
    else this process's counters."""
    return redis_clients.on_layer_redis(_shared, RedisJoinFailures) or _local


async def checked_password(
    failures: JoinFailures | RedisJoinFailures, address: str, check: Callable[[], Awaitable[bool]]
) -> bool:
    """Run `check` (a password check) holding a place in the address's
    JOIN_FAILURES_PER_MINUTE, taken before it starts (PROTOCOL.md, Limits): the place
    is kept for a wrong password and given back for a right one, or when the check did
    not happen (refused, failed, cancelled). No place left: `rate_limited`."""
    claim = await failures.claim(address)
    if claim is None:
        raise OverLimit("JOIN_FAILURES_PER_MINUTE", "Too many wrong passwords; wait a minute.")
    try:
        right = await check()
    except BaseException:
        await failures.release(address, claim)
        raise
    if right:
        await failures.release(address, claim)
    return right


class Budget:
    """An amount this process holds at once (upload bytes in flight): `take` refuses
    what would pass the setting's limit, `give` returns it. One holder alone is always
    let in, so a limit below one item slows uploads down instead of refusing them all."""

    def __init__(self, limit_setting: str) -> None:
        self.limit_setting = limit_setting
        self.held = 0

    def take(self, amount: int) -> bool:
        if self.held and self.held + amount > getattr(settings, self.limit_setting):
            return False
        self.held += amount
        return True

    def give(self, amount: int) -> None:
        self.held = max(0, self.held - amount)


def take_slot(window: SlidingWindow, limit: int, now: float | None = None) -> bool:
    """A place in a per-connection window (JOINS_PER_MINUTE, READS_PER_MINUTE,
    FILES_UPLOADS_PER_MINUTE): refused frames take none, so a client that retries
    while limited is let in again once the window has moved."""
    if window.count(now) >= limit:
        return False
    window.add(now)
    return True


# What each address stores through its chat commands in this process (actions.take_chat).
chat_bytes = AddressBuckets("CHAT_BYTES_PER_ADDRESS_BURST", "CHAT_BYTES_PER_ADDRESS_SUSTAINED")
# What handing out each address's room events costs this process: a socket of the room a
# delivery (actions.take_deliveries).
room_deliveries = AddressBuckets("DELIVERIES_PER_ADDRESS_BURST", "DELIVERIES_PER_ADDRESS_SUSTAINED")
# The same deliveries, a bucket per room (its id): what one room's chat may cost this
# process, whoever says it (actions.take_deliveries).
room_fan_out = AddressBuckets("DELIVERIES_PER_ROOM_BURST", "DELIVERIES_PER_ROOM_SUSTAINED")
# What each address reads through GetHistory, GetMembers and GetFile (actions.take_read).
read_bytes = AddressBuckets("READ_BYTES_PER_ADDRESS_BURST", "READ_BYTES_PER_ADDRESS_SUSTAINED")

# Bytes of large frames (uploads) this process is parsing, decoding, checking and
# storing (UPLOADS_IN_FLIGHT_BYTES; docs/protocol-notes.md).
uploads_in_flight = Budget("UPLOADS_IN_FLIGHT_BYTES")
# Bytes of `/files/<id>` downloads this process holds until their clients read them
# (DOWNLOADS_IN_FLIGHT_BYTES; files/views.py).
downloads_in_flight = Budget("DOWNLOADS_IN_FLIGHT_BYTES")


# A token bucket in Redis, on Redis's clock: refill it, then grant at least `need` and
# up to `need` + `extra` of what it holds, or nothing when it holds less than `need`
# (a full bucket lends what a take asks beyond its size, as TokenBucket does), with
# the seconds until it will hold `need`. Returns "grant seconds".
# KEYS[1]: the address's bucket; ARGV: burst, rate per second, need, extra.
_LEASE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local need, extra = tonumber(ARGV[3]), tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = burst
if saved[1] then
  tokens = math.min(burst, tonumber(saved[1]) + math.max(0, now - tonumber(saved[2])) * rate)
end
local grant, wait = 0, 0
if tokens >= math.min(need, burst) then
  grant = math.max(need, math.min(tokens, need + extra))
  tokens = tokens - grant
else
  wait = (math.min(need, burst) - tokens) / math.max(rate, 0.001)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
local full_in = (burst - tokens) / math.max(rate, 0.001)
redis.call('PEXPIRE', KEYS[1], math.ceil(math.min(full_in, 86400) * 1000) + 1000)
return tostring(grant) .. ' ' .. tostring(wait)
"""


class RedisAddressBuckets:
    """`local`'s buckets (CHAT_BYTES_PER_ADDRESS_*, DELIVERIES_PER_*) shared by every
    server process: one token bucket per address (or room) in Redis, from which a
    process leases what a take needs and up to `lease_setting` (CHAT_BYTES_LEASE,
    DELIVERIES_LEASE) more, and spends that without asking again. So one Redis call
    pays for many messages, and all processes together take at most what the one
    bucket lets through (what they hold leased is taken from it). A refused take learns
    how long the bucket will stay short, and the address's takes until then are refused
    without asking (a client that keeps sending costs Redis nothing more). If Redis
    fails, the take falls back to `local`, this process's own buckets."""

    def __init__(
        self,
        host: str | dict,
        prefix: str,
        local: AddressBuckets,
        name: str = "stored-bytes",
        lease_setting: str = "CHAT_BYTES_LEASE",
    ) -> None:
        self.quota = RedisQuota(name, host, prefix)
        self.local = local
        self.lease_setting = lease_setting
        # Per address, least recently used first: what this process holds leased, and
        # until when (monotonic) its bucket is known to be short.
        self.leases: dict[str, float] = {}
        self.short_until: dict[str, float] = {}
        self.warned = float("-inf")

    async def take(self, address: str, amount: float) -> bool:
        if self.leases.get(address, 0.0) < amount:
            now = time.monotonic()
            if self.short_until.get(address, now) > now:
                return False
            try:
                grant, wait = await self.lease(address, amount - self.leases.get(address, 0.0))
            except (redis.RedisError, OSError):
                if now - self.warned >= 60:
                    self.warned = now
                    logger.warning("stored bytes: Redis failed; counting per process", exc_info=True)
                return self.local.take(address, amount)
            if wait:
                remember(self.short_until, address, time.monotonic() + wait)
            # Read again: another take of the address may have changed it meanwhile.
            remember(self.leases, address, self.leases.pop(address, 0.0) + grant)
        held = self.leases.pop(address, 0.0)
        taken = held >= amount
        remember(self.leases, address, held - amount if taken else held)
        return taken

    async def lease(self, address: str, need: float) -> tuple[float, float]:
        """(what was granted, seconds the bucket stays short of `need` when nothing was)."""
        answer = await self.quota.client().eval(
            _LEASE,
            1,
            self.quota.key(address),
            getattr(settings, self.local.burst_setting),
            getattr(settings, self.local.rate_setting),
            need,
            getattr(settings, self.lease_setting),
        )
        grant, wait = (answer.decode() if isinstance(answer, bytes) else answer).split()
        return float(grant), float(wait)

    def give_back(self, address: str, amount: float) -> None:
        """What a take did not use, to this process's lease (spent by its next takes)."""
        remember(self.leases, address, self.leases.pop(address, 0.0) + amount)

    def spend(self, address: str, amount: float) -> None:
        """Take `amount` whatever the lease holds (what was already sent): it may go below
        nothing, and the next take then leases that much more."""
        remember(self.leases, address, self.leases.pop(address, 0.0) - amount)


_stored_bytes: dict[tuple[str, str], RedisAddressBuckets] = {}
_deliveries: dict[tuple[str, str], tuple[RedisAddressBuckets, RedisAddressBuckets]] = {}


def shared_bytes() -> RedisAddressBuckets | None:
    """CHAT_BYTES_PER_ADDRESS_* in Redis when the channel layer is channels_redis (its
    first host and prefix), falling back to `chat_bytes`; None: `chat_bytes` alone."""
    return redis_clients.on_layer_redis(
        _stored_bytes, lambda host, prefix: RedisAddressBuckets(host, prefix, chat_bytes)
    )


def shared_deliveries() -> tuple[RedisAddressBuckets, RedisAddressBuckets] | None:
    """DELIVERIES_PER_ADDRESS_* and DELIVERIES_PER_ROOM_* in Redis when the channel layer
    is channels_redis, falling back to `room_deliveries` and `room_fan_out`: the address's
    and the room's, each one bucket for every process; None: those of the process."""
    return redis_clients.on_layer_redis(
        _deliveries,
        lambda host, prefix: (
            RedisAddressBuckets(host, prefix, room_deliveries, "deliveries", "DELIVERIES_LEASE"),
            RedisAddressBuckets(host, prefix, room_fan_out, "room-deliveries", "DELIVERIES_LEASE"),
        ),
    )
