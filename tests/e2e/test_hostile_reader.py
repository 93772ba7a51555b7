"""Issue 14, item 1: one slow reader cannot pin the server's memory. A client that loops
JoinRoom/LeaveRoom on a room with a large history without reading gets at most one
History built at a time (and JOINS_PER_MINUTE), the others' chat keeps its latency;
joins and reads are limited per connection, and sockets per address."""

import asyncio
import base64
import os
import statistics
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.servers import rss_mib
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONTENT = base64.b64encode(os.urandom(45_000)).decode()  # 60,000 characters of "ciphertext"
FAST_CHAT = {
    "CHAT_RATE_BURST": "100000",
    "CHAT_RATE_SUSTAINED": "100000",
    "CHAT_BYTES_PER_ADDRESS_BURST": "100000000",
}
ATTACKERS, ROUNDS = 20, 10  # sockets of one address, join/leave rounds each


@pytest.fixture(params=["sqlite", "postgres+redis"])
def env(request):
    """One server's environment: SQLite and the in-memory layer, or PostgreSQL and Redis."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_env")
    return request.getfixturevalue("shared_env")


async def chat_latencies(sender: Client, receiver: Client, count: int) -> list[float]:
    """Milliseconds from send to arrival at another member, one message at a time."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await sender.say("hello")
        await receiver.expect("ChatMessage", within=10)
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def test_join_leave_without_reading_on_a_large_history_pins_no_memory(env, servers):
    (server,) = servers({**env, **FAST_CHAT})
    alice = await Client.open(server.url)
    join_key = (await alice.create("Big history"))["room_info"]["join_key"]
    for _ in range(100):  # CHAT_HISTORY_LIMIT messages: every History is ~6 MB
        await alice.send(type="ChatMessage", content=CONTENT)
    for _ in range(100):
        await alice.expect("ChatMessage", within=30)
    carol, dave = await Client.open(server.url), await Client.open(server.url)
    other_room = (await carol.create("Elsewhere"))["room_info"]["join_key"]
    await dave.join(other_room, "Dave")
    await carol.expect("ParticipantJoined")
    quiet = await chat_latencies(carol, dave, 100)
    before = rss_mib(server.process.pid)

    # Never read: websockets stops taking frames after `max_queue`, then the kernel
    # buffers fill and the server's writes to them stall. One address, many sockets.
    attackers = [
        await connect(server.url, max_size=None, max_queue=1, compression=None) for _ in range(ATTACKERS)
    ]

    async def attack(attacker, number: int) -> None:
        join = f'{{"type":"JoinRoom","join_key":"{join_key}","name":"Mallory {number}"}}'
        try:
            for _ in range(ROUNDS):  # a History (6 MB) each, if every join built one
                await asyncio.wait_for(attacker.send(join), 2)
                await asyncio.wait_for(attacker.send('{"type":"LeaveRoom"}'), 2)
        except (TimeoutError, ConnectionClosed):
            pass  # the server stopped reading it (back-pressure), or closed it (1008)

    attacking = [asyncio.create_task(attack(a, n)) for n, a in enumerate(attackers)]
    during = await chat_latencies(carol, dave, 200)
    await asyncio.gather(*attacking)
    await asyncio.sleep(2)  # what the server still builds for it
    grown = rss_mib(server.process.pid) - before
    print(
        f"\nRSS grew {grown:.0f} MiB; chat p99 {p99(quiet):.1f} ms quiet, {p99(during):.1f} ms under attack"
    )
    assert grown < 128, f"server grew {grown:.0f} MiB"
    # Building every History at once took seconds. The bound is widened by the host's own
    # noise, measured quiet in the same run: here quiet p99 2-8 ms and 47-78 ms under attack;
    # one CI run on a busy host had quiet 39 ms and 251 ms under attack.
    bound = 250 + 5 * p99(quiet)
    assert p99(during) < bound, f"chat p99 {p99(during):.0f} ms, bound {bound:.0f} ms"
    for attacker in attackers:
        await attacker.close()
    for client in (alice, carol, dave):
        await client.close()


async def expect_error(client: Client, code: str) -> dict:
    message = await client.recv()
    assert message["type"] == "Error" and message["code"] == code, message
    return message


async def test_joins_and_reads_per_minute_are_limited_per_connection(env, servers):
    (server,) = servers({**env, "JOINS_PER_MINUTE": "6", "READS_PER_MINUTE": "8"})
    alice = await Client.open(server.url)
    join_key = (await alice.create())["room_info"]["join_key"]  # alice's first of 6
    bob = await Client.open(server.url)
    for _ in range(6):
        await bob.join(join_key, "Bob")
        await bob.send(type="LeaveRoom")
    await bob.send(type="JoinRoom", join_key=join_key, name="Bob")
    assert (await expect_error(bob, "rate_limited"))["message"]
    await bob.send(type="CreateRoom", name="Mine", description="")
    await expect_error(bob, "rate_limited")
    await bob.send(type="GetMembers")
    await expect_error(bob, "not_in_room")  # still usable; only its joins are limited

    for _ in range(7):  # 7 reads; the GetFile below is the 8th
        assert await alice.members() == ["Owner"]
    await alice.send(type="GetFile", file_id="00000000-0000-0000-0000-000000000000")
    await expect_error(alice, "file_not_found")  # the 8th read
    await alice.send(type="GetMembers")
    await expect_error(alice, "rate_limited")
    await alice.send(type="GetFile", file_id="00000000-0000-0000-0000-000000000000")
    await expect_error(alice, "rate_limited")
    await alice.say("still here")
    assert (await alice.expect("ChatMessage"))["sender"] == "Owner"

    # Rate-limited joins count toward the 1008 close like every rate-limited frame.
    for _ in range(49):  # bob has 2 already: 51 in all
        await bob.send(type="JoinRoom", join_key=join_key, name="Bob")
        await expect_error(bob, "rate_limited")
    with pytest.raises(ConnectionClosed) as closed:
        await bob.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    await alice.close()


async def open_status(url: str) -> Client | int:
    """A client, or the HTTP status of a refused handshake."""
    try:
        return await Client.open(url)
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize("command", ["serve", "runserver"])
async def test_connections_per_address_are_capped(sqlite_env, servers, command):
    env = {**sqlite_env, "CONNECTIONS_PER_ADDRESS": "5"}
    if command == "runserver":
        env["DJANGO_DEBUG"] = "1"
    (server,) = servers(env, 1, command)
    clients = [await Client.open(server.url) for _ in range(5)]
    # daphne answers with the status too (chat/daphne_close.py).
    assert await open_status(server.url) == 429
    # The five still work, and a socket that closes gives its place back.
    await clients[0].create()
    await clients[1].close()
    await asyncio.sleep(0.5)
    again = await Client.open(server.url)
    await again.create("Again")
    for client in (*clients, again):
        await client.close()
