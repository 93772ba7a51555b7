"""chat/ratelimit.py and chat/address_limits.py without sockets: the token bucket, the
sliding windows and their places (`take_slot`, `give_back`), the budget of upload bytes,
the join-failure limit (a guess holds its place before it is checked, in the process and
in Redis) and the per-address quotas (ROOMS_PER_HOUR). Time is passed in as `now`."""

import asyncio
import uuid

import pytest

from chat import address_limits, ratelimit, workers
from chat.address_limits import LocalQuota, RedisQuota, quota, room_creations
from chat.errors import ProtocolError
from chat.ratelimit import (
    AddressBuckets,
    Budget,
    JoinFailures,
    RedisAddressBuckets,
    RedisJoinFailures,
    SlidingWindow,
    TokenBucket,
    checked_password,
    join_failures,
    take_slot,
)
from config.settings import redis_layer_host
from tests.conftest import REDIS_URL

# --- The token bucket and the windows --------------------------------------------------


def test_a_bucket_gives_its_burst_then_refills_at_its_rate():
    bucket = TokenBucket(burst=3, rate=2, now=0)
    assert [bucket.take(now=0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(now=0.4)  # 0.8 of a token
    assert bucket.take(now=0.5)  # one token after half a second at 2 a second
    assert not bucket.take(now=0.5)
    assert [bucket.take(now=100) for _ in range(4)] == [True, True, True, False]  # never past the burst


def test_a_full_bucket_lends_one_take_larger_than_its_burst_and_is_refilled_before_the_next():
    bucket = TokenBucket(burst=100, rate=10, now=0)
    assert bucket.take(now=0, amount=250)  # full: let in, 150 owed
    assert not bucket.take(now=10, amount=1)  # 100 refilled, still 50 short
    assert not bucket.take(now=19, amount=100)  # 40 of 100
    assert bucket.take(now=25, amount=100)  # full again
    assert not bucket.take(now=25, amount=1)


def test_an_address_bucket_is_shared_by_everything_from_the_address(settings):
    settings.CHAT_BYTES_PER_ADDRESS_BURST = 3000
    settings.CHAT_BYTES_PER_ADDRESS_SUSTAINED = 100
    buckets = AddressBuckets("CHAT_BYTES_PER_ADDRESS_BURST", "CHAT_BYTES_PER_ADDRESS_SUSTAINED")
    assert [buckets.take("10.0.0.1", 1000, now=0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("10.0.0.2", 1000, now=0)  # another address has its own
    assert not buckets.take("10.0.0.1", 1000, now=9)  # 900 refilled
    assert buckets.take("10.0.0.1", 1000, now=10)


def test_address_buckets_forget_full_ones_and_keep_at_most_the_cap(settings):
    settings.CHAT_BYTES_PER_ADDRESS_BURST = 1000
    settings.CHAT_BYTES_PER_ADDRESS_SUSTAINED = 100
    buckets = AddressBuckets("CHAT_BYTES_PER_ADDRESS_BURST", "CHAT_BYTES_PER_ADDRESS_SUSTAINED")
    for n in range(50):
        buckets.take(f"10.0.1.{n}", 1000, now=n)
    # Each full again 10 s after it emptied: only the last ten are still owed bytes.
    assert sorted(buckets.buckets) == sorted(f"10.0.1.{n}" for n in range(40, 50))
    settings.ADDRESSES_REMEMBERED = 20
    for n in range(100):
        assert buckets.take(f"10.0.2.{n}", 1000, now=100)  # all emptied at once
    assert len(buckets.buckets) == 20
    # The address that just spent its bytes is not forgotten by the flood of others.
    assert not buckets.take("10.0.2.99", 1, now=100)


def test_a_window_counts_only_its_last_seconds():
    window = SlidingWindow(10)
    assert [window.add(now=t) for t in (0, 1, 5)] == [1, 2, 3]
    assert window.count(now=9.9) == 3
    assert window.count(now=10) == 2  # the event at 0 s left exactly 10 s later
    assert window.count(now=15.5) == 0


def test_a_window_slot_refused_takes_no_place():
    window = SlidingWindow(60)
    assert [take_slot(window, 2, now=t) for t in (0, 1, 2, 3, 4)] == [True, True, False, False, False]
    assert take_slot(window, 2, now=60.5)  # the refusals at 2-4 s hold nothing


def test_a_place_given_back_is_free_again_and_only_the_newest_goes():
    window = SlidingWindow(60)
    assert take_slot(window, 2, now=0) and take_slot(window, 2, now=1)
    assert not take_slot(window, 2, now=2)
    window.give_back()  # the frame at 1 s was refused by a later check after all
    assert take_slot(window, 2, now=3)
    assert window.count(now=60.5) == 1  # the place taken at 0 s left; 3 s stays
    SlidingWindow(60).give_back()  # nothing to give back: nothing happens


def test_the_budget_refuses_past_its_limit_but_lets_one_in(settings):
    settings.UPLOADS_IN_FLIGHT_BYTES = 100
    budget = Budget("UPLOADS_IN_FLIGHT_BYTES")
    assert budget.take(60) and not budget.take(60)
    budget.give(60)
    assert budget.take(500)  # alone: let in, so a small limit slows uploads instead of ending them
    assert not budget.take(1)
    budget.give(500)
    assert budget.held == 0


# --- Join failures -----------------------------------------------------------------------


async def guesses(failures, address: str, answers: list[bool]) -> list[str]:
    """Checks running together, each answering as `answers` says after a moment."""

    async def one(right: bool) -> str:
        async def check() -> bool:
            await asyncio.sleep(0.01)
            return right

        try:
            return "right" if await checked_password(failures, address, check) else "wrong"
        except ProtocolError as exc:
            return exc.code.value

    return await asyncio.gather(*(one(right) for right in answers))


@pytest.fixture
def limit_of_five(settings):
    settings.JOIN_FAILURES_PER_MINUTE = 5


async def test_parallel_guesses_in_process_get_at_most_the_limit(limit_of_five):
    failures = JoinFailures()
    codes = await guesses(failures, "10.0.0.9", [False] * 100)
    assert codes.count("wrong") == 5 and codes.count("rate_limited") == 95
    assert await guesses(failures, "10.0.0.9", [True]) == ["rate_limited"]
    assert await failures.blocked("10.0.0.9")
    assert await guesses(failures, "10.0.0.8", [True]) == ["right"]


async def test_right_passwords_and_failed_checks_give_their_place_back(limit_of_five):
    failures = JoinFailures()
    assert (await guesses(failures, "a", [True] * 5)).count("right") == 5
    assert await guesses(failures, "a", [True] * 20) == ["right"] * 5 + ["rate_limited"] * 15

    async def broken() -> bool:
        raise workers.Busy("PASSWORD_HASH_QUEUE")

    for _ in range(10):
        with pytest.raises(workers.Busy):
            await checked_password(failures, "a", broken)
    assert not await failures.blocked("a")
    assert (await guesses(failures, "a", [False] * 10)).count("wrong") == 5


async def test_local_places_leave_the_window_after_a_minute(limit_of_five):
    failures = JoinFailures()
    for _ in range(5):
        assert await failures.claim("a", now=100.0) is not None
    assert await failures.claim("a", now=159.0) is None
    assert await failures.claim("a", now=160.5) is not None


async def test_an_address_is_blocked_at_the_limit_and_forgotten_once_its_window_is_empty(limit_of_five):
    failures = JoinFailures()
    assert not await failures.blocked("a", now=0)
    claims = [await failures.claim("a", now=t) for t in range(5)]
    assert await failures.blocked("a", now=10)
    await failures.release("a", claims[-1])  # a right password: its place comes back
    assert not await failures.blocked("a", now=10)
    await failures.release("a", 12345.0)  # a place it never held: nothing changes
    await failures.release("b", claims[0])
    assert len(failures.windows["a"].stamps) == 4
    assert not await failures.blocked("a", now=70)
    assert "a" not in failures.windows  # nothing left in its window: forgotten


async def test_addresses_whose_minute_has_passed_are_forgotten_when_others_come(limit_of_five):
    failures = JoinFailures()
    for n in range(1000):
        claim = await failures.claim(f"10.0.{n // 256}.{n % 256}", now=n / 100)
        assert claim is not None
        if n % 2:
            await failures.release(f"10.0.{n // 256}.{n % 256}", claim)  # a right password
    assert len(failures.windows) == 500  # right passwords leave nothing behind
    assert not await failures.blocked("192.0.2.1", now=3600)  # an hour later, someone else
    assert failures.windows == {}
    await failures.claim("10.0.0.0", now=3600)
    for n in range(100):
        await failures.claim(f"10.9.0.{n}", now=3630 + n / 100)
    await failures.blocked("192.0.2.1", now=3661)  # 10.0.0.0's minute has passed, not the others'
    assert "10.0.0.0" not in failures.windows and len(failures.windows) == 100


async def test_a_flood_of_addresses_keeps_the_cap_and_a_guesser_stays_blocked(limit_of_five, settings):
    settings.ADDRESSES_REMEMBERED = 10
    failures = JoinFailures()
    for _ in range(5):
        await failures.claim("10.0.0.1", now=0)
    for n in range(1000):
        assert await failures.claim(f"2001:db8::{n:x}", now=1 + n / 100) is not None
        assert len(failures.windows) <= 10
        if n % 5 == 0:  # the guesser keeps trying among them: refused, and remembered
            assert await failures.claim("10.0.0.1", now=1 + n / 100) is None
    assert await failures.blocked("10.0.0.1", now=11)
    assert "2001:db8::0" not in failures.windows  # the least recent went first


@pytest.mark.redis
async def test_parallel_guesses_on_redis_from_two_clients_get_at_most_the_limit(limit_of_five):
    """Two counters on one Redis key space stand for two processes."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    one, two = (RedisJoinFailures(redis_layer_host(REDIS_URL), prefix) for _ in range(2))
    address = "10.1.1.1"
    codes = await asyncio.gather(guesses(one, address, [False] * 50), guesses(two, address, [False] * 50))
    codes = codes[0] + codes[1]
    assert codes.count("wrong") == 5 and codes.count("rate_limited") == 95
    assert await one.blocked(address) and await two.blocked(address)
    assert await guesses(two, address, [True]) == ["rate_limited"]
    # A right password gives its place back.
    other = "10.1.1.2"
    for _ in range(5):
        assert await guesses(one, other, [True]) == ["right"]
    assert (await guesses(two, other, [False] * 10)).count("wrong") == 5
    await one.client().delete(one.key(address), one.key(other))


def redis_layer(settings, prefix: str) -> None:
    """A channels_redis layer in the settings (never reached: nothing is claimed)."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"], "prefix": prefix},
        }
    }


def test_join_failures_count_in_redis_when_the_layer_is_redis(settings, monkeypatch):
    """One counter per layer host and prefix, shared by every socket of the process."""
    monkeypatch.setattr(ratelimit, "_shared", {})
    assert join_failures() is ratelimit._local  # the in-memory layer of the tests
    redis_layer(settings, "one")
    shared = join_failures()
    assert isinstance(shared, RedisJoinFailures) and shared.prefix == "one"
    assert join_failures() is shared
    redis_layer(settings, "two")
    assert join_failures() is not shared


# --- Quotas per address (address_limits) ------------------------------------------------


async def test_a_local_quota_holds_its_limit_over_its_window_and_takes_places_back():
    rooms = LocalQuota("rooms", window=3600)
    first = await rooms.claim("10.0.0.1", 2, now=0)
    second = await rooms.claim("10.0.0.1", 2, now=10)
    assert first and second and first != second
    assert await rooms.claim("10.0.0.1", 2, now=20) is None
    assert await rooms.claim("10.0.0.2", 2, now=20) is not None  # each address its own
    await rooms.release("10.0.0.1", second)  # no room was made: the place comes back
    assert await rooms.claim("10.0.0.1", 2, now=30) is not None
    assert await rooms.claim("10.0.0.1", 2, now=3599) is None
    assert await rooms.claim("10.0.0.1", 2, now=3600) is not None  # the claim at 0 s has left
    await rooms.release("10.0.0.9", "nothing")  # an address it never saw: nothing happens


async def test_a_quota_tells_when_its_oldest_place_frees():
    rooms = LocalQuota("rooms", window=3600)
    assert await rooms.free_in("10.0.0.1", now=0) == 0
    await rooms.claim("10.0.0.1", 2, now=100)
    await rooms.claim("10.0.0.1", 2, now=200)
    assert await rooms.free_in("10.0.0.1", now=1000) == 2700
    assert await rooms.free_in("10.0.0.1", now=5000) == 0


async def test_a_local_quota_forgets_the_least_recent_address_first(settings):
    settings.ADDRESSES_REMEMBERED = 3
    rooms = LocalQuota("rooms")
    for address in ("a", "b", "c"):
        await rooms.claim(address, 1, now=0)
    await rooms.claim("a", 1, now=1)  # refused, but "a" is now the most recent
    await rooms.claim("d", 1, now=2)
    assert list(rooms.claims) == ["c", "a", "d"]  # "b" forgotten
    assert await rooms.claim("b", 1, now=3) is not None  # forgotten: a fresh quota
    assert await rooms.claim("a", 1, now=3) is None


def test_room_creations_are_counted_where_the_layer_is(settings, monkeypatch):
    monkeypatch.setattr(address_limits, "_shared", {})
    local = room_creations()
    assert isinstance(local, LocalQuota) and local is quota("rooms-created")
    assert quota("other") is not local
    redis_layer(settings, "p")
    shared = room_creations()
    assert isinstance(shared, RedisQuota) and shared.key("10.0.0.1") == "p:rooms-created:10.0.0.1"
    assert room_creations() is shared


@pytest.mark.redis
async def test_a_redis_quota_is_shared_and_atomic():
    """Two quotas on one key space stand for two processes; 30 claims at once get the limit."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    one, two = (RedisQuota("rooms", redis_layer_host(REDIS_URL), prefix) for _ in range(2))
    claims = await asyncio.gather(*((one, two)[n % 2].claim("10.2.2.2", 20) for n in range(30)))
    tokens = [claim for claim in claims if claim is not None]
    assert len(tokens) == 20
    await two.release("10.2.2.2", tokens[0])
    assert await one.claim("10.2.2.2", 20) is not None
    assert await two.claim("10.2.2.2", 20) is None
    assert await one.claim("10.2.2.3", 20) is not None
    assert 3590 < await two.free_in("10.2.2.2") <= 3600 and await two.free_in("10.9.9.9") == 0
    await one.client().delete(one.key("10.2.2.2"), one.key("10.2.2.3"))


# --- What an address stores, across processes (CHAT_BYTES_PER_ADDRESS_*) --------------


def bytes_settings(settings, burst: int, lease: int) -> None:
    settings.CHAT_BYTES_PER_ADDRESS_BURST = burst
    settings.CHAT_BYTES_PER_ADDRESS_SUSTAINED = 0.001
    settings.CHAT_BYTES_LEASE = lease


def process_bytes(prefix: str, host=None) -> RedisAddressBuckets:
    """One process's view of the stored bytes: its Redis client, leases and own buckets."""
    local = AddressBuckets("CHAT_BYTES_PER_ADDRESS_BURST", "CHAT_BYTES_PER_ADDRESS_SUSTAINED")
    return RedisAddressBuckets(host or redis_layer_host(REDIS_URL), prefix, local)


@pytest.mark.redis
async def test_what_an_address_stores_is_one_bucket_for_every_process(settings):
    """Two processes, an address's sockets on both, 600 bytes a frame, alternating and
    all at once: together they store what one bucket of 10,000 holds, not twice that
    (each counted its own before). A frame finds its process's lease first, so only a
    few ask Redis, and none once Redis said how long the bucket stays short; another
    address has a bucket of its own."""
    bytes_settings(settings, burst=10_000, lease=1_000)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    one, two = process_bytes(prefix), process_bytes(prefix)
    asked = []
    for process in (one, two):
        lease = process.lease

        async def counted(address, need, lease=lease):
            asked.append(need)
            return await lease(address, need)

        process.lease = counted
    taken = [await (one, two)[n % 2].take("10.3.3.3", 600) for n in range(20)]
    taken += await asyncio.gather(*((one, two)[n % 2].take("10.3.3.3", 600) for n in range(20)))
    assert 14 <= taken.count(True) <= 16  # 10,000 / 600, less what a lease holds unspent
    assert len(asked) < 12, asked  # refused, a process does not ask again while it is short
    assert await one.take("10.3.3.4", 600) and await two.take("10.3.3.4", 600)
    await one.quota.client().delete(one.quota.key("10.3.3.3"), one.quota.key("10.3.3.4"))


async def test_with_redis_down_what_an_address_stores_is_counted_in_the_process(settings, caplog):
    """The chat goes on: each process counts the address's bytes in its own bucket."""
    bytes_settings(settings, burst=2_400, lease=1_000)
    down = process_bytes("down", host="redis://127.0.0.1:1/0")
    assert [await down.take("10.4.4.4", 600) for _ in range(5)] == [True, True, True, True, False]
    assert "counting per process" in caplog.text


def process_deliveries(prefix: str) -> RedisAddressBuckets:
    """One process's view of an address's deliveries (chat.ratelimit.shared_deliveries)."""
    local = AddressBuckets("DELIVERIES_PER_ADDRESS_BURST", "DELIVERIES_PER_ADDRESS_SUSTAINED")
    return RedisAddressBuckets(redis_layer_host(REDIS_URL), prefix, local, "deliveries", "DELIVERIES_LEASE")


@pytest.mark.redis
async def test_an_addresss_deliveries_are_one_bucket_for_every_process(settings):
    """Each process charged an address's deliveries to its own bucket, so its sockets on
    two processes had a room handed out twice what one bucket holds. Now they share one,
    as stored bytes do; what a refused frame gives back goes to its process's lease, and
    what a join owes beyond its take (chat.actions.charge_the_rest) is that lease's debt,
    leased from the bucket by the next take."""
    settings.DELIVERIES_PER_ADDRESS_BURST, settings.DELIVERIES_PER_ADDRESS_SUSTAINED = 1_000, 0.001
    settings.DELIVERIES_LEASE = 100
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    one, two = process_deliveries(prefix), process_deliveries(prefix)
    taken = [await (one, two)[n % 2].take("10.5.5.5", 50) for n in range(40)]
    assert 14 <= taken.count(True) <= 20, taken  # 1,000 / 50, less what the leases hold
    one.give_back("10.5.5.5", 50)
    assert await one.take("10.5.5.5", 50)  # from its lease: the bucket is empty
    assert await two.take("10.5.5.6", 50)  # another address: a bucket of its own
    two.spend("10.5.5.6", 2_000)  # more than the bucket holds
    assert not await two.take("10.5.5.6", 1)
    await one.quota.client().delete(one.quota.key("10.5.5.5"), one.quota.key("10.5.5.6"))
