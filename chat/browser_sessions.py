"""The browser session behind `/files/<id>`: a cookie from every app page, a row only
once a socket opened with it enters a room.

PROTOCOL.md (HTTP): `GET /` and `/rooms/<key>/` give the browser a session cookie, and a
WebSocket opened with it ties its joins to that session. A page view stores nothing
(a million cookieless `GET /` would otherwise fill the session table): the cookie holds
a key minted and signed here, and the first `CreateRoom`/`JoinRoom` of a socket opened
with it makes the session row under that key (`services.session_room_add`). A key the
server did not mint, or whose row has expired, never gets a row.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, get_random_string, salted_hmac

# Django's session keys are lower-case letters and digits, at most 40 of them.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NONCE_LENGTH = 24
SALT = "chat.browser_sessions"


def _mac(nonce: str) -> str:
    return salted_hmac(SALT, nonce, algorithm="sha256").hexdigest()[:16]


def mint() -> str:
    """A new session key: 24 random characters and 16 of their HMAC under SECRET_KEY."""
    nonce = get_random_string(NONCE_LENGTH, ALPHABET)
    return nonce + _mac(nonce)


def minted(key: str) -> bool:
    """Whether this server minted `key` (and so may make its row)."""
    nonce, mac = key[:NONCE_LENGTH], key[NONCE_LENGTH:]
    return len(key) == NONCE_LENGTH + 16 and constant_time_compare(mac, _mac(nonce))


def give_cookie(request: HttpRequest, response: HttpResponse) -> None:
    """Set a minted session cookie unless the request carries one this server minted or
    whose session row exists (an expired or foreign one is replaced)."""
    sent = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    if sent and (minted(sent) or request.session.exists(sent)):
        return
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        mint(),
        max_age=settings.SESSION_COOKIE_AGE,
        path=settings.SESSION_COOKIE_PATH,
        domain=settings.SESSION_COOKIE_DOMAIN,
        secure=settings.SESSION_COOKIE_SECURE or None,
        httponly=settings.SESSION_COOKIE_HTTPONLY or None,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )
