"""SQLite connections that create their database file's folder first.

Importing the settings creates no directory: on a fresh checkout the first connection
(`make run`'s migrate, `manage.py serve`, the test database) makes CHAT_VAR_DIR here.
Django's SQLite backend hands DATABASES["default"]["OPTIONS"] to sqlite3.connect, whose
`factory` names this class; the backend itself stays Django's own.
"""

import sqlite3
from pathlib import Path


class Connection(sqlite3.Connection):
    def __init__(self, database, *args, **kwargs):
        if database != ":memory:" and not str(database).startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Made here, for this user only (its WAL and shared-memory files take its
            # mode): it holds browser sessions' keys, and the data folder may let other
            # users pass (docs/production.md: nginx reads the static files there).
            Path(database).touch(mode=0o600, exist_ok=True)
        super().__init__(database, *args, **kwargs)
