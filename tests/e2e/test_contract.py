"""PROTOCOL.md re-read line by line, as a client written from it alone would try it,
against both ways the server starts (`serve` and `runserver`): the rules that were
found broken (issue 14, "The contract, re-read line by line"; item 9's `since`)."""

import asyncio
import base64
import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BOTH = pytest.mark.parametrize("command", ["serve", "runserver"])


async def refused(client: Client, code: str, **frame) -> dict:
    await client.send(**frame)
    answer = await client.recv()
    assert answer["type"] == "Error" and answer["code"] == code, (frame, answer)
    return answer


@BOTH
async def test_the_51st_rate_limited_frame_closes_with_1008(sqlite_env, servers, command):
    """Limits: "closed with 1008 right after the 51st rate-limited frame within a
    sliding 10 s" -- it never came under runserver (daphne)."""
    env = {**sqlite_env, "CHAT_RATE_BURST": "1", "CHAT_RATE_SUSTAINED": "0.01"}
    (server,) = servers(env, command=command)
    abuser = await Client.open(server.url)
    await abuser.create()
    await abuser.say("the one the bucket lets through")
    await abuser.expect("ChatMessage")
    limited = 0
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(60):
            await abuser.say("again")
            answer = await abuser.recv(within=5)
            assert answer["code"] == "rate_limited"
            limited += 1
    assert limited == 51
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    # Nobody else is harmed.
    other = await Client.open(server.url)
    await other.create()
    assert await other.members() == ["Owner"]
    await other.close()


@BOTH
@pytest.mark.parametrize("separator", ["\x1c", "\x1d", "\x1e", "\x1f"])
async def test_names_with_information_separators_at_either_end_are_refused(
    sqlite_env, servers, command, separator
):
    """Precise rules: names are trimmed of Unicode white space (U+001C-U+001F is not)
    and refused if they hold a Cc character: `str.strip()` trimmed them and accepted."""
    (server,) = servers(sqlite_env, command=command)
    client = await Client.open(server.url)
    for name in (f"{separator}Ann", f"Ann{separator}"):
        await refused(client, "invalid_field", type="CreateRoom", name=name, description="")
        await refused(
            client, "invalid_field", type="CreateRoom", name="Room", description="", owner_name=name
        )
    created = await client.create()
    guest = await Client.open(server.url)
    await refused(guest, "invalid_field", type="JoinRoom", join_key=created["room_info"]["join_key"],
                  name=f"{separator}Bob{separator}")  # fmt: skip
    # Unicode white space is still trimmed.
    joined = await guest.join(created["room_info"]["join_key"], "\u3000Bob\t")
    assert joined["participants"] == ["Owner", "Bob"]
    await guest.close()
    await client.close()


@BOTH
async def test_file_ids_are_compared_exactly_as_sent(sqlite_env, servers, command):
    """Precise rules: ids are compared exactly as sent. The upper-case id (and the
    other spellings `uuid.UUID` reads) found the file over GetFile, DeleteFile and
    /files/<id>."""
    (server,) = servers(sqlite_env, command=command)
    cookie = await asyncio.to_thread(session_cookie, server.http)
    owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await owner.create()
    content = base64.b64encode(b"hello, exact ids\n").decode()
    await owner.send(type="UploadFile", name="a.txt", mime_type="text/plain", content=content)
    file_id = (await owner.expect("FileUploaded"))["metadata"]["id"]
    await owner.expect("ChatMessage")
    spellings = [file_id.upper(), file_id.replace("-", ""), "{" + file_id + "}", f"urn:uuid:{file_id}"]
    for spelling in spellings:
        await refused(owner, "file_not_found", type="GetFile", file_id=spelling)
        await refused(owner, "file_not_found", type="DeleteFile", file_id=spelling)
        status, _, _ = await asyncio.to_thread(download, server.http, f"/files/{spelling}", cookie)
        assert status == 404, spelling
    # The id as sent still works everywhere.
    status, body, _ = await asyncio.to_thread(download, server.http, f"/files/{file_id}", cookie)
    assert (status, body) == (200, b"hello, exact ids\n")
    await owner.send(type="GetFile", file_id=file_id)
    assert (await owner.expect("FileContent"))["content"] == content
    await owner.send(type="DeleteFile", file_id=file_id)
    assert (await owner.expect("FileDeleted"))["file_id"] == file_id
    await owner.close()


async def check_since_out_of_range(server) -> None:
    """PROTOCOL.md: "a `since` above every id gives no `History` and is never an error".
    Past the database's integers it is read as the highest (or lowest) id, never handed
    to the database as it is: a 20-digit one overflowed it (`server_error`, and a
    phantom seat held the name)."""
    host = await Client.open(server.url)
    join_key = (await host.create())["room_info"]["join_key"]
    await host.say("one")
    first = await host.expect("ChatMessage")
    guest = await Client.open(server.url)
    for since in (10**19, 2**63, 99_999_999_999_999_999_999, -(2**63) - 1):
        # Sent as the literal a client writes: at most 20 digits is still JSON here.
        frame = json.dumps({"type": "JoinRoom", "join_key": join_key, "name": "Bob", "since": since})
        await guest.connection.send(frame)
        joined = await guest.recv()
        assert joined["type"] == "RoomJoined" and joined["participants"] == ["Owner", "Bob"], (since, joined)
        await guest.send(type="GetMembers")
        answer = await guest.recv()
        if since > 0:  # above every id: no History before the Members
            assert answer["type"] == "Members", (since, answer)
        else:  # below every id: the whole History
            assert [m["id"] for m in answer["messages"]] == [first["id"]], (since, answer)
            assert (await guest.recv())["type"] == "Members"
        await guest.send(type="LeaveRoom")  # frames are handled in turn: Bob is free again
    assert await host.members() == ["Owner"]
    await guest.close()
    await host.close()


@BOTH
async def test_a_since_outside_the_databases_integers_is_above_or_below_every_id(
    sqlite_env, servers, command
):
    (server,) = servers(sqlite_env, command=command)
    await check_since_out_of_range(server)


async def test_a_since_outside_the_databases_integers_on_postgresql(shared_env, servers):
    (server,) = servers(shared_env)
    await check_since_out_of_range(server)
