"""The client library against a real server: chat, members, history, errors. Its crypto
against the shared vectors: tests/chatclient/test_crypto.py."""

import asyncio
import json
import logging
import ssl
import subprocess
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chatclient import (
    ChatClient,
    ChatError,
    ConnectionLost,
    ErrorEvent,
    EventsDropped,
    History,
    Joined,
    Left,
    Message,
    MessageDeleted,
    Reconnected,
    Reconnecting,
    socket_url,
)
from chatclient import client as client_module
from chatclient.client import _Events
from tests.chatclient.conftest import FAKE_ROOM, CuttableProxy, FakeRoom, fake_server, next_of
from tests.e2e.servers import ROOT

pytestmark = pytest.mark.e2e


def test_addresses_are_taken_as_the_cli_takes_them():
    """`socket_url`: the one rule for what the CLI and `ChatClient.connect` take."""
    assert socket_url("https://chat.example.org/ws/") == "wss://chat.example.org/ws/"
    assert socket_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/"
    assert socket_url("127.0.0.1:8000") == "ws://127.0.0.1:8000/"
    assert socket_url("wss://chat.example.org/ws/") == "wss://chat.example.org/ws/"
    link = "https://chat.example.org/rooms/Xa3k/#k=" + "s" * 43
    assert socket_url(link) == "wss://chat.example.org/ws/"  # the link's server, never its fragment
    with pytest.raises(ValueError, match="share link without its https://host"):
        socket_url("/rooms/Xa3k/")


async def test_connect_takes_the_addresses_the_cli_takes(server, clients):
    """`http://` for `ws://`, `host:port`, and a room's share link (its server; the
    fragment, a sealed room's secret, stays here): each reaches the server, and a sealed
    room's link works as the address and as the room."""
    alice = await clients(server.http + "/")
    assert alice.url == f"ws://127.0.0.1:{server.port}/"
    room = await alice.create_room("Quiet", owner_name="Alice", sealed=True)
    bob = await clients(room.share_link)
    assert bob.url == server.url and "#" not in bob._socket_url()
    await bob.join_room(room.share_link, "Bob")
    sent = await bob.send("from a link")
    assert await next_of(alice, Message) == sent
    carol = await clients(f"127.0.0.1:{server.port}")
    assert (await carol.join_room(room.join_key, "Carol")).id == room.id


async def test_two_clients_chat_and_see_each_other(clients):
    """Messages are encrypted, echoed to the sender with an id, and decrypted for the other."""
    alice = await clients()
    room = await alice.create_room("Lobby", description="Talk", owner_name="Alice")
    assert (room.name, room.owner, room.has_password) == ("Lobby", "Alice", False)
    assert alice.owner_token
    bob = await clients()
    joined = await bob.join_room(room.join_key, "Bob")
    assert joined.id == room.id
    assert await next_of(alice, Joined) == Joined("Bob")

    sent = await bob.send("hello, Grüße 👋")
    assert (sent.sender, sent.text) == ("Bob", "hello, Grüße 👋")
    assert await next_of(alice, Message) == sent
    assert await next_of(bob, Message) == sent
    reply = await alice.send("hi Bob")
    assert reply.id > sent.id
    assert (await next_of(bob, Message)).text == "hi Bob"

    assert await alice.members() == await bob.members() == ["Alice", "Bob"]
    await bob.leave()
    assert await next_of(alice, Left) == Left("Bob")
    assert await alice.members() == ["Alice"]
    with pytest.raises(ChatError) as refused:
        await bob.members()
    assert refused.value.code == "not_in_room"


async def test_a_joiner_gets_history_decrypted_once(clients):
    alice = await clients()
    room = await alice.create_room("Room", password="sesame")
    first = await alice.send("first")
    second = await alice.send("second")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob", password="sesame")
    history = await next_of(bob, History)
    assert history.messages == [first, second]
    third = await alice.send("third")
    assert await next_of(bob, Message) == third


async def test_protocol_errors_raise_with_their_code_and_the_client_carries_on(clients):
    alice = await clients()
    room = await alice.create_room("Locked", password="right")
    bob = await clients()
    with pytest.raises(ChatError) as refused:
        await bob.join_room("no-such-key", "Bob")
    assert refused.value.code == "room_not_found"
    with pytest.raises(ChatError) as refused:
        await bob.join_room(room.join_key, "Bob", password="wrong")
    assert refused.value.code == "wrong_password"
    with pytest.raises(ChatError) as refused:
        await bob.join_room(room.join_key, "Owner", password="right")
    assert refused.value.code == "name_taken"
    await bob.join_room(room.join_key, "Bob", password="right")
    with pytest.raises(ChatError) as refused:
        await bob.send("x" * 60_000)  # over CHAT_MAX_CONTENT once encrypted and base64-encoded
    assert refused.value.code == "message_too_large"
    with pytest.raises(ChatError) as refused:
        await bob.join_room(room.join_key, "Bobby", password="right")
    assert refused.value.code == "already_in_room"
    assert (await bob.send("still here")).text == "still here"


def test_the_library_imports_nothing_from_django_or_the_server():
    """The client runs anywhere: importing it (and its CLI) loads neither Django nor `chat`."""
    probe = (
        "import sys, chatclient, chatclient.cli\n"
        "server = {'django', 'channels', 'chat', 'config', 'files'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in server))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the certificate a client must trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


async def test_wss_through_a_tls_front(server, clients, tmp_path):
    """Behind a TLS-terminating proxy, as a remote server would be: wss:// works and verifies."""
    tls, cert_path = self_signed(tmp_path)
    front = CuttableProxy(server.port, tls=tls)
    await front.start()
    assert front.url.startswith("wss://")
    with pytest.raises(ConnectionLost) as refused:
        await clients(front.url)  # the system does not trust this certificate
    assert refused.value.code == "connection_failed"
    alice = await clients(front.url, ssl_context=ssl.create_default_context(cafile=cert_path))
    room = await alice.create_room("Secure")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    sent = await bob.send("over TLS")
    assert await next_of(alice, Message) == sent


async def test_a_message_over_the_servers_limit_is_refused_here_and_the_session_goes_on(clients):
    """A text whose content is over CHAT_MAX_CONTENT is refused before it is sent: one past
    the transport limit would have had the connection closed (1009) for good."""
    alice = await clients()
    await alice.create_room("Room", owner_name="Alice")
    for text in ("x" * 50_000, "x" * 20_000_000):
        with pytest.raises(ChatError) as refused:
            await alice.send(text)
        assert refused.value.code == "message_too_large" and not isinstance(refused.value, ConnectionLost)
    with pytest.raises(ChatError) as refused:
        await alice.edit((await alice.send("short")).id, "x" * 20_000_000)
    assert refused.value.code == "message_too_large" and not isinstance(refused.value, ConnectionLost)
    assert not alice.ended
    assert (await alice.send("still here")).text == "still here"


async def test_a_returning_owner_regains_owner_rights_with_the_owner_token(server, clients):
    """JoinRoom's `owner_token`: the creator, back on another connection, may delete anyone's
    message, and stays owner across that connection's reconnects."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    token = alice.owner_token
    await alice.close()
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    first, second = await bob.send("one"), await bob.send("two")

    proxy = CuttableProxy(server.port)
    await proxy.start()
    back = await clients(proxy.url)
    await back.join_room(room.join_key, "Alice", owner_token=token)
    assert back.owner_token == token
    await back.delete_message(first.id)
    await proxy.cut()
    await proxy.start()
    await next_of(back, Reconnected)
    await back.delete_message(second.id)
    assert [await next_of(bob, MessageDeleted) for _ in range(2)] == [
        MessageDeleted(first.id),
        MessageDeleted(second.id),
    ]


async def test_events_nobody_reads_are_bounded_and_the_drop_is_told():
    """A client that only sends still receives the room's events: at most `max_events`
    wait; the oldest go, and the reader is told how many before the rest, in order."""

    class Busy(FakeRoom):
        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "JoinRoom":
                await websocket.send(json.dumps(answer))
                for n in range(25):
                    await websocket.send(json.dumps({"type": "ParticipantJoined", "name": f"P{n}"}))
                return None
            return answer

    async with fake_server(Busy()) as url:
        client = await ChatClient.connect(url, max_events=10)
        await client.join_room("k", "Bob")
        assert await client.members() == ["Bob"]  # every Joined has arrived before it
        assert await client.next_event() == EventsDropped(15)
        assert [await client.next_event() for _ in range(10)] == [Joined(f"P{n}") for n in range(15, 25)]
        await client.close()
        with pytest.raises(ConnectionLost):
            await client.next_event()


async def test_wait_for_takes_the_first_match_and_leaves_every_other_event_in_order(clients):
    """`wait_for(kind, where=...)` returns the first matching event, one already waiting
    or one yet to come, and takes only it out of the stream: the others stay for
    `next_event()`, in this task or in a reader running beside it."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bot = await clients()
    await bot.join_room(room.join_key, "Bot")
    question = await bot.send("lunch?")
    other = await alice.send("something else")
    answer = await alice.send("yes", reply_to=question.id)
    after = await alice.send("after")
    # All three may be waiting already: the first match, however long it has waited.
    got = await bot.wait_for(Message, where=lambda message: message.reply_to == question.id, timeout=10)
    assert got == answer
    assert [await asyncio.wait_for(bot.next_event(), 10) for _ in range(3)] == [question, other, after]

    async def read_until(text: str) -> list:
        read = []
        async for event in bot.events():
            read.append(event)
            if isinstance(event, Message) and event.text == text:
                return read

    reader = asyncio.create_task(read_until("done"))
    waiting = asyncio.create_task(bot.wait_for(Message, where=lambda message: message.sender == "Alice"))
    await asyncio.sleep(0)  # both wait
    mine = await bot.send("anyone?")
    said = await alice.send("me")
    done = await alice.send("done")
    assert await asyncio.wait_for(waiting, 10) == said
    assert await asyncio.wait_for(reader, 10) == [mine, done]


async def test_wait_for_without_a_match_times_out_and_loses_nothing(clients):
    """No match within `timeout`: `TimeoutError` (asyncio's), and what came meanwhile is
    still in the stream; so is an event `where` raised on; a wait when the client closes
    ends with `ConnectionLost`."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bot = await clients()
    await bot.join_room(room.join_key, "Bot")
    waiting = asyncio.create_task(bot.wait_for(Left, timeout=1))
    await asyncio.sleep(0)
    meanwhile = await alice.send("meanwhile")
    with pytest.raises(asyncio.TimeoutError):
        await waiting
    assert await asyncio.wait_for(bot.next_event(), 10) == meanwhile
    with pytest.raises(TimeoutError):
        await bot.wait_for(Message, where=lambda message: message.text == "never", timeout=0.2)
    said = await alice.send("one more")
    with pytest.raises(ZeroDivisionError):  # `where`'s error is the caller's; the event stays
        await bot.wait_for(Message, where=lambda message: 1 / 0 > 0, timeout=10)
    assert await asyncio.wait_for(bot.next_event(), 10) == said

    waiting = asyncio.create_task(bot.wait_for(Message))
    await asyncio.sleep(0)
    await bot.close()
    with pytest.raises(ConnectionLost) as ended:
        await asyncio.wait_for(waiting, 10)
    assert ended.value.code == "closed"


async def test_an_event_a_cancelled_wait_for_took_goes_back_to_its_place_in_the_stream():
    """A `wait_for` cancelled (`asyncio.timeout()` around it, its task cancelled) in the
    instant its event came: the event goes back to the stream where it arrived, not lost,
    and behind the older events still unread (it went back ahead of them, and the stream
    gave it out of order)."""
    events = _Events(10)
    events.put_nowait("waiting")
    claim = events.claim(lambda event: event == "taken")
    events.put_nowait("taken")
    events.put_nowait("later")
    assert claim.done()  # taken, and given up on before its waiter ran
    events.release(claim)
    assert [await events.get() for _ in range(3)] == ["waiting", "taken", "later"]
    for event in ("one", "two", "three"):  # one taken from the middle of the line
        events.put_nowait(event)
    events.release(events.claim(lambda event: event == "two"))
    assert [await events.get() for _ in range(3)] == ["one", "two", "three"]
    given_up = events.claim(lambda event: event == "never")
    events.release(given_up)
    events.put_nowait("never")  # nobody waits for it any more: it is in the stream
    assert given_up.cancelled() and await events.get() == "never"


async def test_a_wait_for_cancelled_as_its_event_comes_leaves_the_stream_in_order():
    """The same through `wait_for` and `next_event`: the task is cancelled after its
    event came and before it ran again."""
    client = ChatClient("ws://127.0.0.1:9/ws/")  # never connected: its events are put here
    said = Message(7, "Ann", "hi", "2026-01-01T00:00:01Z")
    client._queue.put_nowait(Joined("Ann"))
    waiting = asyncio.create_task(client.wait_for(Message, timeout=10))
    await asyncio.sleep(0)  # it waits
    client._queue.put_nowait(said)
    client._queue.put_nowait(Left("Ann"))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert [await client.next_event() for _ in range(3)] == [Joined("Ann"), said, Left("Ann")]


async def test_a_request_given_up_on_keeps_its_answer_from_the_next_one():
    """A bot puts a timeout on a request (asyncio.wait_for): the server answers it all
    the same, and that answer was taken for the next request's (members() raised the
    edit's message_not_found, and its own Members was dropped)."""

    class Slow(FakeRoom):
        async def reply(self, websocket, frame):
            if frame["type"] == "EditMessage":
                await asyncio.sleep(0.3)
            return await super().reply(websocket, frame)

    async with fake_server(Slow()) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.edit(424242, "too late"), 0.1)
        assert await client.members() == ["Bob"]
        assert await client.react(7, "👍") is not None  # and the one after
        await client.close()


async def a_send_given_up(url: str, sent: asyncio.Event) -> ChatClient:
    """Bob in the fake room, whose `send("hi")` is cancelled once the server has it
    (`sent`), before its echo comes."""
    client = await ChatClient.connect(url)
    await client.join_room("k", "Bob")
    await give_up(client.send("hi"), sent)
    return client


async def give_up(request: Coroutine[Any, Any, Any], sent: asyncio.Event) -> None:
    """Run `request` and cancel it once the server has it (`sent`, cleared first)."""
    sent.clear()
    task = asyncio.create_task(request)
    await asyncio.wait_for(sent.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_request_given_up_on_takes_no_error_its_command_never_gets(monkeypatch):
    """A message sent is answered by its broadcast, which may come after the answer to
    the next frame: given up on before its echo came, it took the next request's
    `file_not_found` (which PROTOCOL.md never answers a ChatMessage with), and that
    request waited for ever. (This server holds the echo until the next frame, which
    the client sends once it has waited ORPHAN_WAIT for it.)"""
    monkeypatch.setattr(client_module, "ORPHAN_WAIT", 0.2)

    class LateEcho(FakeRoom):
        held: dict | None = None
        sent_chat = asyncio.Event()

        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "ChatMessage":
                self.held = answer  # the broadcast, after the next frame's answer
                self.sent_chat.set()
                return None
            if self.held is not None:
                await websocket.send(json.dumps(answer))
                answer, self.held = self.held, None
            return answer

    room = LateEcho()
    async with fake_server(room) as url:
        client = await a_send_given_up(url, room.sent_chat)
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(client.download_file("f"), 5)
        assert refused.value.code == "file_not_found"
        assert (await next_of(client, Message, within=5)).text == "hi"  # its echo: an event
        assert await asyncio.wait_for(client.members(), 5) == ["Bob"]
        await client.close()


async def test_a_request_after_one_given_up_on_waits_for_its_answer_and_keeps_its_own():
    """Both may be refused `rate_limited`, which no code table tells apart: the next
    request went out at once, its refusal came before the given-up message's echo, the
    orphan took it, and the next request waited for ever. It is now sent once the echo
    is in."""

    class SlowEcho(FakeRoom):
        sent_chat = asyncio.Event()

        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "ChatMessage":  # stored, and broadcast a moment later
                self.sent_chat.set()
                asyncio.get_running_loop().call_later(
                    0.3, asyncio.ensure_future, websocket.send(json.dumps(answer))
                )
                return None
            if frame["type"] == "GetMembers":
                return {"type": "Error", "code": "rate_limited", "message": "Too many requests."}
            return answer

    room = SlowEcho()
    async with fake_server(room) as url:
        client = await a_send_given_up(url, room.sent_chat)
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(client.members(), 5)
        assert refused.value.code == "rate_limited"
        assert (await next_of(client, Message, within=5)).text == "hi"  # its echo: an event
        await client.close()


async def test_requests_given_up_on_in_a_row_each_keep_their_own_answer(monkeypatch):
    """Only the last request given up on was remembered: given up on past the first's
    ORPHAN_WAIT, the second took the first's late answer (server_error), and the next
    request took the second's (rate_limited) for its own. Each is now remembered and
    waited for, and the server's answers, in order, go to them in order."""
    monkeypatch.setattr(client_module, "ORPHAN_WAIT", 0.2)

    class SlowChat(FakeRoom):
        refusals = ["server_error", "rate_limited"]  # the next messages' answers
        held: list[dict] = []  # their answers, sent before the next other frame's
        sent_chat = asyncio.Event()

        async def reply(self, websocket, frame):
            if frame["type"] == "ChatMessage":
                self.held.append({"type": "Error", "code": self.refusals.pop(0), "message": "No."})
                self.sent_chat.set()
                return None
            for answer in self.held:
                await websocket.send(json.dumps(answer))
            self.held.clear()
            return await super().reply(websocket, frame)

    room = SlowChat()
    async with fake_server(room) as url:
        client = await a_send_given_up(url, room.sent_chat)
        await give_up(client.send("again"), room.sent_chat)
        assert await asyncio.wait_for(client.members(), 5) == ["Bob"]
        assert await asyncio.wait_for(client.members(), 5) == ["Bob"]
        with pytest.raises(TimeoutError):  # both Errors were answers, not events
            await client.wait_for(ErrorEvent, timeout=0.3)
        await client.close()


async def test_a_request_given_up_on_holds_up_the_next_ones_only_until_its_wait_is_over(monkeypatch):
    """ORPHAN_WAIT counts from when a request was given up on: each request after one
    whose answer never came waited ORPHAN_WAIT all over again."""
    monkeypatch.setattr(client_module, "ORPHAN_WAIT", 0.5)

    class NoEcho(FakeRoom):
        sent_chat = asyncio.Event()

        async def reply(self, websocket, frame):
            if frame["type"] == "ChatMessage":
                self.sent_chat.set()
                return None  # its echo never comes
            return await super().reply(websocket, frame)

    room = NoEcho()
    async with fake_server(room) as url:
        client = await a_send_given_up(url, room.sent_chat)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(4):
            assert await asyncio.wait_for(client.members(), 5) == ["Bob"]
        assert 0.4 < loop.time() - started < 1.0
        await client.close()


async def test_a_request_refused_for_its_rate_is_sent_again_only_when_asked(monkeypatch):
    """`retry_rate_limited=N`: a request the server refuses `rate_limited` (a frame it
    drops: nothing is posted twice) is sent again up to N times, after growing waits,
    and the last refusal is raised; by default it is raised at once."""
    monkeypatch.setattr(client_module, "RATE_RETRY_FIRST", 0.01)

    class Busy(FakeRoom):
        refusals = 0  # the next requests refused

        async def reply(self, websocket, frame):
            if frame["type"] != "JoinRoom" and self.refusals:
                self.refusals -= 1
                return {"type": "Error", "code": "rate_limited", "message": "Too many; wait."}
            return await super().reply(websocket, frame)

    room = Busy()
    async with fake_server(room) as url:
        for retries, refusals, sent in [(0, 1, 1), (2, 2, 3), (2, 3, 3)]:
            options = {"retry_rate_limited": retries} if retries else {}  # 0: the default
            client = await ChatClient.connect(url, **options)
            await client.join_room("k", "Bob")
            room.frames.clear()
            room.refusals = refusals
            if refusals > retries:
                with pytest.raises(ChatError) as refused:
                    await asyncio.wait_for(client.send("hi"), 5)
                assert refused.value.code == "rate_limited"
            else:
                assert (await asyncio.wait_for(client.send("hi"), 5)).text == "hi"
            assert len(room.sent("ChatMessage")) == sent, (retries, refusals)
            await client.close()


async def test_a_create_refused_for_its_rate_is_not_sent_again():
    """A `CreateRoom` is refused `rate_limited` by limits counted per hour and minute
    (ROOMS_PER_HOUR: "wait 14 minutes"; JOINS_PER_MINUTE): a client asked to retry
    refusals (the terminal chat's is) sent it again for a minute, and then failed with
    the same refusal. It fails at once, once sent; a join is still sent again."""

    class Full(FakeRoom):
        async def reply(self, websocket, frame):
            if frame["type"] in ("CreateRoom", "JoinRoom") and len(self.sent(frame["type"])) == 1:
                return {"type": "Error", "code": "rate_limited", "message": "Too many; wait 14 minutes."}
            return await super().reply(websocket, frame)

    room = Full()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url, retry_rate_limited=3)
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(client.create_room("R"), 5)
        assert refused.value.code == "rate_limited" and "14 minutes" in refused.value.message
        assert len(room.sent("CreateRoom")) == 1
        assert (await asyncio.wait_for(client.join_room("k", "Bob"), 5)).name == FAKE_ROOM["name"]
        assert len(room.sent("JoinRoom")) == 2
        await client.close()


async def test_typing_never_answers_for_a_request_and_needs_a_room():
    """Typing went out beside the request lock: its not_in_room Error answered the join
    in flight, which raised while the server had seated the client."""

    class Refusing(FakeRoom):
        async def reply(self, websocket, frame):
            if frame["type"] == "Typing":
                return {"type": "Error", "code": "not_in_room", "message": "Not in a room."}
            if frame["type"] == "JoinRoom":
                await asyncio.sleep(0.2)
            return await super().reply(websocket, frame)

    room = Refusing()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        with pytest.raises(ChatError) as outside:
            await client.typing()
        assert outside.value.code == "not_in_room" and room.sent("Typing") == []
        joined, typed = await asyncio.gather(client.join_room("k", "Bob"), client.typing())
        assert joined.name == FAKE_ROOM["name"] and client.room is not None
        await client.close()


async def test_a_secret_that_is_no_secret_is_refused_before_anything_is_sent():
    room = FakeRoom()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        for secret in ("s" * 43, b"short"):
            with pytest.raises(ChatError) as refused:
                await client.join_room("k", "Eve", secret=secret)
            assert refused.value.code == "link_invalid"
        assert room.sent("JoinRoom") == [] and client.room is None
        await client.close()


def test_a_client_made_without_connect_says_so():
    client = ChatClient("ws://127.0.0.1:9/ws/")
    with pytest.raises(RuntimeError, match="ChatClient.connect"):
        asyncio.run(asyncio.wait_for(client.members(), 5))


async def test_a_room_left_and_joined_again_yields_no_message_twice(clients):
    alice, bob = await clients(), await clients()
    room = await alice.create_room("Again", owner_name="Alice")
    await alice.send("one")
    await bob.join_room(room.join_key, "Bob")
    history = await next_of(bob, History)
    assert [message.text for message in history.messages] == ["one"]
    await bob.leave()
    await alice.send("two")
    await bob.join_room(room.join_key, "Bob")
    history = await next_of(bob, History)
    assert [message.text for message in history.messages] == ["two"]  # "one" was yielded before
    await alice.send("three")
    assert (await next_of(bob, Message)).text == "three"


async def test_kicked_while_a_request_waits_is_connection_lost_with_its_close_code():
    class Kicking(FakeRoom):
        async def reply(self, websocket, frame):
            if frame["type"] == "GetMembers":
                await websocket.send(json.dumps({"type": "Error", "code": "kicked", "message": "Removed."}))
                await websocket.close(4001)
                return None
            return await super().reply(websocket, frame)

    async with fake_server(Kicking()) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        with pytest.raises(ConnectionLost) as lost:
            await client.members()
        assert (lost.value.code, lost.value.close_code) == ("kicked", 4001)
        await client.close()


async def test_a_server_that_stops_answering_is_a_drop_after_the_keepalive():
    """A frozen server (or a network path gone) was noticed after about 40 s, websockets'
    default: `keepalive=` sets it, and the client reconnects."""

    class Frozen(FakeRoom):
        frozen = None

        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "JoinRoom" and self.frozen is None:
                await websocket.send(json.dumps(answer))
                websocket.transport.pause_reading()  # no pong will come
                self.frozen = websocket
                return None
            if frame["type"] == "JoinRoom":  # the client came back: the old one may go
                self.frozen.transport.resume_reading()
            return answer

    async with fake_server(Frozen()) as url:
        client = await ChatClient.connect(url, keepalive=0.5)
        await client.join_room("k", "Bob")
        await next_of(client, Reconnecting, within=5)
        await next_of(client, Reconnected, within=10)
        await client.close()


async def test_debug_logging_shows_no_frame_and_so_no_password_or_token(clients, caplog):
    """A bot that turns on DEBUG logging gets websockets' connection lines, never its
    frames: a JoinRoom ends with the room's password (shown whole, websockets keeps a
    frame's last 24 characters), a rejoin with the owner and participant tokens, and a
    RoomJoined holds the room key."""
    caplog.set_level(logging.DEBUG)
    alice = await clients()
    room = await alice.create_room("Logged", password="hunter2-pw", owner_name="Ann")
    bob = await clients()
    await bob.join_room(room.join_key, "Bob", password="hunter2-pw")
    await bob.send("hello")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "connection is OPEN" in logged
    for secret in ("hunter2-pw", alice.owner_token[-12:], bob.participant_token[-12:], "JoinRoom"):
        assert secret not in logged
