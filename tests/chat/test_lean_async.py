"""chat/lean_async.py: the queue and flag that stand in for asyncio's in each socket of
`manage.py serve`, and what the socket forgets once accepted (chat/frame_budget.py),
against uvicorn itself on a port of the test's."""

import asyncio
import gc
import socket

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.datastructures import Headers

from chat.frame_budget import BudgetedWebSocket
from chat.lean_async import EventQueue, Flag


async def test_the_queue_hands_items_out_in_order() -> None:
    queue = EventQueue()
    assert queue.empty() and queue.qsize() == 0
    for item in range(3):
        queue.put_nowait(item)
    assert queue.qsize() == 3
    assert await queue.get() == 0
    queue.put_nowait(3)  # while others wait
    assert queue.qsize() == 3
    assert [await queue.get() for _ in range(3)] == [1, 2, 3]
    assert queue.empty() and queue.items == []  # nothing held once drained


async def test_a_reader_waits_for_the_next_item() -> None:
    queue = EventQueue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not reader.done()
    queue.put_nowait("connect")
    assert await reader == "connect"
    assert queue.getters == []  # nothing left behind by the wait


async def test_a_woken_reader_cancelled_leaves_the_item_to_another() -> None:
    queue = EventQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")
    first.cancel()
    assert await second == "only"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert queue.empty() and queue.getters == []


async def test_the_flag_lets_waiters_go_when_set() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True]
    assert flag.waiters == []
    assert await flag.wait() is True  # set: no wait
    flag.clear()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flag.waiters == []


PROBE = "probe-7f3c9e"  # a header value found nowhere else


def headers_holding(value: str, besides: object) -> list[object]:
    """Live objects of the handshake that still hold a header value: websockets'
    `Headers` (`besides`: the client's own), and the scope's (name, value) pairs."""
    gc.collect()
    found: list[object] = []
    for thing in gc.get_objects():
        if isinstance(thing, Headers) and thing is not besides and value in thing.get_all("x-probe"):
            found.append(thing)
        elif isinstance(thing, list) and (b"x-probe", value.encode()) in thing:
            found.append(thing)
    return found


async def test_an_accepted_socket_forgets_its_handshake_headers() -> None:
    seen: dict = {}

    async def app(scope, receive, send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        seen["probe"] = dict(scope["headers"]).get(b"x-probe")  # the app reads them first
        await send({"type": "websocket.accept"})
        seen["after_accept"] = list(scope["headers"])
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"].upper()})

    # Listening before uvicorn starts: the client's connect waits in the backlog.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, ws=BudgetedWebSocket, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with connect(f"ws://127.0.0.1:{port}/", additional_headers={"X-Probe": PROBE}) as client:
            await client.send("hello")
            assert await client.recv() == "HELLO"  # the queue and the flag carry frames both ways
            assert seen == {"probe": PROBE.encode(), "after_accept": []}
            (protocol,) = server.server_state.connections
            assert isinstance(protocol.queue, EventQueue) and isinstance(protocol.writable, Flag)
            assert headers_holding(PROBE, besides=client.request.headers) == []
    finally:
        server.should_exit = True
        await serving
