"""chat/security.py: the handshake's Origin check, the refusals (`deny`, `too_many`),
CONNECTIONS_PER_ADDRESS (`ConnectionLimit`), a socket's address and session key; then
the Origin check through config.asgi.application, over the in-memory and Redis layers."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from chat.security import (
    ConnectionLimit,
    OriginValidator,
    client_address,
    deny,
    origin_allowed,
    session_key_of,
    too_many,
)
from config.asgi import application

HOSTS = ["127.0.0.1", "localhost", "[::1]"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser
        ("http://localhost:8000", True),
        ("https://127.0.0.1", True),
        ("http://[::1]:8000", True),
        ("HTTP://LOCALHOST", True),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
        ("http://", False),  # no host
        ("http://[::1", False),  # not a URL
        ("localhost", False),  # no scheme: no host either
    ],
)
def test_origin_is_judged_by_its_host(origin, allowed):
    assert origin_allowed(origin, HOSTS) is allowed


def test_the_client_address_is_the_scopes():
    assert client_address({"client": ("203.0.113.7", 5000)}) == "203.0.113.7"
    assert client_address({"client": None}) is None
    assert client_address({}) is None


def test_an_ipv6_client_is_counted_by_its_network(settings):
    """A client with a /64 has 2**64 addresses: every per-address limit (connections,
    rooms, guesses, queues) would be none if each counted apart."""
    assert client_address({"client": ("2001:db8:1:2:aaaa::1", 1)}) == "2001:db8:1:2::"
    assert client_address({"client": ("2001:db8:1:2:ffff:1:2:3", 1)}) == "2001:db8:1:2::"
    assert client_address({"client": ("2001:db8:1:3::1", 1)}) == "2001:db8:1:3::"
    assert client_address({"client": ("::ffff:192.0.2.7", 1)}) == "192.0.2.7"
    settings.IPV6_PREFIX_LENGTH = 128
    assert client_address({"client": ("2001:db8:1:2:aaaa::1", 1)}) == "2001:db8:1:2:aaaa::1"


def test_the_session_key_comes_from_the_session_cookie(settings):
    cookie = f"theme=dark; {settings.SESSION_COOKIE_NAME}=abc123; other=1".encode()
    assert session_key_of({"headers": [(b"origin", b"x"), (b"cookie", cookie)]}) == "abc123"
    assert session_key_of({"headers": [(b"cookie", b"theme=dark")]}) is None
    assert session_key_of({"headers": []}) is None
    assert session_key_of({}) is None


class Asgi:
    """One socket's side of an ASGI exchange: what it will receive, what was sent."""

    def __init__(self, *received: dict) -> None:
        self.received = list(received)
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        return self.received.pop(0)

    async def send(self, message: dict) -> None:
        self.sent.append(message)


async def test_deny_closes_before_accepting_and_touches_nothing_else():
    socket = Asgi({"type": "websocket.connect"})
    await deny(socket.receive, socket.send)
    assert socket.sent == [{"type": "websocket.close"}]  # before accept: HTTP 403
    gone = Asgi({"type": "websocket.disconnect", "code": 1006})
    await deny(gone.receive, gone.send)
    assert gone.sent == []


async def test_too_many_is_429_where_the_server_can_say_so_else_1013():
    socket = Asgi({"type": "websocket.connect"})
    await too_many({"extensions": {"websocket.http.response": {}}}, socket.receive, socket.send)
    start, body = socket.sent
    assert start["type"] == "websocket.http.response.start" and start["status"] == 429
    assert (b"retry-after", b"10") in start["headers"]
    assert body["type"] == "websocket.http.response.body" and b"Too many connections" in body["body"]

    plain = Asgi({"type": "websocket.connect"})
    await too_many({"extensions": {}}, plain.receive, plain.send)
    assert plain.sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1013}]

    gone = Asgi({"type": "websocket.disconnect", "code": 1006})
    await too_many({}, gone.receive, gone.send)
    assert gone.sent == []


async def test_the_addresses_of_one_ipv6_network_share_its_connections(settings):
    settings.CONNECTIONS_PER_ADDRESS = 2
    finish = asyncio.Event()

    async def app(scope, receive, send):
        await finish.wait()

    limit = ConnectionLimit(app)
    held = [
        asyncio.create_task(limit({"type": "websocket", "client": (f"2001:db8::{n}", 1)}, None, None))
        for n in (1, 2)
    ]
    await asyncio.sleep(0)
    refused = Asgi({"type": "websocket.connect"})
    await limit({"type": "websocket", "client": ("2001:db8::ffff:3", 1)}, refused.receive, refused.send)
    assert refused.sent[-1] == {"type": "websocket.close", "code": 1013}
    other = asyncio.create_task(limit({"type": "websocket", "client": ("2001:db8:0:1::1", 1)}, None, None))
    await asyncio.sleep(0)
    assert limit.open == {"2001:db8::": 2, "2001:db8:0:1::": 1}
    finish.set()
    await asyncio.gather(*held, other)


async def test_an_address_holds_at_most_its_connections_until_they_end(settings):
    settings.CONNECTIONS_PER_ADDRESS = 2
    finish = asyncio.Event()
    served = []

    async def app(scope, receive, send):
        served.append(scope["client"])
        if scope["type"] == "websocket":
            await finish.wait()

    limit = ConnectionLimit(app)

    def socket(address: str) -> dict:
        return {"type": "websocket", "client": (address, 1)}

    held = [asyncio.create_task(limit(socket("10.0.0.1"), None, None)) for _ in range(2)]
    await asyncio.sleep(0)
    assert limit.open == {"10.0.0.1": 2}
    refused = Asgi({"type": "websocket.connect"})
    await limit(socket("10.0.0.1"), refused.receive, refused.send)  # the third: refused
    assert refused.sent[-1] == {"type": "websocket.close", "code": 1013} and len(served) == 2
    other = asyncio.create_task(limit(socket("10.0.0.2"), None, None))  # another address
    await limit({"type": "http", "client": ("10.0.0.1", 1)}, None, None)  # not a socket: not counted
    await asyncio.sleep(0)
    assert limit.open == {"10.0.0.1": 2, "10.0.0.2": 1}
    finish.set()
    await asyncio.gather(*held, other)
    assert limit.open == {}  # every place given back, and the addresses forgotten
    finish.clear()
    again = asyncio.create_task(limit(socket("10.0.0.1"), None, None))
    await asyncio.sleep(0)
    assert limit.open == {"10.0.0.1": 1}
    finish.set()
    await again


async def test_the_origin_validator_denies_a_foreign_origin_and_passes_the_rest():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    validator = OriginValidator(app)
    foreign = Asgi({"type": "websocket.connect"})
    headers = [(b"origin", b"https://evil.example")]
    await validator({"type": "websocket", "headers": headers}, foreign.receive, foreign.send)
    assert foreign.sent == [{"type": "websocket.close"}] and reached == []
    await validator({"type": "websocket", "headers": [(b"origin", b"http://localhost")]}, None, None)
    await validator({"type": "websocket", "headers": []}, None, None)
    await validator({"type": "http", "headers": headers}, None, None)  # pages: not its business
    assert reached == ["websocket", "websocket", "http"]


# --- Through the application -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),
        (b"http://localhost:8000", True),
        (b"https://127.0.0.1", True),
        (b"https://evil.example", False),
        (b"null", False),
        (b"http://localhost.evil.example", False),
    ],
)
async def test_origin_is_checked_at_the_handshake(layer, origin, accepted):
    headers = [(b"origin", origin)] if origin else []
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected is accepted
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("origin", [b"https://evil.example", b"null"])
async def test_a_refused_handshake_never_touches_the_channel_layer(layer, origin, monkeypatch):
    """Only the hub receives from the layer in a process: on Redis any other receive
    shares a lock with it (chat/hub.py), and a refused socket's could stall it."""

    def no_layer(*args, **kwargs):
        raise AssertionError("a refused handshake asked for the channel layer")

    monkeypatch.setattr("channels.consumer.get_channel_layer", no_layer)
    monkeypatch.setattr("channels.layers.channel_layers.get_channel_layer", no_layer, raising=False)
    communicator = WebsocketCommunicator(application, "/ws/", headers=[(b"origin", origin)])
    connected, _ = await communicator.connect()
    assert connected is False
    await communicator.wait()  # the application has returned: nothing left running for it
