"""asyncio's Queue and Event as one socket uses them, without their deques.

Each `collections.deque` takes a block of 64 slots when it is made (about 630 bytes),
used or not. uvicorn gives every WebSocket an `asyncio.Queue` (three deques and an
Event, which holds a fourth) and an `asyncio.Event` for its write flow control (a
fifth): about 3.5 KiB of each idle socket, a seventh of all it costs (bench/README.md,
"Idle memory"). These hold a list that is empty, and takes no block, while nothing
waits. `BudgetedWebSocket` (chat/frame_budget.py) puts them in place of uvicorn's.
"""

import asyncio
from typing import Any


class EventQueue:
    """The ASGI events waiting for a socket's app: `put_nowait`, `get`, `empty` and
    `qsize` as in `asyncio.Queue`, unbounded (uvicorn bounds it by pausing reads)."""

    __slots__ = ("items", "head", "getters")

    def __init__(self) -> None:
        # Items from `head` on wait; those before it were taken. One read of the socket
        # can queue thousands of small frames: taking from the front stays O(1).
        self.items: list[Any] = []
        self.head = 0
        self.getters: list[asyncio.Future[None]] = []

    def put_nowait(self, item: Any) -> None:
        self.items.append(item)
        # Every reader is woken and looks again: a woken reader cancelled meanwhile
        # then cannot swallow the wake-up meant for another.
        for getter in self.getters:
            if not getter.done():
                getter.set_result(None)

    async def get(self) -> Any:
        while self.empty():
            getter = asyncio.get_running_loop().create_future()
            self.getters.append(getter)
            try:
                await getter
            finally:
                self.getters.remove(getter)
        item, self.items[self.head] = self.items[self.head], None
        self.head += 1
        if self.head == len(self.items):
            self.items.clear()
            self.head = 0
        return item

    def empty(self) -> bool:
        return self.head == len(self.items)

    def qsize(self) -> int:
        return len(self.items) - self.head


class Flag:
    """`asyncio.Event`'s `set`, `clear`, `is_set` and `wait`."""

    __slots__ = ("value", "waiters")

    def __init__(self, value: bool = False) -> None:
        self.value = value
        self.waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        if not self.value:
            self.value = True
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self.value = False

    async def wait(self) -> bool:
        if self.value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self.waiters.remove(waiter)
