"""chat/admin_login.py: the admin login hashes no password past its address's
ADMIN_LOGIN_FAILURES_PER_MINUTE or the process's ADMIN_LOGIN_CHECKS_AT_ONCE (Django's
test client, a hasher that counts its hashes)."""

import asyncio
import contextlib
import threading

import pytest
from asgiref.sync import ThreadSensitiveContext
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from chat import address_limits

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

PASSWORD = "right-password-1234"


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast), counting every hash: a login's check of a user's password, and the
    hash Django runs for an unknown user to take as long."""

    hashes = 0
    hold: threading.Event | None = None  # set: each hash waits for it
    started = threading.Event()

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.hashes += 1
        CountingHasher.started.set()
        if CountingHasher.hold is not None:
            CountingHasher.hold.wait(10)
        return super().encode(password, salt)


@pytest.fixture(autouse=True)
def counted(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    address_limits._local.pop("admin-login-failures", None)  # a fresh minute per test
    User.objects.create_superuser("admin", "admin@example.org", PASSWORD)
    CountingHasher.hashes, CountingHasher.hold = 0, None
    CountingHasher.started.clear()
    yield
    address_limits._local.pop("admin-login-failures", None)


def log_in(client: Client, address: str, username: str = "admin", password: str = "wrong"):
    form = {"username": username, "password": password, "next": "/admin/"}
    return client.post("/admin/login/", form, REMOTE_ADDR=address)


def test_past_the_limit_no_password_is_hashed_and_the_login_is_refused(settings):
    settings.ADMIN_LOGIN_FAILURES_PER_MINUTE = 3
    client = Client()
    for username in ("admin", "nobody", "admin"):  # a known user or not, each is hashed
        response = log_in(client, "10.0.0.1", username)
        assert response.status_code == 200 and b"correct username and password" in response.content
    assert CountingHasher.hashes == 3

    for password in ("wrong", PASSWORD):  # the right password too: the address waits
        refused = log_in(client, "10.0.0.1", password=password)
        assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert CountingHasher.hashes == 3  # nothing hashed past the limit

    # Another address logs in.
    response = log_in(client, "10.0.0.2", password=PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/", REMOTE_ADDR="10.0.0.2").status_code == 200
    assert CountingHasher.hashes == 4


def test_a_login_that_succeeds_takes_no_place(settings):
    settings.ADMIN_LOGIN_FAILURES_PER_MINUTE = 2
    assert log_in(Client(), "10.0.0.3").status_code == 200
    assert log_in(Client(), "10.0.0.3", password=PASSWORD).status_code == 302
    assert log_in(Client(), "10.0.0.3").status_code == 200  # the second failure
    assert log_in(Client(), "10.0.0.3").status_code == 429


def test_the_form_is_shown_to_a_refused_address(settings):
    settings.ADMIN_LOGIN_FAILURES_PER_MINUTE = 1
    log_in(Client(), "10.0.0.4")
    assert log_in(Client(), "10.0.0.4").status_code == 429
    assert Client().get("/admin/login/", REMOTE_ADDR="10.0.0.4").status_code == 200


def test_past_the_checks_at_once_a_login_is_refused_without_hashing(settings):
    settings.ADMIN_LOGIN_CHECKS_AT_ONCE = 1
    CountingHasher.hold = threading.Event()
    answers: list[int] = []
    first = threading.Thread(target=lambda: answers.append(log_in(Client(), "10.0.0.5").status_code))
    first.start()
    assert CountingHasher.started.wait(10)  # the first login is hashing

    busy = log_in(Client(), "10.0.0.6")
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert CountingHasher.hashes == 1

    CountingHasher.hold.set()
    first.join(10)
    assert answers == [200]
    # Refused as busy, it took no failure place: that address may log in now.
    settings.ADMIN_LOGIN_FAILURES_PER_MINUTE = 1
    assert log_in(Client(), "10.0.0.6", password=PASSWORD).status_code == 302


async def post_login(form: dict):
    """An async POST with a thread of its own for its sync parts, as under the server
    (Django's ASGIHandler; the test client would share one between requests)."""
    async with ThreadSensitiveContext():
        return await AsyncClient().post("/admin/login/", form)


async def test_a_login_whose_client_goes_away_holds_its_check_until_the_hash_ends(settings):
    """Django cancels a request whose client disconnects; the hash in its thread runs on,
    and keeps the process's check until it ends."""
    settings.ADMIN_LOGIN_CHECKS_AT_ONCE = 1
    CountingHasher.hold = threading.Event()
    form = {"username": "admin", "password": "wrong", "next": "/admin/"}
    first = asyncio.create_task(post_login(form))
    assert await asyncio.to_thread(CountingHasher.started.wait, 10)
    first.cancel()
    await asyncio.sleep(0.2)
    assert (await post_login(form)).status_code == 503

    CountingHasher.hold.set()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert (await post_login(form)).status_code == 200
    assert CountingHasher.hashes == 2
