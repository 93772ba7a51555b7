"""chat/http_guard.py: `manage.py serve` closes connections whose request head does not
come in time, or grows past HTTP_HEADER_MAX, and those past the open connections of an
address; chat/security.py `BodyLimit` refuses bodies past HTTP_BODY_MAX. Against a real
server process and raw sockets from addresses of 127.0.0.0/8 (each a client of its own)."""

import http.client
import select
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from websockets.sync.client import connect

from chat.http_guard import OpenConnections
from tests.e2e.servers import ServerProcess, manage, production_env, rss_mib

DEADLINE = 2.0  # HTTP_HEADER_TIMEOUT of the server below
PER_ADDRESS = 4  # TCP_CONNECTIONS_PER_ADDRESS
PROXY = "127.0.7.9"  # the one trusted proxy
BODY_MAX = 64 * 1024  # HTTP_BODY_MAX
HEADER_MAX = 16 * 1024  # HTTP_HEADER_MAX
PIPELINED_MAX = 4  # HTTP_PIPELINED_MAX
BODY_TIMEOUT = 3.0  # HTTP_BODY_TIMEOUT
BODY_BYTES_PER_ADDRESS = 3 * BODY_MAX  # HTTP_BODY_BYTES_PER_ADDRESS

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    var = tmp_path_factory.mktemp("http-guard")
    env = production_env(
        CHAT_VAR_DIR=str(var),
        HTTP_HEADER_TIMEOUT=str(DEADLINE),
        TCP_CONNECTIONS_PER_ADDRESS=str(PER_ADDRESS),
        HTTP_BODY_MAX=str(BODY_MAX),
        HTTP_HEADER_MAX=str(HEADER_MAX),
        HTTP_PIPELINED_MAX=str(PIPELINED_MAX),
        HTTP_BODY_TIMEOUT=str(BODY_TIMEOUT),
        HTTP_BODY_BYTES_PER_ADDRESS=str(BODY_BYTES_PER_ADDRESS),
    )
    manage(env, "migrate", "--noinput")
    process = ServerProcess(env, log_dir=var, args=("--proxy-headers", "--forwarded-allow-ips", PROXY))
    yield process.start()
    process.stop()


def dial(server: ServerProcess, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    return sock


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes `sock` (None: still open after `seconds`),
    sending `trickle` every 0.3 s meanwhile if given (slowloris)."""
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        try:
            if trickle:
                sock.send(trickle)
            if select.select([sock], [], [], 0.3)[0] and sock.recv(4096) == b"":
                return elapsed
        except (BrokenPipeError, ConnectionResetError):
            return elapsed
    return None


def health(server: ServerProcess, source: str, headers: dict[str, str] | None = None) -> int:
    """The status of GET /healthz from `source` (0: the connection was closed unanswered)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, source_address=(source, 0), timeout=5)
    try:
        conn.request("GET", "/healthz", headers=headers or {})
        return conn.getresponse().status
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return 0
    finally:
        conn.close()


def test_silent_half_header_and_trickling_connections_are_closed_at_the_deadline(server):
    silent = dial(server, "127.0.7.1")
    half = dial(server, "127.0.7.1")
    half.send(b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    trickling = dial(server, "127.0.7.1")
    trickling.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    seconds = [
        closed_within(silent, 3 * DEADLINE),
        closed_within(half, 3 * DEADLINE),
        closed_within(trickling, 3 * DEADLINE, trickle=b"X-A: b\r\n"),
    ]
    assert all(s is not None for s in seconds), seconds
    # Counted from each connection's opening, so the later ones close sooner here.
    assert all(s < DEADLINE + 1 for s in seconds), seconds
    assert health(server, "127.0.7.1") == 200  # the places they held are free again


def test_a_kept_alive_connection_has_the_deadline_for_its_next_head(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, source_address=("127.0.7.5", 0), timeout=5)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    assert response.status == 200 and not response.will_close
    # The next request starts and never ends, a byte at a time.
    conn.sock.send(b"GET /healthz HTTP/1.1\r\n")
    seconds = closed_within(conn.sock, 3 * DEADLINE, trickle=b"x")  # a header name, growing
    assert seconds is not None and seconds < DEADLINE + 1


def test_a_head_sent_slowly_but_within_the_deadline_is_answered(server):
    sock = dial(server, "127.0.7.6")
    for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Connection: close\r\n", b"\r\n"):
        sock.send(part)
        time.sleep(DEADLINE / 5)
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")


def test_connections_past_the_address_limit_are_closed_at_once(server):
    held = [dial(server, "127.0.7.2") for _ in range(PER_ADDRESS)]
    extra = dial(server, "127.0.7.2")  # the kernel accepts it; the server closes it unread
    refused = closed_within(extra, DEADLINE / 2)
    assert refused is not None  # long before the deadline
    assert health(server, "127.0.7.2") == 0
    assert health(server, "127.0.7.3") == 200  # another address still gets in
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert health(server, "127.0.7.2") == 200  # closed connections give their places back


def test_websockets_keep_their_place_past_the_deadline_until_closed(server):
    def socket_from(source: str):
        return connect(f"ws://127.0.0.1:{server.port}/ws/", sock=dial(server, source), open_timeout=5)

    with ExitStack() as stack:
        sockets = [stack.enter_context(socket_from("127.0.7.4")) for _ in range(PER_ADDRESS)]
        time.sleep(DEADLINE + 0.5)
        for ws in sockets:
            assert ws.ping().wait(5)  # the head's deadline does not apply to a WebSocket
        assert closed_within(dial(server, "127.0.7.4"), DEADLINE / 2) is not None
    time.sleep(0.3)
    with socket_from("127.0.7.4") as ws:  # closed, they gave their places back
        assert ws.ping().wait(5)


def test_connections_of_a_trusted_proxy_count_only_against_the_process(server):
    held = [dial(server, PROXY) for _ in range(2 * PER_ADDRESS)]
    assert health(server, PROXY) == 200
    for sock in held:
        sock.close()


UNTRUSTED_FORWARD = "carries X-Forwarded-For, but"


def test_a_forwarded_request_from_a_peer_not_trusted_as_proxy_is_warned_of_once(server, tmp_path):
    """Behind a proxy the server does not trust, every client is the proxy's one address:
    the operator hears of it once per process, whichever way it is misconfigured."""
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    assert health(server, PROXY, forwarded) == 200  # the trusted proxy: as it should be
    assert health(server, "127.0.7.10") == 200  # no header: nothing to say
    assert UNTRUSTED_FORWARD not in server.log_path.read_text()
    assert health(server, "127.0.7.10", forwarded) == 200
    assert health(server, "127.0.7.11", forwarded) == 200
    warnings = [line for line in server.log_path.read_text().splitlines() if UNTRUSTED_FORWARD in line]
    assert len(warnings) == 1 and "from 127.0.7.10" in warnings[0], warnings
    assert "--forwarded-allow-ips does not include it" in warnings[0]

    env = production_env(CHAT_VAR_DIR=str(tmp_path))
    manage(env, "migrate", "--noinput")
    plain = ServerProcess(env, log_dir=tmp_path).start()  # no --proxy-headers at all
    try:
        assert health(plain, "127.0.0.1", forwarded) == 200
        warnings = [line for line in plain.log_path.read_text().splitlines() if UNTRUSTED_FORWARD in line]
        assert len(warnings) == 1 and "serve runs without --proxy-headers" in warnings[0], warnings
    finally:
        plain.stop()


def test_places_per_address_and_per_process(settings):
    settings.TCP_CONNECTIONS_PER_ADDRESS, settings.TCP_CONNECTIONS_PER_PROCESS = 2, 3
    open_ = OpenConnections()
    assert open_.take("a") and open_.take("a") and not open_.take("a")
    assert open_.take("b") and not open_.take("c") and not open_.take(None)  # the process is full
    open_.give("a")
    assert open_.take(None)  # a proxy's: the process's count only
    open_.give(None)
    assert open_.by_address == {"a": 1, "b": 1} and open_.total == 2
    open_.give("a")
    open_.give("b")
    assert open_.by_address == {} and open_.total == 0


def answer_to(sock: socket.socket, seconds: float, body: Iterator[bytes] | None = None) -> bytes:
    """What the server sends on `sock` until it closes it or `seconds` pass, sending the
    chunks of `body` meanwhile while the server takes them."""
    body = body or iter(())
    received = b""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        readable, writable, _ = select.select([sock], [sock], [], 0.1)
        try:
            if readable:
                data = sock.recv(65536)
                if not data:
                    return received
                received += data
            elif writable and (chunk := next(body, None)) is not None:
                sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return received
    return received


def test_a_body_announced_past_the_bound_is_refused_before_it_is_sent(server):
    sock = dial(server, "127.0.7.20")
    sock.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000000\r\n\r\n")
    answer = answer_to(sock, 5)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"x-content-type-options: nosniff" in answer.lower()
    sock.close()


def test_a_body_that_grows_past_the_bound_stops_being_read_and_its_connection_is_closed(server):
    # Chunked, so nothing announces the size: the server must count what comes in.
    sock = dial(server, "127.0.7.21")
    sock.send(b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
    body = iter([chunk] * (64 * BODY_MAX // 16384))  # 64 times the bound, 4 MiB
    answer = answer_to(sock, 10, body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # The server closed the connection (answer_to returned before its time) having
    # taken at most the bound and what the sockets' buffers hold, not the 4 MiB.
    assert next(body, None) is not None
    sock.close()
    # The server still answers, that address included.
    assert health(server, "127.0.7.21") == 200


def test_a_body_within_the_bound_reaches_the_page(server):
    sock = dial(server, "127.0.7.22")
    body = b"x" * (BODY_MAX - 100)
    head = b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" % len(body)
    sock.send(head + b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n")
    answer = answer_to(sock, 10, iter([body]))
    # Django's own answer: no CSRF cookie, so 403, not the server's 413.
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    sock.close()


def padded_get(path: str, pad: int) -> bytes:
    """A GET whose head carries `pad` bytes of headers besides its own."""
    lines = [b"X-Pad-%d: %s" % (i, b"p" * 990) for i in range(pad // 1000)]
    return b"\r\n".join([b"GET %s HTTP/1.1" % path.encode(), b"Host: 127.0.0.1", *lines]) + b"\r\n\r\n"


def endless_head(url: bool) -> Iterator[bytes]:
    """A head that never ends, 8 MiB of it: a URL that goes on, or header after header."""
    if url:
        return iter([b"GET /"] + [b"a" * 1024] * 8192)
    return iter([b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"] + [b"X-Pad: " + b"p" * 1015 + b"\r\n"] * 8192)


@pytest.mark.parametrize("url", [False, True], ids=["headers", "url"])
def test_a_head_that_grows_past_the_bound_is_refused_431_long_before_its_deadline(server, url):
    sock = dial(server, "127.0.7.30")
    began = time.monotonic()
    head = endless_head(url)  # sent as fast as the server takes it
    answer = answer_to(sock, 3 * DEADLINE, head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert time.monotonic() - began < DEADLINE  # not the deadline's close
    assert next(head, None) is not None  # closed before the whole head was taken
    sock.close()
    assert health(server, "127.0.7.30") == 200


def test_the_bound_is_per_head_on_a_kept_alive_connection(server):
    # Each head is most of the bound; together they are more: the count starts again.
    sock = dial(server, "127.0.7.31")
    for _ in range(3):
        sock.send(padded_get("/healthz", HEADER_MAX - 2000))
        answer = b""
        while not answer.endswith(b"0\r\n\r\n"):  # /healthz's chunked body, whole
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    # And the next head that grows past the bound is refused, after those answers.
    answer = answer_to(sock, 3 * DEADLINE, endless_head(url=False))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    sock.close()


def test_a_head_of_more_headers_than_the_bound_is_refused_431(server):
    """6,000 headers of 10 bytes fit in HTTP_HEADER_MAX and cost the event loop 28 ms a
    request in Django's hands; past HTTP_HEADERS_MAX (100) a head is refused unread."""

    def head(count: int) -> bytes:
        lines = [b"X-%d: v" % i for i in range(count - 1)]
        return b"\r\n".join([b"GET /healthz HTTP/1.1", b"Host: 127.0.0.1", *lines]) + b"\r\n\r\n"

    sock = dial(server, "127.0.7.32")
    sock.send(head(100))
    answer = b""
    while not answer.endswith(b"0\r\n\r\n"):
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    sock.send(head(1200))  # 10 KiB, within HTTP_HEADER_MAX
    answer = answer_to(sock, 3 * DEADLINE, iter([]))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert closed_within(sock, 1) is not None
    sock.close()


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_requests_pipelined_within_the_bound_are_all_answered_in_order(server):
    sock = dial(server, "127.0.7.40")
    sock.send(HEALTH * (PIPELINED_MAX + 1))  # one answered at once, the others queued
    answers = b""
    while answers.count(b"HTTP/1.1 200 ") < PIPELINED_MAX + 1 or not answers.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        assert data, answers[-300:]
        answers += data
    sock.close()


def test_a_flood_of_pipelined_requests_never_read_closes_its_connection_and_takes_no_memory(server):
    """The reviewer's attack: 10 MB of `GET /healthz` sent back to back on a connection
    that never reads took the server from 92 to 650 MiB (uvicorn queued a request cycle
    for each). Here ten connections of 1 MB each: each is closed with at most the bound's
    answers, and the server's memory stays where it was."""
    before = rss_mib(server.process.pid)
    flood = HEALTH * (1_000_000 // len(HEALTH))
    socks = [dial(server, f"127.0.7.{41 + n}") for n in range(10)]
    for sock in socks:
        sock.setblocking(False)
    sent = [0] * len(socks)
    began = time.monotonic()
    while time.monotonic() - began < 10 and not all(n == len(flood) for n in sent):
        for i, sock in enumerate(socks):
            try:
                sent[i] += sock.send(flood[sent[i] : sent[i] + 65536])
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
        time.sleep(0.001)
    for sock in socks:
        sock.setblocking(True)
        answers = answer_to(sock, 5)
        assert answers.count(b"HTTP/1.1 200 ") <= PIPELINED_MAX + 1
        sock.close()
    assert rss_mib(server.process.pid) - before < 20
    assert health(server, "127.0.7.41") == 200


def post_head(length: int) -> bytes:
    return b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % length


def test_a_body_that_stops_coming_is_answered_408_at_its_deadline(server):
    """Before, a body that stopped short held its connection and what Django had taken of
    it (3 MiB each for the reviewer's hundred connections) for as long as it liked."""
    sock = dial(server, "127.0.7.60")
    sock.send(post_head(BODY_MAX) + b"x" * (BODY_MAX // 2))  # half of it, then nothing
    began = time.monotonic()
    answer = answer_to(sock, 3 * BODY_TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert BODY_TIMEOUT - 0.5 < time.monotonic() - began < 2 * BODY_TIMEOUT
    sock.close()


def test_the_bodies_one_address_holds_at_once_are_bounded(server):
    """Bodies that came most of the way hold their bytes until answered: past
    HTTP_BODY_BYTES_PER_ADDRESS an address's next one is answered 503 at once, while
    another address posts as before."""
    holding = []
    for _ in range(3):  # most of a body each: 3 * 0.9 * BODY_MAX, within the address's bound
        sock = dial(server, "127.0.7.61")
        sock.send(post_head(BODY_MAX) + b"x" * (BODY_MAX * 9 // 10))
        holding.append(sock)
    time.sleep(0.5)  # taken in
    past = dial(server, "127.0.7.61")
    past.send(post_head(BODY_MAX) + b"x" * (BODY_MAX * 9 // 10))
    answer = answer_to(past, BODY_TIMEOUT / 2)
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
    other = dial(server, "127.0.7.62")
    other.send(post_head(100) + b"x" * 100)
    assert not answer_to(other, 2).startswith(b"HTTP/1.1 503 ")
    for sock in (*holding, past, other):
        sock.close()
