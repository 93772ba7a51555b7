"""Refused handshakes and the health check on Redis, against real server processes.

A socket on a path with no socket is 404 under both servers, and a foreign Origin is
403 whatever the path, so that a typo in a path never reads as an Origin problem; a
refusal logs no error.

A socket refused at the handshake (foreign or `null` Origin) must never touch the
channel layer, and `/healthz` must check Redis without receiving from the layer: in
channels-redis every process-local channel of a layer object shares one receive lock,
so any receive beside the hub's can hold it and silence the process's broadcasts
(issue 12)."""

import asyncio
import time
import urllib.error
import urllib.request

import pytest

from chatclient.crypto import decrypt
from tests.e2e.wsclient import Client, handshake_status, room_of_two

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REFUSED = 200


async def refused_handshakes(url: str, count: int) -> list[int]:
    """`count` refused handshakes, foreign and `null` Origins alternating, a few at a time."""
    statuses: list[int] = []
    origins = ["http://evil.example", "null"]
    for start in range(0, count, 10):
        batch = [handshake_status(url, origins[n % 2]) for n in range(start, min(start + 10, count))]
        statuses.extend(await asyncio.gather(*batch))
    return statuses


async def next_chat(client: Client, within: float = 5) -> dict:
    return await client.expect("ChatMessage", within=within)


@pytest.mark.parametrize("command", ["serve", "runserver"])
async def test_refused_handshakes_never_silence_a_chatting_room(redis_env, servers, command):
    (server,) = servers(redis_env, command=command)
    alice, bob, join_key = await room_of_two(server.url)

    refusing = asyncio.create_task(refused_handshakes(server.url, REFUSED))
    sent = 0
    while not refusing.done() or sent < 10:
        speaker, listener = (alice, bob) if sent % 2 == 0 else (bob, alice)
        text = f"message {sent}"
        await speaker.say(text)
        # Every message reaches both sockets, while the refusals go on and after them.
        for client in (speaker, listener):
            got = await next_chat(client)
            assert decrypt(client.key, got["content"]) == text
        sent += 1
    assert await refusing == [403] * REFUSED
    assert sent >= 10

    # Presence still flows: a newcomer is announced, a leaver too.
    carol = await Client.open(server.url)
    await carol.join(join_key, "Carol")
    assert (await alice.expect("ParticipantJoined"))["name"] == "Carol"
    await carol.close()
    assert (await bob.expect("ParticipantLeft"))["name"] == "Carol"
    await alice.close()
    await bob.close()


@pytest.mark.parametrize("command", ["serve", "runserver"])
async def test_a_socket_on_a_wrong_path_is_404_and_a_foreign_origin_still_403(sqlite_env, servers, command):
    """runserver (daphne) answered every refused handshake 403, a wrong path's too."""
    (server,) = servers(sqlite_env, command=command)
    base = server.url.removesuffix("/ws/")
    local = "http://127.0.0.1"
    statuses = {
        (path, origin): await handshake_status(base + path, origin)
        for path in ("/ws/typo/", "/typo", "/ws")
        for origin in (local, None)
    }
    assert statuses == dict.fromkeys(statuses, 404)
    assert await handshake_status(base + "/ws/typo/", "http://evil.example") == 403
    assert await handshake_status(base + "/ws/", "http://evil.example") == 403
    assert await handshake_status(base + "/ws/", local) == 101
    log = server.log_path.read_text()
    # uvicorn logged "ASGI callable returned without completing handshake." for each 404.
    assert "Traceback" not in log and " ERROR " not in log, log


def get_health(http: str, timeout: float = 10) -> tuple[int, dict, float]:
    """(status, body, seconds) of GET /healthz."""
    import json

    began = time.monotonic()
    try:
        with urllib.request.urlopen(f"{http}/healthz", timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, json.loads(body), time.monotonic() - began


async def test_healthz_is_200_on_an_idle_process_whose_hub_has_started(redis_env, servers):
    (server,) = servers(redis_env)
    alice = await Client.open(server.url)
    await alice.create()  # starts the hub: its receive now waits in Redis
    await asyncio.sleep(1)
    answers = [await asyncio.to_thread(get_health, server.http) for _ in range(100)]
    assert [status for status, _, _ in answers] == [200] * 100
    assert all(body["channel_layer"] == "ok" for _, body, _ in answers)
    # The room still works after all those checks.
    await alice.say("still here")
    assert decrypt(alice.key, (await next_chat(alice))["content"]) == "still here"
    await alice.close()


async def test_healthz_is_503_within_its_timeout_when_redis_stops_or_hangs(
    own_redis, servers, tmp_path, redis_env
):
    env = {**redis_env, "REDIS_URL": own_redis.url}
    (server,) = servers(env)
    alice = await Client.open(server.url)
    await alice.create()
    assert get_health(server.http)[0] == 200

    # Hung: the process is there and answers nothing.
    own_redis.freeze()
    try:
        status, body, seconds = await asyncio.to_thread(get_health, server.http)
    finally:
        own_redis.thaw()
    assert (status, body["channel_layer"], body["database"]) == (503, "down", "ok")
    assert seconds < 3, seconds  # HEALTH_TIMEOUT is 2 s

    # Stopped: connections are refused.
    own_redis.stop()
    status, body, seconds = await asyncio.to_thread(get_health, server.http)
    assert (status, body["channel_layer"]) == (503, "down") and seconds < 3, (body, seconds)

    own_redis.start()
    deadline = time.monotonic() + 10
    while (await asyncio.to_thread(get_health, server.http))[0] != 200:
        assert time.monotonic() < deadline, "healthz did not recover after Redis came back"
        await asyncio.sleep(0.2)
    await alice.close()
