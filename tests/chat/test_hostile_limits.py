"""Issue 14, items 1 and 8, without sockets: the outbox's byte cap and its address's
backlog, and the check of base64 that keeps nothing. The per-connection windows and the
budget of upload bytes: tests/chat/test_ratelimit.py. The attacks themselves:
tests/e2e/test_hostile_reader.py, test_upload_memory.py."""

import base64
import os

import pytest

from chat import outbox, protocol
from chat.errors import CloseCode, ProtocolError
from chat.outbox import Outbox, frame_size
from files import validation
from tests.helpers import FakeSocket, drain


async def test_a_socket_whose_backlog_passes_the_byte_cap_is_closed(settings):
    settings.WS_SEND_QUEUE_LIMIT = 1000
    settings.WS_SEND_QUEUE_BYTES = 1000
    socket = FakeSocket(stall=True)
    outbox = Outbox(socket.send, socket.close)
    for _ in range(4):
        outbox.put("x" * 300)  # 1200 bytes: the fourth passes the cap
    assert outbox.closing == CloseCode.TOO_SLOW and outbox.bytes == 0
    socket.gate.set()
    await drain()
    assert socket.closed == CloseCode.TOO_SLOW and len(socket.sent) <= 1


async def test_one_frame_larger_than_the_byte_cap_is_still_sent(settings):
    settings.WS_SEND_QUEUE_BYTES = 100
    socket = FakeSocket()
    outbox = Outbox(socket.send, socket.close)
    outbox.put("y" * 500)
    await drain()
    assert socket.sent == ["y" * 500] and socket.closed is None and outbox.bytes == 0
    outbox.put("z" * 50)
    await drain()
    assert socket.sent[-1] == "z" * 50 and not outbox.backed_up()


def test_frame_size_is_utf8_bytes():
    assert frame_size("abc") == 3
    assert frame_size("é€😀") == 2 + 3 + 4


def encoded(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "QQ==",
        "QR==",  # stray bits
        "QQ=",
        "Q Q=",
        encoded(3 * 1024 * 1024),
        encoded(3 * 1024 * 1024 + 1),
        encoded(3 * 1024 * 1024)[:-4] + "QQ==" + encoded(3),  # padding inside, across slices
        encoded(1024 * 1024)[:1000] + "=" + encoded(1024 * 1024)[1001:],
        encoded(2 * 1024 * 1024) + "é",
    ],
)
def test_check_base64_refuses_exactly_what_decode_refuses(text):
    try:
        validation.decode_base64(text)
    except ProtocolError as exc:
        with pytest.raises(ProtocolError) as checked:
            validation.check_base64(text)
        assert checked.value.code == exc.code
    else:
        validation.check_base64(text)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_history_parts_join_to_the_history_frame(count):
    messages = [{"id": n, "sender": "Ann é", "content": "x" * n, "reply_to": None} for n in range(count)]
    assert "".join(protocol.history_parts(messages)) == protocol.encode(protocol.history_message(messages))


async def test_an_address_backlog_counts_its_sockets_and_their_last_frame_written(settings):
    settings.WS_SEND_QUEUE_BYTES = 10**6
    stuck, reading = FakeSocket(stall=True), FakeSocket()
    one = Outbox(stuck.send, stuck.close, owner="203.0.113.9")
    two = Outbox(reading.send, reading.close, owner="203.0.113.9")
    one.put("a" * 100)
    one.put("b" * 50)
    two.put("c" * 30)
    await drain()
    # `two` wrote its frame, which may still sit in the server's buffer until its next send.
    assert outbox.address_backlog("203.0.113.9") == 180
    two.put("d" * 5)
    await drain()
    assert outbox.address_backlog("203.0.113.9") == 155  # "c" left the process; "d" may not have
    one.stop()
    two.stop()
    await drain()
    assert outbox.address_backlog("203.0.113.9") == 0 and "203.0.113.9" not in outbox.backlogs


def test_a_history_larger_than_the_send_queue_is_a_warning(settings):
    from django.core.checks import run_checks

    assert "chat.W006" not in [m.id for m in run_checks()]  # the defaults fit
    settings.CHAT_MAX_CONTENT = 1_000_000  # 100 of them: about 100 MB of History
    (warning,) = [m for m in run_checks() if m.id == "chat.W006"]
    assert "WS_SEND_QUEUE_BYTES (33554432)" in warning.msg
