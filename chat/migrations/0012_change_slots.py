# A room's change records in CHANGES_KEPT_STEPS places (room, slot), each change taking
# the place of the one that many steps before it: bounded without a delete per write.
# The table holds only recent records a hub may read back; they are dropped, not moved.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0011_change_log'),
    ]

    operations = [
        migrations.DeleteModel(name='Change'),
        migrations.CreateModel(
            name='Change',
            fields=[
                ('pk', models.CompositePrimaryKey('room', 'slot', blank=True, editable=False, primary_key=True, serialize=False)),
                ('slot', models.IntegerField()),
                ('seq', models.BigIntegerField()),
                ('message_id', models.BigIntegerField()),
                ('kind', models.CharField(choices=[('edit', 'Edit'), ('delete', 'Delete'), ('react', 'React')], max_length=6)),
                ('room', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='changes', to='chat.room')),
            ],
        ),
    ]
