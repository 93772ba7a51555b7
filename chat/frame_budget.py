"""Large incoming frames, bounded per client address and per process (issue 14).

A frame of up to WS_MAX_FRAME (14 MiB: an upload, or junk that size) costs the server
its bytes while it arrives, while it waits for the app and while the app handles it, and
the CPU to receive, parse and check it, whatever the answer. Per-connection limits do
not bound that: one address may open CONNECTIONS_PER_ADDRESS sockets. So a socket whose
incoming bytes pass LARGE_FRAME takes a slot, one of LARGE_FRAMES_PER_ADDRESS for its
address and one of LARGE_FRAMES_PER_PROCESS, and keeps it until the app asks for its next
frame; and the bytes of an address's large frames are paced to
LARGE_FRAME_BYTES_PER_MINUTE (a burst of two whole frames first). A socket that must
wait is not read meanwhile: the sender's TCP window fills and its frame simply takes
longer, nothing is refused and its frames keep their order. Small frames (chat) never
wait. `manage.py serve` reads through `BudgetedWebSocket`; `runserver` (daphne, for
development) does not (docs/protocol-notes.md, "Large frames wait their turn").

A slot held by a frame that arrives slowly would keep every other upload of the process
waiting for as long as its sender likes: while a socket waits for a process slot, the
slowest holder whose frame has been read for LARGE_FRAME_GRACE_SECONDS at under
LARGE_FRAME_MIN_BYTES_PER_SECOND (time spent waiting on the budget not counted) is closed
with 1013, try again later, and its slot goes to the oldest waiting socket. With no one
waiting, a slow upload takes what time it needs.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import State

from chat import oplog
from chat.lean_async import EventQueue, Flag
from chat.outbox import WRITABLE, WRITE_NOW

# Bytes past which a socket's incoming data is a large frame: above any chat frame.
LARGE_FRAME = 256 * 1024
# Seconds a paced socket waits at least, so that it reads in steps, not a read at a time.
PACE_STEP = 0.25
# Seconds between looks for a slow holder while sockets wait for a process slot.
SLOW_CHECK = 1.0
# Addresses whose pace is remembered before those that have refilled are dropped.
MAX_PACES = 4096
# What a handshake request's headers become once read (`BudgetedWebSocket.handle_connect`).
FORGOTTEN = Headers()


class Reader:
    """The budget's view of one socket: its address, whether it holds a slot, how to
    stop and restart reading it and to close it, and how fast its large frame arrives."""

    def __init__(
        self,
        address: str,
        pause: Callable[[], None],
        resume: Callable[[], None],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.address, self.pause, self.resume, self.close = address, pause, resume, close
        self.slot = False
        # The large frame arriving now: its bytes, and the seconds it was read (not
        # waiting on the budget), counted up to `reading_since` while it is read.
        self.arriving = False
        self.frame_bytes = 0
        self.read_seconds = 0.0
        self.reading_since: float | None = None

    def rate(self, now: float) -> tuple[float, float]:
        """Seconds this frame has been read, and its bytes a second over them."""
        seconds = self.read_seconds + (now - self.reading_since if self.reading_since is not None else 0.0)
        return seconds, self.frame_bytes / seconds if seconds > 0 else float("inf")


class Pace:
    """Bytes an address may still send in large frames now: `burst` at most, refilled
    at `rate` a second, negative after a frame that took more than was there."""

    def __init__(self, burst: float, now: float) -> None:
        self.tokens, self.stamp = burst, now

    def refill(self, now: float, rate: float, burst: float) -> float:
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        return self.tokens


class FrameBudget:
    """Slots and pace for large frames; plain logic, driven by `BudgetedWebSocket`.

    `take(reader, nbytes)` is called with the bytes of each read once the socket's
    frame is large, and says whether reading may go on; when it may not, the reader is
    paused and resumed by the budget once its turn comes (FIFO). `done(reader)` gives
    the slot back when the app has handled the frame, and stops the socket waiting;
    `forget` when the socket closes."""

    def __init__(
        self,
        *,
        per_address: int,
        per_process: int,
        bytes_per_minute: int,
        burst: int,
        min_rate: float = 0,
        grace: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
    ) -> None:
        self.per_address, self.per_process = per_address, per_process
        self.rate, self.burst = bytes_per_minute / 60, burst
        self.min_rate, self.grace = min_rate, grace
        self.clock = clock
        self.call_later = call_later or (lambda delay, f: asyncio.get_running_loop().call_later(delay, f))
        self.slots: dict[str, int] = {}  # address -> slots held
        self.holders: dict[Reader, None] = {}
        self.paces: dict[str, Pace] = {}
        self.waiting: dict[Reader, None] = {}  # paused readers, oldest first
        self.timer: Any = None
        self.slow_timer: Any = None

    @property
    def held(self) -> int:
        """Slots held in the process."""
        return len(self.holders)

    def take(self, reader: Reader, nbytes: int) -> bool:
        if reader in self.waiting:  # bytes read before the pause took effect
            self._charge(reader.address, nbytes)
            reader.frame_bytes += nbytes
            return False
        self._arrived(reader, nbytes)  # its clock starts now, or once it has a slot
        if not reader.slot and not self._free_slot(reader.address):
            return self._wait(reader, nbytes)
        self._hold(reader)
        if self._charge(reader.address, nbytes) < 0:
            return self._wait(reader, 0)
        return True

    def next_frame(self, reader: Reader) -> None:
        """The app asks for its next frame while a large part of it is in already: it
        arrives from now (its slot kept), judged as any other."""
        if reader.slot and not reader.arriving and reader not in self.waiting:
            self._arrived(reader, 0)

    def frame_in(self, reader: Reader) -> None:
        """The frame is all in (handed to the app): its sender is done and is never
        judged slow for the time the app takes; the slot is held until `done`."""
        reader.arriving, reader.reading_since = False, None

    def done(self, reader: Reader) -> None:
        # The read that paused a socket is still parsed, and may have ended its frame:
        # handled, nothing large is pending, so it reads on (resumed later it would take
        # a slot for nothing, and keep it while idle).
        if reader in self.waiting:
            del self.waiting[reader]
            reader.resume()
        self.release(reader)

    def release(self, reader: Reader) -> None:
        """Give the slot back, the socket's pace unchanged (it may be waiting for it)."""
        self.frame_in(reader)
        if reader.slot:
            reader.slot = False
            del self.holders[reader]
            left = self.slots[reader.address] - 1
            if left:
                self.slots[reader.address] = left
            else:
                del self.slots[reader.address]
            self._pump()

    def forget(self, reader: Reader) -> None:
        self.waiting.pop(reader, None)
        self.done(reader)

    # --- Inside -------------------------------------------------------------------

    def _free_slot(self, address: str) -> bool:
        return self.held < self.per_process and self.slots.get(address, 0) < self.per_address

    def _hold(self, reader: Reader) -> None:
        if not reader.slot:
            reader.slot = True
            self.holders[reader] = None
            self.slots[reader.address] = self.slots.get(reader.address, 0) + 1

    def _arrived(self, reader: Reader, nbytes: int) -> None:
        if not reader.arriving:
            reader.arriving, reader.frame_bytes, reader.read_seconds = True, 0, 0.0
            reader.reading_since = self.clock()
        reader.frame_bytes += nbytes

    def _tokens(self, address: str) -> float:
        pace = self.paces.get(address)
        if pace is None:
            return self.burst
        tokens = pace.refill(self.clock(), self.rate, self.burst)
        if tokens >= self.burst and address not in self.slots:
            del self.paces[address]  # full again: nothing to remember
        return tokens

    def _charge(self, address: str, nbytes: int) -> float:
        tokens = self._tokens(address) - nbytes
        if address not in self.paces:
            if len(self.paces) >= MAX_PACES:  # many addresses: drop those full again
                for other in list(self.paces):
                    self._tokens(other)
            self.paces[address] = Pace(self.burst, self.clock())
        self.paces[address].tokens = tokens
        return tokens

    def _wait(self, reader: Reader, owed: int) -> bool:
        if owed:
            self._charge(reader.address, owed)
        if reader.reading_since is not None:  # waiting on the budget is not its sender's time
            reader.read_seconds += self.clock() - reader.reading_since
            reader.reading_since = None
        self.waiting[reader] = None
        reader.pause()
        self._pump()
        return False

    def _pump(self) -> None:
        """Resume, oldest first, every waiting reader whose address has pace left and
        that holds a slot or finds one free; wake again when the next pace is back."""
        soonest = None
        for reader in list(self.waiting):
            tokens = self._tokens(reader.address)
            if tokens < 0:
                soonest = min(soonest or float("inf"), -tokens / self.rate)
            elif reader.slot or self._free_slot(reader.address):
                self._hold(reader)
                del self.waiting[reader]
                if reader.arriving:
                    reader.reading_since = self.clock()
                reader.resume()
        if soonest is not None and self.timer is None:
            self.timer = self.call_later(max(soonest, PACE_STEP), self._wake)
        if self.min_rate and self.slow_timer is None and self._process_full():
            self._close_slowest()

    def _wake(self) -> None:
        self.timer = None
        self._pump()

    def _process_full(self) -> bool:
        """A socket waits for a process slot alone: its address has pace and slots left."""
        return self.held >= self.per_process and any(
            not reader.slot
            and self.slots.get(reader.address, 0) < self.per_address
            and self._tokens(reader.address) >= 0
            for reader in self.waiting
        )

    def _close_slowest(self) -> None:
        """Close the slowest holder under the minimum rate once read for the grace, and
        give its slot to the waiting; else look again in a while."""
        now = self.clock()
        slowest, lowest = None, self.min_rate
        for reader in self.holders:
            if reader.reading_since is None:
                continue  # waiting on the budget, or all in
            seconds, rate = reader.rate(now)
            if seconds >= self.grace and rate < lowest:
                slowest, lowest = reader, rate
        if slowest is None:
            self.slow_timer = self.call_later(SLOW_CHECK, self._look_again)
            return
        slowest.close()
        self.release(slowest)

    def _look_again(self) -> None:
        self.slow_timer = None
        self._pump()


_budget: FrameBudget | None = None


def budget() -> FrameBudget:
    """This process's budget, from settings, made on first use."""
    global _budget
    if _budget is None:
        _budget = FrameBudget(
            per_address=settings.LARGE_FRAMES_PER_ADDRESS,
            per_process=settings.LARGE_FRAMES_PER_PROCESS,
            bytes_per_minute=settings.LARGE_FRAME_BYTES_PER_MINUTE,
            burst=2 * settings.WS_MAX_FRAME,
            min_rate=settings.LARGE_FRAME_MIN_BYTES_PER_SECOND,
            grace=settings.LARGE_FRAME_GRACE_SECONDS,
        )
    return _budget


class BudgetedWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, reading large frames within `budget()`.

    The socket's bytes count from the first read after the app last asked for a frame
    with nothing left over; a frame that is still arriving, queued for the app or being
    handled holds its slot until the app asks for the next one. Reading stops when
    uvicorn's queue is full (its own pause) or the budget says wait (this one)."""

    reader: Reader | None = None
    arrived = 0  # bytes read since the socket last had nothing pending
    charged = False  # whether those bytes count against the budget yet
    budget_paused = False
    budget_resumed_at = float("-inf")
    app_waiting = False  # the app asked for its next frame and has none yet
    # Called once when the connection ends: its place in chat/http_guard.py's count.
    on_lost: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same queue and flow-control flag without asyncio's deques (chat/lean_async.py).
        self.queue = EventQueue()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.arrived += len(data)
        if self.arrived > LARGE_FRAME and not self.close_sent and (reader := self.reader or self._reader()):
            # Charged once each: every byte so far when the frame turns large, then each read.
            budget().take(reader, len(data) if self.charged else self.arrived)
            self.charged = True
        super().data_received(data)

    async def receive(self) -> Any:
        # The app asks for its next frame: the one before is handled.
        if self.queue.empty() and not self.frames:
            self.arrived = len(self.conn.reader.buffer)
            if self.arrived <= LARGE_FRAME:
                self.charged = False
                if self.reader is not None:
                    budget().done(self.reader)
            elif self.reader is not None:
                budget().next_frame(self.reader)
        self.app_waiting = True
        try:
            message = await self.queue.get()
        finally:
            self.app_waiting = False
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self.budget_paused:
                self.transport.resume_reading()
        return message

    def send_receive_event_to_app(self) -> None:
        if self.reader is not None:
            budget().frame_in(self.reader)
        super().send_receive_event_to_app()

    # A pong goes out at once only while the peer reads: uvicorn wrote one for every ping,
    # whatever the socket's write buffer held, and a socket that pinged without reading
    # grew the server by 72 MiB in 22 s. Past the buffer's high-water mark the latest
    # ping's pong is kept, one at most, and written once the buffer drains (RFC 6455,
    # 5.5.3, lets an endpoint answer only the latest of its pings): a client whose ping
    # came while it was slow to read a large reply still gets its answer in time.
    owed_pong = b""

    def handle_ping(self) -> None:
        output = b"".join(self.conn.data_to_send())
        if self.writable.is_set() or self.conn.state is not State.OPEN:  # a close reply goes out
            self.transport.write(output)
        else:
            self.owed_pong = output
        self._control_handled()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.owed_pong and not (self.close_sent or self.disconnected):
            self.owed_pong, owed = b"", self.owed_pong
            self.transport.write(owed)

    def handle_pong(self, event: Frame) -> None:
        super().handle_pong(event)
        self._control_handled()

    def _control_handled(self) -> None:
        """Pings and pongs never reach the app, which then asks for no next frame: with
        nothing else pending, the slot their bytes took is given back here, else pings
        alone held a large frame's slot for good (sixteen such sockets and every upload
        of the process waited); and a socket waiting in line for one leaves the line, else
        the slot it was given later went to a frame that never came, never judged slow.
        Their bytes still count toward the address's pace."""
        pending = not self.queue.empty() or self.frames or len(self.conn.reader.buffer) > LARGE_FRAME
        if self.app_waiting and not pending and self.reader is not None:
            budget().done(self.reader)

    # websockets' parser keeps the last frame it parsed until the next one comes, and
    # an idle socket's next may never come: drop each frame's bytes once uvicorn has
    # taken them (an idle socket held its last 14 MiB upload twice over, with Channels).
    def handle_text(self, event: Frame) -> None:
        super().handle_text(event)
        event.data = b""

    def handle_bytes(self, event: Frame) -> None:
        super().handle_bytes(event)
        event.data = b""

    def handle_cont(self, event: Frame) -> None:
        super().handle_cont(event)
        event.data = b""

    async def run_asgi(self) -> None:
        self.scope["extensions"] = {
            **self.scope.get("extensions", {}),
            WRITE_NOW: self.write_now,
            WRITABLE: self.writable.wait,
        }
        await super().run_asgi()

    # uvicorn keeps the handshake's request and response for the socket's life, and
    # websockets' parser keeps the request too (a local of its generator), though
    # neither reads them once the response is sent; and the scope keeps the request's
    # headers, which the app reads only before it accepts (the Origin, the session
    # cookie, the proxy's address). Together about 3 KiB of each idle socket, more with
    # a browser's cookies (bench/README.md, idle memory): forgotten once used.
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        self.request = None
        event.headers = FORGOTTEN  # the scope has its own copy, as bytes

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and self.close_sent:
            # A refused handshake's status is on the wire (chat.security's 404 and 429):
            # done, as uvicorn's wsproto protocol marks it. Else uvicorn logged "ASGI
            # callable returned without completing handshake." at ERROR for each one
            # (Kludex/uvicorn pull request 3138).
            self.handshake_complete = True
        if self.response is not None and self.handshake_complete:
            self.response = None
            # Accepted (or refused): the app has read what it needed of the headers.
            # The list is cleared in place, as every copy of the scope shares it.
            self.scope["headers"].clear()

    def write_now(self, text: str, frame: bytes | None = None) -> bool:
        """Write a text frame at once if the socket takes it without waiting, as the
        ASGI send would (chat/outbox.py); False when it would wait (the write buffer is
        past its high-water mark) or cannot write (closing, gone): then use send.
        `frame`: the frame already serialized (`outbox.text_frame`, once for every
        socket of a room), written as it is where no extension transforms frames."""
        if not (self.handshake_complete and self.writable.is_set()) or self.close_sent or self.disconnected:
            return False
        if frame is not None and not self.conn.extensions and self.conn.state is State.OPEN:
            self.transport.write(frame)
            return True
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def keepalive_timeout(self) -> None:
        # The pong may wait unread behind a frame the budget holds: give it its time
        # again from when reading resumed, rather than close a socket told to wait.
        if self.budget_paused or self.loop.time() - self.budget_resumed_at < self.ping_timeout:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        super().keepalive_timeout()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reader is not None:
            budget().forget(self.reader)
        if self.on_lost is not None:
            self.on_lost, on_lost = None, self.on_lost
            on_lost()
        super().connection_lost(exc)

    def _reader(self) -> Reader | None:
        client = getattr(self, "scope", {}).get("client") or self.client
        if not client:
            return None  # no address to count against (a Unix socket)
        self.reader = Reader(client[0], self._budget_pause, self._budget_resume, self._too_slow)
        return self.reader

    def _budget_pause(self) -> None:
        self.budget_paused = True
        self.transport.pause_reading()

    def _too_slow(self) -> None:
        """Closed for the others waiting: 1013, try again later (the clients reconnect).
        Failed, not closed: what it sent of its frame is dropped at once, not kept until
        its close handshake ends; and aborted after `close_timeout` if the close frame
        cannot be written (a peer that does not read kept it, and its bytes, for good)."""
        if self.close_sent or self.disconnected:
            return
        oplog.event("large_frame_too_slow", client=self.reader.address if self.reader else "")
        reason = "Upload too slow while others wait; try again"
        self.conn.fail(1013, reason)
        self.frames = []
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1013, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def _budget_resume(self) -> None:
        self.budget_paused = False
        self.budget_resumed_at = self.loop.time()
        if not self.read_paused and not self.disconnected:
            self.transport.resume_reading()
