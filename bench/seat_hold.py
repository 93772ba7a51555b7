"""What holding a sender's seat until its message commits costs on PostgreSQL
(`chat/sql.py`, `seat_held`: `FOR KEY SHARE` on the seat's row), against the same writes
without it: microseconds a stored message, one message a transaction and 50 (50 seats)
a transaction, through `services.messages_post` as the batcher calls it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/SCRATCH .venv/bin/python bench/seat_hold.py

Run it on a scratch database (it migrates it and adds a room of 50). It alternates the
two, three rounds each, so that both see the same machine.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from chat import services, sql  # noqa: E402
from tests.helpers import join_seat, make_room  # noqa: E402


def per_message(seats: list[services.Seat], batch: int, rounds: int) -> float:
    began = time.perf_counter()
    for _ in range(rounds):
        now = timezone.now()
        services.messages_post(
            [sql.NewMessage(s.room_id, s.name, "x" * 60, now, s.participant_id) for s in seats[:batch]]
        )
    return (time.perf_counter() - began) / (rounds * batch) * 1e6


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database")
    call_command("migrate", verbosity=0)
    room, _, _ = make_room()
    seats = [join_seat(room, f"p{n}").seat for n in range(50)]
    held = sql.seat_held
    for _ in range(3):
        for label, hold in (("without", lambda: ""), ("held", held)):
            sql.seat_held = hold
            one, fifty = per_message(seats, 1, 2000), per_message(seats, 50, 100)
            print(f"{label:8} one a transaction {one:7.1f} us/message, 50 a transaction {fifty:6.1f}")
    sql.seat_held = held


if __name__ == "__main__":
    main()
