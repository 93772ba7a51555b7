"""chat/presence.py: the heartbeat that runs while a process holds sockets, the sweep of
ghosts and its guard after an outage (time from the module's `clock`, replaced here),
and the announcement of those swept; then the same through sockets and the database."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import presence, services
from chat.errors import CloseCode
from chat.models import Participant
from chat.outbox import Outbox
from tests.helpers import FakeSocket, drain, in_loop


class Clock:
    """What `presence.clock` reads: moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(presence, "clock", fake)
    return fake


# --- Without a database ----------------------------------------------------------------


@pytest.fixture
def no_database(monkeypatch):
    """The heartbeat, the check for ended seats and the sweep in memory: `beats`
    counts heartbeats, `down` makes them fail, `swept` is what each sweep returns,
    `sweeps` counts sweeps and `announced` holds what was published, a list per call."""
    state = type("State", (), {})()
    state.beats, state.sweeps, state.down, state.announced = 0, 0, False, []
    state.swept = []

    def heartbeat(*, participant_ids, now):
        if state.down:
            raise RuntimeError("database down")
        state.beats += 1
        return len(participant_ids)

    def sweep(*, now):
        state.sweeps += 1
        return list(state.swept)

    def seats_ended(*, held):
        return []  # every seat this process holds is still there

    async def publish_all(events):
        state.announced.append(events)

    async def refresh():
        pass

    monkeypatch.setattr(presence, "on_database_thread", in_loop)
    monkeypatch.setattr(services, "presence_heartbeat", heartbeat)
    monkeypatch.setattr(services, "presence_sweep", sweep)
    monkeypatch.setattr(services, "seats_ended", seats_ended)
    monkeypatch.setattr(presence, "publish_all", publish_all)
    monkeypatch.setattr(presence.hub, "refresh", refresh)
    return state


async def test_the_sweep_waits_for_presence_timeout_of_unbroken_beats(no_database, clock, settings):
    """A process sweeps only once it has beaten without a break for PRESENCE_TIMEOUT:
    from its first beat, and again from the first beat after a failed one."""
    settings.PRESENCE_TIMEOUT = 45
    presence._beating_since = None  # a process that has not beaten yet
    await presence.beat_once()
    assert (no_database.beats, no_database.sweeps) == (1, 0)
    clock.now += 44
    await presence.beat_once()
    assert (no_database.beats, no_database.sweeps) == (2, 0)
    clock.now += 1  # 45 s since the first beat
    await presence.beat_once()
    assert (no_database.beats, no_database.sweeps) == (3, 1)

    no_database.down = True
    with pytest.raises(RuntimeError):
        await presence.beat_once()
    no_database.down = False
    clock.now += 100
    await presence.beat_once()  # the first beat after the outage: the wait starts again
    clock.now += 44
    await presence.beat_once()
    assert no_database.sweeps == 1
    clock.now += 1
    await presence.beat_once()
    assert no_database.sweeps == 2


async def test_the_sweep_waits_again_after_a_time_without_sockets(no_database, clock, settings, monkeypatch):
    """Without sockets the heartbeat stops, so the process cannot see a database outage
    meanwhile: the first beat with a socket again starts the wait anew."""
    settings.PRESENCE_TIMEOUT = 45
    settings.PRESENCE_HEARTBEAT = 3600  # the task never beats by itself here
    monkeypatch.setattr(presence, "_connections", 0)
    monkeypatch.setattr(presence, "_task", None)
    presence._beating_since = None
    presence.connection_opened()
    await presence.beat_once()
    clock.now += 45
    await presence.beat_once()
    assert no_database.sweeps == 1
    presence.connection_closed()  # the last socket: the heartbeat stops
    clock.now += 600  # the database may have been down meanwhile
    presence.connection_opened()
    await presence.beat_once()
    clock.now += 44
    await presence.beat_once()
    assert no_database.sweeps == 1
    clock.now += 1
    await presence.beat_once()
    assert no_database.sweeps == 2
    presence.connection_closed()


async def test_each_ghost_swept_is_announced_to_its_room(no_database):
    room_a, room_b = uuid.uuid4(), uuid.uuid4()
    no_database.swept = [services.Swept(room_a, "Ann", 1), services.Swept(room_b, "Ben", 2)]
    await presence.beat_once()  # a process beating for long (tests/conftest.py): it sweeps
    assert no_database.announced == [  # in one call: ahead of any join that read the sweep
        [
            {
                "room": room_a.hex,
                "text": '{"type":"ParticipantLeft","name":"Ann"}',
                "participant_id": 1,
                "joined": False,
            },
            {
                "room": room_b.hex,
                "text": '{"type":"ParticipantLeft","name":"Ben"}',
                "participant_id": 2,
                "joined": False,
            },
        ]
    ]


async def test_the_heartbeat_runs_while_the_process_holds_a_socket(monkeypatch):
    monkeypatch.setattr(presence, "_connections", 0)
    monkeypatch.setattr(presence, "_task", None)
    presence.connection_opened()
    task = presence._task
    assert task is not None and not task.done()
    presence.connection_opened()
    assert presence._task is task  # one heartbeat, however many sockets
    presence.connection_closed()
    assert presence._task is task and not task.done()
    presence.connection_closed()  # the last socket: the heartbeat stops
    assert presence._task is None
    await drain()
    assert task.cancelled()
    presence.connection_closed()  # a close too many counts nothing
    assert presence._connections == 0


async def test_a_failed_heartbeat_is_logged_and_the_next_one_runs(monkeypatch, settings, caplog):
    settings.PRESENCE_HEARTBEAT = 0
    beats = []

    async def beat_once():
        beats.append(len(beats))
        if len(beats) == 1:
            raise RuntimeError("database down")

    monkeypatch.setattr(presence, "beat_once", beat_once)
    task = asyncio.create_task(presence._beat_forever())
    for _ in range(20):
        if len(beats) >= 2:
            break
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(beats) >= 2
    assert "presence heartbeat failed" in caplog.text


async def test_a_socket_whose_seat_resumed_elsewhere_is_closed_4003_without_a_frame(monkeypatch):
    """The heartbeat found the seat's row naming another socket: the 4003 event that
    would have closed this one was lost."""
    room = uuid.uuid4()
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    monkeypatch.setattr(presence.hub, "rooms", {room.hex: {outbox.id: outbox}})
    presence.tell_ended([(room, outbox.id, None)])
    await drain()
    assert socket.sent == [] and socket.closed == CloseCode.REPLACED


# --- Through sockets and the database -------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(30)
async def test_ghosts_of_dead_processes_leave_members_and_are_swept(room_of_two):
    """A participant whose process stopped beating vanishes from Members and is announced."""
    owner = room_of_two.owner
    stale = timezone.now() - timedelta(hours=1)
    ghost_row = await Participant.objects.aget(name="Bob")
    presence.live_seats.discard(ghost_row.pk)  # its process no longer vouches for it
    await Participant.objects.filter(name="Bob").aupdate(last_seen=stale, process_id="dead")
    await owner.send_json_to({"type": "GetMembers"})
    assert (await owner.receive_json_from())["participants"] == ["Owner"]
    await presence.beat_once()
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}
    assert await Participant.objects.filter(name="Bob", left_at__isnull=False).aexists()
    await presence.beat_once()
    assert await owner.receive_nothing(timeout=0.2)
    await database_sync_to_async(lambda: None)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(30)
async def test_a_leave_the_database_missed_ages_out_like_a_ghost(room_of_two, monkeypatch):
    """A socket that closes while its leave cannot be written is no longer kept fresh."""
    owner, bob = room_of_two.owner, room_of_two.member

    def database_down(**kwargs):
        raise RuntimeError("database down")

    with monkeypatch.context() as down:
        down.setattr(services, "participant_leave", database_down)
        await bob.disconnect()
    assert await Participant.objects.filter(name="Bob", left_at__isnull=True).aexists()
    await Participant.objects.filter(name="Bob").aupdate(last_seen=timezone.now() - timedelta(hours=1))
    await presence.beat_once()
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(30)
async def test_after_a_database_outage_nobody_is_swept_until_every_process_could_beat(
    room_of_two, monkeypatch, settings, clock
):
    """Participants look stale after an outage until their own process beats again."""
    owner = room_of_two.owner
    bob_id = (await Participant.objects.aget(name="Bob")).pk
    presence.live_seats.discard(bob_id)  # as if held by another process that has not beaten yet

    def database_down(**kwargs):
        raise RuntimeError("database down")

    with monkeypatch.context() as down:
        down.setattr(services, "presence_heartbeat", database_down)
        with pytest.raises(RuntimeError):
            await presence.beat_once()
    await Participant.objects.filter(pk=bob_id).aupdate(last_seen=timezone.now() - timedelta(hours=1))
    await presence.beat_once()  # the database is back: beat, but no sweep yet
    assert await owner.receive_nothing(timeout=0.2)
    assert await Participant.objects.filter(pk=bob_id, left_at__isnull=True).aexists()
    clock.now += settings.PRESENCE_TIMEOUT - 1
    await presence.beat_once()  # not yet PRESENCE_TIMEOUT of unbroken beats
    assert await owner.receive_nothing(timeout=0.2)
    clock.now += 1  # beating without a break for PRESENCE_TIMEOUT: sweeping again
    await presence.beat_once()
    assert await owner.receive_json_from() == {"type": "ParticipantLeft", "name": "Bob"}


@pytest.mark.django_db(transaction=True)
async def test_a_departure_is_told_without_waiting_for_the_hubs_lock(room_of_two):
    """The hub's lock is held through Redis and the database (a renewal, a restart's
    catch-up). A leave written meanwhile is told at once: a resume of that seat, which
    reads the leave, then always publishes its arrival after the departure (it was told
    first, and the resumed participant listed as gone for good)."""
    from chat.hub import hub

    async with hub.lock:
        leaving = asyncio.create_task(room_of_two.member.disconnect())
        told = await room_of_two.owner.receive_json_from(timeout=3)
        assert told == {"type": "ParticipantLeft", "name": "Bob"}
    await leaving
