"""Security headers on every page, and the session cookie's flags, as a production
process (`serve`, DEBUG off, secure cookies) sends them."""

import asyncio
import urllib.error
import urllib.request

import pytest

from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def fetch(url: str, cookie: str | None = None):
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


async def test_every_page_sends_the_security_headers(sqlite_env, servers):
    # Secure cookies as in production; plain HTTP on loopback, so no HTTPS redirect.
    (server,) = servers({**sqlite_env, "DJANGO_SECURE_COOKIES": "1"})
    owner = await Client.open(server.url)
    join_key = (await owner.create())["room_info"]["join_key"]
    pages = {
        "/": 200,
        f"/rooms/{join_key}/": 200,
        "/healthz": 200,
        "/admin/login/": 200,
        "/files/00000000-0000-0000-0000-000000000000": 404,
        "/no-such-page": 404,
        "/static/chat/app.js": 200,
    }
    for path, status in pages.items():
        got, headers = await asyncio.to_thread(fetch, f"{server.http}{path}")
        assert got == status, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] in {"same-origin", "no-referrer"}, path
        if path.startswith("/static/"):  # a script, not a page: typed, never sniffed
            assert headers["Content-Type"].startswith("text/javascript"), headers["Content-Type"]
            continue
        csp = headers["Content-Security-Policy"] or ""
        assert "frame-ancestors 'none'" in csp or headers["X-Frame-Options"] == "DENY", path
        if path in ("/", f"/rooms/{join_key}/"):
            scripts = csp.split("script-src")[1].split(";")[0]
            assert "'self'" in scripts and "unsafe-inline" not in scripts
            cookie = headers["Set-Cookie"]
            assert cookie.startswith("__Host-sessionid=") and "HttpOnly" in cookie and "Secure" in cookie
            assert "SameSite=Lax" in cookie and "Path=/;" in cookie and "Domain" not in cookie, cookie
        if path == "/admin/login/":
            cookie = headers["Set-Cookie"]
            assert cookie.startswith("__Host-csrftoken=") and "Secure" in cookie and "Domain" not in cookie
    await owner.close()


async def test_a_session_planted_under_another_name_gives_no_download_rights(sqlite_env, servers):
    """Session fixation: a sibling subdomain, or a plain-HTTP answer on the way, can put a
    cookie in a browser, but not a `__Host-` one. A session key planted as `sessionid`,
    with the planter's copy of it, must not be the session the victim's joins enrich."""
    (server,) = servers({**sqlite_env, "DJANGO_SECURE_COOKIES": "1"})
    session = await asyncio.to_thread(session_cookie, server.http)
    assert session.startswith("__Host-sessionid=")
    planted = "sessionid=" + session.split("=", 1)[1]
    for cookie, status in ((planted, 404), (session, 200)):
        owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
        await owner.create()
        await owner.send(type="UploadFile", name="notes.txt", mime_type="text/plain", content="aGk=")
        file_id = (await owner.expect("FileUploaded"))["metadata"]["id"]
        got, _, _ = await asyncio.to_thread(download, server.http, f"/files/{file_id}", session)
        assert got == status, cookie
        await owner.close()
