"""The database's share of a join cycle: `services.room_join` and
`services.participant_leave` called in a loop on one thread, with no server, socket or
event loop, on SQLite with the project's settings (a fresh CHAT_VAR_DIR), 20 present
at a time as in `loadgen.py joins --concurrency 20`. Prints CPU and wall time per cycle
(bench/README.md, "Joins, a third look").

    .venv/bin/python bench/join_db.py [--count 2000]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret")
os.environ["CHAT_VAR_DIR"] = tempfile.mkdtemp(prefix="join-db-")
os.environ.pop("DATABASE_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from chat import presence, selectors, services  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    count = parser.parse_args().count
    call_command("migrate", verbosity=0)

    def where(n: int) -> services.Where:
        return services.Where(f"socket-{n}", presence.PROCESS_ID, "127.0.0.1", "")

    room, _, _ = services.room_create(
        name="joins", description="", password_hash="", owner_name="owner",
        where=where(-1), now=timezone.now(), key_check=None,
    )  # fmt: skip
    door = selectors.room_door(join_key=room.join_key)
    present: list[int] = []
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(count):
        now = timezone.now()
        joined = services.room_join(
            room=door.room, name=f"joiner-{n}", where=where(n), owner_token=None, since=None, now=now
        )
        present.append(joined.seat.participant_id)
        if len(present) > 20:
            services.participant_leave(participant_id=present.pop(0), now=timezone.now())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu_ms, wall_ms = cpu / count * 1e3, wall / count * 1e3
    print(f"{count} joins and leaves: {cpu_ms:.3f} ms CPU, {wall_ms:.3f} ms wall per cycle")


if __name__ == "__main__":
    main()
