"""Hand-written SQL for the hot paths (every join, leave and chat message).

Django's ORM spends ~0.3-0.5 ms building each query on this hardware, ten times what
SQLite takes to run it; these helpers keep the SQL short and backend-neutral by
preparing values through the model fields, as the ORM would.
"""

from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Model


def prep(model: type[Model], field: str, value: Any) -> Any:
    """A value as the database backend wants it (UUIDs are text on SQLite)."""
    return model._meta.get_field(field).get_db_prep_value(value, connection)


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: list) -> int:
    """Run a write; returns the number of rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert(model: type[Model], **values: Any) -> int:
    """INSERT one row; returns its id."""
    columns = ", ".join(model._meta.get_field(name).column for name in values)
    marks = ", ".join(["%s"] * len(values))
    params = [prep(model, name, value) for name, value in values.items()]
    return rows(f"INSERT INTO {table(model)} ({columns}) VALUES ({marks}) RETURNING id", params)[0][0]


def aware(value: datetime | str) -> datetime:
    """SQLite hands datetimes back naive (in UTC), PostgreSQL aware."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
