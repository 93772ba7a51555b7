"""chat/security.py: the handshake's Origin check, the refusals (`deny`, `too_many`),
CONNECTIONS_PER_ADDRESS (`ConnectionLimit`), HTTP requests in flight (`RequestLimit`), a
socket's address and session key; then the Origin check and the requests in flight
through config.asgi.application, over the in-memory and Redis layers."""

import asyncio
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator

from chat.security import (
    BodyLimit,
    ConnectionLimit,
    OriginValidator,
    RequestLimit,
    client_address,
    deny,
    no_such_path,
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


async def test_a_socket_on_no_such_path_is_404_where_the_server_can_say_so_else_403():
    socket = Asgi({"type": "websocket.connect"})
    await no_such_path({"extensions": {"websocket.http.response": {}}}, socket.receive, socket.send)
    start, body = socket.sent
    assert start["type"] == "websocket.http.response.start" and start["status"] == 404
    assert body["type"] == "websocket.http.response.body" and b"/ws/" in body["body"]
    plain = Asgi({"type": "websocket.connect"})
    await no_such_path({"extensions": {}}, plain.receive, plain.send)
    assert plain.sent == [{"type": "websocket.close"}]


@pytest.mark.parametrize("path", ["/ws", "/foo/", "/ws/x/"])
async def test_the_application_refuses_a_socket_on_no_such_path_without_an_error(path, caplog):
    """Channels' router raised "No route found" (a 500 and a traceback) for these."""
    communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1")])
    connected, _ = await communicator.connect()
    assert not connected
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


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


class Pages:
    """A fake HTTP application: reads the body first, as Django does, then holds each
    request until `finish` is set (`/raise` then fails)."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.served: list[str] = []

    async def __call__(self, scope, receive, send):
        while (message := await receive())["type"] == "http.request" and message.get("more_body"):
            pass
        if message["type"] == "http.disconnect":
            return
        self.served.append(scope["client"][0])
        await self.finish.wait()
        if scope["path"] == "/raise":
            raise RuntimeError("the view failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})


class Request:
    """One HTTP request through `limit`, its body in unless `body_in` is False."""

    def __init__(self, limit: RequestLimit, address: str, path: str = "/", body_in: bool = True) -> None:
        self.received: asyncio.Queue[dict] = asyncio.Queue()
        self.received.put_nowait({"type": "http.request", "body": b"x", "more_body": not body_in})
        self.sent: list[dict] = []
        scope = {"type": "http", "path": path, "client": (address, 1)}
        self.task = asyncio.create_task(limit(scope, self.received.get, self.send))

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return self.sent[0]["status"] if self.sent else None


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_requests_in_flight_are_bounded_per_address_and_per_process(settings):
    settings.HTTP_REQUESTS_PER_ADDRESS, settings.HTTP_REQUESTS_PER_PROCESS = 2, 3
    app = Pages()
    limit = RequestLimit(app)
    held = [Request(limit, "2001:db8::1"), Request(limit, "2001:db8::2")]  # one /64: one address
    await settle()
    refused = Request(limit, "2001:db8::ffff:3")
    await refused.task  # answered at once, while the others are held
    start, body = refused.sent
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert b"busy" in body["body"]
    # The headers Django would have added, as on a page (tests/e2e/test_headers.py).
    assert {(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")} <= set(start["headers"])
    held.append(Request(limit, "10.0.0.2"))  # another address: let in
    await settle()
    assert limit.in_flight.owners == {"2001:db8::": 2, "10.0.0.2": 1} and limit.in_flight.total == 3
    full = Request(limit, "10.0.0.3")
    await full.task
    assert full.status == 503  # the process is full
    # Not counted: the health check, and what takes no view thread (static files, a
    # page loads a dozen at once; downloads, bounded on their own).
    uncounted = [
        Request(limit, "2001:db8::1", path) for path in ("/healthz", "/static/chat/app.js", "/files/x")
    ]
    await settle()
    assert app.served == ["2001:db8::1", "2001:db8::2", "10.0.0.2"] + ["2001:db8::1"] * 3
    app.finish.set()
    await asyncio.gather(*(request.task for request in [*held, *uncounted]))
    assert [request.status for request in [*held, *uncounted]] == [200] * 6
    assert limit.in_flight.total == 0 and not limit.in_flight.owners  # every place given back
    again = Request(limit, "2001:db8::1")
    await again.task
    assert again.status == 200


async def test_downloads_in_flight_are_bounded_apart_per_address_and_per_process(settings):
    """Each download looks its session up in the database queue a join waits in: one
    address's flood of them held every join of the process. They are bounded from their
    start until answered, apart from pages (whose places they never take)."""
    settings.FILE_REQUESTS_PER_ADDRESS, settings.FILE_REQUESTS_PER_PROCESS = 2, 3
    settings.HTTP_REQUESTS_PER_ADDRESS = 1
    app = Pages()
    limit = RequestLimit(app)
    held = [Request(limit, "10.0.0.1", "/files/a"), Request(limit, "10.0.0.1", "/files/b")]
    await settle()
    refused = Request(limit, "10.0.0.1", "/files/c")
    await refused.task
    assert refused.status == 503 and limit.files.owners == {"10.0.0.1": 2}
    page = Request(limit, "10.0.0.1", "/")  # pages keep their own places
    held += [page, Request(limit, "10.0.0.2", "/files/a")]
    await settle()
    full = Request(limit, "10.0.0.3", "/files/a")
    await full.task
    assert full.status == 503 and limit.files.total == 3 and limit.in_flight.total == 1
    app.finish.set()
    await asyncio.gather(*(request.task for request in held))
    assert [request.status for request in held] == [200] * 4
    assert limit.files.total == 0 and not limit.files.owners  # every place given back


async def test_a_download_gives_its_place_back_once_its_body_is_sent(settings):
    """Django closes a response after sending it, in the database thread, which may be
    busy: a kept-alive connection's next download came meanwhile and found the place of
    the one it had already read still held (one address's four connections through
    nginx were refused 503 at six places)."""
    settings.FILE_REQUESTS_PER_ADDRESS = 1
    closed = asyncio.Event()

    async def download(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
        await closed.wait()  # Django's response.close, waiting for its thread

    limit = RequestLimit(download)
    first = Request(limit, "10.0.0.1", "/files/a")
    await settle()
    assert [message.get("body") for message in first.sent[1:]] == [b"part", b"end"]
    assert not first.task.done() and limit.files.total == 0
    following = Request(limit, "10.0.0.1", "/files/b")
    await settle()
    assert following.status == 200 and limit.files.owners == {}
    closed.set()
    await asyncio.gather(first.task, following.task)
    assert limit.files.total == 0 and not limit.files.owners  # given back once, not twice


async def test_a_place_is_taken_once_the_body_is_in_and_given_back_however_the_request_ends(settings):
    settings.HTTP_REQUESTS_PER_ADDRESS, settings.HTTP_REQUESTS_PER_PROCESS = 1, 64
    app = Pages()
    limit = RequestLimit(app)
    trickling = Request(limit, "10.0.0.1", body_in=False)
    await settle()
    assert limit.in_flight.total == 0  # its body is still coming: no thread, no place
    failing = Request(limit, "10.0.0.1", "/raise")
    await settle()
    assert limit.in_flight.owners == {"10.0.0.1": 1}
    app.finish.set()
    with pytest.raises(RuntimeError):
        await failing.task
    assert limit.in_flight.total == 0 and not limit.in_flight.owners
    app.finish.clear()
    cancelled = Request(limit, "10.0.0.1")
    await settle()
    assert limit.in_flight.owners == {"10.0.0.1": 1}
    cancelled.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled.task
    assert limit.in_flight.total == 0 and not limit.in_flight.owners
    trickling.received.put_nowait({"type": "http.request", "body": b"y"})  # the rest of its body
    await settle()
    assert limit.in_flight.owners == {"10.0.0.1": 1}
    app.finish.set()
    await trickling.task
    assert trickling.status == 200 and limit.in_flight.total == 0


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


def http_request(path: str, address: str) -> ApplicationCommunicator:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": (address, 40000),
        "server": ("127.0.0.1", 8000),
    }
    return ApplicationCommunicator(application, scope)


async def status_of(request: ApplicationCommunicator, seconds: float = 10) -> int:
    await request.send_input({"type": "http.request", "body": b""})
    start = await request.receive_output(seconds)
    await request.receive_output(seconds)  # the body
    await request.wait(seconds)
    return start["status"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
async def test_a_held_flood_of_pages_from_one_address_gets_503_while_another_is_served(settings, monkeypatch):
    """Each page runs in a thread of its own: one address gets HTTP_REQUESTS_PER_ADDRESS
    of them at once, the rest 503 at once; another address, and /healthz, are served."""
    settings.HTTP_REQUESTS_PER_ADDRESS = 8
    loop = asyncio.get_running_loop()
    all_in, release = asyncio.Event(), threading.Event()
    in_view: list[int] = []

    def held_room(join_key: str) -> dict:
        if join_key == "held":
            in_view.append(threading.get_ident())
            if len(in_view) == 8:
                loop.call_soon_threadsafe(all_in.set)
            release.wait(20)
        return {"has_password": None, "sealed": False}

    monkeypatch.setattr("chat.views.share_link_room", held_room)
    held = [asyncio.create_task(status_of(http_request("/rooms/held/", "10.1.0.1"), 30)) for _ in range(8)]
    try:
        await asyncio.wait_for(all_in.wait(), 10)
        refused = [await status_of(http_request("/rooms/held/", "10.1.0.1"), 5) for _ in range(4)]
        assert refused == [503] * 4 and len(in_view) == 8  # at once, and no view, no thread
        assert len(set(in_view)) == 8  # eight threads held
        assert await status_of(http_request("/", "10.1.0.2")) == 200  # another address
        assert await status_of(http_request("/healthz", "10.1.0.1")) == 200  # not counted
    finally:
        release.set()
        statuses = await asyncio.gather(*held, return_exceptions=True)
    assert statuses == [200] * 8


class StreamingPage:
    """A page that answers as soon as it is asked, then reads the body (none of Django's
    pages does; a streaming one could)."""

    def __init__(self) -> None:
        self.read: list[dict] = []

    async def __call__(self, scope: dict, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (message := await receive())["type"] == "http.request":
            self.read.append(message)
            if not message.get("more_body"):
                break
        self.read.append(message)
        await send({"type": "http.response.body", "body": b"done"})


async def test_a_body_past_the_bound_after_the_page_has_answered_is_cut_without_a_second_answer(settings):
    settings.HTTP_BODY_MAX = 10
    page = StreamingPage()
    chunks = [{"type": "http.request", "body": b"x" * 6, "more_body": True}] * 3
    coming = iter(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        return next(coming)

    async def send(message: dict) -> None:
        sent.append(message)

    await BodyLimit(page)({"type": "http", "path": "/", "headers": []}, receive, send)
    # The first chunk was read; the second passed the bound, and the page was told the
    # client left. Its own answer stands: no 413 after it, which would break the stream.
    assert page.read == [chunks[0], {"type": "http.disconnect"}]
    assert [message.get("status") for message in sent] == [200, None]
