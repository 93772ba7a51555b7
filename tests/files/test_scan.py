"""Malware scanning against a real clamd: infected uploads refused, audited, not stored."""

import logging

import pytest

from files import scan
from files.models import SharedFile
from tests.files.conftest import EICAR
from tests.helpers import expect_error, upload_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def text_upload(data: bytes) -> dict:
    return upload_frame(data, name="readme.txt", mime_type="text/plain")


def test_scanner_replies_are_read():
    assert scan.parse_reply("stream: OK") is None
    assert scan.parse_reply("stream: Eicar-Test-Signature FOUND") == "Eicar-Test-Signature"
    with pytest.raises(scan.ScannerUnavailable):
        scan.parse_reply("INSTREAM size limit exceeded. ERROR")


async def test_infected_upload_is_refused_and_audited_clean_one_passes(
    room, settings, files_root, clamd_socket, caplog
):
    settings.CLAMAV_SOCKET = clamd_socket  # read for each upload
    owner = room.owner
    with caplog.at_level(logging.WARNING, logger="files.audit"):
        await owner.send_json_to(text_upload(EICAR))
        error = await expect_error(owner, "forbidden")
    assert "malware" in error["message"]
    (record,) = [r for r in caplog.records if r.name == "files.audit"]
    assert "Eicar-Test-Signature" in record.getMessage() and "sha256=" in record.getMessage()
    assert f"room={room.id}" in record.getMessage()
    assert await SharedFile.objects.acount() == 0 and not list(files_root.glob("*/*"))

    await owner.send_json_to(text_upload(b"nothing to see here\n"))
    assert (await owner.receive_json_from())["type"] == "FileUploaded"


async def test_an_unreachable_scanner_refuses_uploads(room, settings, tmp_path):
    settings.CLAMAV_SOCKET = str(tmp_path / "no-clamd.sock")  # read for each upload
    await room.owner.send_json_to(text_upload(b"hello\n"))
    await expect_error(room.owner, "server_error")
    assert await SharedFile.objects.acount() == 0
