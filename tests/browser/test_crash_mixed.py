"""Issue 7 with both kinds of client in one room: a page and two Python clients (chatclient)
chat while the server process is SIGKILLed, and it is restarted on the same port and SQLite
file. Each reconnects on its own and rejoins with `since`; in the end every message id any
of them saw (or had acknowledged) is shown by each exactly once, in id order."""

import asyncio
import os
import re
import signal
import threading
import time

import pytest
from playwright.sync_api import expect

from chatclient import ChatClient, History, Message
from tests.browser.pages import create_room, join_key_of, say

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def aio():
    """An asyncio loop in a thread of its own for chatclient (Playwright's sync API cannot
    share a thread with a running loop): `aio(coro)` starts it there and returns a Future."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield lambda coro: asyncio.run_coroutine_threadsafe(coro, loop)

    async def cancel_all():
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def collect(client: ChatClient, shown: list[Message]) -> None:
    """Record every message the client's stream shows, History included."""
    while True:
        event = await client.next_event()
        if isinstance(event, History):
            shown.extend(event.messages)
        elif isinstance(event, Message):
            shown.append(event)


async def chatter(client: ChatClient, stop: threading.Event, sends: list[list], going: asyncio.Event) -> None:
    """Send back to back until `stop`, recording [start, end, id] of each send; `going`
    is set after the fifth."""
    while not stop.is_set():
        sends.append([time.monotonic(), None, None])
        message = await client.send(f"{client.name} {len(sends)}")
        sends[-1][1:] = time.monotonic(), message.id
        if len(sends) == 5:
            going.set()


def test_page_and_python_clients_lose_and_repeat_nothing_across_a_sigkill(server_with, new_page, aio):
    # Fast presence: the dead process's seats (ghosts) hold the names for seconds, not a minute.
    server = server_with(PRESENCE_HEARTBEAT="0.5", PRESENCE_TIMEOUT="2")
    alice = new_page(server.http)
    join_key = join_key_of(create_room(alice, "Mixed", "Alice"))

    async def join(name: str) -> ChatClient:
        client = await ChatClient.connect(server.url)
        await client.join_room(join_key, name)
        return client

    bob, carol = aio(join("Bob")).result(30), aio(join("Carol")).result(30)
    shown: dict[str, list[Message]] = {"Bob": [], "Carol": []}
    sends: dict[str, list[list]] = {"Bob": [], "Carol": []}
    stop = threading.Event()
    for client in (bob, carol):
        aio(collect(client, shown[client.name]))

    say(alice, "alice 1")
    say(alice, "alice 2")
    expect(alice.locator("#messages li.mine .text")).to_have_text(["alice 1", "alice 2"])

    async def talk_and_kill() -> tuple[float, list[asyncio.Task]]:
        going = {name: asyncio.Event() for name in sends}
        talk = [asyncio.create_task(chatter(c, stop, sends[c.name], going[c.name])) for c in (bob, carol)]
        await asyncio.gather(*(event.wait() for event in going.values()))
        # Frozen mid-chat, then killed: the frozen process reads, stores and answers nothing
        # more; echoes already on their way are read meanwhile, so each client's last send is
        # one it never answers (a send under way at the freeze may be stored or not).
        os.kill(server.process.pid, signal.SIGSTOP)
        await asyncio.sleep(0.2)
        server.kill()
        stop.set()  # each finishes the send the kill interrupted, then stops
        return time.monotonic(), talk

    killed, talk = aio(talk_and_kill()).result(30)
    expect(alice.locator("#status")).to_have_text(re.compile("Connection lost"))
    server.start()  # same port, same SQLite file

    # Nobody is told to reconnect: the page and chatclient do it on their own.
    expect(alice.locator("#status")).to_have_text("Reconnected to Mixed.", timeout=40_000)
    say(alice, "alice after")

    async def finish_talking() -> None:
        await asyncio.gather(*talk)  # the interrupted sends end once the clients have rejoined

    aio(finish_talking()).result(60)
    after = [aio(client.send(f"{client.name} after")).result(30).id for client in (bob, carol)]
    acked = {id for done in sends.values() for *_, id in done} | set(after)

    def shown_now() -> dict[str, list[tuple[int, str]]]:
        """(id, text) of every message each client shows, in the order shown."""
        page = alice.locator("#messages li.message").evaluate_all(
            "items => items.map(item => [Number(item.dataset.id), item.querySelector('.text').textContent])"
        )
        return {"Alice": [tuple(item) for item in page]} | {
            name: [(message.id, message.text) for message in messages] for name, messages in shown.items()
        }

    deadline = time.monotonic() + 30
    while True:
        now = shown_now()
        everything = acked.union(*({id for id, _ in seen} for seen in now.values()))
        missing = {name: sorted(everything - {id for id, _ in seen}) for name, seen in now.items()}
        if not any(missing.values()):
            break
        assert time.monotonic() < deadline, missing
        time.sleep(0.1)
    time.sleep(0.5)  # anything shown twice would have arrived by now

    now = shown_now()
    everything = acked.union(*({id for id, _ in seen} for seen in now.values()))
    for name, seen in now.items():
        ids, texts = [id for id, _ in seen], [text for _, text in seen]
        assert len(ids) == len(set(ids)), f"{name} was shown a message twice: {ids}"
        assert ids == sorted(ids), f"{name} was shown messages out of order: {ids}"
        assert set(ids) == everything, f"{name} missed {sorted(everything - set(ids))}"
        # Every text is sent once: one shown twice is a resent message stored twice.
        assert len(texts) == len(set(texts)), f"{name} was shown a text twice: {seen}"
    # Each Python client had a send in flight at the kill, answered by the new process: the
    # old one was frozen 0.2 s before `killed`, so any answer after it is the new one's. Not
    # "after `server.start()` returned": a client can rejoin and be answered before the
    # test's /healthz poll (every 0.2 s) sees the new process up; CI saw it once.
    for name, done in sends.items():
        assert any(start < killed < end for start, end, _ in done), f"{name}: none in flight"
    # Both ways after the restart: the page's message reached Python, and Python's the page.
    assert {"Bob after", "Carol after"} <= {text for _, text in now["Alice"]}
    assert all("alice after" in [text for _, text in now[name]] for name in ("Bob", "Carol"))
    # The page rejoined with `since` (the last id it had) and its owner token.
    joins = [frame for frame in alice.frames_sent if frame["type"] == "JoinRoom"]
    assert joins and all(join["since"] and join["owner_token"] for join in joins)
    for client in (bob, carol):
        aio(client.close()).result(10)
