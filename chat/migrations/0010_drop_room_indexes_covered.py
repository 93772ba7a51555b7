"""The foreign keys of messages, seats and reactions lose their own one-column indexes:
an index of the same table that begins with the same column serves every lookup they
served (`message_room_id`, `participant_token`, `reaction_once`), and each index is one
more page written by every message or seat (bench/README.md, issue 17).

The indexes are dropped by name (Django's, the same on SQLite and PostgreSQL), not by
AlterField: on SQLite that copies the whole table."""

import django.db.models.deletion
from django.db import migrations, models

# (model, foreign key, its related_name, the model it points to, the index's suffix)
DROPPED = [
    ("message", "room", "messages", "room", "5e7d8d78"),
    ("participant", "room", "participants", "room", "cfc9a140"),
    ("reaction", "message", "reactions", "message", "e8fe8671"),
]


def without_index(model: str, name: str, related_name: str, to: str, suffix: str):
    table, column = f"chat_{model}", f"{name}_id"
    index = f"{table}_{column}_{suffix}"
    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField(
                model_name=model,
                name=name,
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name=related_name,
                    to=f"chat.{to}",
                ),
            )
        ],
        database_operations=[
            migrations.RunSQL(
                f'DROP INDEX IF EXISTS "{index}"',
                f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
            )
        ],
    )


class Migration(migrations.Migration):
    dependencies = [("chat", "0009_participant_token")]

    operations = [without_index(*dropped) for dropped in DROPPED]
