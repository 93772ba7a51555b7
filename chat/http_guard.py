"""TCP connections of `manage.py serve`, bounded before any request reaches the app.

uvicorn's httptools protocol starts its keep-alive timer only once a response is sent,
so a connection that never completes a request head (silent, or a header at a time:
slowloris) was kept for ever, and CONNECTIONS_PER_ADDRESS counts only WebSockets the
app has seen. So `GuardedHttp`:

- gives each request head HTTP_HEADER_TIMEOUT seconds, from the connection's opening or
  from the previous response (keep-alive): not complete by then, the connection is
  closed (as nginx does at its client_header_timeout);
- and at most HTTP_HEADER_MAX bytes: the parser keeps a head's URL and headers whole,
  with no bound of its own, so a head sent as fast as the deadline allowed took hundreds
  of megabytes. Past it, 431 and the connection closed (as nginx's
  large_client_header_buffers); and at most HTTP_HEADERS_MAX headers, else the same
  (6,000 headers of 10 bytes cost the event loop 28 ms a request in Django's hands);
- closes a connection that sends more than HTTP_PIPELINED_MAX requests ahead of their
  answers: uvicorn queues every pipelined request its parser meets (a cycle each, about
  2 KB), and reads on after each answer, so one connection that sent 10 MB of
  `GET /healthz` and never read took 560 MiB. Requests past the bound are not started;
- closes a new connection at once, unread, past TCP_CONNECTIONS_PER_ADDRESS open
  connections of its peer's address or TCP_CONNECTIONS_PER_PROCESS of the process. A
  connection keeps its place as a WebSocket after the upgrade, until it is closed. The
  peer is the proxy under `serve --proxy-headers`: connections from a trusted proxy
  (`--forwarded-allow-ips`) count only against the process (the proxy limits its own
  clients: docs/production.md, "nginx and TLS");
- aborts a connection whose client has read nothing of a response for HTTP_WRITE_TIMEOUT
  seconds (the server's write buffer full all that time): a download holds its
  plaintext in memory, under the address's and the process's bounds (files/views.py),
  so 25 downloads left unread by 9 addresses refused every other download for as long
  as they liked. A request's app is also handed the abort (the scope's `ABORT`
  extension), so that a download read at a trickle can be cut off while others wait
  for its room (files/views.py).

A request that carries `X-Forwarded-For` from a peer the server does not trust as its
proxy (`serve` started without `--proxy-headers`, or the proxy not in
`--forwarded-allow-ips`) is logged once per process as a warning: behind a proxy, that
makes every client one address, and the 51st WebSocket of the whole site is refused.
"""

import asyncio
import functools
import logging
from typing import Any

from django.conf import settings
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chat.frame_budget import BudgetedWebSocket
from chat.security import address_key, plain_headers
from chat.workers import Admission


class OpenConnections(Admission):
    """Open connections per address and in the process (TCP_CONNECTIONS_PER_ADDRESS,
    TCP_CONNECTIONS_PER_PROCESS); `address` None: counted only in the process (a trusted
    proxy, a Unix socket)."""

    def take(self, address: str | None) -> bool:
        """A place for a new connection, or False when its address or the process is full."""
        return self.enter(address, settings.TCP_CONNECTIONS_PER_PROCESS, settings.TCP_CONNECTIONS_PER_ADDRESS)

    def give(self, address: str | None) -> None:
        self.leave(address)

    @property
    def by_address(self) -> dict[str, int]:
        return dict(self.owners)


connections = OpenConnections()


# The ASGI scope extension under which an HTTP request's app finds `abort() -> None`: its
# connection aborted at once, as at HTTP_WRITE_TIMEOUT (files/views.py cuts off slow downloads).
ABORT = "chat.abort"

# Seconds a refused connection is read from, and what it sends dropped, before it is closed.
LINGER = 1.0

logger = logging.getLogger(__name__)


@functools.cache
def trusted_proxies(allowed: str) -> _TrustedHosts:
    return _TrustedHosts(allowed)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request head and a place
    per open connection in `connections`."""

    address: str | None = None
    held = False  # whether this connection holds a place (given back once, on close)
    head_timer: asyncio.TimerHandle | None = None
    write_timer: asyncio.TimerHandle | None = None  # while the write buffer is full
    in_head = True  # between requests, or inside a request's head
    lingering = False  # answered and closing: what comes in is dropped
    head_bytes = 0  # received since the head began (by whole reads: one read over at most)
    # Whether this process has warned of an X-Forwarded-For it does not trust (once).
    forwarded_warned = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client and not self._from_trusted_proxy(self.client[0]):
            self.address = address_key(self.client[0])  # an IPv6 client: its network
        if not connections.take(self.address):
            self.transport.close()
            return
        self.held = True
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_write_timer()
        self._give_back()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(settings.HTTP_WRITE_TIMEOUT, self.write_timeout)

    def resume_writing(self) -> None:
        self._disarm_write_timer()
        super().resume_writing()

    def write_timeout(self) -> None:
        """The client read nothing for HTTP_WRITE_TIMEOUT: the connection is aborted (no
        close can be written to it), and the response's app sees the client gone."""
        self.write_timer = None
        self.transport.abort()

    def _disarm_write_timer(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        counted = self.in_head
        if counted:
            self.head_bytes += len(data)
        super().data_received(data)
        if counted and self.in_head and self.head_bytes > settings.HTTP_HEADER_MAX:
            self.head_too_large()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._disarm_head_timer()
        if self.transport.is_closing():
            return  # the rest of a read the connection was closed in: nothing more starts
        if len(self.headers) > settings.HTTP_HEADERS_MAX:
            if self._answered():
                self._write_431()
            self.transport.close()
            return
        if len(self.pipeline) >= settings.HTTP_PIPELINED_MAX and not self._answered():
            self.transport.close()
            return
        if not GuardedHttp.forwarded_warned and self.address is not None:
            self._forwarded_untrusted()
        self.scope.setdefault("extensions", {})[ABORT] = self.transport.abort  # type: ignore[assignment]
        super().on_headers_complete()

    def _forwarded_untrusted(self) -> None:
        if any(name == b"x-forwarded-for" for name, _ in self.headers):
            GuardedHttp.forwarded_warned = True
            why = "serve runs without --proxy-headers"
            if self.config.proxy_headers:
                why = "--forwarded-allow-ips does not include it"
            logger.warning(
                "A request from %s carries X-Forwarded-For, but %s: if it is your proxy, every "
                "client behind it counts as that one address for every per-address limit "
                "(CONNECTIONS_PER_ADDRESS: with the defaults, the site's 51st open WebSocket is refused). "
                'See docs/production.md, "nginx and TLS". Logged once per process.',
                self.client[0] if self.client else "?",
                why,
            )

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_message_complete()
        self.in_head, self.head_bytes = True, 0

    def _answered(self) -> bool:
        """Whether no request is being answered (a new one would start, not wait)."""
        return self.cycle is None or self.cycle.response_complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive and no pipelined request's head already here: the next one's deadline.
        if not self.transport.is_closing() and not self.pipeline:
            self._arm_head_timer()

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        socket = self.transport.get_protocol()
        if self.held and isinstance(socket, BudgetedWebSocket):
            # The connection lives on as this WebSocket: its place goes with it.
            self.held = False
            socket.on_lost = functools.partial(connections.give, self.address)
        else:
            self._give_back()

    def head_timeout(self) -> None:
        self.head_timer = None
        self.transport.close()

    def head_too_large(self) -> None:
        """A head past HTTP_HEADER_MAX: 431, unless the answer to a request before it is
        still being sent (it would be cut in two), and the connection closed."""
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        if self._answered():
            self._write_431()
            self.linger()
        else:
            self.transport.close()

    def _write_431(self) -> None:
        message = b"The request's head is too large.\n"
        headers = plain_headers((b"content-length", str(len(message)).encode()), (b"connection", b"close"))
        lines = [b"HTTP/1.1 431 Request Header Fields Too Large"]
        lines += [name + b": " + value for name, value in headers]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + message)

    def linger(self) -> None:
        """Close after LINGER seconds, having sent all that was written and the end of
        it, and dropping what comes in meanwhile: closed at once with the client's bytes
        unread, the connection would be reset, and a reset can lose the answer before
        the client reads it (nginx's lingering close)."""
        self.lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(settings.HTTP_HEADER_TIMEOUT, self.head_timeout)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _give_back(self) -> None:
        if self.held:
            self.held = False
            connections.give(self.address)

    def _from_trusted_proxy(self, host: str) -> bool:
        config: Any = self.config
        if not config.proxy_headers:
            return False
        allowed = config.forwarded_allow_ips
        return host in trusted_proxies(allowed if isinstance(allowed, str) else ",".join(allowed))
