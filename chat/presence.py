"""Presence that survives crashed processes: a heartbeat per process, and a sweep.

A process that dies without closing its sockets never runs `disconnect()`. Every
process therefore refreshes `last_seen` of the participants whose sockets it holds
every PRESENCE_HEARTBEAT seconds and, in the same beat, marks participants whose
`last_seen` is older than PRESENCE_TIMEOUT as left and tells their rooms.
`Members` already hides anyone older than the timeout, so a ghost is gone from
`Members` within PRESENCE_TIMEOUT + PRESENCE_HEARTBEAT seconds (60 s by default).
"""

import asyncio
import logging
import time
import uuid

from django.conf import settings
from django.utils import timezone

from chat import protocol, services
from chat.errors import CloseCode
from chat.hub import hub, publish_all, room_event
from chat.workers import on_database_thread

logger = logging.getLogger(__name__)

# One id per server process, recorded with each participant (which process holds it).
PROCESS_ID = uuid.uuid4().hex


class LiveSeats(dict[int, set[str]]):
    """Participants whose sockets this process holds now, each with those sockets'
    outbox ids: only these are kept fresh, so a row whose leave could not be written
    (database down) ages out like a ghost. A participant that resumed on a second socket
    here (PROTOCOL.md, Conversations) is held by both until the first one's close."""

    def add(self, participant_id: int, outbox_id: str) -> None:
        self.setdefault(participant_id, set()).add(outbox_id)

    def discard(self, participant_id: int, outbox_id: str | None = None) -> None:
        """That socket no longer holds the participant (None: no socket here does)."""
        held = self.get(participant_id, set())
        if outbox_id is None:
            held.clear()
        held.discard(outbox_id or "")
        if not held:
            self.pop(participant_id, None)


live_seats = LiveSeats()

_connections = 0
_task: asyncio.Task | None = None
# Since when (`clock`) this process's heartbeats have been succeeding without a break.
_beating_since: float | None = None
# The clock the sweep's guard reads (tests put their own in its place).
clock = time.monotonic


def connection_opened() -> None:
    """Called when a socket is accepted: the beat runs while this process has any."""
    global _connections, _task
    _connections += 1
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_beat_forever())


def connection_closed() -> None:
    """The last socket closing stops the beat: a break in the beats, so the sweep waits
    again from the next first beat (`beat_once`)."""
    global _connections, _task, _beating_since
    _connections = max(0, _connections - 1)
    if _connections == 0 and _task is not None and _task.get_loop() is asyncio.get_running_loop():
        _task.cancel()
        _task = None
        _beating_since = None


async def beat_once() -> None:
    """One heartbeat plus sweep; announces swept ghosts to their rooms.

    The sweep waits until this process has been beating for PRESENCE_TIMEOUT without a
    break (a failed beat, or a time without sockets and so without beats): after the
    database was down, every process's participants look stale until their own process
    has beaten again, and none of them may be taken for a ghost. A process that held no
    socket meanwhile cannot tell whether the database was down."""
    global _beating_since
    now = timezone.now()
    try:
        await on_database_thread(services.presence_heartbeat)(participant_ids=list(live_seats), now=now)
    except Exception:
        _beating_since = None
        raise
    if _beating_since is None:
        _beating_since = clock()
    held = {participant_id: set(outboxes) for participant_id, outboxes in live_seats.items()}
    ended = await on_database_thread(services.seats_ended)(held=held)
    # A socket that left its seat while the database was asked (LeaveRoom) is not told.
    holding = {outbox_id for outboxes in live_seats.values() for outbox_id in outboxes}
    tell_ended([entry for entry in ended if entry[1] in holding])
    if clock() - _beating_since >= settings.PRESENCE_TIMEOUT:
        swept = await on_database_thread(services.presence_sweep)(now=now)
        await announce_left(swept)
    await hub.refresh()


def tell_ended(ended: list[tuple[uuid.UUID, str, services.SeatGone | None]]) -> None:
    """Seats an admin removed, or whose room was closed, or that resumed on another
    socket, while their sockets here still receive the room: that event never reached
    this process (the layer lost it). Each socket is told as the event would have told
    it, `kicked` or `room_closed` and its close, or for a resumed seat (None) the close
    4003 alone, within PRESENCE_HEARTBEAT instead of at its next frame.

    A seat swept as a ghost while its socket lived (this process stalled past
    PRESENCE_TIMEOUT, and another swept it) was announced gone to its room while its
    socket still showed it there: the socket is closed with 1012 alone, after which the
    clients reconnect and resume the seat with its participant token, and the room is
    told it is back."""
    for room_id, outbox_id, gone in ended:
        if gone is None:
            hub.fan_out(room_event(room_id, {}, only=outbox_id, close=CloseCode.REPLACED))
        elif gone.close is None:
            hub.fan_out(room_event(room_id, {}, only=outbox_id, close=CloseCode.SEAT_LOST))
        else:
            message = protocol.error_message(gone.code, gone.message)
            hub.fan_out(room_event(room_id, message, only=outbox_id, close=gone.close))


async def announce_left(swept: list[services.Swept]) -> None:
    """Tell each swept ghost's room. All at once, before anything else is published: a
    ghost that resumes (chat/actions.py, join_room) is announced after its sweep."""
    await publish_all(
        [
            room_event(
                ghost.room_id,
                protocol.participant_left_message(ghost.name),
                participant_id=ghost.participant_id,
                joined=False,
            )
            for ghost in swept
        ]
    )


async def _beat_forever() -> None:
    while True:
        await asyncio.sleep(settings.PRESENCE_HEARTBEAT)
        try:
            await beat_once()
        except Exception:
            # The database or the layer may be down for a while; try again next beat.
            logger.exception("presence heartbeat failed")
