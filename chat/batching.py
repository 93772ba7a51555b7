"""Batching under load: what arrives while a write is under way goes together in the
next write.

- Chat messages: those that arrive while the database thread is busy, or within
  CHAT_WRITE_INTERVAL of the last write's start, are stored in one crossing and one
  transaction (chat/sql.py `insert_messages`): group commit.
- Reactions: likewise, in a transaction of their own (chat/services.py
  `messages_react`), each still taking its room's next sequence number.
- Room events: those published while a channel-layer send is under way go in one layer
  message (chat/hub.py `publish`).

An item arriving when nothing is under way is written at once, alone; under load the
next batch forms while the current one is written, so a process does many more a second
and each item waits for at most one write ahead of it instead of a queue of single ones.

`Batcher` and `PerLoop` are the generic part; `post_message` is the one way a client's
chat message is stored, `post_reaction` the one way its reaction is.
"""

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings

from chat.sql import NewMessage
from chat.workers import on_database_thread

if TYPE_CHECKING:
    from chat.services import Seat


class Batcher[Item, Result]:
    """Awaits `write` over the items submitted meanwhile, at most `limit` at a time,
    starting writes at least `interval` seconds apart: an item that finds the last write
    started longer ago is written at once, and under load each write takes what came in
    the interval (fewer, larger writes: each costs a thread hop and a commit).

    `write` returns one result per item, in order; a result that is an exception is
    raised to that item's submitter alone. If `write` itself raises, every submitter of
    that batch gets the exception.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[Result | Exception]]],
        limit: int,
        interval: float = 0.0,
    ) -> None:
        self.write = write
        self.limit = limit
        self.interval = interval
        self.started = float("-inf")  # when the last write started (the loop's clock)
        self.pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self.task: asyncio.Task | None = None

    async def submit(self, item: Item) -> Result:
        return await self._queue(item)

    async def submit_all(self, items: list[Item]) -> list[Result]:
        """Submit the items in order, all before anything submitted after this call."""
        return list(await asyncio.gather(*[self._queue(item) for item in items]))

    def _queue(self, item: Item) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        if self.task is None:
            self.task = asyncio.create_task(self.drain())
        return future

    async def drain(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self.pending:
                wait = self.started + self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.started = loop.time()
                batch, self.pending = self.pending[: self.limit], self.pending[self.limit :]
                try:
                    results = await self.write([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to each submitter
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its submitter was cancelled; the item is stored
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.task = None


class PerLoop[Made]:
    """One `make()` per event loop, made on first use: a server process has one loop;
    tests, and sync callers through async_to_sync (the admin, purge_files), make more."""

    def __init__(self, make: Callable[[], Made]) -> None:
        self.make = make
        self.made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Made] = weakref.WeakKeyDictionary()

    def get(self) -> Made:
        loop = asyncio.get_running_loop()
        found = self.made.get(loop)
        if found is None:
            found = self.made[loop] = self.make()
        return found


class PerLoopBatcher[Item, Result](PerLoop[Batcher[Item, Result]]):
    """A `Batcher` per event loop: what a process submits to from anywhere."""

    async def submit(self, item: Item) -> Result:
        return await self.get().submit(item)

    async def submit_all(self, items: list[Item]) -> list[Result]:
        return await self.get().submit_all(items)


def _database_batcher(write: str) -> PerLoopBatcher:
    """Group commit on the database thread of `services.<write>` (looked up at each
    call, so that a test can replace it)."""

    def run(batch: list) -> list:
        from chat import services

        return getattr(services, write)(batch)

    return PerLoopBatcher(
        lambda: Batcher(on_database_thread(run), settings.CHAT_WRITE_BATCH, settings.CHAT_WRITE_INTERVAL)
    )


# This process's batcher of chat messages (services.messages_post).
message_writer = _database_batcher("messages_post")
# This process's batcher of reactions (services.messages_react): batched as messages are,
# in transactions of their own.
reaction_writer = _database_batcher("messages_react")


async def post_message(
    seat: "Seat", content: str, now: datetime, reply_to: int | None = None
) -> tuple[int, int]:
    """Store a client's chat message, group-committed with the others that arrive while
    the database thread is busy; its (id, room sequence number), or the error
    `services.message_post` would raise (`room_closed`, `SeatGone`, `message_not_found`)."""
    message = NewMessage(seat.room_id, seat.name, content, now, seat.participant_id, reply_to)
    return await message_writer.submit(message)


async def post_reaction(seat: "Seat", message_id: int, emoji: str, on: bool) -> tuple[int, list[dict]]:
    """Add (`on`) or take back a client's reaction, group-committed with the others that
    arrive while the database thread is busy; its room sequence number and the message's
    whole reaction state, or the error `services.message_react` would raise (`SeatGone`,
    `room_closed`, `message_not_found`, `quota_exceeded`)."""
    from chat.services import Reacting

    return await reaction_writer.submit(Reacting(seat, message_id, emoji, on))
