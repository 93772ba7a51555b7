"""Issue 14, item 4: an admin's kick or close ends every right of that seat and that
browser session at once, across processes, even when the layer event never reaches
the socket's process; the kicked session or address stays out under any name.

The kick and the close are the admin's own code (`chat.moderation`), run by
`manage.py shell` beside the servers on their database. On SQLite the shell's layer is
its own in-memory one, so the event is lost and only the database tells the servers;
on PostgreSQL + Redis the shell runs without REDIS_URL, so the event is lost there too
(delivered events are tests/e2e/test_moderation.py's). Clients come from distinct
loopback addresses (127.0.0.x)."""

import asyncio
import base64
import subprocess
import sys

import pytest
from websockets.exceptions import ConnectionClosed

from chat.keys import join_key_hash
from chatclient.crypto import encrypt
from tests.e2e.servers import ROOT
from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TEXT = b"minutes of the meeting\n"
FAST_CHAT = {"CHAT_RATE_BURST": "1000", "CHAT_RATE_SUSTAINED": "1000"}


def shell(env: dict[str, str], code: str) -> str:
    """Run Python in `manage.py shell` on the servers' database; its printed output."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()  # after the shell's own line about its imports
    return lines[-1] if lines else ""


def kick(env: dict[str, str], join_key: str, *names: str) -> None:
    shell(
        env,
        "from django.utils import timezone\n"
        "from chat import moderation\n"
        "from chat.models import Participant\n"
        f"for p in Participant.objects.filter(room__join_key_hash={join_key_hash(join_key)!r},"
        f" name__in={list(names)!r}, left_at__isnull=True):\n"
        "    assert moderation.remove_participant(participant_id=p.pk, now=timezone.now(), actor='e2e')\n",
    )


def close_room(env: dict[str, str], join_key: str) -> None:
    shell(
        env,
        "from django.utils import timezone\n"
        "from chat import moderation\n"
        "from chat.models import Room\n"
        f"room = Room.objects.get(join_key_hash={join_key_hash(join_key)!r})\n"
        "assert moderation.close_room(room_id=room.pk, now=timezone.now(), actor='e2e')\n",
    )


def lost_event(env: dict[str, str]) -> dict[str, str]:
    """The same database, but a layer of the shell's own: its events reach nobody."""
    return {name: value for name, value in env.items() if name not in {"REDIS_URL", "CHANNEL_LAYER_PREFIX"}}


async def open_from(url: str, address: str, cookie: str | None = None) -> Client:
    headers = {"Cookie": cookie} if cookie else {}
    return await Client.open(url, additional_headers=headers, local_addr=(address, 0))


async def ended(client: Client, code: str, close_code: int, within: float = 10) -> None:
    """The next Error (after chatter, all within `within` s) is `code`, then the socket
    closes with `close_code`."""

    async def error() -> dict:
        frame = await client.recv(within)
        while frame["type"] != "Error":
            frame = await client.recv(within)
        return frame

    frame = await asyncio.wait_for(error(), within)
    assert frame["code"] == code, frame
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv(within)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == close_code


async def upload_text(client: Client, name: str = "minutes.txt") -> str:
    content = base64.b64encode(TEXT).decode()
    await client.send(type="UploadFile", name=name, mime_type="text/plain", content=content)
    return (await client.expect("FileUploaded"))["metadata"]["id"]


async def status_of(base_url: str, file_id: str, cookie: str) -> int:
    status, _, _ = await asyncio.to_thread(download, base_url, f"/files/{file_id}", cookie)
    return status


@pytest.fixture(params=["sqlite", "shared"])
def deployment(request, servers):
    """(environment, first server, last server): one process on SQLite, or two on
    PostgreSQL + Redis (the victims on the second, the downloads on the first)."""
    env = dict(request.getfixturevalue("sqlite_env" if request.param == "sqlite" else "shared_env"))
    env.update(FAST_CHAT)
    started = servers(env, 1 if request.param == "sqlite" else 2)
    return env, started[0], started[-1]


async def test_a_kicked_participant_that_keeps_sending_is_stopped(deployment):
    """The kick's layer event is lost (a delivered one is tests/e2e/test_moderation.py):
    the victim's next message finds its seat gone in the same write that would store it."""
    env, first, last = deployment
    alice = await open_from(first.url, "127.0.0.1")
    join_key = (await alice.create())["room_info"]["join_key"]
    bob = await open_from(last.url, "127.0.0.2")
    await bob.join(join_key, "Bob")

    async def keep_sending() -> None:
        try:
            while True:
                await bob.say("still here")
                await asyncio.sleep(0.01)
        except ConnectionClosed:
            pass

    sender = asyncio.create_task(keep_sending())
    await bob.expect("ChatMessage")  # it is chatting
    await asyncio.to_thread(kick, lost_event(env), join_key, "Bob")
    kicked_at = int(
        await asyncio.to_thread(
            shell,
            env,
            "from django.db.models import Max\nfrom chat.models import Message\n"
            f"print(Message.objects.filter(room__join_key_hash={join_key_hash(join_key)!r}).aggregate(m=Max('id'))['m'])",
        )
    )
    await ended(bob, "kicked", 4001)
    await asyncio.wait_for(sender, 5)
    # Nothing of Bob's was stored once the kick had committed (the shell above ran after it).
    later = await asyncio.to_thread(
        shell,
        env,
        "from chat.models import Message\n"
        f"print(Message.objects.filter(room__join_key_hash={join_key_hash(join_key)!r}, sender='Bob',"
        f" id__gt={kicked_at}).count())",
    )
    assert later == "0"
    await alice.close()


async def send_unless_ended(client: Client, **frame) -> None:
    """Send `frame`, unless the seat has been ended already: its process's heartbeat
    checks the seats it holds every PRESENCE_HEARTBEAT (0.5 s here) and tells a socket
    whose kick or close event was lost, as the event would have. Either way the socket
    then ends as `ended` expects."""
    try:
        await client.send(**frame)
    except ConnectionClosed:
        pass


async def test_kick_and_close_end_downloads_and_every_seat_right(deployment):
    env, first, last = deployment
    quiet = lost_event(env)  # the database alone must end the rights
    alice_cookie = await asyncio.to_thread(session_cookie, first.http)
    bob_cookie = await asyncio.to_thread(session_cookie, first.http)
    alice = await open_from(first.url, "127.0.0.1", alice_cookie)
    join_key = (await alice.create())["room_info"]["join_key"]
    file_id = await upload_text(alice)
    bob = await open_from(last.url, "127.0.0.2", bob_cookie)
    await bob.join(join_key, "Bob")
    bobby = await open_from(last.url, "127.0.0.3", bob_cookie)  # another tab of Bob's session
    await bobby.join(join_key, "Bobby")
    # One victim per seat-checked command, each from its own address, without a session.
    victims = {}
    for number, command in enumerate(["ChatMessage", "UploadFile", "GetFile", "DeleteFile"], start=10):
        victims[command] = await open_from(last.url, f"127.0.0.{number}")
        await victims[command].join(join_key, command)
    assert await status_of(first.http, file_id, bob_cookie) == 200
    assert await status_of(last.http, file_id, bob_cookie) == 200

    await asyncio.to_thread(kick, quiet, join_key, "Bob", *victims)
    # The session of a kicked seat downloads nothing more, on any process, even with
    # another of its tabs still in the room; the others' sessions still do.
    assert await status_of(first.http, file_id, bob_cookie) == 404
    assert await status_of(last.http, file_id, bob_cookie) == 404
    assert await status_of(last.http, file_id, alice_cookie) == 200
    # Every command that needs the seat finds it gone (if the heartbeat has not told it
    # first): kicked, closed 4001.
    chat = victims["ChatMessage"]
    await send_unless_ended(chat, type="ChatMessage", content=encrypt(chat.key, "am I still here?"))
    await send_unless_ended(
        victims["UploadFile"],
        type="UploadFile",
        name="x.txt",
        mime_type="text/plain",
        content=base64.b64encode(TEXT).decode(),
    )
    await send_unless_ended(victims["GetFile"], type="GetFile", file_id=file_id)
    await send_unless_ended(victims["DeleteFile"], type="DeleteFile", file_id=file_id)
    for victim in victims.values():
        await ended(victim, "kicked", 4001)
    await send_unless_ended(bob, type="GetFile", file_id=file_id)
    await ended(bob, "kicked", 4001)

    await asyncio.to_thread(close_room, quiet, join_key)
    assert await status_of(first.http, file_id, alice_cookie) == 404
    await send_unless_ended(alice, type="ChatMessage", content=encrypt(alice.key, "anyone?"))
    await ended(alice, "room_closed", 4000)
    await send_unless_ended(bobby, type="GetFile", file_id=file_id)
    await ended(bobby, "room_closed", 4000)


async def test_a_kicked_session_or_address_cannot_rejoin_under_any_name(deployment):
    env, first, last = deployment
    bob_cookie = await asyncio.to_thread(session_cookie, first.http)
    alice = await open_from(first.url, "127.0.0.1")
    join_key = (await alice.create())["room_info"]["join_key"]
    bob = await open_from(last.url, "127.0.0.2", bob_cookie)
    await bob.join(join_key, "Bob")
    await asyncio.to_thread(kick, lost_event(env), join_key, "Bob")

    attempts = [
        ("127.0.0.3", bob_cookie, "Robert"),  # the same session from another address
        ("127.0.0.2", None, "Robert"),  # the same address without the session
        ("127.0.0.2", None, "Bob"),
    ]
    for server in (first, last):
        for address, cookie, name in attempts:
            again = await open_from(server.url, address, cookie)
            await again.send(type="JoinRoom", join_key=join_key, name=name)
            refused = await again.recv()
            assert refused["type"] == "Error" and refused["code"] == "forbidden", (address, name, refused)
            await again.close()
    # Anyone else is welcome, under that name too.
    carol = await open_from(last.url, "127.0.0.4")
    await carol.join(join_key, "Bob")
    await carol.close()
    await alice.close()
