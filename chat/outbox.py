"""Every frame a socket is sent, replies and broadcasts alike, goes through its `Outbox`:
a queue written by one task, so a socket sees frames in the order they were queued,
and a socket that stops reading cannot hold up anyone else: past WS_SEND_QUEUE_LIMIT
frames or WS_SEND_QUEUE_BYTES bytes it is closed with 4002. The bytes waiting for
all sockets of one client address are counted too (`backlogs`), for the large replies
that wait for them (chat/actions.py, `ready_for_large_reply`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

from django.conf import settings
from websockets.frames import Frame, Opcode

from chat.errors import CloseCode

logger = logging.getLogger(__name__)


def frame_size(text: str) -> int:
    """The UTF-8 bytes of a frame (ASCII, nearly every frame, is counted in O(1))."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


# The ASGI scope extension under which `manage.py serve`'s WebSocket protocol
# (chat/frame_budget.py) offers `write_now(text, frame) -> bool`: the frame written to the
# socket at once when it takes it without waiting, else False.
WRITE_NOW = "chat.write_now"
# ... and `writable() -> Awaitable`: returns once the socket's write buffer is below its
# low-water mark (what was written has left, but for the last few kilobytes).
WRITABLE = "chat.writable"


# (The server's frames are never masked: one serialized frame serves every socket.)
def text_frame(text: str) -> bytes:
    """A server text frame as `write_now` writes it, serialized by websockets."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


# Seconds a joiner's snapshot filters room events (`Outbox.keep_stale`): far longer than
# an event takes from its commit to the sockets, even through Redis.
STALE_WINDOW = 60.0

# Frames up to this size may be written at once; larger replies (History, files) always
# go through the queue, where the address's backlog counts them (`backlogs`).
WRITE_NOW_MAX = 16 * 1024


# Bytes waiting in the outboxes of each client address's sockets in this process, with
# the last frame each wrote (it may still sit in the server's write buffer): a large
# reply is built for a socket only while its address's total is under
# WS_SEND_QUEUE_BYTES (chat.actions), so one address's sockets that do not read hold
# about that much in all, not one large reply each.
backlogs: dict[str, int] = {}
# Their sum: every address's (WS_SEND_QUEUE_BYTES_PER_PROCESS).
backlog_total = 0


def address_backlog(owner: str | None) -> int:
    return backlogs.get(owner, 0) if owner is not None else 0


def add_backlog(owner: str | None, size: int) -> None:
    """Add `size` (negative: remove) to the bytes counted for `owner`, a client address."""
    global backlog_total
    if owner is not None and size:
        had = backlogs.get(owner, 0)
        left = had + size
        if left > 0:
            backlogs[owner] = left
        else:
            backlogs.pop(owner, None)
        backlog_total += max(left, 0) - had


def large_reply_fits(owner: str | None, size: int) -> bool:
    """Whether a large reply of `size` bytes may be built for a socket of `owner`: its
    address's bytes with it stay under WS_SEND_QUEUE_BYTES, or nothing else waits (one
    reply alone always passes). WebSocket large replies and `/files/<id>` downloads."""
    backlog = address_backlog(owner)
    return not backlog or backlog + size <= settings.WS_SEND_QUEUE_BYTES


def over_backlog(owner: str | None, size: int) -> bool:
    """Whether `size` more bytes would take the address's sockets past
    WS_SEND_QUEUE_BYTES_PER_ADDRESS or this process's past WS_SEND_QUEUE_BYTES_PER_PROCESS:
    a socket's own limit alone let one address hold it in every room it joined."""
    return (
        address_backlog(owner) + size > settings.WS_SEND_QUEUE_BYTES_PER_ADDRESS
        or backlog_total + size > settings.WS_SEND_QUEUE_BYTES_PER_PROCESS
    )


class Ids:
    """Ids unique across processes: outbox ids name a socket in its participant's row
    and in a kick's event, which every process of the room sees; a quota's claims
    (chat/address_limits.py) are named in Redis. A random prefix per process (a forked
    child takes a new one) and a counter: uuid4 per socket was 3 % of a join's CPU
    (bench/README.md, joins), and os.urandom lets go of the GIL, which the event loop
    may then wait for while the database thread holds it."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = uuid.uuid4().hex
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}.{next(self.counter)}"


ids = Ids()


class Outbox:
    """The frames waiting for one socket, in order, and the task that writes them.

    With `write_now` (under `manage.py serve`), a small frame that finds nothing waiting
    is written to the socket at once, without waking the writer task: the common case
    of a broadcast to a socket that keeps up, which the profile of many rooms showed as
    a fifth of the event loop's time. A socket that does not keep up stops taking
    frames at once (its write buffer passed the server's high-water mark), and from
    then on they queue, under the limits below, as they always did.

    The writer task and the queue exist only while frames wait: an idle socket holds
    neither (each cost about a kilobyte per socket; bench/README.md, idle memory)."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
        owner: str | None = None,
        write_now: Callable[[str, bytes | None], bool] | None = None,
        writable: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.send = send
        self.write_now = write_now
        self.writable = writable
        self.close = close
        # The client address whose backlog this socket's bytes count toward (`backlogs`).
        self.owner = owner
        self.id = ids.next()
        self.frames: deque[str | int] = EMPTY
        self.held: list[dict] | None = None
        # Drops room events the socket's join snapshot already showed (`keep_stale`).
        self.stale: Callable[[dict], bool] | None = None
        self.stale_until = 0.0
        self.limit = settings.WS_SEND_QUEUE_LIMIT
        self.byte_limit = settings.WS_SEND_QUEUE_BYTES
        # Bytes of the frames waiting and of the one being written (`frame_size`), and
        # of the last one written, which may still sit in the server's buffer (`_write`).
        self.bytes = 0
        self.unconfirmed = 0
        # The close code once a close is queued: the socket's frames are then ignored.
        self.closing: int | None = None
        # The writer, while frames wait or one is being written; `ended` once it closed
        # the socket, failed or was stopped: nothing is written after that.
        self.task: asyncio.Task | None = None
        self.ended = False
        # Those waiting in `drained` until the writer is done.
        self.waiters: list[asyncio.Future[None]] = []

    def put(self, text: str, frame: bytes | None = None) -> None:
        """Queue a frame; a socket that lets its backlog pass either limit (frames,
        bytes), or its address's or the process's bytes (`over_backlog`), is closed. A
        frame alone in the queue is always let through, so that a byte limit set below
        one big reply does not close every socket that asks for it.
        `frame`: `text` serialized already (`text_frame`), for a write at once."""
        if self.ended:
            return  # the writer has ended (closed, or the socket went away)
        size = frame_size(text)
        if (
            self.write_now is not None
            and size <= WRITE_NOW_MAX
            and self.task is None  # nothing queued or being written: the order holds
            and self.closing is None
            and self.write_now(text, frame)
        ):
            return
        if len(self.frames) >= self.limit or (
            self.bytes and (self.bytes + size > self.byte_limit or over_backlog(self.owner, size))
        ):
            self.frames.clear()
            self.drop_waiting()
            self.put_close(CloseCode.TOO_SLOW)
            return
        self.queue(text)
        self.bytes += size
        self.count(size)

    def queue(self, item: str | int) -> None:
        """Append to the frames waiting, and start the writer if it is not running."""
        if self.frames is EMPTY:
            self.frames = deque()
        self.frames.append(item)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._write())

    def put_broadcast(self, event: dict, frame: bytes | None = None) -> None:
        """Room events wait while the socket is joining (see `hold`). `frame`: the
        event's text serialized once for all the room's sockets (`text_frame`)."""
        if self.held is not None:
            self.held.append(event)
        elif not self.is_stale(event):
            if event["text"]:
                self.put(event["text"], frame)
            if event.get("then"):
                self.put(event["then"])
            if event.get("close"):
                # An admin closed the room (4000) or removed this participant (4001).
                self.put_close(event["close"])

    def put_close(self, code: int) -> None:
        """Close the socket once every frame queued before has been written."""
        if self.ended:
            return
        if self.closing is None:
            self.closing = code
        self.queue(code)

    def hold(self) -> None:
        """Hold room events until `release`: a joiner gets RoomJoined and History first."""
        self.held = []

    def release(self, stale: Callable[[dict], bool] | None = None) -> None:
        """Send the held events, and from now on every room event, unless `stale`
        says the joiner's snapshot already showed it."""
        held, self.held = self.held or [], None
        self.keep_stale(stale)
        for event in held:
            self.put_broadcast(event)

    def keep_stale(self, stale: Callable[[dict], bool] | None) -> None:
        """Drop the room events `stale` says the join snapshot showed, for STALE_WINDOW
        seconds: only events that raced the join can be stale. Past the window the
        next event lets the snapshot go (it lists every member present at the join:
        kept for the socket's life, a room's members held its size squared between
        them)."""
        self.stale = stale
        self.stale_until = time.monotonic() + STALE_WINDOW if stale is not None else 0.0

    def is_stale(self, event: dict) -> bool:
        if self.stale is None:
            return False
        if time.monotonic() > self.stale_until:
            self.stale = None
            return False
        return self.stale(event)

    def stop(self) -> None:
        """Nothing more is written; what waits is dropped."""
        self.stale = None
        if self.task is not None:
            self.task.cancel()  # a writer that had not started yet never runs its finally
        self.end()
        self.writer_done()

    def drop_waiting(self) -> None:
        self.count(-self.bytes)
        self.bytes = 0

    def count(self, size: int) -> None:
        """Add `size` (negative: remove) to the bytes of this socket's address (`backlogs`)."""
        add_backlog(self.owner, size)

    def backed_up(self) -> bool:
        """Whether anything waits to be written, or is being written, to the socket."""
        return self.task is not None

    async def drained(self) -> None:
        """Wait until every queued frame has been written (or the socket is gone):
        one big frame at a time then waits for the client to read the last one."""
        if self.task is not None:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter

    async def _write(self) -> None:
        try:
            while self.frames:
                frame = self.frames.popleft()
                if isinstance(frame, int):
                    self.end()  # the address's count is released at the close, not at the disconnect
                    await self.close(frame)
                    return
                await self.send(frame)
                # The server's send waits until the socket took what was written
                # before, so the previous frame has left this process now; this one
                # may sit in the server's write buffer until the next send returns.
                written = min(self.bytes, frame_size(frame))
                self.bytes -= written
                self.count(-self.unconfirmed)
                self.unconfirmed = written
                frame = None  # not held while the writer waits for the next one
                if not self.frames and self.unconfirmed and self.writable is not None:
                    # The last one: counted until the client has read it, not until the
                    # next frame that may never come (an address's sockets that had read
                    # everything were refused large replies; `ready_for_large_reply`).
                    await self.writable()
                    self.count(-self.unconfirmed)
                    self.unconfirmed = 0
        except asyncio.CancelledError:
            self.end()
            raise
        except Exception:
            # The socket went away mid-write; its disconnect handler cleans up.
            logger.debug("outbox: write failed", exc_info=True)
            self.end()
        finally:
            self.writer_done()

    def writer_done(self) -> None:
        """No writer runs any more: those waiting in `drained` go on."""
        self.task = None
        self.frames = EMPTY
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters = []

    def end(self) -> None:
        """Nothing more is written: what waits is dropped (`writer_done` empties the
        queue), and no longer counted."""
        self.ended = True
        self.drop_waiting()
        self.count(-self.unconfirmed)
        self.unconfirmed = 0


# The queue of every outbox with nothing waiting (never appended to: `Outbox.queue`
# makes a socket its own first).
EMPTY: deque[str | int] = deque(maxlen=0)
