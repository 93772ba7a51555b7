"""files/actions.py without a socket: an upload's checks in PROTOCOL.md's order (its
base64 is judged first, whichever cheap check refuses it: not_in_room, rate_limited,
file_too_large), the window place an upload takes, GetFile's and DeleteFile's
refusals, and the command table the consumer is given (config/routing.py)."""

import base64
import dataclasses
import uuid
from typing import get_args

import pytest

from chat import actions, outbox, protocol, ratelimit, services
from chat.errors import ErrorCode
from chat.hub import hub
from config.routing import COMMANDS
from files import actions as file_actions
from tests.helpers import refusal


def a_seat() -> services.Seat:
    return services.Seat(participant_id=10**9, room_id=uuid.uuid4(), name="Ann", is_owner=False)


def upload(content: str, large: bool = False) -> protocol.UploadFile:
    return protocol.UploadFile(name="a.txt", mime_type="text/plain", content=content, large=large)


GOOD = base64.b64encode(b"x" * 300).decode()  # 300 bytes
BAD = "QUJDRB=="  # stray bits
LARGE_AND_BAD = GOOD + BAD  # 304 bytes by its length, and not strict base64 (stray bits)


async def code_of(conn, action, command) -> str:
    return (await refusal(conn, action, command)).code.value


async def test_an_upload_outside_a_room_is_judged_on_its_base64_first(connection):
    conn = connection.conn
    assert await code_of(conn, file_actions.upload_file, upload(BAD)) == "invalid_field"
    assert await code_of(conn, file_actions.upload_file, upload(GOOD)) == "not_in_room"
    # A large frame whose content JSON itself forbids: invalid_json, which comes first.
    assert await code_of(conn, file_actions.upload_file, upload("QUJD\x01", large=True)) == "invalid_json"
    assert await code_of(conn, file_actions.upload_file, upload("QUJD=A==", large=True)) == "invalid_field"


async def test_a_rate_limited_upload_is_judged_on_its_base64_first_and_takes_no_place(connection, settings):
    conn = connection.conn
    conn.seat = a_seat()
    settings.FILES_UPLOADS_PER_MINUTE = 0
    assert await code_of(conn, file_actions.upload_file, upload(BAD)) == "invalid_field"
    refused = await refusal(conn, file_actions.upload_file, upload(GOOD))
    assert refused.code == ErrorCode.RATE_LIMITED and "uploads" in refused.message
    assert conn.uploads.count() == 0


async def test_an_upload_past_its_addresss_deliveries_is_judged_on_its_base64_first_and_takes_no_place(
    connection, settings, monkeypatch
):
    """Its room's file message costs the room's sockets here (actions.take_deliveries);
    a sealed room's upload broadcasts nothing (its card pays as chat)."""
    conn = connection.conn
    conn.seat = a_seat()
    settings.DELIVERIES_PER_ADDRESS_BURST, settings.DELIVERIES_PER_ADDRESS_SUSTAINED = 3, 0
    buckets = ratelimit.AddressBuckets("DELIVERIES_PER_ADDRESS_BURST", "DELIVERIES_PER_ADDRESS_SUSTAINED")
    monkeypatch.setattr(actions, "room_deliveries", buckets)
    monkeypatch.setattr(hub, "members_in", lambda room_id: 2)
    buckets.spend(conn.address, 3)  # spent by the address's other sockets
    assert await code_of(conn, file_actions.upload_file, upload(BAD)) == "invalid_field"
    refused = await refusal(conn, file_actions.upload_file, upload(GOOD))
    assert refused.code == ErrorCode.RATE_LIMITED and "room this size" in refused.message
    assert conn.uploads.count() == 0
    # The rate comes before the size (PROTOCOL.md): too large, it is still rate_limited.
    settings.FILES_MAX_SIZE = 299
    assert await code_of(conn, file_actions.upload_file, upload(GOOD)) == "rate_limited"
    settings.FILES_MAX_SIZE = 10_000
    conn.seat = dataclasses.replace(a_seat(), sealed=True)
    assert await code_of(conn, file_actions.upload_file, upload(GOOD)) == "mime_not_allowed"
    # Refused after its deliveries were taken, an upload gives them back.
    conn.seat = a_seat()
    buckets.give_back(conn.address, 3)
    settings.FILES_MAX_SIZE = 299
    assert await code_of(conn, file_actions.upload_file, upload(GOOD)) == "file_too_large"
    assert buckets.take(conn.address, 3)


async def test_a_too_large_upload_is_judged_on_its_base64_first_and_keeps_its_place(connection, settings):
    conn = connection.conn
    conn.seat = a_seat()
    settings.FILES_MAX_SIZE = 299
    assert await code_of(conn, file_actions.upload_file, upload(LARGE_AND_BAD)) == "invalid_field"
    assert conn.uploads.count() == 0  # a field error gives the window place back
    assert await code_of(conn, file_actions.upload_file, upload(GOOD)) == "file_too_large"
    assert conn.uploads.count() == 1  # an upload attempt that counts
    assert [frame["code"] for frame in await connection.frames()] == ["invalid_field", "file_too_large"]


async def test_get_file_checks_the_room_then_reads_then_unread(connection, settings):
    conn = connection.conn
    get = protocol.GetFile(file_id=str(uuid.uuid4()))
    settings.READS_PER_MINUTE = 0
    assert await code_of(conn, file_actions.get_file, get) == "not_in_room"
    conn.seat = a_seat()
    refused = await refusal(conn, file_actions.get_file, get)
    assert refused.code == ErrorCode.RATE_LIMITED and "requests" in refused.message
    settings.READS_PER_MINUTE = 60
    unread = settings.WS_SEND_QUEUE_BYTES  # anything unread: a whole file would pass the limit
    outbox.add_backlog(conn.outbox.owner, unread)
    try:
        refused = await refusal(conn, file_actions.get_file, get)
    finally:
        outbox.add_backlog(conn.outbox.owner, -unread)
    assert refused.code == ErrorCode.RATE_LIMITED and "unread" in refused.message
    assert conn.reads.count() == 0 and conn.reserved == 0


async def test_delete_file_outside_a_room_is_not_in_room(connection):
    delete = protocol.DeleteFile(file_id=str(uuid.uuid4()))
    assert await code_of(connection.conn, file_actions.delete_file, delete) == "not_in_room"


def test_the_consumer_gets_every_command_once_with_its_action():
    assert file_actions.ACTIONS == {
        protocol.UploadFile: file_actions.upload_file,
        protocol.GetFile: file_actions.get_file,
        protocol.DeleteFile: file_actions.delete_file,
    }
    assert not set(actions.ACTIONS) & set(file_actions.ACTIONS)
    assert COMMANDS == actions.ACTIONS | file_actions.ACTIONS
    assert set(COMMANDS) == set(get_args(protocol.Command))


@pytest.mark.parametrize("content", [GOOD, BAD])
async def test_checking_the_base64_keeps_nothing_and_agrees_with_decoding(content):
    """`check_content` refuses exactly what `content_bytes` refuses."""
    command = upload(content)
    try:
        data = await file_actions.content_bytes(command)
    except Exception as exc:
        with pytest.raises(type(exc)):
            await file_actions.check_content(command)
    else:
        assert data == base64.b64decode(content)
        assert await file_actions.check_content(command) is None
