"""Background WAL checkpoints for SQLite."""

import sqlite3
import threading
from contextlib import closing

from chat import checkpoint


def test_a_passive_checkpoint_copies_the_whole_log(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("CREATE TABLE t (v TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
        db.commit()
        busy, logged, copied = checkpoint.checkpoint(path)
        assert busy == 0 and logged > 0 and copied == logged
        assert db.execute("SELECT count(*) FROM t").fetchone() == (200,)


def wal_database(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (v TEXT)")
    return db


def write(db: sqlite3.Connection, rows: int) -> None:
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * rows)


def held_back(path: str, writer: sqlite3.Connection) -> sqlite3.Connection:
    """A reader whose snapshot is older than the log's end: PASSIVE cannot copy the
    pages written after it, as a pass cannot copy those written while it runs."""
    write(writer, 200)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()
    write(writer, 200)
    return reader


def log_length(path: str) -> int:
    return checkpoint.checkpoint(path, restart_at=0)[1]


def test_a_long_log_is_copied_whole_once_the_old_read_ends_and_the_next_write_starts_it_over(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    with closing(wal_database(path)) as writer:
        reader = held_back(path, writer)
        threading.Timer(0.2, reader.close).start()
        busy, logged, copied = checkpoint.checkpoint(path, restart_at=1, wait=5)
        assert busy == 0 and logged > 0 and copied == logged
        write(writer, 1)
        assert 0 < log_length(path) < logged / 10


def test_without_restarts_a_pass_leaves_the_log_as_long_as_it_was(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    with closing(wal_database(path)) as writer:
        reader = held_back(path, writer)
        busy, logged, copied = checkpoint.checkpoint(path, restart_at=0, wait=5)
        assert busy == 0 and 0 < copied < logged
        reader.close()
        write(writer, 1)
        assert log_length(path) > logged


def test_a_read_that_does_not_end_makes_the_full_pass_give_up_instead_of_holding_writers(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    with closing(wal_database(path)) as writer:
        reader = held_back(path, writer)
        busy, logged, copied = checkpoint.checkpoint(path, restart_at=1, wait=0.05)
        assert busy == 1 and copied < logged
        write(writer, 1)  # the writer was let go
        reader.close()


def test_a_kept_connection_checkpoints_round_after_round_and_the_log_starts_over_each_time(tmp_path):
    # The background thread keeps one connection: it must never pin the log.
    path = str(tmp_path / "db.sqlite3")
    with closing(wal_database(path)) as writer, closing(sqlite3.connect(path, timeout=0.05)) as kept:
        rounds = []
        for _ in range(4):
            write(writer, 200)
            busy, logged, copied = checkpoint.checkpoint_on(kept, restart_at=0)
            assert busy == 0 and copied == logged
            rounds.append(logged)
        # Each round's writes started the log over (the first also holds the table's
        # page): a pinned log would have grown by about 250 frames a round.
        assert max(rounds) - min(rounds) <= 1, rounds
        assert not kept.in_transaction


class FetchAll:
    def __init__(self, rows: list) -> None:
        self.rows = rows

    def fetchall(self) -> list:
        return self.rows


class WrittenDuringThePass:
    """`kept`, with `rows` written by `writer` as the first PASSIVE pass ends: what a
    busy server writes while a pass copies the log."""

    def __init__(self, kept: sqlite3.Connection, writer: sqlite3.Connection, rows: int) -> None:
        self.kept, self.writer, self.rows, self.passes = kept, writer, rows, 0

    def execute(self, sql: str) -> FetchAll:
        cursor = self.kept.execute(sql)
        found = cursor.fetchall()
        if "PASSIVE" in sql:
            self.passes += 1
            if self.passes == 1:
                write(self.writer, self.rows)
        return FetchAll(found)


def test_a_round_passes_again_over_what_was_written_during_its_pass_so_the_next_write_starts_the_log_over(
    tmp_path,
):
    path = str(tmp_path / "db.sqlite3")
    with closing(wal_database(path)) as writer, closing(sqlite3.connect(path, timeout=0.05)) as kept:
        write(writer, 200)
        during = WrittenDuringThePass(kept, writer, 200)
        busy, logged, copied = checkpoint.checkpoint_on(during, restart_at=0)  # type: ignore[arg-type]
        assert busy == 0 and copied == logged
        write(writer, 1)
        # A pinned log would have grown past the round's; it started over instead.
        assert log_length(path) < logged / 10
        # The second pass found the rows written during the first; the third, nothing new.
        assert during.passes == 3
