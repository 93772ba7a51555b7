"""SQLite WAL checkpoints off the hot path.

With the default `wal_autocheckpoint`, the commit that fills 1,000 WAL pages copies the
log into the database file and fsyncs it, inside whichever request made it: every ~220
chat messages one of them took 6-11 ms instead of 0.2 ms (bench/README.md). The serving
connections therefore checkpoint only as a safety net (`SQLITE_WAL_AUTOCHECKPOINT`
pages), and a background thread with its own connection runs PASSIVE checkpoints,
which never wait for readers or writers, every `SQLITE_CHECKPOINT_INTERVAL` seconds.
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
    while True:
        time.sleep(settings.SQLITE_CHECKPOINT_INTERVAL)
        try:
            checkpoint(str(connections["default"].settings_dict["NAME"]))
        except Exception:
            logger.exception("sqlite checkpoint failed")


def checkpoint(path: str) -> tuple[int, int, int]:
    """One PASSIVE checkpoint: (busy, WAL frames, frames copied), as SQLite reports it."""
    with closing(sqlite3.connect(path, timeout=5)) as db:
        return db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
