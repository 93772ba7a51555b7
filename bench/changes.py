"""The database's share of an edit and of a reaction alone in its batch:
`services.message_react` and `services.message_edit` called in a loop on one thread,
with no server, socket or event loop, on SQLite with the project's settings (a fresh
CHAT_VAR_DIR). Prints CPU time per call, three rounds of reactions (bench/README.md,
"Changes read back"). Run it in two checkouts to compare builds.

    .venv/bin/python bench/changes.py [--count 3000]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret")
os.environ["CHAT_VAR_DIR"] = tempfile.mkdtemp(prefix="changes-")
os.environ.pop("DATABASE_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from chat import presence, services  # noqa: E402

THUMB = "\U0001f44d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    count = parser.parse_args().count
    call_command("migrate", verbosity=0)
    where = services.Where("socket-0", presence.PROCESS_ID, "127.0.0.1", "")
    _, seat, _ = services.room_create(
        name="bench", description="", password_hash="", owner_name="Bench", where=where, now=timezone.now()
    )
    ids = [services.message_post(seat=seat, content=f"c{n}", now=timezone.now())[0] for n in range(50)]

    def react(n: int) -> float:
        began = time.process_time()
        for i in range(n):
            services.message_react(seat=seat, message_id=ids[i % 50], emoji=THUMB, on=(i // 50) % 2 == 0)
        return (time.process_time() - began) / n * 1e6

    react(500)  # warm up
    rounds = [round(react(count), 1) for _ in range(3)]
    began = time.process_time()
    for i in range(count // 10):
        services.message_edit(seat=seat, message_id=ids[i % 50], content=f"e{i}", now=timezone.now())
    edit = round((time.process_time() - began) / (count // 10) * 1e6, 1)
    print(f"reaction alone: {rounds} us of CPU each; edit: {edit} us")


if __name__ == "__main__":
    main()
