"""Batching under load: what arrives while a write is under way goes together in the
next write.

- Chat messages: those that arrive while the database thread is busy are stored in one
  crossing and one transaction (chat/sql.py `insert_messages`): group commit.
- Room events: those published while a channel-layer send is under way go in one layer
  message (chat/hub.py `publish`).

An item arriving when nothing is under way is written at once, alone; under load the
next batch forms while the current one is written, so a process does many more a second
and each item waits for at most one write ahead of it instead of a queue of single ones.
"""

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Awaits `write` over the items submitted meanwhile, at most `limit` at a time.

    `write` returns one result per item, in order; a result that is an exception is
    raised to that item's submitter alone. If `write` itself raises, every submitter of
    that batch gets the exception.
    """

    def __init__(
        self, write: Callable[[list[Item]], Awaitable[list[Result | Exception]]], limit: int
    ) -> None:
        self.write = write
        self.limit = limit
        self.pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self.task: asyncio.Task | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        if self.task is None:
            self.task = asyncio.create_task(self.drain())
        return await future

    async def drain(self) -> None:
        try:
            while self.pending:
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


# One batcher per event loop (one per server process; tests run several loops).
_message_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Batcher] = weakref.WeakKeyDictionary()


def message_writer() -> Batcher:
    """This event loop's batcher of chat messages (services.messages_post)."""
    from chat import services

    loop = asyncio.get_running_loop()
    writer = _message_writers.get(loop)
    if writer is None:
        # Looked up at each call, so a test can replace services.messages_post.
        write = database_sync_to_async(lambda batch: services.messages_post(batch))
        writer = Batcher(write, settings.CHAT_WRITE_BATCH)
        _message_writers[loop] = writer
    return writer
