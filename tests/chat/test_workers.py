"""chat/workers.py (issue 14, item 3), without a socket: the work queues admit a bounded
number of jobs, in all and per client address. A password guess's place in
JOIN_FAILURES_PER_MINUTE (item 2): tests/chat/test_ratelimit.py."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from chat import workers
from chat.errors import ErrorCode, ProtocolError


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
    assert refused.value.setting == "WORK_QUEUE_PER_ADDRESS"  # the log's `limit=`
    workers.work_owner.set("10.0.0.2")
    other = asyncio.create_task(pool.run(gate.wait))
    await asyncio.sleep(0)
    workers.work_owner.set("10.0.0.3")
    with pytest.raises(workers.Busy) as full:
        await pool.run(gate.wait)  # three in all: the queue is full
    assert full.value.setting == "TEST_WORK_QUEUE"
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


async def test_the_database_queue_refuses_past_its_bound(settings):
    settings.DATABASE_QUEUE = 2
    gate = threading.Event()
    work = workers.DatabaseWork(lambda function: sync_to_async(function, thread_sensitive=False))
    slow = work(gate.wait)
    waiting = [asyncio.create_task(slow(5)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(workers.Busy) as full:
        await slow(5)
    assert full.value.setting == "DATABASE_QUEUE"
    gate.set()
    assert await asyncio.gather(*waiting) == [True, True]
    assert work.admission.total == 0
    assert await work(sum)([1, 2]) == 3


@pytest.mark.django_db(transaction=True)
async def test_the_lean_database_hop_runs_where_database_sync_to_async_does():
    """Same thread, so the same connection: both run on one thread, and under a sync
    caller (async_to_sync) both run in that caller."""
    from asgiref.sync import async_to_sync
    from channels.db import database_sync_to_async

    assert (
        await workers.on_database_thread(threading.get_ident)()
        == await database_sync_to_async(threading.get_ident)()
    )

    def under_a_sync_caller() -> tuple[int, int, int]:
        async def both() -> tuple[int, int]:
            return (
                await workers.on_database_thread(threading.get_ident)(),
                await database_sync_to_async(threading.get_ident)(),
            )

        lean, asgiref = async_to_sync(both)()
        return lean, asgiref, threading.get_ident()

    lean, asgiref, caller = await sync_to_async(under_a_sync_caller, thread_sensitive=False)()
    assert lean == asgiref == caller


@pytest.mark.django_db(transaction=True)
async def test_the_lean_database_hop_closes_an_obsolete_connection_after_the_call():
    """As database_sync_to_async does (on PostgreSQL, CONN_MAX_AGE 0, every call's): a
    connection past its age is closed after the call, even one that raised, and the
    next call opens a new one."""
    import time

    from django.db import DatabaseError, connections

    def age_out_and_fail() -> None:
        db = connections["default"]
        db.ensure_connection()
        db.close_at = time.monotonic() - 1
        raise DatabaseError("failed")

    with pytest.raises(DatabaseError):
        await workers.on_database_thread(age_out_and_fail)()
    assert await workers.on_database_thread(lambda: connections["default"].connection is None)()

    def count_rooms() -> int:
        from chat.models import Room

        return Room.objects.count()

    assert await workers.on_database_thread(count_rooms)() == 0
