"""Issue 14, item 9: a flood of bad frames does not flood the log, and the debug
page (DJANGO_DEBUG=1) shows no connection string's password."""

import asyncio
import base64
import secrets
import shutil
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import DATABASE_URL
from tests.e2e.servers import RedisServer, drop_postgres, manage, scratch_postgres
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def flood(url: str, frames: int) -> None:
    client = await Client.open(url)
    for _ in range(frames):
        await client.connection.send("not json")
        assert (await client.recv())["code"] == "invalid_json"  # every frame is still answered
    await client.close()


@pytest.mark.parametrize("command", ["serve", "runserver"])
async def test_a_flood_of_bad_frames_writes_few_log_lines(sqlite_env, servers, command):
    env = {**sqlite_env, "LOG_ERRORS_PER_CONNECTION": "5", "LOG_ERRORS_PER_PROCESS": "12"}
    (server,) = servers(env, command=command)
    # One connection: its 300 refusals give 5 lines a minute.
    await flood(server.url, 300)
    lines = [line for line in server.log_path.read_text().splitlines() if "event=error " in line]
    assert len(lines) == 5, lines
    # Ten at once: the process writes at most 12 lines a second, whatever the connections.
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(flood(server.url, 100) for _ in range(10)))
    elapsed = asyncio.get_running_loop().time() - started
    lines = [line for line in server.log_path.read_text().splitlines() if "event=error " in line]
    assert 5 < len(lines) <= 5 + 12 * (int(elapsed) + 2), (len(lines), elapsed)
    # A connection that comes back after its minute says how many lines it left out.
    assert all("code=invalid_json" in line for line in lines)


def test_requests_any_client_can_repeat_write_nothing_to_the_log(sqlite_env, servers):
    """A foreign Host (a DisallowedHost traceback, the host repeated: 236 KiB a request
    with a 60 KB one) and a long unknown path (a warning with the path) wrote the log as
    fast as a client could ask; now the client is answered and nothing is written."""
    (server,) = servers(sqlite_env, command="serve")
    base = server.http
    before = server.log_path.stat().st_size
    for request in (
        urllib.request.Request(f"{base}/", headers={"Host": "evil-" + "x" * 20_000 + ".example"}),
        urllib.request.Request(f"{base}/no-such-page/" + "y" * 20_000),
    ):
        for _ in range(5):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code in (400, 404)
    assert server.log_path.stat().st_size - before < 2_000, server.log_path.read_text()[before:][:500]


def technical_page(base_url: str) -> str:
    """DEBUG answers a request for a host it does not serve with the technical error
    page, settings included."""
    request = urllib.request.Request(f"{base_url}/", headers={"Host": "evil.example"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


async def check_debug_page(env: dict, servers, secrets_: list[str]) -> None:
    for command in ("serve", "runserver"):
        (server,) = servers({**env, "DJANGO_DEBUG": "1"}, command=command)
        page = await asyncio.to_thread(technical_page, server.http)
        assert "DisallowedHost" in page and "REDIS_URL" in page  # the settings are listed
        for secret in secrets_:
            assert secret not in page, (command, secret)
        server.stop()


@pytest.fixture
def locked_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path, password=f"redispw{secrets.token_hex(8)}")
    server.start()
    yield server
    server.stop()


def key_env() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": f"djsecret{secrets.token_hex(16)}",
        "FILES_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


async def test_the_debug_page_hides_redis_url_and_keys(sqlite_env, servers, locked_redis):
    env = {**sqlite_env, **key_env(), "REDIS_URL": locked_redis.url}
    await check_debug_page(
        env, servers, [locked_redis.password, env["DJANGO_SECRET_KEY"], env["FILES_ENCRYPTION_KEY"]]
    )


async def test_the_debug_page_hides_database_url(tmp_path, sqlite_env, servers, locked_redis):
    if not DATABASE_URL.startswith("postgres"):
        pytest.skip("DATABASE_URL (PostgreSQL) is not set")
    name = f"chat_e2e_debug_{secrets.token_hex(4)}"
    url = scratch_postgres(DATABASE_URL, name)
    password = f"dbpw{secrets.token_hex(8)}"  # local trust auth ignores it; the page must not show it
    with_password = url.replace("postgres://postgres@", f"postgres://postgres:{password}@", 1)
    assert password in with_password
    env = {**sqlite_env, **key_env(), "DATABASE_URL": with_password, "REDIS_URL": locked_redis.url}
    manage(env, "migrate", "--noinput")
    try:
        await check_debug_page(env, servers, [password, locked_redis.password, env["DJANGO_SECRET_KEY"]])
    finally:
        drop_postgres(DATABASE_URL, name)
