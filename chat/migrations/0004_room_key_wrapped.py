"""Room keys wrapped under ROOM_KEY_ENCRYPTION_KEY (chat/keys.py): existing keys are
wrapped here, and unwrapped again if the migration is reversed."""

from uuid import UUID

from django.db import migrations, models

BATCH = 500


def wrap_existing(apps, schema_editor) -> None:
    from chat import keys

    Room = apps.get_model("chat", "Room")
    for room_id, plain in (
        Room.objects.filter(wrapped_key="").values_list("id", "encryption_key").iterator(BATCH)
    ):
        Room.objects.filter(pk=room_id).update(wrapped_key=keys.wrap(UUID(str(room_id)), plain))


def unwrap_existing(apps, schema_editor) -> None:
    from chat import keys

    Room = apps.get_model("chat", "Room")
    for room_id, wrapped in Room.objects.values_list("id", "wrapped_key").iterator(BATCH):
        Room.objects.filter(pk=room_id).update(encryption_key=keys.unwrap(UUID(str(room_id)), wrapped))


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_message_sequence")]

    operations = [
        migrations.AddField(
            model_name="room",
            name="wrapped_key",
            field=models.CharField(default="", max_length=128),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="room",
            name="encryption_key",
            field=models.CharField(default="", max_length=44),
        ),
        migrations.RunPython(wrap_existing, unwrap_existing, elidable=False),
        migrations.RemoveField(model_name="room", name="encryption_key"),
    ]
