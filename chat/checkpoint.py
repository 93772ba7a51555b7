"""SQLite WAL checkpoints off the hot path.

With the default `wal_autocheckpoint`, the commit that fills 1,000 WAL pages copies the
log into the database file and fsyncs it, inside whichever request made it: every ~220
chat messages one of them took 6-11 ms instead of 0.2 ms (bench/README.md). The serving
connections therefore checkpoint only as a safety net (`SQLITE_WAL_AUTOCHECKPOINT`
pages), and a background thread with its own connection runs PASSIVE checkpoints,
which never wait for readers or writers, every `SQLITE_CHECKPOINT_INTERVAL` seconds.

A PASSIVE checkpoint copies the log but does not start it over: the next write does,
and only if the whole log was copied when it began. Under a steady load something was
nearly always written while the checkpoint ran, so the log grew until a chat write
reached the safety net and checkpointed 20,000 pages itself: 20-40 ms, every 4 s at
1,000 msg/s, the 10-minute soak's p99.9 (bench/README.md, issue 17). So a round passes
again while the last pass found the log longer than the pass before it (what was
written during a pass, up to CATCH_UP_PASSES in all): each such pass is short, and once
one finds nothing new the next write can start the log over, with no writer held up. At
5,000 msg/s a single pass never caught up and a FULL checkpoint held the chat writes
off every second round (bench/README.md, "The WAL's checkpoint and the tail"). A log
still `SQLITE_WAL_RESTART` pages long after the passes gets a FULL one at once. FULL
holds writers off while it copies what came in during the first pass (5-15 ms in the
runs of bench/README.md), then the next write starts the log over. It waits at most
FULL_WAIT for the writer, and as long for readers of an older snapshot (another
thread's long read), then gives up: a long read never holds writers up for longer.
"""

import logging
import sqlite3
import threading
import time
from contextlib import closing

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_started = False
_lock = threading.Lock()


def start() -> None:
    """Called when a server process starts; does nothing unless the database is SQLite."""
    global _started
    database = connections["default"].settings_dict
    if database["ENGINE"] != "django.db.backends.sqlite3" or settings.SQLITE_CHECKPOINT_INTERVAL <= 0:
        return
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_checkpoint_forever, name="sqlite-checkpoint", daemon=True).start()


def _checkpoint_forever() -> None:
    # One connection for the thread's life: opening one each round cost more than the
    # round itself, twice a second on an idle server.
    db: sqlite3.Connection | None = None
    while True:
        time.sleep(settings.SQLITE_CHECKPOINT_INTERVAL)
        try:
            if db is None:
                db = sqlite3.connect(str(connections["default"].settings_dict["NAME"]), timeout=FULL_WAIT)
            checkpoint_on(db)
        except Exception:
            logger.exception("sqlite checkpoint failed")
            if db is not None:
                db.close()
                db = None


# Seconds a FULL checkpoint waits for the writer and for readers of an older snapshot.
FULL_WAIT = 0.05


def checkpoint(path: str, restart_at: int | None = None, wait: float = FULL_WAIT) -> tuple[int, int, int]:
    """One round on a connection of its own to the database at `path` (see `checkpoint_on`)."""
    with closing(sqlite3.connect(path, timeout=wait)) as db:
        return checkpoint_on(db, restart_at)


# PASSIVE passes of one round at most: the first, and those after a pass that found
# frames written since the pass before it.
CATCH_UP_PASSES = 8


def checkpoint_on(db: sqlite3.Connection, restart_at: int | None = None) -> tuple[int, int, int]:
    """One round: PASSIVE checkpoints until one finds no frame written since the one
    before (at most CATCH_UP_PASSES) and, if the log is still `restart_at` pages or
    longer (default SQLITE_WAL_RESTART; 0: never), a FULL one that waits at most as
    long as `db`'s busy timeout. (busy, WAL frames, frames copied) of the last, as
    SQLite reports it."""
    if restart_at is None:
        restart_at = settings.SQLITE_WAL_RESTART

    def passive() -> tuple[int, int, int]:
        # fetchall: each statement run to its end, so a kept connection holds nothing open.
        (found,) = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return found

    result = passive()
    for _ in range(CATCH_UP_PASSES - 1):
        if result[1] == 0:  # an empty log: nothing was written since it started over
            break
        again = passive()
        caught_up = again[1] == result[1]
        result = again
        if caught_up:
            break
    if 0 < restart_at <= result[1]:
        (result,) = db.execute("PRAGMA wal_checkpoint(FULL)").fetchall()
    return result
