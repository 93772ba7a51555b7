import os
import shutil
import uuid

import pytest

from tests.e2e.servers import (
    RedisServer,
    ServerProcess,
    drop_postgres,
    manage,
    production_env,
    scratch_postgres,
)

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")


@pytest.fixture
def sqlite_env(tmp_path):
    """A production-like environment on a fresh SQLite file and the in-memory layer."""
    env = production_env(CHAT_VAR_DIR=str(tmp_path))
    manage(env, "migrate", "--noinput")
    return env


@pytest.fixture
def redis_env(tmp_path):
    """One process's production-like environment on SQLite and Redis."""
    if not REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis process tests are not run")
    env = production_env(
        CHAT_VAR_DIR=str(tmp_path),
        REDIS_URL=REDIS_URL,
        CHANNEL_LAYER_PREFIX=f"e2e-{uuid.uuid4().hex[:8]}",
    )
    manage(env, "migrate", "--noinput")
    return env


@pytest.fixture
def shared_env(tmp_path):
    """Several processes sharing a scratch PostgreSQL database and Redis."""
    if not (DATABASE_URL.startswith("postgres") and REDIS_URL):
        pytest.skip("DATABASE_URL (PostgreSQL) and REDIS_URL are not set: multi-process tests not run")
    name = f"chat_e2e_{uuid.uuid4().hex[:8]}"
    env = production_env(
        DATABASE_URL=scratch_postgres(DATABASE_URL, name),
        REDIS_URL=REDIS_URL,
        CHANNEL_LAYER_PREFIX=f"e2e-{name}",
        CHAT_VAR_DIR=str(tmp_path),
        # Fast presence so a SIGKILLed process's ghosts go within seconds.
        PRESENCE_HEARTBEAT="0.5",
        PRESENCE_TIMEOUT="2",
    )
    manage(env, "migrate", "--noinput")
    yield env
    drop_postgres(DATABASE_URL, name)


@pytest.fixture
def servers(tmp_path):
    """Start servers with `servers(env, n)` (or one on a given `port`); all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(env, count=1, command="serve", port=None, args=()):
        new = [
            ServerProcess(env, command, log_dir=tmp_path, port=port, args=args).start() for _ in range(count)
        ]
        started.extend(new)
        return new

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the Redis fault test is not run")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
