"""The WebSocket handshake's Origin check (PROTOCOL.md, Transport), and the bounds on
what one client address may hold open: WebSockets (`ConnectionLimit`) and HTTP requests
in flight (`RequestLimit`)."""

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http.cookie import parse_cookie
from django.http.request import validate_host

from chat.errors import CloseCode
from chat.workers import Admission

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def client_address(scope: dict) -> str | None:
    """The client's IP address (the proxy's, unless the server trusts its headers), as
    every per-address limit counts it: an IPv6 address is its network of
    IPV6_PREFIX_LENGTH bits (64: one customer's, who has 2**64 addresses to choose from)."""
    client = scope.get("client")
    return address_key(client[0]) if client else None


def address_key(address: str) -> str:
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, settings.IPV6_PREFIX_LENGTH), strict=False).network_address)


def session_key_of(scope: dict) -> str | None:
    """The Django session cookie of the handshake, if the browser sent one."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME)
    return None


def origin_allowed(origin: str | None, allowed_hosts: list[str]) -> bool:
    """No Origin (a non-browser client) passes; `null` and foreign hosts do not."""
    if origin is None:
        return True
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        return False
    if not host or origin == "null":
        return False
    if ":" in host:
        host = f"[{host}]"
    return validate_host(host, allowed_hosts)


def security_headers() -> list[tuple[bytes, bytes]]:
    """What Django's SecurityMiddleware and XFrameOptionsMiddleware add to every response,
    from the same settings, for the answers sent before Django is reached."""
    referrer = settings.SECURE_REFERRER_POLICY
    if referrer and not isinstance(referrer, str):
        referrer = ",".join(referrer)
    headers = [
        ("x-content-type-options", "nosniff" if settings.SECURE_CONTENT_TYPE_NOSNIFF else ""),
        ("x-frame-options", settings.X_FRAME_OPTIONS),
        ("referrer-policy", referrer),
        ("cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY),
    ]
    return [(name.encode(), value.encode()) for name, value in headers if value]


def plain_headers(*headers: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """The headers of a plain-text answer made before Django is reached: its type,
    `headers`, and Django's security headers."""
    return [(b"content-type", b"text/plain; charset=utf-8"), *headers, *security_headers()]


async def deny(receive, send) -> None:
    """Refuse a WebSocket handshake: the server answers HTTP 403 (ASGI's close before
    accept). Nothing else is touched. Channels' `WebsocketDenier` is a consumer, and a
    consumer receives from the default channel layer for the life of its socket: on
    Redis that receive shared a lock with the hub's, and a refused socket could leave
    the process's broadcasts stuck behind it (docs/architecture.md, "The hub")."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


class OriginValidator:
    """ASGI middleware: a websocket whose Origin is not allowed gets HTTP 403."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            origin = None
            for name, value in scope.get("headers", []):
                if name == b"origin":
                    origin = value.decode("latin1")
            if not origin_allowed(origin, settings.ALLOWED_HOSTS):
                return await deny(receive, send)
        return await self.application(scope, receive, send)


async def too_many(scope, receive, send) -> None:
    """Refuse a handshake past CONNECTIONS_PER_ADDRESS: HTTP 429 where the server offers
    ASGI's denial response (uvicorn, `manage.py serve`; daphne, `runserver`, taught it by
    chat/daphne_close.py), else accepted and closed with 1013 at once. Nothing else is
    touched, as in `deny`."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = plain_headers((b"retry-after", b"10"))
        await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
        body = b"Too many connections from your address.\n"
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": int(CloseCode.TRY_AGAIN_LATER)})


async def no_such_path(scope, receive, send) -> None:
    """A WebSocket handshake on a path with no socket (config/routing.py's last route):
    HTTP 404 where the server offers ASGI's denial response, else 403 as `deny`, instead
    of Channels' "No route found" error (a 500 and a traceback in the log)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": 404, "headers": plain_headers()})
        await send(
            {"type": "websocket.http.response.body", "body": b"No WebSocket here: the chat's is /ws/.\n"}
        )
    else:
        await send({"type": "websocket.close"})


class ConnectionLimit:
    """ASGI middleware: at most CONNECTIONS_PER_ADDRESS open WebSockets of one client
    address (the consumer's, `client_address`: the proxy's headers when trusted) in
    this process. A socket holds its place until its consumer has finished."""

    def __init__(self, application) -> None:
        self.application = application
        self.open: dict[str, int] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.application(scope, receive, send)
        address = client_address(scope) or "unknown"
        if self.open.get(address, 0) >= settings.CONNECTIONS_PER_ADDRESS:
            return await too_many(scope, receive, send)
        self.open[address] = self.open.get(address, 0) + 1
        try:
            return await self.application(scope, receive, send)
        finally:
            self.open[address] -= 1
            if not self.open[address]:
                del self.open[address]


async def answer(send: Send, status: int, text: bytes, *headers: tuple[bytes, bytes]) -> None:
    """Answer an HTTP request from the event loop, with the headers Django would add."""
    head = plain_headers((b"cache-control", b"no-store"), *headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": text})


async def busy(send: Send) -> None:
    """503: past HTTP_REQUESTS_PER_ADDRESS or HTTP_REQUESTS_PER_PROCESS."""
    await answer(send, 503, b"The server is busy; try again in a moment.\n", (b"retry-after", b"1"))


def content_length(scope: dict) -> int | None:
    """The request's Content-Length header as a number (None: absent or not a number)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def too_large(send: Send) -> None:
    """413, closing the connection: the request's body was over HTTP_BODY_MAX."""
    await answer(send, 413, b"The request's body is too large.\n", (b"connection", b"close"))


async def too_slow(send: Send) -> None:
    """408, closing the connection: the request's body did not come within HTTP_BODY_TIMEOUT."""
    await answer(send, 408, b"The request's body took too long.\n", (b"connection", b"close"))


class BodyBytes:
    """Bytes of request bodies taken in and not yet answered (Django holds each whole),
    per client address and in the process: HTTP_BODY_BYTES_PER_ADDRESS, _PER_PROCESS."""

    def __init__(self) -> None:
        self.by_address: dict[str | None, int] = {}
        self.total = 0

    def take(self, address: str | None, amount: int) -> bool:
        held = self.by_address.get(address, 0)
        if (
            self.total + amount > settings.HTTP_BODY_BYTES_PER_PROCESS
            or held + amount > settings.HTTP_BODY_BYTES_PER_ADDRESS
        ):
            return False
        self.by_address[address] = held + amount
        self.total += amount
        return True

    def give(self, address: str | None, amount: int) -> None:
        if amount:
            self.total -= amount
            left = self.by_address[address] - amount
            if left:
                self.by_address[address] = left
            else:
                del self.by_address[address]


class BodyLimit:
    """ASGI middleware: an HTTP request's body is at most HTTP_BODY_MAX bytes.

    Django reads a whole body into a temporary file before any view, or any limit of its
    own, sees the request (`ASGIHandler.read_body`): one POST of any size to any address
    filled the disk for as long as its client kept the connection open, and a full disk
    stops the chat's writes. A body announced as larger is answered 413 before it is
    read (a client waiting on `Expect: 100-continue` sends nothing); one that grows past
    the bound (chunked, say) stops being read: the application is told the client left,
    as Django is by uvicorn, and the client gets the 413 and the connection's close.
    The server's pages need no large bodies: files go over the WebSocket.

    A body must also come in whole within HTTP_BODY_TIMEOUT of its head (else 408), and
    the bodies of one address not yet answered may hold HTTP_BODY_BYTES_PER_ADDRESS
    between them, those of the process HTTP_BODY_BYTES_PER_PROCESS (else 503): a hundred
    connections of one address that each sent most of a body and stopped held 3 MiB
    each, for as long as they liked."""

    def __init__(self, application: Callable[[dict, Receive, Send], Awaitable[None]]) -> None:
        self.application = application
        self.held = BodyBytes()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        limit = settings.HTTP_BODY_MAX
        announced = content_length(scope)
        if announced is not None and announced > limit:
            return await too_large(send)
        address = client_address(scope)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.HTTP_BODY_TIMEOUT
        received = 0
        over = late = full = False
        whole = False  # the body is all in: receive then only waits for the client to leave
        answered = False

        async def receive_bounded() -> dict:
            nonlocal received, over, late, full, whole
            if over or late or full:
                return {"type": "http.disconnect"}
            if whole:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                late = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                body = len(message.get("body", b""))
                whole = not message.get("more_body")
                if received + body > limit:
                    over = True
                    return {"type": "http.disconnect"}
                if not self.held.take(address, body):
                    full = True
                    return {"type": "http.disconnect"}
                received += body
            return message

        async def send_seen(message: dict) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.application(scope, receive_bounded, send_seen)
        finally:
            self.held.give(address, received)
        if answered:
            return
        if over:
            await too_large(send)
        elif late:
            await too_slow(send)
        elif full:  # the rest of the body is not read: the connection goes too
            await answer(send, 503, b"The server is busy; try again shortly.\n", (b"connection", b"close"))


class RequestLimit:
    """ASGI middleware: at most HTTP_REQUESTS_PER_ADDRESS HTTP requests of one client
    address (`client_address`) and HTTP_REQUESTS_PER_PROCESS of the process in flight at
    once. Django runs each request's sync view in a thread of its own, with a database
    connection of its own: unbounded, one address's flood of pages took threads and
    open files by the hundred. Past either bound a request is answered 503 (Retry-After:
    1) from the event loop, and the application never sees it.

    A request takes its place when its body is all in, which is when Django starts
    anything else (it reads the body first): a body that trickles in holds no thread, so
    it holds no place either (64 slow bodies would otherwise shut the process's pages
    cheaply; `BodyLimit` bounds their time and bytes). The application is then told the client left, as
    Django is by uvicorn, and returns without answering. The place is kept until the
    application has returned, also when it raises or is cancelled.

    `/healthz` is not counted: it is async and costs no thread of its own (each check
    runs once at a time for all requests, chat/views.py), and a process busy with one
    address's flood must still tell its load balancer it is alive, or the flood takes it
    out for everyone. Nor are static files: they take no view thread (they are read in
    the bounded default executor, chat/staticfiles.py), and a page loads a dozen at
    once: two browsers behind one NAT would have found some of the page's modules
    refused. `/files/<id>` downloads are counted apart, from their start until their
    body is sent, against FILE_REQUESTS_PER_ADDRESS and FILE_REQUESTS_PER_PROCESS: each
    looks its session up in the database, in the queue a socket's join waits in, and a
    flood of them from one address held every join of the process for seconds; their
    bodies wait on a client that may not read, where a page's do not. Not until the
    application returns: Django then closes the response in the database thread, which
    may be busy, and a kept-alive connection's next download came meanwhile (one
    address's four connections through nginx held up to eight places). A request with
    no client address (a Unix socket) counts only against the process."""

    EXEMPT = frozenset({"/healthz"})
    EXEMPT_PREFIXES = ("/static/",)
    FILES = "/files/"

    def __init__(self, application: Callable[[dict, Receive, Send], Awaitable[None]]) -> None:
        self.application = application
        self.in_flight = Admission()
        self.files = Admission()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] != "http" or path in self.EXEMPT or path.startswith(self.EXEMPT_PREFIXES):
            return await self.application(scope, receive, send)
        address = client_address(scope)
        if path.startswith(self.FILES):
            limit, per_address = settings.FILE_REQUESTS_PER_PROCESS, settings.FILE_REQUESTS_PER_ADDRESS
            if not self.files.enter(address, limit, per_address):
                return await busy(send)
            held = True

            def leave() -> None:
                nonlocal held
                if held:
                    held = False
                    self.files.leave(address)

            async def send_counted(message: dict) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    leave()

            try:
                return await self.application(scope, receive, send_counted)
            finally:
                leave()
        admitted: bool | None = None  # None: the body is not all in yet

        async def receive_admitted() -> dict:
            nonlocal admitted
            if admitted is False:
                return {"type": "http.disconnect"}
            message = await receive()
            if admitted is None and message["type"] == "http.request" and not message.get("more_body"):
                limit, per_address = settings.HTTP_REQUESTS_PER_PROCESS, settings.HTTP_REQUESTS_PER_ADDRESS
                admitted = self.in_flight.enter(address, limit, per_address)
                if not admitted:
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.application(scope, receive_admitted, send)
        finally:
            if admitted:
                self.in_flight.leave(address)
        if admitted is False:
            await busy(send)
