"""A client that stops reading cannot slow its room or grow the server's memory: its
backlog is capped, and it is closed with 4002 (PROTOCOL notes) when it reads again."""

import asyncio
import base64
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.servers import rss_mib
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MESSAGES = 1500
CONTENT = base64.b64encode(os.urandom(45_000)).decode()  # 60,000 characters of "ciphertext"


async def test_a_stuck_reader_is_capped_and_closed_while_the_room_goes_on(sqlite_env, servers):
    env = {
        **sqlite_env,
        "WS_SEND_QUEUE_LIMIT": "100",
        "CHAT_RATE_BURST": "100000",
        "CHAT_RATE_SUSTAINED": "100000",
        "CHAT_BYTES_PER_ADDRESS_BURST": "1000000000",
    }
    (server,) = servers(env)
    alice = await Client.open(server.url)
    join_key = (await alice.create())["room_info"]["join_key"]
    bob = await Client.open(server.url)
    await bob.join(join_key, "Bob")
    # Reads nothing once joined: websockets stops taking frames after `max_queue`,
    # then the kernel buffers fill and the server's writes to it stall.
    stuck = await connect(server.url, max_size=None, max_queue=1, compression=None)
    await stuck.send(f'{{"type":"JoinRoom","join_key":"{join_key}","name":"Stuck"}}')
    await alice.expect("ParticipantJoined")
    await alice.expect("ParticipantJoined")
    before = rss_mib(server.process.pid)

    async def receive_all(client: Client) -> int:
        got = 0
        while got < MESSAGES:
            if (await client.recv(within=30))["type"] == "ChatMessage":
                got += 1
        return got

    readers = [asyncio.create_task(receive_all(c)) for c in (alice, bob)]
    for _ in range(MESSAGES):  # 90 MB through the room, to each member
        await alice.send(type="ChatMessage", content=CONTENT)
    assert await asyncio.gather(*readers) == [MESSAGES, MESSAGES]  # the others lost nothing
    grown = rss_mib(server.process.pid) - before
    # Kept for the stuck one: at most WS_SEND_QUEUE_LIMIT frames plus socket buffers,
    # not the 90 MB it was sent.
    assert grown < 45, f"server grew {grown:.0f} MiB"

    # When it reads again it finds its backlog cut short and a 4002 close.
    frames = 0
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(stuck.recv(), 30)
            frames += 1
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002
    assert frames < MESSAGES
    assert (await alice.expect("ParticipantLeft")) == {"type": "ParticipantLeft", "name": "Stuck"}
    await alice.close()
    await bob.close()
