"""Room broadcasts: one channel-layer message per receiving process and batch, fanned
out locally.

Channels' usual pattern gives every socket its own channel and puts every socket in
the room's group, so one chat message in a room of N becomes N layer messages, N task
wake-ups and N dispatches. Here each server process has one hub with one channel, in
the layer group of each room it has sockets in (`room_group`): the room bus. A process
publishes its room events in batches (what is published while the previous send is
under way goes together): one read of the batch's room groups and one layer message to
each hub with a member in any of them, carrying that hub's events in publish order
(`send_events`, with chat/layers.py's `group_members` and `send_many`). Each hub hands
the pre-encoded text of each event to the outboxes of its local sockets in that room.

So a process receives the events of its own rooms and no others, and publishing a
batch costs two Redis round trips (per Redis server) however many rooms and processes
it reaches. With a proxy that sends a room's members to one process
(docs/production.md, "Room affinity"), each event crosses Redis once and is received
once.

A hub joins a room's group when the room's first local socket joins, before it reads
where the room stands, and leaves it when the last one leaves.

The hub is the only thing in a process that receives from the channel layer, on a
channel of its own that is not process-local (no `!`): channels-redis makes every
process-local channel of a layer object share one receive lock, so any other receive
could hold the hub up. A watchdog sends the hub a probe every HUB_WATCHDOG_INTERVAL;
a receive that makes no progress for HUB_WATCHDOG_TIMEOUT while a probe is out is
replaced by one on a new channel (logged), without waiting for the stuck one to end,
and each room's messages stored meanwhile are read from the database.

A place in a group lasts CHANNEL_GROUP_EXPIRY seconds in the Redis layer unless it is
renewed: the watchdog renews the hub's places every round, and `stop` (the server's
shutdown, config/asgi.py) takes them out, so a process that stops is no longer sent its
rooms' events, and one that was killed is dropped by the first send to each room after
the expiry. Redis may also have restarted empty, and sent the hub nothing meanwhile: a
renewal that finds the hub's place gone reads each such room's messages stored since
from the database (`renew`), and a publish that finds its own process's hub missing
from a room it is in hands the event to that hub itself and renews at once.

The hub hands each event to the `Outbox` of each local socket in its room
(chat/outbox.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TypedDict, Unpack, get_type_hints

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from chat import selectors
from chat.batching import Batcher, PerLoopBatcher
from chat.outbox import WRITE_NOW_MAX, Outbox, text_frame
from chat.protocol import chat_message, encode, message_deleted_message
from chat.workers import on_database_thread

logger = logging.getLogger(__name__)

EVENT_TYPE = "room.events"


class Marks(TypedDict, total=False):
    """What a publisher may add to a room event besides its room and text."""

    exclude: str | None  # an outbox id that does not get it (the sender)
    only: str  # the one outbox id that gets it (a kick)
    close: int  # close the sockets that get it with this code, once it is written
    # A chat message's id and room sequence number (the hub's order, a joiner's snapshot).
    message_id: int
    seq: int
    # An edit's, delete's or reaction's message id (with its seq): the hub hands out one
    # that comes late unless a later change of that message went out (`RoomOrder.late`).
    changes: int
    # A second server message, encoded, handed out right after this one to the same
    # sockets, in its place in the room's order: a deleted file message's FileDeleted.
    then: str
    # Presence: whose arrival or departure, for a joiner's snapshot (`services.Snapshot.shows`).
    participant_id: int
    joined: bool
    # A departure an admin's removal made: an arrival of that seat published after it
    # was already on its way (the join it interrupted) is dropped (`RoomOrder.news`).
    removed: bool


class RoomEvent(Marks):
    """One room event as it crosses the channel layer, in a batch:
    `{"type": EVENT_TYPE, "events": [RoomEvent, ...]}` sent to each hub in the room's
    group (`send_events`).
    A hub checks the types of every event it receives (`room_event_problem`)."""

    room: str  # the room's id in hex: how the hub and the bus name a room
    text: str  # the server message, encoded to JSON once by the publisher


# What the watchdog sends the hub's own channel to see that its receive moves.
PROBE_TYPE = "hub.probe"
# Seconds a stopping hub waits for the layer to take it out of its groups (Redis down
# or hung: the process stops anyway, and the layer drops the channel after its expiry).
LEAVE_TIMEOUT = 2.0
# Stored steps the bus would not take, kept to publish again (each at most a chat
# frame, CHAT_MAX_CONTENT), and the seconds between tries, doubling.
UNPUBLISHED_KEPT = 200
REPUBLISH_FIRST = 0.5
REPUBLISH_MOST = 5.0


def room_group(room: str) -> str:
    """The layer group of the hubs with a socket in `room` (the layer adds its prefix)."""
    return f"room.{room}"


class RoomOrder:
    """One room's message order in this process: the last sequence number handed to
    the room's sockets, and later messages waiting for an earlier one.

    Processes publish a room's messages after their own commits, so one process's
    message can overtake another's by a few milliseconds; each message carries its
    room sequence number (`Message.seq`, consecutive), and this puts them back in
    order. A message still missing after GAP_WAIT (its publisher died after the commit,
    or Redis lost it) is read from the database instead, and one numbered past where the
    room stands (no commit published it) is dropped.

    An edit, delete or reaction still missing after GAP_WAIT is read back too, as the
    state its message is in now (chat/models.py `Change`: the database keeps which
    message each of the room's last CHANGES_KEPT_STEPS steps changed), and an older one
    is passed. When a change comes late all the same, it is handed out unless a later
    change of its message went out (each carries the message's whole state, and a
    delete is the last). So the last change handed out for each message is kept, for
    at most CHANGES_KEPT messages.
    """

    def __init__(self) -> None:
        self.last: int | None = None  # None until the room's position is read
        self.waiting: dict[int, RoomEvent] = {}
        self.repair: asyncio.TimerHandle | None = None
        # Message id -> the seq of its last change handed out, the least recent first.
        self.changed: dict[int, int] = {}
        # No late change up to this seq is handed out: the joiners' History showed it,
        # or a later change of its message may have been forgotten.
        self.known_after = 0
        # Participant id -> when (the clock) an admin's removal of it was handed out,
        # the oldest first, for REMOVED_WINDOW seconds and at most REMOVED_KEPT of them.
        self.removed: dict[int, float] = {}
        # The room's participants present in every process, as the last local join read
        # them and the presence events handed out since told (`Hub.members_in`).
        self.present: set[int] = set()

    def news(self, event: RoomEvent) -> bool:
        """Whether a presence event is handed out: not the arrival of a seat an admin
        removed within REMOVED_WINDOW. Its join was under way when the removal came (the
        seat was taken, its arrival not yet published), and the removal's departure went
        out first; handed out, that arrival would list the removed participant as
        present for good. A removed seat cannot come back meanwhile: the ban refuses it
        (so the window is never longer than KICK_BAN_SECONDS)."""
        participant_id = event.get("participant_id")
        if participant_id is None:
            return True
        now, window = time.monotonic(), min(REMOVED_WINDOW, settings.KICK_BAN_SECONDS)
        if event.get("removed"):
            self.removed.pop(participant_id, None)
            self.removed[participant_id] = now
            for oldest, at in list(self.removed.items()):
                if len(self.removed) <= REMOVED_KEPT and now - at <= window:
                    break
                del self.removed[oldest]
        removed_at = self.removed.get(participant_id)
        if not event.get("joined"):
            self.present.discard(participant_id)
            return True
        if removed_at is None or now - removed_at > window:
            self.present.add(participant_id)
            return True
        return False

    def note(self, event: RoomEvent) -> None:
        """A change is handed out: keep its seq, forgetting the least recent past CHANGES_KEPT."""
        message_id = event.get("changes")
        if message_id is not None:
            self.changed.pop(message_id, None)
            self.changed[message_id] = event["seq"]
            if len(self.changed) > CHANGES_KEPT:
                self.known_after = max(self.known_after, self.changed.pop(next(iter(self.changed))))

    def late(self, event: RoomEvent) -> bool:
        """Whether an event that comes after the order passed its seq is handed out
        (and noted): only a change no later change of its message went out after. A
        message never: it was read from the database, or has been deleted."""
        message_id, seq = event.get("changes"), event["seq"]
        if message_id is None or seq <= self.known_after or self.changed.get(message_id, 0) >= seq:
            return False
        self.note(event)
        return True


# Messages whose last change each room's order keeps (`RoomOrder.changed`).
CHANGES_KEPT = 128

# Seconds, and how many, a room's order remembers an admin's removals (`RoomOrder.news`):
# far longer than a join takes to publish its arrival after its seat is taken (but never
# longer than KICK_BAN_SECONDS, after which the seat may come back).
REMOVED_WINDOW = 30.0
REMOVED_KEPT = 128


# Seconds a room message waits for an earlier one before the database is asked for it.
GAP_WAIT = 0.5


def room_of(room: str) -> uuid.UUID:
    return uuid.UUID(hex=room)


async def room_position(room: str) -> int:
    """The sequence number of the room's last stored message."""
    return await on_database_thread(selectors.room_message_seq)(room_id=room_of(room))


async def stored_events(room: str, after: int, before: int) -> list[RoomEvent]:
    """The room's steps with after < seq < before as the database holds them, as room
    events: its messages, and its edits, deletes and reactions as their messages' state
    now (`selectors.changes_by_seq`)."""
    return await on_database_thread(_stored_events)(room, after, before)


def _stored_events(room: str, after: int, before: int) -> list[RoomEvent]:
    room_id, events = room_of(room), []
    for message_id, seq, *entry in selectors.messages_by_seq(room_id=room_id, after=after, before=before):
        text = encode(chat_message(message_id, *entry))
        events.append(RoomEvent(room=room, text=text, message_id=message_id, seq=seq))
    for seq, message_id, frame in selectors.changes_by_seq(room_id=room_id, after=after, before=before):
        events.append(RoomEvent(room=room, text=encode(frame), changes=message_id, seq=seq))
    return events


def new_hub_channel() -> str:
    """A channel name only this hub receives from; not process-local (see above)."""
    return f"hub.{uuid.uuid4().hex}"


class Hub:
    """This process's place on the room bus, the rooms it has sockets in, and its local fan-out."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Outbox]] = {}
        # The rooms this process has sockets in, each with its message order.
        self.order: dict[str, RoomOrder] = {}
        # The rooms whose group `channel` is in: those of `rooms`, and any whose leave
        # the layer did not take (Redis down), until the next watchdog round.
        self.groups: set[str] = set()
        # Where rooms stand and what they hold: the database (tests pass their own).
        self.position = room_position
        self.stored = stored_events
        self.channel = ""
        self.layer = None
        # The watchdog; it owns `receiver`, the task that receives on `channel`.
        self.task: asyncio.Task | None = None
        self.receiver: asyncio.Task | None = None
        # Held while the groups change and while a room's order is set up or repaired.
        self.lock: asyncio.Lock | None = None
        # Monotonic times: the probe that is out (None when it came back), and the
        # last time the receive returned anything.
        self.probe_sent: float | None = None
        self.progress = 0.0
        # The task leaving the groups of rooms left (`prune`), while it runs.
        self.pruning: asyncio.Task | None = None
        # The task renewing the hub's places out of turn (`renew_soon`), while it runs.
        self.renewing: asyncio.Task | None = None
        # Stored steps the bus would not take (Redis down), oldest first, at most
        # UNPUBLISHED_KEPT, and the task publishing them again once it does.
        self.unpublished: list[RoomEvent] = []
        self.republishing: asyncio.Task | None = None
        # Room events this process published, and received from the layer (logged when
        # the process stops, `event=hub_totals`: bench/run.sh processes).
        self.published = 0
        self.received = 0

    def started(self) -> bool:
        """Whether the hub runs on the running event loop."""
        task = self.task
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    async def start(self) -> None:
        """Called before each join: (re)start the hub on the running loop."""
        if self.started():
            return
        self.rooms, self.order, self.groups = {}, {}, set()
        self.unpublished = []
        self.lock = asyncio.Lock()
        self.layer = get_channel_layer()
        self.receive_on(new_hub_channel())
        self.task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """The process stops: end the watchdog and the receive, then leave every room
        group, waiting at most LEAVE_TIMEOUT for the layer."""
        task = self.task
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            return
        task.cancel()
        self.receiver.cancel()  # the watchdog does too, unless it never got to run
        for background in (self.pruning, self.renewing, self.republishing):
            if background is not None:
                background.cancel()  # what it had to leave, the leave below does
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                # Once the watchdog has ended, no renewal or restart can follow the leave.
                await asyncio.wait([task])
                await self.layer.group_discard_many(map(room_group, self.groups), self.channel)
        except Exception as exc:
            why = f"no answer in {LEAVE_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else repr(exc)
            logger.warning(
                "hub: could not leave the bus (%s); the layer drops %s after CHANNEL_GROUP_EXPIRY s",
                why,
                self.channel,
            )

    def receive_on(self, channel: str) -> None:
        self.channel = channel
        self.probe_sent = None
        self.progress = time.monotonic()
        self.receiver = asyncio.get_running_loop().create_task(self._receive_forever(channel))

    async def _watch(self) -> None:
        try:
            while True:
                await asyncio.sleep(settings.HUB_WATCHDOG_INTERVAL)
                try:
                    await self.watch()
                except Exception:
                    logger.exception("hub: watchdog check failed")
        finally:
            self.receiver.cancel()

    async def watch(self) -> None:
        """One watchdog round: replace a receive that is stuck, else leave the groups of
        rooms nobody is in here any more (`renew`), renew the others (CHANNEL_GROUP_EXPIRY
        must be several rounds) and send a probe."""
        if self.receiver.done():
            await self.restart("its receive ended")
            return
        if self.probe_sent is not None:
            stalled = time.monotonic() - max(self.probe_sent, self.progress)
            if stalled >= settings.HUB_WATCHDOG_TIMEOUT:
                await self.restart(f"its receive made no progress for {stalled:.1f} s")
                return
        try:
            await self.renew()
        except Exception:
            # Redis is down: the probe would fail too.
            logger.warning("hub: could not renew its place on the bus", exc_info=True)
            return
        if self.probe_sent is not None:
            return
        # Out before it is sent: the receive may take it before the send's reply is read.
        self.probe_sent = time.monotonic()
        try:
            await self.layer.send(self.channel, {"type": PROBE_TYPE})
        except ChannelFull:
            pass  # a full channel is a probe that is not back
        except Exception:
            # Redis is down: the receive fails too, and retries by itself.
            logger.warning("hub: could not send the watchdog probe", exc_info=True)
            self.probe_sent = None

    async def renew(self) -> None:
        """Leave the groups of rooms without a local socket (a leave the layer did not
        take), and renew the others. A group the hub was no longer in (Redis restarted
        empty, or its place expired) sent it nothing meanwhile: the room's messages
        stored since are read from the database (`catch_up`)."""
        async with self.lock:
            await self.leave_idle()
            rooms = {room_group(room): room for room in self.groups}
            lost = await self.layer.group_add_many(rooms, self.channel) if rooms else []
        if lost:
            logger.warning("hub: the bus had lost its place in %s room group(s); catching up", len(lost))
        for group in lost:
            order = self.order.get(rooms[group])
            if order is not None:
                await self.catch_up(rooms[group], order)

    def republish_later(self, event: RoomEvent) -> None:
        """Publish `event` (a stored step) again once the bus takes it, in order with the
        others kept. The other processes' hubs drop what they had already (their room's
        order), so none is told twice; past UNPUBLISHED_KEPT the oldest is let go, and
        reaches them as a gap the room's next step shows, read from the database."""
        self.unpublished.append(event)
        del self.unpublished[:-UNPUBLISHED_KEPT]
        if self.republishing is None or self.republishing.done():
            self.republishing = asyncio.get_running_loop().create_task(self._republish())

    async def _republish(self) -> None:
        wait = REPUBLISH_FIRST
        while self.unpublished:
            await asyncio.sleep(wait)
            events, self.unpublished = self.unpublished, []
            try:
                await event_sender.submit_all(events)
            except Exception:
                self.unpublished = (events + self.unpublished)[-UNPUBLISHED_KEPT:]
                wait = min(wait * 2, REPUBLISH_MOST)
                continue
            logger.warning("hub: the bus took %s stored step(s) it had refused", len(events))
            wait = REPUBLISH_FIRST

    def renew_soon(self) -> None:
        """A publish found this hub missing from a group it is in: renew its places now,
        in the background, rather than at the next watchdog round."""
        if self.renewing is None or self.renewing.done():
            self.renewing = asyncio.get_running_loop().create_task(self._renew_now())

    async def _renew_now(self) -> None:
        try:
            await self.renew()
        except Exception:
            logger.warning("hub: could not renew its place on the bus", exc_info=True)

    async def restart(self, why: str) -> None:
        """Receive on a new channel, and leave the stuck receive behind.

        The old task is cancelled, but nothing waits for it: on Python 3.11 a cancel
        can be lost (asyncio.wait_for, CPython gh-86296), and a receive on a new channel
        does not share anything it could be holding. Events sent to the old channel are
        lost for this process; the rooms' messages among them are read from the database.
        """
        old_channel, old_receiver = self.channel, self.receiver
        channel = new_hub_channel()
        async with self.lock:
            groups = list(map(room_group, self.groups))
            try:
                await self.layer.group_add_many(groups, channel)
            except Exception:
                logger.exception("hub: %s, and it could not join its rooms again; retrying", why)
                self.probe_sent = None
                return
            logger.error("hub: %s; receiving on a new channel %s (was %s)", why, channel, old_channel)
            old_receiver.cancel()
            self.receive_on(channel)
        try:
            await self.layer.group_discard_many(groups, old_channel)
        except Exception:
            logger.warning("hub: could not take the stuck channel off the bus", exc_info=True)
        for room, order in list(self.order.items()):
            await self.catch_up(room, order)

    async def catch_up(self, room: str, order: RoomOrder) -> None:
        """Hand out the room's messages stored since the last one handed out."""
        async with self.lock:
            if self.order.get(room) is not order or order.last is None:
                return
            await self.fill(room, order, order.last, None)

    async def join(self, room_id: uuid.UUID, outbox: Outbox) -> None:
        await self.start()
        room = room_id.hex
        self.rooms.setdefault(room, {})[outbox.id] = outbox
        async with self.lock:
            if room not in self.order:
                order = self.order[room] = RoomOrder()  # holds messages until placed
                try:
                    # In the room's group first: messages stored from here on reach
                    # this hub; those stored before are in the room's position (and in
                    # a joiner's History).
                    if room not in self.groups:
                        await self.layer.group_add(room_group(room), self.channel)
                        self.groups.add(room)
                    order.last = order.known_after = await self.position(room)
                except BaseException:
                    # Redis or the database down: the next join tries afresh.
                    self.order.pop(room, None)
                    self.rooms.get(room, {}).pop(outbox.id, None)
                    if not self.rooms.get(room):
                        self.rooms.pop(room, None)
                    raise
                self.flush(room, order)

    def sockets_in(self, room_id: uuid.UUID) -> int:
        """How many of this process's sockets the room's events are handed to."""
        return len(self.rooms.get(room_id.hex, ()))

    def members_in(self, room_id: uuid.UUID) -> int:
        """How many sockets the room's events are handed to in every process, as far as
        this one knows: the room's participants present (`seated`), or its own sockets
        if more. Unknown (0) while it has no socket in the room."""
        room = room_id.hex
        order = self.order.get(room)
        return max(len(self.rooms.get(room, ())), len(order.present) if order is not None else 0)

    def seated(self, room_id: uuid.UUID, present: list[int]) -> None:
        """A local join read the room's participants present: they are what this process
        knows of the room's members from now on, with the presence events handed out after
        (a departure handed out between that read and this call is counted again until
        the next local join: an estimate, for the room's deliveries)."""
        order = self.order.get(room_id.hex)
        if order is not None:
            order.present = set(present)

    def depart(self, room_id: uuid.UUID, outbox: Outbox) -> None:
        """The socket is handed nothing more of the room (at once, no waiting)."""
        room = room_id.hex
        members = self.rooms.get(room, {})
        members.pop(outbox.id, None)
        if not members:
            self.rooms.pop(room, None)

    async def leave(self, room_id: uuid.UUID, outbox: Outbox) -> None:
        """`depart`; and the room's last local socket leaving takes the hub out of the
        room's group, soon after and without waiting (`prune`)."""
        self.depart(room_id, outbox)
        room = room_id.hex
        async with self.lock:
            if room in self.rooms:
                return
            order = self.order.pop(room, None)
            if order is not None and order.repair is not None:
                order.repair.cancel()
        if room in self.groups and (self.pruning is None or self.pruning.done()):
            self.pruning = asyncio.get_running_loop().create_task(self.prune())

    async def prune(self) -> None:
        """Leave the groups of the rooms left meanwhile, in one call, in the background:
        a leave never waits for Redis, and one it does not answer within LEAVE_TIMEOUT
        holds up joins no longer than that (the next watchdog round tries again)."""
        try:
            async with self.lock, asyncio.timeout(LEAVE_TIMEOUT):
                # Rooms left while a call was under way are left by the next one.
                while self.groups - self.rooms.keys():
                    await self.leave_idle()
        except Exception:
            logger.warning("hub: could not leave the groups of rooms left; next round", exc_info=True)

    async def leave_idle(self) -> None:
        """Leave the groups of the rooms without a local socket (the lock is held), and
        forget their order: a join of one of them meanwhile (a leave's database call
        under way) starts afresh, in the group again, not on an order without one."""
        idle = self.groups - self.rooms.keys()
        if idle:
            await self.layer.group_discard_many(map(room_group, idle), self.channel)
            self.groups -= idle
            # All of them: a join that came meanwhile waits for the lock, and must find
            # no order, or it would skip the group it is no longer in.
            for room in idle:
                order = self.order.pop(room, None)
                if order is not None and order.repair is not None:
                    order.repair.cancel()

    async def refresh(self) -> None:
        """Called every presence heartbeat: renew the hub's places in its rooms' groups
        (they expire in the layer, and Redis forgets them if it restarts). The watchdog
        renews them too, more often, and also while the process holds no socket (the
        heartbeat stops then)."""
        if self.layer is not None and self.started():
            await self.renew()

    def deliver(self, event: RoomEvent) -> None:
        """A room event from the layer: messages go through their room's order."""
        seq, room = event.get("seq"), event["room"]
        order = self.order.get(room)
        if order is not None and not order.news(event):
            return
        if seq is None or order is None:
            self.fan_out(event)
        elif order.last is None or seq > order.last:
            order.waiting[seq] = event
            self.flush(room, order)
        elif order.late(event):
            self.fan_out(event)

    def flush(self, room: str, order: RoomOrder) -> None:
        """Hand out the waiting messages that are next in order; if one is missing,
        ask the database for it after GAP_WAIT."""
        if order.last is None:
            return
        for seq in [seq for seq in order.waiting if seq <= order.last]:
            # Shown already (History, or read from the database), or a late change.
            if order.late(event := order.waiting.pop(seq)):
                self.fan_out(event)
        while (event := order.waiting.pop(order.last + 1, None)) is not None:
            order.note(event)
            self.fan_out(event)
            order.last += 1
        if order.waiting and order.repair is None:
            loop = asyncio.get_running_loop()
            order.repair = loop.call_later(GAP_WAIT, lambda: loop.create_task(self.repair(room, order)))
        elif not order.waiting and order.repair is not None:
            order.repair.cancel()
            order.repair = None

    async def repair(self, room: str, order: RoomOrder) -> None:
        """Read the messages a gap is waiting for, and hand everything out in order."""
        order.repair = None
        if self.order.get(room) is not order or not order.waiting or order.last is None:
            return
        await self.fill(room, order, order.last, min(order.waiting))

    async def fill(self, room: str, order: RoomOrder, last: int, upto: int | None) -> None:
        """Read the room's steps with last < seq < upto (None: all those stored): its
        messages, and its changes as their messages' state now (`stored_events`); and
        hand out what is in order; what the database does not hold either is not waited
        for. `last` never passes where the room stands: an event that arrived numbered
        past it was published by no commit (a bug, or anyone who can write to Redis) and
        is dropped, else it would silence the room here. If the database cannot be read,
        the events wait for the next try, GAP_WAIT later."""
        arrived = list(order.waiting)  # committed before the position is read
        try:
            position = await self.position(room)
            before = position + 1 if upto is None else min(upto, position + 1)
            missing = await self.stored(room, last, before)
        except Exception:
            logger.exception("hub: could not read the missing messages of %s; trying again", room)
            self.flush(room, order)
            return
        beyond = [seq for seq in arrived if seq > position and order.waiting.pop(seq, None) is not None]
        if beyond:
            logger.error(
                "hub: dropped %s event(s) of %s numbered past its last step %s", len(beyond), room, position
            )
        for event in missing:
            order.waiting.setdefault(event["seq"], event)
        if order.last == last and last + 1 not in order.waiting:
            order.last = max(last, min(order.waiting, default=before) - 1)
        self.flush(room, order)

    def fan_out(self, event: RoomEvent) -> None:
        members = self.rooms.get(event["room"])
        if not members:
            return
        exclude, only = event.get("exclude"), event.get("only")
        frame = text_frame(event["text"]) if len(event["text"]) <= WRITE_NOW_MAX else None
        for outbox_id, outbox in members.items():
            if outbox_id != exclude and (only is None or outbox_id == only):
                outbox.put_broadcast(event, frame)

    async def _receive_forever(self, channel: str) -> None:
        while self.channel == channel:
            try:
                event = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis may be down for a while; the heartbeat puts the hub back on the bus.
                logger.exception("hub: channel layer receive failed")
                await asyncio.sleep(1)
                continue
            if self.channel != channel:
                return  # replaced by the watchdog: the new receive delivers from now on
            self.progress = time.monotonic()
            self.handle(event)

    def handle(self, message: object) -> None:
        """One layer message: a batch of room events, or the watchdog's probe. One that
        is malformed (a bug, another version, anyone who can write to Redis) is logged
        and skipped, never the end of the receive loop; so is one bad event of a batch."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == PROBE_TYPE:
            self.probe_sent = None
            return
        events = message.get("events") if kind == EVENT_TYPE else None
        if not isinstance(events, list):
            logger.error("hub: skipped a malformed layer message: %s", describe(message))
            return
        self.received += len(events)
        for room_event in events:
            problem = room_event_problem(room_event)
            if problem is not None:
                logger.error("hub: skipped a malformed room event: %s", problem)
                continue
            try:
                self.deliver(room_event)
            except Exception:
                logger.exception("hub: delivering a room event failed; skipped")


def describe(message: object) -> str:
    """What a log line may say of a layer message: its shape, never its text."""
    if isinstance(message, dict):
        return f"type={message.get('type')!r:.40} keys={sorted(map(str, message))[:10]}"
    return f"a {type(message).__name__}"


def _required_first(item: tuple[str, object]) -> bool:
    return item[0] not in RoomEvent.__required_keys__


# Each field's type, read from `RoomEvent`: room and text (checked first) must be there,
# the marks may be absent or None.
_FIELD_TYPES = {
    key: hint if hint in (int, bool) else str
    for key, hint in sorted(get_type_hints(RoomEvent).items(), key=_required_first)
}
_TYPE_NAMES = {int: "an integer", bool: "a boolean", str: "a string"}


def _of_type(value: object, kind: type) -> bool:
    """isinstance, but a bool is not an integer here (a CloseCode is)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def room_event_problem(event: object) -> str | None:
    """Why a room event from the layer cannot be delivered (None when it can): its
    fields must have `RoomEvent`'s types."""
    if not isinstance(event, dict):
        return f"not an object ({describe(event)})"
    for key, kind in _FIELD_TYPES.items():
        value = event.get(key)
        if (value is not None or key in RoomEvent.__required_keys__) and not _of_type(value, kind):
            return f"{key} must be {_TYPE_NAMES[kind]} ({describe(event)})"
    if event.get("participant_id") is not None and not isinstance(event.get("joined"), bool):
        return f"joined must be a boolean ({describe(event)})"
    return None


hub = Hub()


async def publish(room_id: uuid.UUID, message: dict, *, stored: bool = False, **marks: Unpack[Marks]) -> None:
    """Send a server message to every socket in the room, in every process. It is
    encoded to JSON once, here; `marks` are `RoomEvent`'s other fields. Returns once the
    layer has taken it (batched with what other sockets publish meanwhile; see
    `send_events`). An empty `message` sends no frame: only its `close` (a resumed
    participant's other connection, 4003). `stored`: it tells of a change already
    written that is not a room step (a file's delete), handed out as one if the bus
    refuses it (`handed_out_here`)."""
    event = room_event(room_id, message, **marks)
    try:
        await event_sender.submit(event)
    except Exception:
        if not handed_out_here([event], stored=stored):
            raise


async def publish_all(events: list[RoomEvent]) -> None:
    """Publish `room_event`s in this order, all of them ahead of whatever is published
    after this call began (a sweep's leaves before the resumes that read them)."""
    try:
        await event_sender.submit_all(events)
    except Exception:
        if not handed_out_here(events):
            raise


def handed_out_here(events: list[RoomEvent], *, stored: bool = False) -> bool:
    """Called for `events` the bus would not take (Redis down). Stored steps (a message,
    an edit, a reaction, a delete) are written, so the client is not told to send them
    again (a second copy, or a `message_not_found`): this process's sockets get them now,
    the others once the bus takes them again (`republish_later`), or from the database,
    at their catch-up or at the gap the room's next step shows them, whichever comes
    first. So are `stored` events that are not steps (a file's delete: the others get
    it once the bus takes it, or from the file's gone download). Anything else
    (presence, typing, a step of a closed room) is False: the caller is told."""
    if not hub.started() or not (stored or all(event.get("seq") is not None for event in events)):
        return False
    logger.warning(
        "hub: the bus did not take %s stored step(s) of %s; handed out here",
        len(events),
        events[0]["room"],
        exc_info=True,
    )
    for event in events:
        hub.deliver(event)
        hub.republish_later(event)
    return True


def room_event(room_id: uuid.UUID, message: dict, **marks: Unpack[Marks]) -> RoomEvent:
    return {"room": room_id.hex, "text": encode(message) if message else "", **marks}


def deletion_events(
    room_id: uuid.UUID, message_id: int, seq: int | None, after: list[dict]
) -> list[RoomEvent]:
    """A message's delete (a member's or an admin's) as room events: `MessageDeleted` in
    the delete's place in the room's order (`seq`; None in a closed room), naming its
    message should it come late, and carrying the first of `after` (a file's message:
    its `FileDeleted`, files/signals.py) so that no process tells of that first; then
    the rest of `after`."""
    marks: Marks = {"seq": seq, "changes": message_id} if seq is not None else {}
    if after:
        marks["then"] = encode(after[0])
    deleted = room_event(room_id, message_deleted_message(message_id), **marks)
    return [deleted, *(room_event(room_id, message) for message in after[1:])]


async def send_events(events: list[RoomEvent]) -> list[None]:
    """Send each hub in the rooms' groups one layer message with its rooms' events, in
    the order published."""
    # The hub's layer, once started: looking it up costs a settings read per call.
    started = hub.started()
    layer = hub.layer if started else get_channel_layer()
    groups = [room_group(event["room"]) for event in events]
    members = await layer.group_members(dict.fromkeys(groups))
    batches: dict[str, list[RoomEvent]] = {}
    missed: list[RoomEvent] = []
    for event, group in zip(events, groups, strict=True):
        for channel in members[group]:
            batches.setdefault(channel, []).append(event)
        if started and hub.channel not in members[group] and event["room"] in hub.groups:
            missed.append(event)
    if missed:
        # The bus lost this hub's place (Redis restarted empty): its own sockets get the
        # events at once, and it rejoins its rooms and reads what it missed meanwhile.
        for event in missed:
            hub.deliver(event)
        hub.renew_soon()
    await layer.send_many({channel: {"type": EVENT_TYPE, "events": its} for channel, its in batches.items()})
    hub.published += len(events)
    return [None] * len(events)


# This process's batcher of room events.
event_sender = PerLoopBatcher(lambda: Batcher(send_events, settings.CHAT_PUBLISH_BATCH))
