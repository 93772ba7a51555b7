"""Background WAL checkpoints for SQLite."""

import sqlite3
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
