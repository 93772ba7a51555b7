"""The operational log: one `chat.events` line per connection, join, error, rate-limit
trip and moderation action, and never content, keys, passwords or session ids."""

import logging

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import moderation
from chat.models import Participant
from tests.helpers import connect, create_room, encrypt, expect_error, join_room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


async def test_events_are_logged_without_secrets(caplog, settings):
    settings.CHAT_RATE_BURST = 1
    settings.CHAT_RATE_SUSTAINED = 0.001
    session = "sessionsecret0123456789abcdef"
    caplog.set_level(logging.INFO, logger="chat.events")
    owner, created = await create_room(
        password="pa55word", headers=[(b"cookie", f"sessionid={session}".encode())]
    )
    key = created["encryption_key"]
    bob, _ = await join_room(created["room_info"]["join_key"], "Bob", password="pa55word")
    await owner.receive_json_from()
    secret_text = encrypt(key, "top secret plans")
    await bob.send_json_to({"type": "ChatMessage", "content": secret_text})
    await bob.receive_json_from()
    await owner.receive_json_from()
    await bob.send_json_to({"type": "ChatMessage", "content": secret_text})
    await expect_error(bob, "rate_limited")
    await bob.send_json_to({"type": "Nope"})
    await expect_error(bob, "unknown_type")
    bob_id = (await Participant.objects.aget(name="Bob")).pk
    await database_sync_to_async(moderation.remove_participant)(
        participant_id=bob_id, now=timezone.now(), actor="admin:1"
    )
    await owner.disconnect()
    lonely = await connect()
    await lonely.disconnect()

    lines = [record.getMessage() for record in caplog.records if record.name == "chat.events"]
    kinds = [line.split()[0] for line in lines]
    for kind in ("connect", "create", "join", "disconnect"):
        assert f"event={kind}" in kinds, lines
    assert "event=error code=rate_limited" in "\n".join(lines)
    assert "event=error code=unknown_type" in "\n".join(lines)
    assert f"event=moderation action=remove_participant participant={bob_id}" in "\n".join(lines)
    everything = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (
        key,
        "pa55word",
        session,
        secret_text,
        created["owner_token"],
        created["room_info"]["join_key"],
    ):
        assert secret not in everything, secret
