"""Issue 14, items 2 and 3, without a socket: a password guess takes its place in
JOIN_FAILURES_PER_MINUTE before it is checked (in the process and in Redis), and the
work queues admit a bounded number of jobs, in all and per client address."""

import asyncio
import threading
import uuid

import pytest
from asgiref.sync import sync_to_async

from chat import workers
from chat.errors import ErrorCode, ProtocolError
from chat.ratelimit import JoinFailures, RedisJoinFailures, checked_password
from config.settings import redis_layer_host
from tests.conftest import REDIS_URL


def test_admission_bounds_the_total_and_each_owner():
    admission = workers.Admission()
    assert admission.enter("a", limit=3, per_owner=2)
    assert admission.enter("a", limit=3, per_owner=2)
    assert not admission.enter("a", limit=3, per_owner=2)  # a's share is used up
    assert admission.enter("b", limit=3, per_owner=2)
    assert not admission.enter("c", limit=3, per_owner=2)  # the queue is full
    assert not admission.enter(None, limit=3, per_owner=2)
    admission.leave("a")
    assert admission.enter("c", limit=3, per_owner=2)
    for owner in ("a", "b", "c"):
        admission.leave(owner)
    assert admission.total == 0 and not admission.owners


async def test_a_full_queue_refuses_at_once_and_frees_when_jobs_end(settings):
    settings.WORK_QUEUE_PER_ADDRESS = 2
    settings.TEST_WORK_QUEUE = 3
    pool = workers.Workers("test-work", "PASSWORD_HASH_THREADS", "TEST_WORK_QUEUE")
    gate = threading.Event()
    workers.work_owner.set("10.0.0.1")
    first = [asyncio.create_task(pool.run(gate.wait)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ProtocolError) as refused:
        await pool.run(gate.wait)  # a third job of the same address
    assert refused.value.code == ErrorCode.RATE_LIMITED
    workers.work_owner.set("10.0.0.2")
    other = asyncio.create_task(pool.run(gate.wait))
    await asyncio.sleep(0)
    workers.work_owner.set("10.0.0.3")
    with pytest.raises(workers.Busy):
        await pool.run(gate.wait)  # three in all: the queue is full
    gate.set()
    assert await asyncio.gather(*first, other) == [True, True, True]
    await asyncio.sleep(0.05)  # the done callbacks have run
    assert pool.admission.total == 0
    assert await pool.run(sum, [1, 2]) == 3


async def test_a_cancelled_waiter_keeps_its_place_until_the_job_ends(settings):
    settings.WORK_QUEUE_PER_ADDRESS = 5
    settings.TEST_WORK_QUEUE = 1
    pool = workers.Workers("test-work", "PASSWORD_HASH_THREADS", "TEST_WORK_QUEUE")
    gate = threading.Event()
    workers.work_owner.set(None)
    job = asyncio.create_task(pool.run(gate.wait))
    await asyncio.sleep(0.05)
    job.cancel()
    await asyncio.sleep(0.05)
    with pytest.raises(workers.Busy):  # the thread is still busy with it
        await pool.run(gate.wait)
    gate.set()
    await asyncio.sleep(0.05)
    assert pool.admission.total == 0


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
        raise workers.Busy()

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


async def test_the_database_queue_refuses_past_its_bound(settings):
    settings.DATABASE_QUEUE = 2
    gate = threading.Event()
    work = workers.DatabaseWork(lambda function: sync_to_async(function, thread_sensitive=False))
    slow = work(gate.wait)
    waiting = [asyncio.create_task(slow(5)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(workers.Busy):
        await slow(5)
    gate.set()
    assert await asyncio.gather(*waiting) == [True, True]
    assert work.admission.total == 0
    assert await work(sum)([1, 2]) == 3
