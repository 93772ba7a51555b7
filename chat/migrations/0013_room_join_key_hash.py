# A room's join key is kept as its sha256 (chat/keys.py `join_key_hash`): a copy of the
# database no longer holds keys that join its open rooms through the live server. The
# keys of existing rooms are hashed in place; the share links people hold keep working.
# Reversed, the keys cannot come back: each room's key becomes its hash, which no link
# holds (the rooms stay, but their links no longer open them).

import hashlib

from django.db import migrations, models

BATCH = 1000


def hash_join_keys(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    rooms = list(Room.objects.only("id", "join_key").order_by("pk")[:BATCH])
    while rooms:
        for room in rooms:
            room.join_key_hash = hashlib.sha256(room.join_key.encode("utf-8", "surrogatepass")).hexdigest()
        Room.objects.bulk_update(rooms, ["join_key_hash"])
        rooms = list(Room.objects.only("id", "join_key").filter(pk__gt=rooms[-1].pk).order_by("pk")[:BATCH])


def keys_from_hashes(apps, schema_editor):
    apps.get_model("chat", "Room").objects.update(join_key=models.F("join_key_hash"))


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0012_change_slots'),
    ]

    operations = [
        migrations.AddField(
            model_name='room',
            name='join_key_hash',
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name='room',
            name='join_key',
            field=models.CharField(max_length=64, null=True, unique=True),
        ),
        migrations.RunPython(hash_join_keys, keys_from_hashes, elidable=False),
        migrations.RemoveField(
            model_name='room',
            name='join_key',
        ),
        migrations.AlterField(
            model_name='room',
            name='join_key_hash',
            field=models.CharField(max_length=64, unique=True),
        ),
    ]
