"""Participant.channel_name was "HUB_CHANNEL#OUTBOX_ID", taken apart again by the kick;
the row now keeps only what the kick addresses, the socket's outbox id."""

from django.db import migrations
from django.db.models.functions import Right


def outbox_ids(apps, schema_editor) -> None:
    Participant = apps.get_model("chat", "Participant")
    # The outbox id is the last 32 characters (uuid4().hex): one statement for every row.
    Participant.objects.filter(outbox_id__contains="#").update(outbox_id=Right("outbox_id", 32))


class Migration(migrations.Migration):
    dependencies = [("chat", "0004_room_key_wrapped")]

    operations = [
        migrations.RenameField("participant", "channel_name", "outbox_id"),
        migrations.RunPython(outbox_ids, migrations.RunPython.noop),
    ]
