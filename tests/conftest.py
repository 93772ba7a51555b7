"""Shared fixtures: the channel layer over in-memory and Redis, the rooms socket tests
start from, and service URLs. The helpers they are built with: tests/helpers.py."""

import os
import uuid

import pytest
from channels.layers import get_channel_layer

from config.settings import redis_layer_host

REDIS_URL = os.environ.get("REDIS_URL", "")
DATABASE_URL = os.environ.get("DATABASE_URL", "")

LAYERS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


def pytest_collection_modifyitems(config, items):
    """Without REDIS_URL the Redis variants are skipped, and the run says so."""
    if REDIS_URL:
        return
    skip = pytest.mark.skip(reason="REDIS_URL is not set: Redis channel layer not tested")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return [
        f"database: {'PostgreSQL (DATABASE_URL)' if DATABASE_URL else 'SQLite (DATABASE_URL unset)'}",
        f"channel layers: memory{' + redis (REDIS_URL)' if REDIS_URL else ' only (REDIS_URL unset)'}",
    ]


@pytest.fixture(params=LAYERS)
async def layer(request, settings):
    """Each consumer test runs over the in-memory layer and over Redis."""
    if request.param == "redis":
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "chat.layers.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_layer_host(REDIS_URL)], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
            }
        }
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    channel_layer = get_channel_layer()
    yield request.param
    await channel_layer.flush()


@pytest.fixture
async def room(layer):
    """An owner connected with a room created (over each `layer`): `.owner` (the
    communicator), `.created` (RoomCreated), `.key`, `.join_key`, `.id`. The socket is
    closed at teardown, whether the test passed or not."""
    from tests import helpers

    opened = await helpers.open_room()
    yield opened
    await helpers.close_all(opened.owner)


@pytest.fixture
async def room_of_two(layer):
    """`room`, and Bob joined from another address (`.member`, `.joined`: RoomJoined);
    the owner's ParticipantJoined for Bob is already read. Both sockets are closed at
    teardown, whether the test passed or not."""
    from tests import helpers

    opened = await helpers.open_room_of_two()
    yield opened
    await helpers.close_all(opened.owner, opened.member)


@pytest.fixture
async def connection():
    """A socket's `actions.Connection` without a socket (tests.helpers.Socketless:
    `.conn`, `.socket`, `await .frames()`), closed at teardown as a closed socket's is,
    its seat dropped first so that no leave is written."""
    from chat import actions
    from tests import helpers

    opened = helpers.Socketless.open()
    yield opened
    opened.conn.seat = None
    await actions.close_connection(opened.conn, 1000)


@pytest.fixture(autouse=True)
def files_root(settings, tmp_path):
    """Every test stores file blobs (and the generated key) in its own folder."""
    settings.FILES_ROOT = tmp_path / "files"
    settings.FILES_KEY_FILE = tmp_path / "files.key"
    return settings.FILES_ROOT


@pytest.fixture(autouse=True)
def steady_heartbeat():
    """Tests that call presence.beat_once() directly run as a process that has been
    beating for long (see the sweep's guard there)."""
    from chat import presence

    presence._beating_since = float("-inf")
    yield
    presence._beating_since = float("-inf")


@pytest.fixture(autouse=True)
def fresh_join_failures():
    """Failed-join counters are per process; each test starts with none."""
    from chat.ratelimit import _local

    _local.windows.clear()
    yield
    _local.windows.clear()


@pytest.fixture(autouse=True)
def fresh_chat_bytes():
    """What each address may store (CHAT_BYTES_PER_ADDRESS_*) and read
    (READ_BYTES_PER_ADDRESS_*) is counted in the process (stored bytes leased from Redis
    with a Redis layer); each test starts with every address's buckets full and no lease."""
    from chat.ratelimit import _stored_bytes, chat_bytes, read_bytes

    for buckets in (chat_bytes.buckets, read_bytes.buckets, _stored_bytes):
        buckets.clear()
    yield
    for buckets in (chat_bytes.buckets, read_bytes.buckets, _stored_bytes):
        buckets.clear()


@pytest.fixture(autouse=True)
def fresh_address_limits():
    """ROOMS_PER_HOUR is counted per process here; each test starts afresh."""
    from chat import address_limits

    address_limits._local.clear()
    yield
    address_limits._local.clear()
