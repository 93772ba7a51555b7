# A browser session's participant rows, found by the session's hash in every room at once
# (chat/retention.py, sessions_forget): one query a page of sessions at purge time.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0013_room_join_key_hash'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='participant',
            index=models.Index(fields=['session_hash', 'room'], name='participant_session'),
        ),
    ]
