"""The app page over HTTP (no browser): CSP, the json_script config, static files."""

import json
import re

import pytest

from tests.helpers import make_room

pytestmark = pytest.mark.django_db


def page_config(content: bytes) -> dict:
    """The chat's and the files' config, as the page's script reads them."""
    config = {}
    for name in (b"chat-config", b"files-config"):
        match = re.search(rb'<script id="' + name + rb'" type="application/json">(.*?)</script>', content)
        assert match, "the page hands its config over through json_script"
        config.update(json.loads(match.group(1)))
    return config


def test_app_page_has_a_csp_without_inline_scripts(client):
    response = client.get("/", HTTP_HOST="127.0.0.1:8000")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000;" in policy
    assert "img-src 'self' blob: data:;" in policy


def test_page_config_offers_only_the_file_types_the_server_accepts(client, settings):
    """Never html or svg, and not a type whose bytes the server cannot verify."""
    settings.FILES_MAX_SIZE = 1234
    settings.CHAT_EDIT_WINDOW = 600
    settings.FILES_ALLOWED_MIME_TYPES = [
        "image/PNG",
        "text/html",
        "image/svg+xml",
        "application/msword",
        "text/plain",
    ]
    config = page_config(client.get("/rooms/k3y/").content)
    assert config == {
        "join_key": "k3y",
        "has_password": None,  # no open room has this key
        "sealed": False,
        "edit_window": 600,  # Edit is offered on one's own messages for this long
        "ghost_seconds": 60.0,  # a rejoin's name_taken is retried this long
        "history_limit": 100,  # a join's History of fewer: nothing older to load
        "members_refresh": 300.0,  # the page asks for the member list again this often
        "files_max_size": 1234,
        "files_allowed_mime_types": ["image/png", "text/plain"],
        "files_extensions": {"image/png": [".png"], "text/plain": [".txt"]},  # for sealed files
        "files_signatures": {"image/png": ["89504e470d0a1a0a"]},  # text/plain: UTF-8 without NUL
    }


def test_a_sealed_rooms_share_link_says_so_before_joining(client):
    """The page asks for the whole link of a sealed room before the person joins."""
    sealed, _, _ = make_room(key_check="A" * 22 + "==")
    standard, _, _ = make_room(password_hash="not-empty")
    config = page_config(client.get(f"/rooms/{sealed.join_key}/").content)
    assert (config["has_password"], config["sealed"]) == (False, True)
    config = page_config(client.get(f"/rooms/{standard.join_key}/").content)
    assert (config["has_password"], config["sealed"]) == (True, False)


def test_join_key_reaches_the_script_escaped(client):
    content = client.get("/rooms/%3Cscript%3Ealert(1)%3C%20script%3E/").content
    assert b"<script>alert(1)" not in content
    assert page_config(content)["join_key"] == "<script>alert(1)< script>"


def test_a_join_key_no_room_can_have_is_no_room(client):
    """A NUL in the key (PostgreSQL's text cannot be asked for one) is a key no open room has."""
    response = client.get("/rooms/no%00pe/")
    assert response.status_code == 200 and page_config(response.content)["has_password"] is None


def test_static_files_are_served_with_debug_off(client, settings):
    settings.DEBUG = False
    response = client.get("/static/chat/app.js")
    assert response.status_code == 200
    assert b"JoinRoom" in response.content


def test_app_pages_are_never_kept_by_a_shared_cache(client):
    """The page sets this browser's session cookie, which its download rights hang on: a
    shared cache that kept the page would hand one cookie to many browsers."""
    for path in ("/", "/rooms/k3y/"):
        client.cookies.clear()  # a new browser: the page gives it a cookie
        response = client.get(path, HTTP_HOST="127.0.0.1:8000")
        assert response.cookies, path
        directives = {d.strip() for d in response["Cache-Control"].split(",")}
        assert {"private", "no-store", "no-cache", "must-revalidate"} <= directives, (path, directives)


def test_app_pages_send_no_referrer_and_the_admin_keeps_same_origin(client):
    """A sealed room's key is in the page's #fragment: nothing the page loads or links to
    may be told the page's address. The admin keeps Django's same-origin (its CSRF check
    needs the Origin that no-referrer would blank)."""
    for path in ("/", "/rooms/k3y/"):
        assert client.get(path, HTTP_HOST="127.0.0.1:8000")["Referrer-Policy"] == "no-referrer", path
    assert client.get("/admin/login/", HTTP_HOST="127.0.0.1:8000")["Referrer-Policy"] == "same-origin"
