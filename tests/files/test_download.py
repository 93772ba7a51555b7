"""`/files/<id>` over HTTP: only a browser session that joined the file's room gets it."""

import gc
import os
import time
from datetime import timedelta

import pytest
from django.test import AsyncClient
from django.utils import timezone

from chat.outbox import address_backlog
from chat.ratelimit import downloads_in_flight
from chat.workers import file_work
from files.models import SharedFile
from files.views import Reservation
from tests.helpers import browser_session, close_all, create_room, join_room, upload_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

PDF = b"%PDF-1.7\n" + os.urandom(3000)


async def shared_pdf(communicator) -> str:
    await communicator.send_json_to(upload_frame(PDF, name='report "Q3".pdf', mime_type="application/pdf"))
    uploaded = await communicator.receive_json_from()
    assert uploaded["type"] == "FileUploaded", uploaded
    return uploaded["metadata"]["id"]


async def test_a_page_cookie_used_before_its_first_join_is_kept(room):
    """The page's cookie has no session row until a join makes it; a download tried
    before that is 404 and must not make the browser drop the cookie its socket uses."""
    browser, headers = await browser_session()
    file_id = await shared_pdf(room.owner)
    early = await browser.get(f"/files/{file_id}")
    assert early.status_code == 404 and "sessionid" not in early.cookies
    member, _ = await join_room(room.join_key, "Member", headers=headers)
    assert (await browser.get(f"/files/{file_id}")).status_code == 200
    await close_all(member)


async def test_a_session_that_joined_the_room_downloads_an_attachment():
    browser, headers = await browser_session()
    owner, created = await create_room(headers=headers)
    file_id = await shared_pdf(owner)

    response = await browser.get(f"/files/{file_id}")
    assert response.status_code == 200
    assert b"".join([chunk async for chunk in response.streaming_content]) == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == str(len(PDF))
    assert response["Content-Disposition"].startswith("attachment;")
    assert "Q3" in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["X-Accel-Buffering"] == "no"  # no plaintext in nginx's temporary files

    # A joiner's session gets it too.
    joiner, joiner_headers = await browser_session()
    bob, _ = await join_room(created["room_info"]["join_key"], "Bob", headers=joiner_headers)
    assert (await joiner.get(f"/files/{file_id}")).status_code == 200
    await close_all(owner, bob)


async def test_every_refusal_is_the_same_plain_404(room):
    file_id = await shared_pdf(room.owner)
    outsider, outsider_headers = await browser_session()
    other, _ = await create_room(name="Other", headers=outsider_headers)
    no_session = AsyncClient()

    refusals = [
        await no_session.get(f"/files/{file_id}"),  # no session at all
        await outsider.get(f"/files/{file_id}"),  # a session of another room
        await outsider.get("/files/00000000-0000-0000-0000-000000000000"),
        await outsider.get("/files/not-an-id"),
    ]
    # A session of the room, but the file expired or was deleted.
    member, member_headers = await browser_session()
    bob, _ = await join_room(room.join_key, "Bob", headers=member_headers)
    await SharedFile.objects.filter(pk=file_id).aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    refusals.append(await member.get(f"/files/{file_id}"))
    await SharedFile.objects.filter(pk=file_id).aupdate(
        expires_at=timezone.now() + timedelta(hours=1), deleted_at=timezone.now()
    )
    refusals.append(await member.get(f"/files/{file_id}"))

    assert [response.status_code for response in refusals] == [404] * 6
    assert len({response.content for response in refusals}) == 1
    await SharedFile.objects.filter(pk=file_id).aupdate(deleted_at=None)
    assert (await member.get(f"/files/{file_id}")).status_code == 200
    await close_all(other, bob)


async def test_a_forged_session_cookie_records_nothing():
    forged = [(b"cookie", b"sessionid=forgedforgedforgedforged")]
    owner, _ = await create_room(headers=forged)
    file_id = await shared_pdf(owner)
    client = AsyncClient()
    client.cookies["sessionid"] = "forgedforgedforgedforged"
    assert (await client.get(f"/files/{file_id}")).status_code == 404
    await owner.disconnect()


async def get_from(browser: AsyncClient, path: str, address: str):
    """A GET whose ASGI scope's client is `address` (`AsyncClient.get` always sends
    127.0.0.1)."""
    return await browser.request(
        method="GET", path=path, query_string="", headers=[(b"host", b"testserver")], client=[address, 1]
    )


async def test_downloads_draw_from_the_addresss_read_budget_as_getfile_does(settings):
    """One address read a file by HTTP as fast as it liked (74-128 MiB/s, a third to
    half a core) while GetFile over the WebSocket is held to READ_BYTES_PER_ADDRESS_*:
    both now spend the one budget, and past it a download is 429 for that address only."""
    browser, headers = await browser_session()
    owner, _ = await create_room(headers=headers)
    file_id = await shared_pdf(owner)
    settings.READ_BYTES_PER_ADDRESS_BURST, settings.READ_BYTES_PER_ADDRESS_SUSTAINED = len(PDF) // 2, 1
    reader, other = "10.8.8.8", "10.9.9.9"
    first = await get_from(browser, f"/files/{file_id}", reader)
    assert b"".join([chunk async for chunk in first.streaming_content]) == PDF
    refused = await get_from(browser, f"/files/{file_id}", reader)
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    served = await get_from(browser, f"/files/{file_id}", other)
    assert b"".join([chunk async for chunk in served.streaming_content]) == PDF
    await owner.disconnect()


async def test_one_address_cannot_hold_every_file_thread_with_downloads(settings):
    """A download takes its share of the file threads from its client address's
    WORK_QUEUE_PER_ADDRESS, as a socket's frames do: an address whose share is in use
    gets 503, and another address is served meanwhile."""
    browser, headers = await browser_session()
    owner, _ = await create_room(headers=headers)
    file_id = await shared_pdf(owner)
    settings.WORK_QUEUE_PER_ADDRESS = 2
    hog = "10.9.9.9"
    for _ in range(2):  # two downloads of the hog's still being decrypted
        assert file_work.admission.enter(hog, settings.FILES_WORK_QUEUE, 2)
    try:
        busy = await get_from(browser, f"/files/{file_id}", hog)
        assert busy.status_code == 503 and busy["Retry-After"] == "1"
        served = await get_from(browser, f"/files/{file_id}", "10.8.8.8")
        assert served.status_code == 200
        assert b"".join([chunk async for chunk in served.streaming_content]) == PDF
    finally:
        for _ in range(2):
            file_work.admission.leave(hog)
    assert (await get_from(browser, f"/files/{file_id}", hog)).status_code == 200
    await owner.disconnect()


async def test_a_download_past_the_database_queue_is_503_and_nothing_else(settings):
    """The download's database read waits in the bounded queue (DATABASE_QUEUE) like a
    socket's: past it the answer is 503 with Retry-After, and the next one is served."""
    browser, headers = await browser_session()
    owner, _ = await create_room(headers=headers)
    file_id = await shared_pdf(owner)
    settings.DATABASE_QUEUE = 0
    busy = await browser.get(f"/files/{file_id}")
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    settings.DATABASE_QUEUE = 200
    assert (await browser.get(f"/files/{file_id}")).status_code == 200
    await owner.disconnect()


async def test_downloads_a_client_does_not_read_hold_its_address_to_its_backlog(settings):
    """The plaintext of a download waits in memory until its client reads it: one
    address's unread downloads count with its sockets' unread bytes (WS_SEND_QUEUE_BYTES)
    and the process's in DOWNLOADS_IN_FLIGHT_BYTES; past either the answer is 503. The
    bytes come back when the body is read, or when an unread response goes."""
    browser, headers = await browser_session()
    owner, _ = await create_room(headers=headers)
    file_id = await shared_pdf(owner)
    settings.WS_SEND_QUEUE_BYTES = 2 * len(PDF)
    hog, other = "10.6.6.6", "10.5.5.5"
    gc.collect()  # unread responses of other tests (the test client's refer to themselves)
    unread = [await get_from(browser, f"/files/{file_id}", hog) for _ in range(2)]
    assert [response.status_code for response in unread] == [200, 200]
    busy = await get_from(browser, f"/files/{file_id}", hog)
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    served = await get_from(browser, f"/files/{file_id}", other)  # its own address's share
    assert b"".join([chunk async for chunk in served.streaming_content]) == PDF
    assert b"".join([chunk async for chunk in unread.pop().streaming_content]) == PDF
    unread.append(await get_from(browser, f"/files/{file_id}", hog))
    assert unread[-1].status_code == 200
    assert (await get_from(browser, f"/files/{file_id}", hog)).status_code == 503
    unread.clear()  # dropped unread (a client gone before its body started)
    gc.collect()  # the test client's response refers to itself (`response.json`)
    dropped = await get_from(browser, f"/files/{file_id}", hog)
    assert dropped.status_code == 200
    dropped.close()  # as Django's handler closes a response once it is sent or abandoned

    gc.collect()  # unread responses of this module's other tests
    assert downloads_in_flight.held == 0 and address_backlog(hog) == 0  # every byte given back
    settings.DOWNLOADS_IN_FLIGHT_BYTES = len(PDF)  # the whole process: one at a time
    first = await get_from(browser, f"/files/{file_id}", other)
    assert (await get_from(browser, f"/files/{file_id}", "10.7.7.7")).status_code == 503
    assert b"".join([chunk async for chunk in first.streaming_content]) == PDF
    assert (await get_from(browser, f"/files/{file_id}", "10.7.7.7")).status_code == 200
    await owner.disconnect()


def test_the_slowest_downloads_give_way_only_to_one_that_finds_no_room(settings):
    """Reservation.make_room: while a download finds no room in DOWNLOADS_IN_FLIGHT_BYTES,
    the slowest of those read under DOWNLOAD_MIN_BYTES_PER_SECOND for
    DOWNLOAD_GRACE_SECONDS are cut off, as few as make the room, and their bytes given
    back; one younger than the grace, or faster, is never cut, nor any when they would
    not make the room, nor any when the rate is 0 (tests/e2e/test_downloads.py: real
    sockets)."""
    mib = 2**20
    settings.DOWNLOADS_IN_FLIGHT_BYTES = 4 * mib
    settings.DOWNLOAD_MIN_BYTES_PER_SECOND = 1000
    settings.DOWNLOAD_GRACE_SECONDS = 10
    gc.collect()  # unread responses of other tests
    assert downloads_in_flight.held == 0
    cut: list[str] = []
    now = time.monotonic()
    held = {}
    judged = (("slow", 20, 500), ("slowest", 20, 100), ("young", 5, 0), ("fast", 20, 10**6))
    for address, seconds, rate in judged:  # seconds since the body started, bytes read a second
        held[address] = Reservation.take(address, mib)
        held[address].body_started(lambda address=address: cut.append(address))
        held[address].started, held[address].sent = now - seconds, seconds * rate

    newcomer = Reservation.take("10.9.9.9", mib)
    assert newcomer is not None and cut == ["slowest"]
    assert held["slowest"].size == 0 and address_backlog("slowest") == 0
    assert downloads_in_flight.held == 4 * mib
    assert Reservation.take("10.9.9.8", 2 * mib) is None and cut == ["slowest"]  # "slow" alone makes no room
    settings.DOWNLOAD_MIN_BYTES_PER_SECOND = 0
    assert Reservation.take("10.9.9.8", mib) is None and cut == ["slowest"]
    settings.DOWNLOAD_MIN_BYTES_PER_SECOND = 1000
    assert (later := Reservation.take("10.9.9.8", mib)) is not None and cut == ["slowest", "slow"]

    for reservation in [*held.values(), newcomer, later]:
        reservation.release()
    assert downloads_in_flight.held == 0 and not Reservation.sending
