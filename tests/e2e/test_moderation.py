"""Admin actions (Django's test client, as staff, in this process) reach sockets held
by two real server processes through Redis: close room and kick."""

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test import AsyncClient
from websockets.exceptions import ConnectionClosed

from chat.models import Participant
from tests.e2e.servers import production_env
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("REDIS_URL", "")


@pytest.fixture
def two_servers_on_the_test_database(transactional_db, servers, settings, tmp_path):
    """Two `serve` processes on pytest's own PostgreSQL test database, sharing Redis with
    this process (the same channel-layer prefix), so the admin here reaches them."""
    if connection.vendor != "postgresql" or not REDIS_URL:
        pytest.skip("DATABASE_URL (PostgreSQL) and REDIS_URL are not set: cross-process moderation not run")
    base = urlsplit(os.environ["DATABASE_URL"])
    database_url = urlunsplit(base._replace(path=f"/{connection.settings_dict['NAME']}"))
    prefix = f"mod-{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": prefix},
        }
    }
    env = production_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        CHANNEL_LAYER_PREFIX=prefix,
        CHAT_VAR_DIR=str(tmp_path),
    )
    return servers(env, 2)


async def admin_post(client: AsyncClient, model: str, action: str, pk) -> None:
    response = await client.post(f"/admin/{model}/", {"action": action, "_selected_action": [str(pk)]})
    assert response.status_code == 302


async def closed_with(client: Client, code: str, close_code: int) -> None:
    error = await client.recv()
    while error["type"] != "Error":  # presence chatter before it
        error = await client.recv()
    assert error["code"] == code, error
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == close_code


async def test_kick_and_close_room_reach_both_processes(two_servers_on_the_test_database):
    one, two = two_servers_on_the_test_database
    alice = await Client.open(one.url)
    created = await alice.create()
    join_key = created["room_info"]["join_key"]
    bob, carol = await Client.open(two.url), await Client.open(two.url)
    await bob.join(join_key, "Bob")
    await carol.join(join_key, "Carol")
    for name in ("Bob", "Carol"):
        assert await alice.expect("ParticipantJoined") == {"type": "ParticipantJoined", "name": name}
    user = await database_sync_to_async(User.objects.create_superuser)("mod", "m@example.org", "pw")
    admin = AsyncClient()
    await admin.aforce_login(user)

    bob_row = await Participant.objects.aget(name="Bob", left_at__isnull=True)
    await admin_post(admin, "chat/participant", "remove_from_room", bob_row.pk)
    await closed_with(bob, "kicked", 4001)
    assert await alice.expect("ParticipantLeft") == {"type": "ParticipantLeft", "name": "Bob"}
    assert await carol.expect("ParticipantLeft") == {"type": "ParticipantLeft", "name": "Bob"}
    assert await alice.members() == ["Owner", "Carol"]

    await admin_post(admin, "chat/room", "close_rooms", created["room_info"]["id"])
    await closed_with(alice, "room_closed", 4000)
    await closed_with(carol, "room_closed", 4000)
    late = await Client.open(two.url)
    await late.send(type="JoinRoom", join_key=join_key, name="Late")
    assert (await late.recv())["code"] == "room_not_found"
    await late.close()
    # The async ORM's thread keeps its connection; the test database is dropped later.
    await database_sync_to_async(connections.close_all)()
