"""Issue 14, items 2 and 3, against real server processes: guesses sent in parallel get
no more `wrong_password` answers than the limit, and a flood of password work is
refused `rate_limited` past its share of a bounded queue while others join and chat."""

import asyncio
import json
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.servers import ROOT
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# The other hostile-client limits are not what these tests are about.
ROOMY = {
    "CONNECTIONS_PER_ADDRESS": "1000",
    "ROOMS_PER_HOUR": "100000",
}
GUESSES = 200


def from_address(address: str) -> dict:
    """Connect as another client address: another one of the loopback's 127.0.0.0/8."""
    return {"local_addr": (address, 0)}


async def answer(client: Client) -> dict:
    """The reply to a JoinRoom or CreateRoom: the first frame that is not presence."""
    while True:
        frame = await client.recv(within=60)
        if frame["type"] in {"Error", "RoomJoined", "RoomCreated"}:
            return frame


async def guess_in_parallel(urls: list[str], join_key: str) -> list[str]:
    """GUESSES wrong passwords, all sent before any answer, spread over `urls`."""
    attackers = await asyncio.gather(*(Client.open(urls[i % len(urls)]) for i in range(GUESSES)))
    await asyncio.gather(
        *(
            a.send(type="JoinRoom", join_key=join_key, name=f"M{i}", password=f"guess{i}")
            for i, a in enumerate(attackers)
        )
    )
    replies = await asyncio.gather(*(answer(a) for a in attackers))
    await asyncio.gather(*(a.close() for a in attackers))
    return [reply.get("code", reply["type"]) for reply in replies]


async def check_parallel_guesses(urls: list[str]) -> None:
    owner = await Client.open(urls[0], **from_address("127.0.20.1"))
    join_key = (await owner.create(password="right"))["room_info"]["join_key"]

    codes = await guess_in_parallel(urls, join_key)

    assert 1 <= codes.count("wrong_password") <= 5, codes
    assert codes.count("rate_limited") == GUESSES - codes.count("wrong_password"), codes
    # Guesses refused because the work queue was full took no place: guessing on, one
    # at a time, still gets no more than 5 wrong_password answers in all.
    wrong = codes.count("wrong_password")
    guesser = await Client.open(urls[-1])
    for i in range(10):
        await guesser.send(type="JoinRoom", join_key=join_key, name="M", password=f"again{i}")
        code = (await answer(guesser))["code"]
        if code == "rate_limited":
            break
        assert code == "wrong_password"
        wrong += 1
    assert wrong == 5, (wrong, codes)
    await guesser.close()
    # Within the minute even the right password is refused from that address, on
    # every process; another address is not affected.
    for url in urls:
        late = await Client.open(url)
        await late.send(type="JoinRoom", join_key=join_key, name="Late", password="right")
        assert (await answer(late))["code"] == "rate_limited"
        await late.close()
    friend = await Client.open(urls[-1], **from_address("127.0.20.2"))
    assert (await friend.join(join_key, "Friend", password="right"))["type"] == "RoomJoined"
    await friend.close()
    await owner.close()


async def test_parallel_wrong_guesses_get_at_most_the_limit(sqlite_env, servers):
    (server,) = servers({**sqlite_env, **ROOMY})
    await check_parallel_guesses([server.url])


async def test_parallel_wrong_guesses_on_two_processes_get_at_most_the_limit(shared_env, servers):
    one, two = servers({**shared_env, **ROOMY}, 2)
    await check_parallel_guesses([one.url, two.url])


FLOODERS = 60
FLOOD_SECONDS = 6.0
QUIET_SECONDS = 3.0


async def flood_password_rooms(url: str) -> list[str]:
    """FLOODERS connections from one address create password rooms as fast as the
    server answers for FLOOD_SECONDS: every create is an Argon2 hash. Prints "go"
    when all are connected and about to send."""
    clients = await asyncio.gather(*(Client.open(url) for _ in range(FLOODERS)))
    print("go", flush=True)
    deadline = time.monotonic() + FLOOD_SECONDS

    async def flooder(index: int, client: Client) -> list[str]:
        codes = []
        try:
            while time.monotonic() < deadline:
                await client.send(type="CreateRoom", name=f"F{index}", description="", password="pw")
                reply = await answer(client)
                codes.append(reply.get("code", reply["type"]))
                if reply["type"] == "RoomCreated":
                    await client.send(type="LeaveRoom")
        except ConnectionClosed as closed:  # 1008: the 51st rate_limited frame in 10 s
            codes.append(f"closed {closed.rcvd and closed.rcvd.code}")
        await client.close()
        return codes

    rounds = await asyncio.gather(*(flooder(i, c) for i, c in enumerate(clients)))
    return [code for codes in rounds for code in codes]


async def flood_elsewhere(url: str, started: asyncio.Event) -> list[str]:
    """The flood from a process of its own at the lowest CPU priority: an attacker's
    CPU is not the server's, and must not delay the measuring clients here."""
    script = (
        "import asyncio, json, os, sys; os.nice(19); "
        "from tests.e2e.test_hostile_work import flood_password_rooms; "
        "print(json.dumps(asyncio.run(flood_password_rooms(sys.argv[1]))))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert (await process.stdout.readline()).strip() == b"go"
    started.set()
    out, _ = await process.communicate()
    assert process.returncode == 0
    return json.loads(out)


def p99_ms(took: list[float]) -> float:
    return round(1000 * sorted(took)[int(0.99 * (len(took) - 1))], 1)


async def chat_latencies(alice: Client, bob: Client, stop: asyncio.Event) -> list[float]:
    """Alice's messages to Bob, one every 10 ms until `stop`: seconds to arrive."""
    took = []
    while not stop.is_set():
        began = time.perf_counter()
        await alice.say("ping")
        await bob.expect("ChatMessage", within=30)
        took.append(time.perf_counter() - began)
        await alice.expect("ChatMessage", within=30)
        await asyncio.sleep(0.01)
    return took


async def check_flood(url: str) -> dict:
    elsewhere = from_address("127.0.30.1")
    alice = await Client.open(url, **elsewhere)
    chat_key = (await alice.create())["room_info"]["join_key"]
    bob = await Client.open(url, **elsewhere)
    await bob.join(chat_key, "Bob")
    owner = await Client.open(url, **elsewhere)
    locked_key = (await owner.create(password="open sesame"))["room_info"]["join_key"]

    # The chat's latency on this machine as it is now, without the flood.
    quiet = asyncio.Event()
    asyncio.get_running_loop().call_later(QUIET_SECONDS, quiet.set)
    quiet_p99 = p99_ms(await chat_latencies(alice, bob, quiet))

    stop = asyncio.Event()
    chat = asyncio.create_task(chat_latencies(alice, bob, stop))
    started = asyncio.Event()
    flood = asyncio.create_task(flood_elsewhere(url, started))
    await asyncio.wait_for(started.wait(), 60)
    await asyncio.sleep(0.2)  # the flood is under way
    # Someone else joins a password room meanwhile: a few hashes wait ahead, not the flood.
    guest = await Client.open(url, **from_address("127.0.30.2"))
    began = time.perf_counter()
    await guest.join(locked_key, "Guest", password="open sesame")
    join_seconds = time.perf_counter() - began
    codes = await flood
    stop.set()
    took = await chat
    for client in (alice, bob, owner, guest):
        await client.close()
    figures = {
        "flood_created": codes.count("RoomCreated"),
        "flood_rate_limited": codes.count("rate_limited"),
        "flood_closed_1008": codes.count("closed 1008"),
        "guest_join_s": round(join_seconds, 3),
        "chat_p99_ms": p99_ms(took),
        "chat_max_ms": round(1000 * max(took), 1),
        "chat_messages": len(took),
        "quiet_chat_p99_ms": quiet_p99,
    }
    print(figures)
    assert set(codes) <= {"RoomCreated", "rate_limited", "closed 1008"}, codes
    assert figures["flood_rate_limited"] > 0 and figures["flood_created"] > 0, figures
    assert join_seconds < 1.0, figures
    # The flood's hashes queue for seconds: neither the guest's join nor any chat message
    # waits behind them. How fast the chat stays under attack is a figure, not a test:
    # `bash bench/run.sh hostile` measures it (bench/README.md, "Hostile clients").
    assert figures["chat_max_ms"] < 1000, figures
    return figures


# Hashes ten times the default cost (~10x longer): a queue of them is seconds long.
# The measuring chat sends every 10 ms, past the default chat rate limit.
SLOW_HASH = {"ROOM_PASSWORD_ARGON2_TIME_COST": "40", "CHAT_RATE_BURST": "1000", "CHAT_RATE_SUSTAINED": "1000"}


async def test_a_flood_of_password_work_is_refused_past_its_share(sqlite_env, servers):
    (server,) = servers({**sqlite_env, **ROOMY, **SLOW_HASH})
    await check_flood(server.url)


async def test_a_flood_of_password_work_is_refused_past_its_share_on_redis(shared_env, servers):
    (server,) = servers({**shared_env, **ROOMY, **SLOW_HASH})
    await check_flood(server.url)


JOINERS = 150


async def check_database_queue(url: str) -> None:
    """JOINERS joins arriving together find a short database queue: those past it are
    refused `rate_limited` at once (not queued), and chat elsewhere is never refused."""
    elsewhere = from_address("127.0.40.1")
    alice = await Client.open(url, **elsewhere)
    chat_key = (await alice.create())["room_info"]["join_key"]
    bob = await Client.open(url, **elsewhere)
    await bob.join(chat_key, "Bob")
    owner = await Client.open(url, **from_address("127.0.40.2"))
    join_key = (await owner.create())["room_info"]["join_key"]
    joiners = await asyncio.gather(*(Client.open(url) for _ in range(JOINERS)))

    async def join(index: int, client: Client) -> str:
        await client.send(type="JoinRoom", join_key=join_key, name=f"J{index}")
        reply = await answer(client)
        return reply.get("code", reply["type"])

    storm = asyncio.gather(*(join(i, c) for i, c in enumerate(joiners)))
    for i in range(10):  # chat goes on meanwhile: stored and delivered, never refused
        await alice.say(f"during {i}")
        assert (await bob.expect("ChatMessage", within=30))["type"] == "ChatMessage"
    codes = await storm
    print({"joined": codes.count("RoomJoined"), "rate_limited": codes.count("rate_limited")})
    assert set(codes) == {"RoomJoined", "rate_limited"}, codes
    for client in (alice, bob, owner, *joiners):
        await client.close()


QUEUE_OF_TWO = {"DATABASE_QUEUE": "2"}


async def test_a_storm_of_joins_past_the_database_queue_is_refused(sqlite_env, servers):
    (server,) = servers({**sqlite_env, **ROOMY, **QUEUE_OF_TWO})
    await check_database_queue(server.url)


async def test_a_storm_of_joins_past_the_database_queue_is_refused_on_postgres(shared_env, servers):
    (server,) = servers({**shared_env, **ROOMY, **QUEUE_OF_TWO})
    await check_database_queue(server.url)
