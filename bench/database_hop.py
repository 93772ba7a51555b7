"""What one chat message costs on the database side when it is alone in its batch (the
fan-out load, 20 messages/s, no two share a transaction): the hop to the database thread
and the batch's write, each timed in a loop on a fresh SQLite database (bench/README.md,
issue 17).

    .venv/bin/python bench/database_hop.py

CPU microseconds a call: the process's for the hops (both threads), the thread's for
the writes.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DJANGO_DEBUG"] = "1"
os.environ["CHAT_VAR_DIR"] = tempfile.mkdtemp(prefix="database-hop-")
os.environ.pop("DATABASE_URL", None)

import django  # noqa: E402

django.setup()

import uvloop  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from chat import services, sql  # noqa: E402
from chat.workers import on_database_thread  # noqa: E402

CALLS = 3000


def per_call(clock, run) -> float:  # noqa: ANN001
    for _ in range(CALLS // 10):
        run()
    began = clock()
    for _ in range(CALLS):
        run()
    return (clock() - began) / CALLS * 1e6


async def per_await(make) -> float:  # noqa: ANN001
    for _ in range(CALLS // 10):
        await make()
    began = time.process_time()
    for _ in range(CALLS):
        await make()
    return (time.process_time() - began) / CALLS * 1e6


def nothing() -> None:
    return None


def main() -> None:
    call_command("migrate", verbosity=0)
    room, seat, _ = services.room_create(
        name="bench",
        description="",
        password_hash="",
        owner_name="a",
        where=services.Where("bench", "bench", "127.0.0.1"),
        now=timezone.now(),
    )

    def post() -> None:
        now = timezone.now()
        services.messages_post([sql.NewMessage(room.pk, seat.name, "x" * 60, now, seat.participant_id)])

    def atomic() -> None:
        with transaction.atomic():
            pass

    def driver() -> None:
        with sql.driver_transaction():
            pass

    print(f"one-message batch, services.messages_post: {per_call(time.thread_time, post):.0f} us")
    print(f"empty transaction.atomic: {per_call(time.thread_time, atomic):.0f} us")
    print(f"empty sql.driver_transaction: {per_call(time.thread_time, driver):.0f} us")
    connection.close()

    async def hops() -> None:
        asgiref, lean = database_sync_to_async(nothing), on_database_thread(nothing)
        print(f"hop, database_sync_to_async: {await per_await(asgiref):.0f} us")
        print(f"hop, workers.on_database_thread: {await per_await(lean):.0f} us")

    uvloop.run(hops())


if __name__ == "__main__":
    main()
