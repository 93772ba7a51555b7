"""Where work that must not run on the event loop goes, each queue bounded: `file_work`
(low-priority threads for uploads and downloads), `database` (the database thread, for
clients' requests); chat/passwords.py has the password-hashing threads."""

import asyncio
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections

from chat.errors import OverLimit

# The client address the current frame or download came from (set by the consumer for
# each frame, and by files/views.py): whose share of a queue a job takes. None counts in
# the total only.
work_owner: ContextVar[str | None] = ContextVar("work_owner", default=None)


class Busy(OverLimit):
    """A queue of work is full: the client that sent the work gets `rate_limited`, and
    the log names the queue's setting."""

    def __init__(self, setting: str) -> None:
        super().__init__(setting, "The server is busy; try again in a moment.")


class Admission:
    """Counts the jobs waiting or running, in all and per owner, and admits one only
    while both counts are under their bounds. Thread-safe: jobs leave from the workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.owners: Counter[str] = Counter()

    def enter(self, owner: str | None, limit: int, per_owner: int) -> bool:
        with self.lock:
            if self.total >= limit or (owner is not None and self.owners[owner] >= per_owner):
                return False
            self.total += 1
            if owner is not None:
                self.owners[owner] += 1
            return True

    def full(self, owner: str | None, limit: int, per_owner: int) -> bool:
        """Whether `enter` would refuse now (a fast path: `enter` still decides)."""
        with self.lock:
            return self.total >= limit or (owner is not None and self.owners[owner] >= per_owner)

    def leave(self, owner: str | None) -> None:
        with self.lock:
            self.total -= 1
            if owner is not None:
                self.owners[owner] -= 1
                if self.owners[owner] <= 0:
                    del self.owners[owner]


def _lower_priority() -> None:
    # Linux applies nice per thread: the event loop's thread then always wins the CPU
    # over a storm of hashes or uploads, so chat in other rooms keeps its latency.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


# How long a worker pauses between slices of long CPU work (see `let_loop_run`).
PAUSE = 0.0001


def let_loop_run() -> None:
    """Hand the GIL to the event loop between slices of CPU work in a worker thread.

    A thread that never blocks keeps the GIL until another thread has waited for it
    for the switch interval (5 ms), and the event loop waits that long each time it
    wakes: a chat hop that wakes it a few times then took 20-50 ms during a 10 MiB
    upload. Sleeping a moment releases the GIL at once, so the loop waits for at most
    one slice (~0.2 ms) instead.
    """
    time.sleep(PAUSE)


class Workers:
    """A pool of `size_setting` threads at the lowest CPU priority, made on first use,
    whose queue is bounded: at most `queue_setting` jobs waiting or running, and
    WORK_QUEUE_PER_ADDRESS of them from one client address. Past either bound `run`
    raises `Busy` at once instead of queueing."""

    def __init__(self, name: str, size_setting: str, queue_setting: str) -> None:
        self.name = name
        self.size_setting = size_setting
        self.queue_setting = queue_setting
        self.executor: ThreadPoolExecutor | None = None
        self.admission = Admission()

    def full(self) -> bool:
        """Whether a job of the current frame's address would be refused now: lets a
        handler refuse before it spends anything else (a Redis round trip) on it."""
        limit = getattr(settings, self.queue_setting)
        return self.admission.full(work_owner.get(), limit, settings.WORK_QUEUE_PER_ADDRESS)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(
                max_workers=getattr(settings, self.size_setting),
                thread_name_prefix=self.name,
                initializer=_lower_priority,
            )
        owner = work_owner.get()
        limit = getattr(settings, self.queue_setting)
        if not self.admission.enter(owner, limit, settings.WORK_QUEUE_PER_ADDRESS):
            raise Busy(self.queue_setting if self.admission.total >= limit else "WORK_QUEUE_PER_ADDRESS")
        try:
            job = self.executor.submit(function, *args)
        except BaseException:
            self.admission.leave(owner)
            raise
        # Counted until the job has really ended (a cancelled waiter does not end a
        # job already running), or was cancelled before it started.
        job.add_done_callback(lambda _: self.admission.leave(owner))
        return await asyncio.wrap_future(job)


# Uploads and downloads: large-frame parsing, base64, sha256, AES-GCM, clamd, reading
# blobs (FILES_WORK_THREADS threads, FILES_WORK_QUEUE jobs).
file_work = Workers("file-work", "FILES_WORK_THREADS", "FILES_WORK_QUEUE")


def on_database_thread[R](function: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """`database_sync_to_async(function)`, on the same thread (so the same database
    connection), at about half its CPU a call: asgiref's copy of the caller's context
    into the thread and back, which no database call here reads, is left out (bench/
    README.md, issue 17). Old and broken connections are closed after each call, as
    Channels does (on PostgreSQL, CONN_MAX_AGE 0, that gives the connection back).

    Only where asgiref would use its one process-wide database thread (a server's
    loop, a test's): under a sync caller (`async_to_sync`) or a thread-sensitive
    context, the call goes through `database_sync_to_async` itself."""

    async def call(*args: Any, **kwargs: Any) -> R:
        if (
            getattr(AsyncToSync.executors, "current", None) is not None
            or SyncToAsync.thread_sensitive_context.get(None) is not None
            or asyncio.get_running_loop() in AsyncToSync.loop_thread_executors
        ):
            return await database_sync_to_async(function)(*args, **kwargs)
        return await asyncio.wrap_future(
            SyncToAsync.single_thread_executor.submit(_closing, function, args, kwargs)
        )

    return call


def _closing[R](function: Callable[..., R], args: tuple, kwargs: dict) -> R:
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()


class DatabaseWork:
    """The database thread (`on_database_thread`: one per process) for clients'
    requests, with a bounded queue: at most DATABASE_QUEUE such calls waiting or
    running in the process, past which `Busy`. Each connection has at most one at a
    time (frames are handled in turn), and its address's connections and request rates
    are bounded elsewhere, so the bound here is per process.

    They wait here, not in the thread's own first-come queue, and go to the thread one
    at a time: a batch of chat messages or of reactions (chat/batching.py), which does
    not come here and is never refused, then waits for at most one of them, not for a
    storm of joins. Leaving a room does not come here either."""

    def __init__(
        self, to_thread: Callable[[Callable[..., Any]], Callable[..., Any]] = on_database_thread
    ) -> None:
        self.to_thread = to_thread
        self.admission = Admission()
        # One turn per event loop (a server has one; tests make more).
        self.turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def turn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self.turns.get(loop)
        if lock is None:
            lock = self.turns[loop] = asyncio.Lock()
        return lock

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        call = self.to_thread(function)

        async def run(*args: Any, **kwargs: Any) -> Any:
            limit = settings.DATABASE_QUEUE
            if not self.admission.enter(None, limit, limit):
                raise Busy("DATABASE_QUEUE")
            try:
                async with self.turn():
                    return await call(*args, **kwargs)
            finally:
                self.admission.leave(None)

        return run


database = DatabaseWork()
