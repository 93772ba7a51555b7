"""Issue 14, item 8: upload memory. A process holds at most UPLOADS_IN_FLIGHT_BYTES of
upload frames at once (past it uploads are `rate_limited`, the sockets staying usable),
and an upload refused as `rate_limited` is no upload attempt (FILES_UPLOADS_PER_MINUTE)."""

import asyncio
import base64
import os
import time

import pytest

from tests.e2e.test_slow_client import rss_mib
from tests.e2e.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MIB = 1024 * 1024


def zip_content(size: int) -> str:
    return base64.b64encode(b"PK\x03\x04" + os.urandom(size - 4)).decode()


@pytest.fixture(params=["sqlite", "postgres+redis"])
def env(request):
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_env")
    return request.getfixturevalue("shared_env")


async def test_uploads_past_the_bytes_in_flight_are_rate_limited(env, servers):
    # Room for two 8 MiB uploads at once (11 MiB frames): of eight sent together, some
    # must wait their turn as `rate_limited`, and none is lost or breaks its socket.
    (server,) = servers({**env, "UPLOADS_IN_FLIGHT_BYTES": str(24 * MIB)})
    owner = await Client.open(server.url)
    join_key = (await owner.create())["room_info"]["join_key"]
    uploaders = [await Client.open(server.url) for _ in range(8)]
    for number, uploader in enumerate(uploaders):
        await uploader.join(join_key, f"U{number}")
    content = zip_content(8 * MIB)
    before = rss_mib(server.process.pid)

    async def upload(uploader: Client) -> str:
        await uploader.send(type="UploadFile", name="a.zip", mime_type="application/zip", content=content)
        while True:
            message = await uploader.recv(within=60)
            if message["type"] == "FileUploaded":
                return "uploaded"
            if message["type"] == "Error":
                assert message["code"] == "rate_limited", message
                return "rate_limited"

    answers = await asyncio.gather(*(upload(uploader) for uploader in uploaders))
    grown = rss_mib(server.process.pid) - before
    print(f"\n{answers.count('rate_limited')} of 8 rate_limited; RSS grew {grown:.0f} MiB")
    assert "rate_limited" in answers and "uploaded" in answers
    # Every socket still works, and a refused upload goes through once it is its turn.
    for uploader, answer in zip(uploaders, answers, strict=True):
        if answer == "rate_limited":
            assert await upload(uploader) in {"uploaded", "rate_limited"}
        assert "Owner" in await uploader.members()
    for client in (owner, *uploaders):
        await client.close()


async def test_a_rate_limited_upload_is_not_an_upload_attempt(sqlite_env, servers):
    (server,) = servers({**sqlite_env, "FILES_UPLOADS_PER_MINUTE": "2"})
    owner = await Client.open(server.url)
    await owner.create()
    content = base64.b64encode(b"hello").decode()

    async def upload() -> dict:
        await owner.send(type="UploadFile", name="a.txt", mime_type="text/plain", content=content)
        while True:
            message = await owner.recv(within=10)
            if message["type"] in {"FileUploaded", "Error"}:
                return message

    started = time.monotonic()
    for _ in range(2):
        assert (await upload())["type"] == "FileUploaded"
    await asyncio.sleep(5)
    for _ in range(3):  # retries while limited: they must not hold places in the window
        assert (await upload())["code"] == "rate_limited"
    # The two uploads leave the window 60 s after they were made; the retries would
    # hold it until 65 s if they counted.
    await asyncio.sleep(max(0.0, started + 61 - time.monotonic()))
    assert (await upload())["type"] == "FileUploaded"
    await owner.close()
