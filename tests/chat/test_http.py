"""HTTP endpoints, settings and system checks."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

pytestmark = pytest.mark.django_db(transaction=True)


async def test_healthz_is_200_when_database_and_layer_answer(layer, async_client):
    response = await async_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok", "storage": "ok"}


async def test_healthz_is_503_when_the_channel_layer_is_down(async_client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]},  # nothing listens on port 9
        }
    }
    response = await async_client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["channel_layer"] == "down" and response.json()["database"] == "ok"


async def test_healthz_is_503_when_the_disk_has_no_room(async_client, settings):
    """A full disk still answers a SELECT; the free bytes of the folders written say it
    (tests/e2e/test_full_disk.py fills a real one)."""
    settings.HEALTHZ_MIN_FREE_BYTES = 2**62
    response = await async_client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": "ok", "channel_layer": "ok", "storage": "full"}


def test_healthz_answers_a_process_asked_on_its_own_address_over_plain_http(client, settings):
    """A supervisor asks http://127.0.0.1:8001/healthz: no allowed host, no TLS. It gets
    the answer, where every other path gets 400 (host) or 301 (HTTPS)."""
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8001")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert client.get("/", HTTP_HOST="127.0.0.1:8001").status_code == 400
    assert client.get("/", HTTP_HOST="chat.example.org").status_code == 301


@pytest.mark.parametrize("path", ["/", "/rooms/some-join-key/"])
def test_app_pages_give_a_session_cookie_and_store_no_session(client, settings, path):
    """PROTOCOL.md (HTTP): the page gives a session cookie. Issue 14: a page view stores
    nothing; the cookie's key is minted and signed, kept on the next view."""
    from django.contrib.sessions.models import Session

    from chat import browser_sessions

    response = client.get(path)
    assert response.status_code == 200
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and browser_sessions.minted(cookie.value)
    assert not Session.objects.exists()
    again = client.get(path)
    assert settings.SESSION_COOKIE_NAME not in again.cookies and not Session.objects.exists()
    client.cookies[settings.SESSION_COOKIE_NAME] = "forgedforgedforgedforgedforgedforgedabcd"
    replaced = client.get(path).cookies[settings.SESSION_COOKIE_NAME].value
    assert browser_sessions.minted(replaced) and not Session.objects.exists()


def test_share_link_page_shows_the_join_key_as_text(client):
    response = client.get("/rooms/%3Cimg%20src=x%3E/")
    assert b"&lt;img src=x&gt;" in response.content and b"<img src=x>" not in response.content


def test_admin_exists_and_asks_for_a_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_in_memory_layer_with_debug_off_is_warned_about(settings):
    settings.DEBUG = False
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}
    assert "chat.W001" in [message.id for message in run_checks()]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {}}}
    assert "chat.W001" not in [message.id for message in run_checks()]


ROOT = Path(__file__).resolve().parents[2]


def _settings_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.DATABASES['default']['ENGINE'], s.FILES_MAX_SIZE, s.WS_MAX_FRAME)"
    )
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)


def test_secret_key_is_required_unless_debug(tmp_path):
    refused = _settings_in_subprocess(CHAT_VAR_DIR=str(tmp_path))
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY" in refused.stderr
    assert _settings_in_subprocess(CHAT_VAR_DIR=str(tmp_path), DJANGO_DEBUG="1").returncode == 0


def test_limits_and_database_come_from_the_environment(tmp_path):
    result = _settings_in_subprocess(
        CHAT_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY="k",
        FILES_MAX_SIZE="3000",
        DATABASE_URL="postgres://u:p@db.example:5433/chat",
    )
    engine, max_size, max_frame = result.stdout.split()
    assert engine == "django.db.backends.postgresql"
    assert (int(max_size), int(max_frame)) == (3000, 4000 + 64 * 1024)


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    """README, Production: secret key, hosts, Redis and the files key set, DEBUG off."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }
    env = {
        **clean,
        "CHAT_VAR_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "chat.example.org",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "FILES_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ROOM_KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    # docs/production.md, Processes: collectstatic first (without it, chat.W004).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # Without the files key it says so (chat.W002).
    del env["FILES_ENCRYPTION_KEY"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], env=env, capture_output=True, text=True
    )
    assert "chat.W002" in result.stdout + result.stderr
