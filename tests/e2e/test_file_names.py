"""Issue 14, item 5: a file's served and announced name cannot lie about its type or
hide characters, over the protocol and over HTTP, against a real server process."""

import asyncio
import base64
from urllib.parse import unquote

import pytest

from tests.e2e.wsclient import Client, download, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TEXT = b"just some text\n"


async def share(client: Client, name: str) -> tuple[dict, str]:
    """Upload TEXT as text/plain under `name`: the metadata and the file message."""
    await client.send(
        type="UploadFile", name=name, mime_type="text/plain", content=base64.b64encode(TEXT).decode()
    )
    metadata = (await client.expect("FileUploaded"))["metadata"]
    link = (await client.expect("ChatMessage"))["content"]
    return metadata, link


def disposition_name(header: str) -> str:
    """The name of `attachment; filename="..."` or `attachment; filename*=utf-8''...`."""
    kind, _, value = header.partition("; ")
    assert kind == "attachment", header
    if value.startswith("filename*=utf-8''"):
        return unquote(value.removeprefix("filename*=utf-8''"), errors="strict")
    assert value.startswith('filename="') and value.endswith('"'), header
    return value[len('filename="') : -1]


# (name as uploaded, as shown and served, the Content-Disposition form it needs)
CASES = [
    ("notes.html", "notes.html.txt", "filename"),
    ("x.svg", "x.svg.txt", "filename"),
    ("run.bat", "run.bat.txt", "filename"),
    ("photo\u202egnp.bat", "photognp.bat.txt", "filename"),  # shows as "photo\u202etab.png"
    ("a\u2066b\u2069\u200b\u200f\ufeff.html", "ab.html.txt", "filename"),
    ("r\u00e9sum\u00e9\u202etxt.exe", "r\u00e9sum\u00e9txt.exe.txt", "filename*"),
    ("\u0645\u0644\u0641\u061c.svg", "\u0645\u0644\u0641.svg.txt", "filename*"),
    ("notes.txt", "notes.txt", "filename"),
]


async def test_served_and_announced_names_end_in_the_verified_type(sqlite_env, servers):
    (server,) = servers(sqlite_env, 1)
    cookie = await asyncio.to_thread(session_cookie, server.http)
    owner = await Client.open(server.url, additional_headers={"Cookie": cookie})
    await owner.create()
    for name, shown, form in CASES:
        metadata, link = await share(owner, name)
        # The announced name: cleaned, with the type's extension.
        assert link == f"[File: {shown}](/files/{metadata['id']})"
        # metadata keeps the name as uploaded (PROTOCOL.md), in FileUploaded and FileContent.
        assert metadata["name"] == name
        await owner.send(type="GetFile", file_id=metadata["id"])
        content = await owner.expect("FileContent")
        assert content["metadata"]["name"] == name and base64.b64decode(content["content"]) == TEXT

        # The served name: the same, in the header form its characters need.
        path = f"/files/{metadata['id']}"
        status, body, headers = await asyncio.to_thread(download, server.http, path, cookie)
        assert status == 200 and body == TEXT
        header = headers["Content-Disposition"]
        assert header.partition("; ")[2].startswith(f"{form}="), header
        assert disposition_name(header) == shown
        assert headers["Content-Type"].startswith("text/plain")
    await owner.close()
