"""GetHistory in a room of a million messages (issue 18): how long a page of 100 takes,
from the frame sent to its History read back, on one `manage.py serve` process.

The room is made through the server; the messages are written straight into its
database (as the server would store them: one sequence, growing ids), then pages are
asked at random depths, one at a time.

    .venv/bin/python bench/history.py [--messages 1000000] [--pages 500]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat_bench .venv/bin/python bench/history.py

With DATABASE_URL the database must exist and be empty (it is migrated here); without
it, SQLite in a new temporary directory. Prints one JSON object (bench/README.md,
"Older history").
"""

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CONTENT = base64.b64encode(os.urandom(90)).decode()  # a short message's ciphertext


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CHAT_VAR_DIR", tempfile.mkdtemp(prefix="bench-history-"))
    env |= {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "READS_PER_MINUTE": "1000000",  # the pages are the load here, not a client to limit
    }
    return env


def fill(env: dict[str, str], room_id: str, count: int) -> None:
    """Write `count` messages into the room, numbered on from its first, in one go."""
    code = f"""
import django, os, sys
django.setup()
from django.db import connection, transaction
from django.utils import timezone
from chat import sql
from chat.models import Message, Room
room = sql.prep(Room, "id", {room_id!r})
now = sql.prep(Message, "sent_at", timezone.now())
count, content = {count}, {CONTENT!r}
with transaction.atomic():
    start = sql.rows(f"SELECT message_seq FROM {{sql.table(Room)}} WHERE id = %s", [room])[0][0]
    if connection.vendor == "postgresql":
        sql.execute(
            f"INSERT INTO {{sql.table(Message)}} (room_id, seq, sender, content, sent_at) "
            "SELECT %s, %s + n, 'Owner', %s, %s FROM generate_series(1, %s) AS n",
            [room, start, content, now, count],
        )
    else:
        cursor = connection.connection.cursor()
        rows = ((room, start + n, "Owner", content, now) for n in range(1, count + 1))
        cursor.executemany(
            f"INSERT INTO {{sql.table(Message)}} (room_id, seq, sender, content, sent_at) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    sql.execute(f"UPDATE {{sql.table(Room)}} SET message_seq = %s WHERE id = %s", [start + count, room])
    if connection.vendor == "postgresql":
        sql.execute(f"ANALYZE {{sql.table(Message)}}", [])
"""
    env = env | {"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run([PYTHON, "-c", code], env=env, cwd=ROOT, check=True)


async def request(ws, frame: dict, answer: str) -> dict:
    """Send `frame`; its answer of type `answer` (a History page: the one with its `before`)."""
    await ws.send(json.dumps(frame))
    while True:
        reply = json.loads(await ws.recv())
        if reply["type"] == "Error":
            raise RuntimeError(reply)
        if reply["type"] == answer and reply.get("before") == frame.get("before"):
            return reply


async def measure(url: str, env: dict[str, str], count: int, pages: int) -> dict:
    async with connect(url, max_size=None) as owner:
        created = await request(
            owner, {"type": "CreateRoom", "name": "Deep", "description": ""}, "RoomCreated"
        )
        room_id, join_key = created["room_info"]["id"], created["room_info"]["join_key"]
        filled = time.perf_counter()
        await asyncio.to_thread(fill, env, room_id, count)
        fill_seconds = time.perf_counter() - filled
    async with connect(url, max_size=None) as reader:
        await request(reader, {"type": "JoinRoom", "join_key": join_key, "name": "Reader"}, "RoomJoined")
        newest = (await request(reader, {"type": "GetHistory", "before": 2**63 - 1, "limit": 1}, "History"))[
            "messages"
        ][0]["id"]
        oldest = (
            await request(reader, {"type": "GetHistory", "before": newest - count + 2, "limit": 1}, "History")
        )["messages"][0]["id"]
        random.seed(1)
        times, sizes = [], []
        for _ in range(pages):
            before = random.randint(oldest + 100, newest + 1)
            start = time.perf_counter()
            page = await request(reader, {"type": "GetHistory", "before": before, "limit": 100}, "History")
            times.append(time.perf_counter() - start)
            sizes.append(len(page["messages"]))
            assert page["before"] == before and [m["id"] for m in page["messages"]] == list(
                range(before - 100, before)
            ), "a page that is not the 100 messages before `before`"
    ordered = sorted(times)
    return {
        "messages_in_room": count,
        "fill_seconds": round(fill_seconds, 1),
        "pages": pages,
        "messages_per_page": min(sizes),
        "page_ms": {
            "p50": round(1000 * statistics.median(ordered), 2),
            "p99": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
            "max": round(1000 * ordered[-1], 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=500)
    args = parser.parse_args()
    env = server_env()
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        figures = asyncio.run(measure(f"ws://127.0.0.1:{port}/ws/", env, args.messages, args.pages))
    finally:
        server.terminate()
        server.wait()
    database = "postgresql" if env.get("DATABASE_URL") else "sqlite"
    print(json.dumps({"scenario": "history", "database": database, **figures}))


if __name__ == "__main__":
    main()
