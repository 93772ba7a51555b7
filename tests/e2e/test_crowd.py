"""A crowd in one room (bench/hostile.py's `crowd` attack, at a test's size): one address's
sockets, each within its own chat rate, may make the server hand out no more than
DELIVERIES_PER_ADDRESS_* (a delivery a socket of the room), whatever the room's size;
another address in the same room still speaks. Many addresses together are held to the
room's DELIVERIES_PER_ROOM_*."""

import asyncio
import time

import pytest

from tests.e2e.test_hostile_work import ROOMY, from_address
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CROWD = 40  # members who only read, 5 an address
ATTACKERS = 10  # sockets of the one attacking address
FRAMES = 30  # chat frames each attacking socket sends at once
ROOM = 1 + CROWD + ATTACKERS + 1  # the owner, the crowd, the attackers, one more speaker
BURST, SUSTAINED = 10 * ROOM, ROOM  # ten messages at once, then one a second


async def heard(member: Client, kinds: tuple[str, ...], field: str, prefix: str) -> list[dict]:
    """The frames of `kinds` whose `field` (a name) starts with `prefix` that reached
    `member` until the room is quiet for a second."""
    got = []
    while True:
        try:
            frame = await member.recv(within=1)
        except TimeoutError:
            return got
        if frame["type"] in kinds and frame[field].startswith(prefix):
            got.append(frame)


async def said_to(member: Client, sender: str) -> list[dict]:
    """The chat messages from `sender`'s sockets (names starting with it)."""
    return await heard(member, ("ChatMessage",), "sender", sender)


async def crowd_room(
    server, attackers_from=lambda k: "127.0.42.1"
) -> tuple[Client, list[Client], list[Client], Client]:
    """The owner (`.join_key`: the room's), the attackers (attacker k from
    `attackers_from(k)`: by default all from one address), the crowd (5 sockets an
    address) and one more speaker from another address, all in one room, joined in that
    order."""
    owner = await Client.open(server.url, close_timeout=1, **from_address("127.0.40.1"))
    join_key = owner.join_key = (await owner.create("Town hall"))["room_info"]["join_key"]

    async def member(address: str, name: str) -> Client:
        # Who stops reading has its close answered behind what it left unread: a second.
        client = await Client.open(server.url, close_timeout=1, **from_address(address))
        await client.join(join_key, name)
        return client

    attackers = [await member(attackers_from(k), f"x{k}") for k in range(ATTACKERS)]
    crowd = [await member(f"127.0.41.{k // 5 + 1}", f"m{k}") for k in range(CROWD)]
    return owner, crowd, attackers, await member("127.0.43.1", "Other")


def joins_cost(before: int, count: int) -> int:
    """What `count` joins, one after another, into a room of `before` sockets cost its
    deliveries: two to each socket already in (chat.actions.charge_presence)."""
    return sum(2 * (before + k) for k in range(count))


# What crowd_room's joins cost: the attackers' address (they join first, after the
# owner), and the room (everyone's).
ATTACKERS_JOINS = joins_cost(1, ATTACKERS)
ROOM_JOINS = joins_cost(1, ROOM - 1)


async def errors_of(clients: list[Client]) -> list[str]:
    """The codes of the Error frames waiting for `clients`, once each is quiet 0.2 s."""
    codes = []
    for client in clients:
        while True:
            try:
                frame = await client.recv(within=0.2)
            except TimeoutError:
                break
            if frame["type"] == "Error":
                codes.append(frame["code"])
    return codes


@pytest.mark.parametrize(
    "bound, attackers_from",
    [
        ("DELIVERIES_PER_ADDRESS", lambda k: "127.0.42.1"),
        ("DELIVERIES_PER_ROOM", lambda k: f"127.0.44.{k + 1}"),
    ],
    ids=["one address", "ten addresses"],
)
async def test_chat_in_a_large_room_is_held_to_its_deliveries(sqlite_env, servers, bound, attackers_from):
    """The attackers from one address are held to its DELIVERIES_PER_ADDRESS_*; from ten,
    each within its own, they are held together to the room's DELIVERIES_PER_ROOM_*."""
    env = {
        **sqlite_env,
        **ROOMY,
        "DELIVERIES_PER_ADDRESS_BURST": "1000000",
        "DELIVERIES_PER_ROOM_BURST": "1000000",
    }
    # BURST is left once the room is joined (its refill meanwhile counts in `elapsed`).
    setup = ATTACKERS_JOINS if bound == "DELIVERIES_PER_ADDRESS" else ROOM_JOINS
    env |= {f"{bound}_BURST": str(setup + BURST), f"{bound}_SUSTAINED": str(SUSTAINED)}
    (server,) = servers(env)
    started = time.monotonic()
    owner, crowd, attackers, other = await crowd_room(server, attackers_from)

    await asyncio.gather(*(attacker.say(f"spam {n}") for attacker in attackers for n in range(FRAMES)))
    heard = await said_to(crowd[0], "x")
    elapsed = time.monotonic() - started
    # Every socket's own chat rate lets 20 of its 30 through: 200 messages; the bound lets
    # BURST / ROOM of them through at once and one a second after.
    assert 5 <= len(heard) <= BURST // ROOM + int(elapsed) + 2, (len(heard), elapsed)
    refused = await errors_of(attackers)
    assert refused.count("rate_limited") >= ATTACKERS * FRAMES - len(heard) - 5, refused
    # The room is not silenced: another address speaks (a second's refill after the room
    # went quiet), and the crowd hears it.
    await other.say("still here")
    assert [frame["sender"] for frame in await said_to(crowd[0], "Other")] == ["Other"]
    await asyncio.gather(*(client.close() for client in [owner, *crowd, *attackers, other]))


async def test_an_address_typing_in_a_large_room_keeps_half_its_deliveries_for_what_it_says(
    sqlite_env, servers
):
    """Its ten people all typing at once took the address's every delivery, and what they
    then said was refused `rate_limited`; a Typing now takes only from the upper half."""
    env = {**sqlite_env, **ROOMY}
    # Once the attackers are in, BURST above the half a Typing leaves (TYPING_KEEPS).
    burst = BURST + 2 * ATTACKERS_JOINS
    env |= {"DELIVERIES_PER_ADDRESS_BURST": str(burst), "DELIVERIES_PER_ADDRESS_SUSTAINED": "1"}
    (server,) = servers(env)
    owner, crowd, attackers, other = await crowd_room(server)

    await asyncio.gather(*(attacker.send(type="Typing") for attacker in attackers))
    typing = []
    while True:
        try:
            frame = await crowd[0].recv(within=1)
        except TimeoutError:
            break
        typing += [frame["name"]] if frame["type"] == "Typing" else []
    assert len(typing) == BURST // ROOM // 2, typing  # half of the ten: the rest dropped
    for n in range(BURST // ROOM // 2):
        await attackers[n].say(f"said {n}")
    assert len(await said_to(crowd[0], "x")) == BURST // ROOM // 2
    assert await errors_of(attackers) == []
    await asyncio.gather(*(client.close() for client in [owner, *crowd, *attackers, other]))


async def told_of(member: Client, prefix: str) -> list[str]:
    """The names starting with `prefix` whose comings and goings reached `member`."""
    frames = await heard(member, ("ParticipantJoined", "ParticipantLeft"), "name", prefix)
    return [frame["name"] for frame in frames]


async def churn(client: Client, join_key: str, name: str, until: float) -> list[str]:
    """Leave, join again, leave... until `until`, a moment's pause after each refusal:
    the answer to each JoinRoom."""
    answers = []
    await client.send(type="LeaveRoom")
    while time.monotonic() < until:
        await client.send(type="JoinRoom", join_key=join_key, name=name)
        while (frame := await client.recv(within=10))["type"] not in ("RoomJoined", "Error"):
            pass
        answers.append(frame.get("code", frame["type"]))
        if frame["type"] == "RoomJoined":
            await client.send(type="LeaveRoom")
        else:
            await asyncio.sleep(0.2)  # well under the 1008 rule's 50 refusals in 10 s
    return answers


async def test_comings_and_goings_in_a_large_room_are_held_to_its_deliveries(sqlite_env, servers):
    """Ten addresses, each within its join limits, joining and leaving a large room: each
    join told to the room costs it two deliveries a socket (bench/README.md, "Comings and
    goings in one room"), so the room's DELIVERIES_PER_ROOM_* bounds how many are let in
    and told; the rest are refused `rate_limited`, and the room still hears its chat."""
    cycle = joins_cost(ROOM - 1, 1)  # one more join, told and then its leave told, to the others
    env = {**sqlite_env, **ROOMY, "DELIVERIES_PER_ADDRESS_BURST": "1000000", "JOINS_PER_MINUTE": "1000"}
    env |= {
        "DELIVERIES_PER_ROOM_BURST": str(ROOM_JOINS + 3 * cycle),
        "DELIVERIES_PER_ROOM_SUSTAINED": str(cycle),
    }
    (server,) = servers(env)
    owner, crowd, attackers, other = await crowd_room(server, lambda k: f"127.0.44.{k + 1}")

    started = time.monotonic()
    churns = (churn(x, owner.join_key, f"x{k}", started + 3) for k, x in enumerate(attackers))
    answers = [answer for each in await asyncio.gather(*churns) for answer in each]
    told = await told_of(crowd[0], "x")
    elapsed = time.monotonic() - started
    # The ten leaves are told (their joins paid for them). The joins let in since cost the
    # room at least `cheapest` each (the fewest sockets: all ten out), and together no
    # more than the three cycles left of the burst and a cycle a second since.
    let_in, cheapest = answers.count("RoomJoined"), 2 * (ROOM - ATTACKERS)
    assert let_in * cheapest <= (3 + elapsed) * cycle, (let_in, elapsed, answers)
    assert len(told) == ATTACKERS + 2 * let_in, told
    assert set(answers) == {"RoomJoined", "rate_limited"}, answers
    assert answers.count("rate_limited") > 3 * let_in, answers
    # The room is not silenced: once its bucket has refilled for a message, one is heard.
    await asyncio.sleep(1.5)
    await other.say("still here")
    assert [frame["sender"] for frame in await said_to(crowd[0], "Other")] == ["Other"]
    await asyncio.gather(*(client.close() for client in [owner, *crowd, *attackers, other]))


async def test_senders_on_processes_the_room_is_not_on_are_held_to_its_deliveries(shared_env, servers):
    """Behind nginx a socket lands where its affinity hint says, and a hint is the
    client's word: attackers on a process where the room has none of its members were
    charged for their own sockets alone, and the room's process handed out all their
    chat rate let through. They are now charged for the room's members in every process
    (chat.hub.Hub.members_in), and from one bucket of their address's for every process
    (Redis, chat.ratelimit.shared_deliveries), not one a process: spread over two
    processes, they are held to what one bucket lets through."""
    attackers_count, heard_at_once = 6, 10
    room = 1 + CROWD + attackers_count  # what a message costs once the attackers are in
    joined = joins_cost(1 + CROWD, attackers_count)  # their joins, to the crowd and each other
    env = {**shared_env, **ROOMY, "DELIVERIES_PER_ROOM_BURST": "1000000"}
    env |= {
        "DELIVERIES_PER_ADDRESS_BURST": str(joined + heard_at_once * room),
        "DELIVERIES_PER_ADDRESS_SUSTAINED": str(room),  # one message a second
        "DELIVERIES_LEASE": str(room),
    }
    rooms_process, *elsewhere = servers(env, 3)
    started = time.monotonic()
    owner = await Client.open(rooms_process.url, close_timeout=1, **from_address("127.0.40.1"))
    join_key = (await owner.create("Town hall"))["room_info"]["join_key"]
    crowd = []
    for k in range(CROWD):
        crowd.append(
            await Client.open(rooms_process.url, close_timeout=1, **from_address(f"127.0.41.{k // 5 + 1}"))
        )
        await crowd[-1].join(join_key, f"m{k}")
    attackers = []
    for k in range(attackers_count):
        process = elsewhere[k % 2]
        attackers.append(await Client.open(process.url, close_timeout=1, **from_address("127.0.42.1")))
        await attackers[-1].join(join_key, f"x{k}")

    await asyncio.gather(*(attacker.say(f"spam {n}") for attacker in attackers for n in range(FRAMES)))
    heard = await said_to(crowd[0], "x")
    elapsed = time.monotonic() - started
    # Their own chat rate lets 20 of each one's 30 through: 120 messages, all heard at
    # first; then 2 * heard_at_once, a bucket on each process. A lease each holds unspent.
    assert 5 <= len(heard) <= heard_at_once + int(elapsed) + 4, (len(heard), elapsed)
    assert (await errors_of(attackers)).count("rate_limited") >= attackers_count * FRAMES - len(heard) - 5
    await asyncio.gather(*(client.close() for client in [owner, *crowd, *attackers]))
