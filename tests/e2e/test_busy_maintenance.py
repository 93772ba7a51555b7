"""The cron purge and admin actions while rooms are busy (two processes, PostgreSQL and
Redis): no errors, no lost messages, no half-deleted files."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from chatclient import ChatClient, ChatError
from tests.e2e.servers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def manage_out(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout + done.stderr


def moderate(env: dict, code: str) -> str:
    """An admin action through the same services the admin uses, from another process."""
    return manage_out(
        env,
        "shell",
        "-c",
        "from chat import moderation\nfrom files import moderation as file_moderation\n"
        f"from django.utils import timezone\n{code}",
    )


async def busy_room(url_a: str, url_b: str, label: str, sent: list[int], uploaded: list[str]) -> None:
    alice = await ChatClient.connect(url_a)
    room = await alice.create_room(label, owner_name="Alice")
    bob = await ChatClient.connect(url_b)
    await bob.join_room(room.join_key, "Bob")
    for n in range(40):
        sent.append((await (alice if n % 2 else bob).send(f"{label} {n}")).id)
        if n % 8 == 0:
            data = b"PK\x03\x04" + os.urandom(2000)
            metadata = await alice.upload_file(data, name=f"{n}.zip", mime_type="application/zip")
            uploaded.append(metadata.id)
            if n % 16 == 0:
                try:
                    await alice.delete_file(metadata.id)
                except ChatError as exc:  # the purge or the admin took it first: a fair answer
                    assert exc.code == "file_not_found", exc
        await asyncio.sleep(0.05)
    await alice.close()
    await bob.close()


async def test_purge_and_moderation_during_busy_rooms(shared_env, servers):
    env = shared_env
    one, two = servers(env, 2)
    database_url = env["DATABASE_URL"]
    sent: list[int] = []
    uploaded: list[str] = []
    rooms = asyncio.gather(*(busy_room(one.url, two.url, f"busy {k}", sent, uploaded) for k in range(3)))

    async def maintenance() -> list[str]:
        lines = []
        for round_ in range(6):
            await asyncio.sleep(0.3)
            with psycopg.connect(database_url, autocommit=True) as db:  # some files expire early
                db.execute(
                    "UPDATE files_sharedfile SET expires_at = now() - interval '1 second' "
                    "WHERE id IN (SELECT id FROM files_sharedfile ORDER BY random() LIMIT 1)"
                )
            lines.append(await asyncio.to_thread(manage_out, env, "purge_files"))
            if round_ % 2:
                lines.append(
                    await asyncio.to_thread(
                        moderate,
                        env,
                        "from files.models import SharedFile\n"
                        "for f in SharedFile.objects.live(timezone.now())[:1]:\n"
                        "    file_moderation.delete_file(file_id=f.pk, now=timezone.now(), actor='test')",
                    )
                )
        return lines

    _, lines = await asyncio.gather(rooms, maintenance())
    lines.append(await asyncio.to_thread(manage_out, env, "purge_files"))
    assert all("Traceback" not in line and "Error" not in line for line in lines), lines

    with psycopg.connect(database_url) as db:
        stored = {row[0] for row in db.execute("SELECT id FROM chat_message")}
        files = db.execute(
            "SELECT id::text, blob, deleted_at IS NULL AND expires_at > now() FROM files_sharedfile"
        )
        files = list(files)
    assert set(sent) <= stored  # every message acknowledged is in the history
    root = Path(env["CHAT_VAR_DIR"]) / "files"
    on_disk = {
        str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and path.name[0] != "."
    }
    for file_id, blob, live in files:
        # A row that is still there after the last purge is live, with its blob.
        assert live and blob in on_disk, (file_id, blob, live)
    assert on_disk == {blob for _, blob, _ in files}  # no blob without its row
    assert len(uploaded) == 15 and len(files) < 15
