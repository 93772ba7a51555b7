"""An admin's moderation reaches the client through a real server (PostgreSQL and Redis)."""

import asyncio

import pytest

from chatclient import ChatClient, ConnectionLost, ErrorEvent, Left, Message, MessageDeleted
from tests.chatclient.conftest import next_of
from tests.e2e.servers import manage

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def moderate(env: dict[str, str], code: str) -> None:
    """Run moderation code in a separate process, as the admin would, on the server's database."""
    setup = "import uuid\nfrom django.utils import timezone\nfrom chat import moderation\n"
    setup += "from chat.models import Participant\n"
    await asyncio.to_thread(manage, env, "shell", "-c", setup + code)


async def test_kicked_and_room_closed_end_the_stream_without_reconnecting(shared_env, servers):
    (server,) = servers(shared_env, 1)
    alice = await ChatClient.connect(server.url)
    room = await alice.create_room("Moderated", owner_name="Alice")
    bob = await ChatClient.connect(server.url)
    await bob.join_room(room.join_key, "Bob")
    said = await bob.send("something rude")

    await moderate(shared_env, f"moderation.delete_messages(message_ids=[{said.id}], actor='test')")
    assert await next_of(alice, MessageDeleted) == MessageDeleted(said.id)
    await moderate(
        shared_env,
        f"bob = Participant.objects.get(room_id='{room.id}', name='Bob', left_at__isnull=True)\n"
        "moderation.remove_participant(participant_id=bob.pk, now=timezone.now(), actor='test')",
    )
    assert await next_of(bob, ErrorEvent) == ErrorEvent("kicked", "An admin removed you from this room.")
    with pytest.raises(ConnectionLost) as ended:
        await next_of(bob, Message)
    assert (ended.value.code, ended.value.close_code) == ("kicked", 4001)
    assert await next_of(alice, Left) == Left("Bob")

    await moderate(
        shared_env, f"moderation.close_room(room_id=uuid.UUID('{room.id}'), now=timezone.now(), actor='test')"
    )
    assert await next_of(alice, ErrorEvent) == ErrorEvent("room_closed", "An admin closed this room.")
    with pytest.raises(ConnectionLost) as ended:
        await next_of(alice, Message)
    assert (ended.value.code, ended.value.close_code) == ("room_closed", 4000)
    await alice.close()
    await bob.close()
