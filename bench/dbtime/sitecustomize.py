"""Times the database thread's jobs and the SQLite checkpoints of a server process.

    PYTHONPATH=bench/dbtime DBTIME_OUT=jobs.log PORT=8100 bash bench/start_server.sh &

Python imports this module at start when its folder is on PYTHONPATH. It appends one line
per job on asgiref's threads (`database_sync_to_async`) that took DBTIME_MS (3) ms or more,
and one per checkpoint statement of chat/checkpoint.py, to DBTIME_OUT:
`<unix time at start> <ms> job <function>` or `<unix time> <ms> checkpoint (busy, frames, copied)`.
A soak's `first_send_unix` lays its slow seconds beside these (bench/README.md, issue 17).
Benchmarks only: it wraps asgiref's and sqlite3's internals.
"""

import os
import sqlite3
import time

import asgiref.sync

_out = open(os.environ.get("DBTIME_OUT", "dbtime.log"), "a", buffering=1)  # noqa: SIM115
_least = float(os.environ.get("DBTIME_MS", "3")) / 1000
_thread_handler = asgiref.sync.SyncToAsync.thread_handler


def thread_handler(self, loop, *args, **kwargs):
    began = time.time()
    try:
        return _thread_handler(self, loop, *args, **kwargs)
    finally:
        took = time.time() - began
        if took >= _least:
            function = getattr(self, "func", None)
            name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', function)}"
            _out.write(f"{began:.3f} {took * 1000:.1f} job {name}\n")


class _TimedCheckpoints:
    """chat/checkpoint.py's connection: each statement's result read and timed."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str):
        began = time.time()
        row = self.db.execute(sql).fetchone()
        _out.write(f"{began:.3f} {(time.time() - began) * 1000:.1f} checkpoint {tuple(row)}\n")
        return _Row(row)

    def close(self) -> None:
        self.db.close()


class _Row:
    def __init__(self, row: tuple) -> None:
        self.row = row

    def fetchone(self) -> tuple:
        return self.row


_connect = sqlite3.connect


def connect(*args, **kwargs):
    # Only chat/checkpoint.py calls `sqlite3.connect`; Django calls `sqlite3.dbapi2.connect`.
    return _TimedCheckpoints(_connect(*args, **kwargs))


asgiref.sync.SyncToAsync.thread_handler = thread_handler
sqlite3.connect = connect
