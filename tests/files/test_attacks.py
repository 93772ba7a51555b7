"""Access control tried as an attacker would: guessed keys and file ids, lying types,
hostile file names, downloads replayed from other sessions."""

import os
import secrets
import threading
import uuid

import pytest
from django.db import connections
from django.test import AsyncClient
from django.utils import timezone

from chat.errors import ProtocolError
from files import services
from files.models import SharedFile
from tests.helpers import browser_session, connect, create_room, expect_error, seat_in_new_room, upload_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def test_guessed_join_keys_and_file_ids_find_nothing(room, settings):
    settings.JOINS_PER_MINUTE = 1000  # 50 guesses on one socket (the limit: tests/e2e/test_hostile_reader.py)
    await room.owner.send_json_to(upload_frame(b"secret", name="a.txt", mime_type="text/plain"))
    file_id = (await room.owner.receive_json_from())["metadata"]["id"]
    assert len(room.join_key) >= 22  # 128 random bits
    guesser = await connect(client=("10.9.9.9", 1))
    for _ in range(50):
        await guesser.send_json_to({"type": "JoinRoom", "join_key": secrets.token_urlsafe(16), "name": "G"})
        await expect_error(guesser, "room_not_found")
    mine, _ = await create_room(name="Mine")
    for guess in [str(uuid.uuid4()) for _ in range(20)] + [
        file_id.upper(),
        file_id[:-1] + "0",
        f"{file_id}/",
    ]:
        await mine.send_json_to({"type": "GetFile", "file_id": guess})
        error = await expect_error(mine, "file_not_found")
        assert error["message"] == "File not found or expired"
    http = AsyncClient()
    for guess in (str(uuid.uuid4()), file_id, f"{file_id}/../{file_id}"):
        assert (await http.get(f"/files/{guess}")).status_code == 404


async def test_a_download_url_replayed_from_another_session_is_404():
    member, headers = await browser_session()
    owner, created = await create_room(headers=headers)
    await owner.send_json_to(upload_frame(b"for members only", name="a.txt", mime_type="text/plain"))
    file_id = (await owner.receive_json_from())["metadata"]["id"]
    assert (await member.get(f"/files/{file_id}")).status_code == 200
    thief, _ = await browser_session()  # has a session of its own, never joined
    assert (await thief.get(f"/files/{file_id}")).status_code == 404
    stolen = AsyncClient()
    stolen.cookies["sessionid"] = "x" * 32
    assert (await stolen.get(f"/files/{file_id}")).status_code == 404


@pytest.mark.parametrize(
    ("data", "mime_type", "accepted"),
    [
        (b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>", "image/png", True),  # polyglot
        (b"<html><script>alert(1)</script></html>", "image/png", False),  # lies about its type
        (b"<html><script>alert(1)</script></html>", "text/html", False),
        (b"<svg onload=alert(1)></svg>", "image/svg+xml", False),
        (b"<html><script>alert(1)</script></html>", "text/plain", True),  # text, served as text
        (b"%PDF-1.4\n<script>", "application/pdf", True),
        (b"GIF89a/*<script>alert(1)</script>*/", "image/gif", True),
    ],
)
async def test_whatever_is_accepted_is_served_inert(data, mime_type, accepted):
    """Magic bytes cannot prove a file harmless (a polyglot passes); what passes is only
    ever served as an attachment of its declared type that the browser will not sniff,
    frame or run (nosniff, sandbox CSP)."""
    member, headers = await browser_session()
    owner, _ = await create_room(headers=headers)
    await owner.send_json_to(upload_frame(data, name="x", mime_type=mime_type))
    reply = await owner.receive_json_from()
    if not accepted:
        assert reply == {"type": "Error", "code": "mime_not_allowed", "message": reply["message"]}
        return
    response = await member.get(f"/files/{reply['metadata']['id']}")
    assert response.status_code == 200
    assert response["Content-Type"] == mime_type
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../../etc/passwd", None),
        ("..\\..\\windows\\win.ini", None),
        ("evil\u202egnp.exe", None),  # right-to-left override: kept, but never a path
        ("a\x00.txt", "invalid_field"),
        ("n" * 10_000, "invalid_field"),
        ("[x](javascript:alert(1))", None),
    ],
)
async def test_hostile_file_names_never_reach_the_disk_or_break_the_link(room, name, code, files_root):
    owner = room.owner
    await owner.send_json_to(upload_frame(b"hello", name=name, mime_type="text/plain"))
    reply = await owner.receive_json_from()
    if code:
        assert reply["code"] == code
        return
    assert reply["metadata"]["name"] == name
    link = (await owner.receive_json_from())["content"]
    shown = link.removeprefix("[File: ").split("](/files/")[0]
    assert not set("[]()\r\n") & set(shown) and link.endswith(f"](/files/{reply['metadata']['id']})")
    stored = (await SharedFile.objects.aget(pk=reply["metadata"]["id"])).blob
    assert "/" not in stored.split("/", 1)[1] and ".." not in stored and "etc" not in stored
    assert all(path.resolve().is_relative_to(files_root.resolve()) for path in files_root.rglob("*"))


def test_uploads_to_two_rooms_at_once_cannot_pass_the_address_quota_together(
    monkeypatch, settings, files_root
):
    """One address uploads into two of its rooms at the same instant, each file within
    its room's quota and the two together past FILES_ADDRESS_QUOTA. Both quota checks
    are held open side by side if they can be (on PostgreSQL, without the quotas' turn,
    each saw the other's file not yet committed and both were stored): one is stored,
    the other refused."""
    settings.FILES_ADDRESS_QUOTA = 150
    seats = [seat_in_new_room(), seat_in_new_room()]  # the same client address
    blobs = [services.scan_and_store(uuid.uuid4(), os.urandom(100)) for _ in seats]
    side_by_side = threading.Barrier(2)
    checked = services.check_quota

    def check_then_wait(**kwargs):
        checked(**kwargs)
        try:
            side_by_side.wait(timeout=1)  # the other upload's check, if it can run meanwhile
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(services, "check_quota", check_then_wait)
    outcomes: list[str] = []

    def upload(seat, blob):
        try:
            now = timezone.now()
            services.file_record(seat=seat, name="a.txt", mime_type="text/plain", blob=blob, now=now)
            outcomes.append("stored")
        except ProtocolError as exc:
            outcomes.append(exc.code.value)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upload, args=pair) for pair in zip(seats, blobs, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["quota_exceeded", "stored"]
    assert SharedFile.objects.count() == 1
