"""chat/retention.py, what `purge_files` deletes besides files: participants gone longer
than PARTICIPANTS_RETENTION_DAYS (in batches, what refers to them kept as the schema
says), expired bans, unused rooms and old admin log entries. Times are backdated, never
slept."""

import io
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import browser_sessions, retention, services
from chat.errors import ErrorCode, ProtocolError
from chat.models import Ban, Change, Message, Participant, Room
from files.models import SharedFile
from tests.helpers import join_seat, make_room, stored_file

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def three_days(settings):
    settings.PARTICIPANTS_RETENTION_DAYS = 3


def gone(room, name: str, ago: timedelta) -> services.Seat:
    """A participant of `room` that left `ago` (backdated)."""
    seat = join_seat(room, name).seat
    services.participant_leave(participant_id=seat.participant_id, now=timezone.now())
    Participant.objects.filter(pk=seat.participant_id).update(left_at=timezone.now() - ago)
    return seat


def test_participants_gone_longer_than_the_retention_go_and_the_others_stay(monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)  # several batches
    room, owner, _ = make_room()
    Participant.objects.filter(pk=owner.participant_id).update(joined_at=timezone.now() - 30 * DAY)
    young = gone(room, "Young", 3 * DAY - timedelta(minutes=1))
    author = join_seat(room, "Author").seat
    message_id, _ = services.message_post(seat=author, content="hello", now=timezone.now())
    upload = stored_file(author)
    services.participant_leave(participant_id=author.participant_id, now=timezone.now())
    Participant.objects.filter(pk=author.participant_id).update(
        left_at=timezone.now() - 3 * DAY - timedelta(minutes=1)
    )
    old = [gone(room, f"Old {n}", 10 * DAY) for n in range(4)]
    kept = {owner.participant_id, young.participant_id}

    dry = retention.apply_retention(now=timezone.now(), dry_run=True)
    assert dry.participants == 5 and Participant.objects.count() == 7

    report = retention.apply_retention(now=timezone.now())
    assert report.participants == 5
    assert set(Participant.objects.values_list("pk", flat=True)) == kept
    # What referred to the author: its message keeps `author` (a plain id), its file
    # stays and loses its uploader (SET_NULL), so only an owner may delete it now.
    assert Message.objects.get(pk=message_id).author == author.participant_id
    assert SharedFile.objects.filter(pk=upload.pk, uploader__isnull=True).exists()
    # Ids are never reused: nobody new becomes the author of the old messages.
    newcomer = join_seat(room, "Newcomer").seat
    assert newcomer.participant_id > max(seat.participant_id for seat in old)

    again = retention.apply_retention(now=timezone.now())
    assert (again.participants, again.line()) == (0, None)
    assert set(Participant.objects.values_list("pk", flat=True)) == kept | {newcomer.participant_id}


def test_a_purged_participants_token_joins_as_a_new_participant():
    room, _, _ = make_room()
    old = join_seat(room, "Ann").seat
    message_id, _ = services.message_post(seat=old, content="hi", now=timezone.now())
    services.participant_leave(participant_id=old.participant_id, now=timezone.now() - 4 * DAY)
    retention.apply_retention(now=timezone.now())
    back = join_seat(room, "Ann", participant_token=old.token).seat
    assert back.participant_id != old.participant_id
    with pytest.raises(ProtocolError) as refused:  # the message it wrote is no longer its own
        services.message_edit(seat=back, message_id=message_id, content="mine?", now=timezone.now())
    assert refused.value.code == ErrorCode.FORBIDDEN


def test_a_row_purged_while_its_token_resumes_joins_as_new(monkeypatch):
    room, _, _ = make_room()
    old = gone(room, "Ann", 4 * DAY)
    ban_condition = services._ban_condition

    def purged_meanwhile(**kwargs):  # runs between the token's lookup and its UPDATE
        retention.apply_retention(now=timezone.now())
        return ban_condition(**kwargs)

    monkeypatch.setattr(services, "_ban_condition", purged_meanwhile)
    back = join_seat(room, "Ann", participant_token=old.token).seat
    assert back.participant_id != old.participant_id
    assert not Participant.objects.filter(pk=old.participant_id).exists()


def test_retention_zero_keeps_every_participant(settings):
    settings.PARTICIPANTS_RETENTION_DAYS = 0
    room, _, _ = make_room()
    gone(room, "Ann", 1000 * DAY)
    assert retention.apply_retention(now=timezone.now()).participants == 0
    assert Participant.objects.count() == 2


def test_expired_bans_go_and_live_ones_stay():
    room, _, _ = make_room()
    now = timezone.now()
    places = [services.Where("chan", "proc", address) for address in ("10.0.0.1", "10.0.0.2")]
    for name, where in zip(("Ann", "Bob"), places, strict=True):
        seat = services.room_join(
            room=room, name=name, where=where, owner_token=None, since=None, now=now
        ).seat
        services.participant_remove(participant_id=seat.participant_id, now=now)
    expired, live = Ban.objects.order_by("pk")
    Ban.objects.filter(pk=expired.pk).update(until=now - timedelta(seconds=1))
    report = retention.apply_retention(now=now)
    assert report.bans == 1
    assert list(Ban.objects.values_list("pk", flat=True)) == [live.pk]
    with pytest.raises(ProtocolError) as refused:  # the live ban still keeps Bob's address out
        services.room_join(room=room, name="Cy", where=places[1], owner_token=None, since=None, now=now)
    assert refused.value.code == ErrorCode.FORBIDDEN
    assert retention.apply_retention(now=now).bans == 0


def test_purge_files_says_what_went():
    room, _, _ = make_room()
    gone(room, "Ann", 4 * DAY)
    out = io.StringIO()
    call_command("purge_files", stdout=out)
    assert out.getvalue().splitlines() == [
        "purge_files: removed 1 participant gone longer than PARTICIPANTS_RETENTION_DAYS (3)",
        "purge_files: no files or blobs to remove",  # not "nothing to do", after a removal
    ]


def test_rooms_nobody_used_go_after_their_retention_and_the_others_stay(settings):
    settings.UNUSED_ROOMS_RETENTION_DAYS = 7
    now = timezone.now()

    def room_made(ago: timedelta, owner_left: timedelta | None = None):
        room, owner, _ = make_room()
        Room.objects.filter(pk=room.pk).update(created_at=now - ago)
        if owner_left is not None:
            services.participant_leave(participant_id=owner.participant_id, now=now - owner_left)
        return room, owner

    unused, _ = room_made(8 * DAY, owner_left=8 * DAY)
    closed, _ = room_made(30 * DAY)
    services.room_close(room_id=closed.pk, now=now - 20 * DAY)  # closed and never used: goes too
    young, _ = room_made(6 * DAY, owner_left=6 * DAY)
    occupied, _ = room_made(30 * DAY)
    spoken, speaker = room_made(30 * DAY)
    services.message_post(seat=speaker, content="hi", now=now - 29 * DAY)
    services.participant_leave(participant_id=speaker.participant_id, now=now - 29 * DAY)
    Message.objects.filter(room=spoken).delete()  # its history gone (CHAT_RETENTION_DAYS): still used
    kept = {young.pk, occupied.pk, spoken.pk}

    assert retention.apply_retention(now=now, dry_run=True).rooms == 2 and Room.objects.count() == 5
    report = retention.apply_retention(now=now)
    assert report.rooms == 2
    assert set(Room.objects.values_list("pk", flat=True)) == kept
    assert not Participant.objects.filter(room_id__in=[unused.pk, closed.pk]).exists()
    assert retention.apply_retention(now=now).rooms == 0

    settings.UNUSED_ROOMS_RETENTION_DAYS = 0
    assert retention.apply_retention(now=now + 1000 * DAY).rooms == 0


def test_rooms_retention_emptied_go_and_rooms_in_use_stay(
    settings, files_root, django_capture_on_commit_callbacks
):
    """With CHAT_RETENTION_DAYS, a room once written in goes when nothing of it is left
    (no message, file or participant row) and it was made (and closed) longer ago; never
    one with a message, a file or someone in it."""
    settings.CHAT_RETENTION_DAYS = 30
    now = timezone.now()

    def used_room(name: str, made: timedelta, spoken: timedelta) -> tuple[Room, services.Seat]:
        room, owner, _ = make_room(name=name, description="Ann's private club, Flat 3")
        Room.objects.filter(pk=room.pk).update(created_at=now - made)
        services.message_post(seat=owner, content="hi", now=now - spoken)
        return room, owner

    # Closed 35 days ago, everything in it 40 days old: a message edited and reacted to
    # (Change rows), a file, a member.
    closed, ann = used_room("Old club", made=40 * DAY, spoken=40 * DAY)
    bob = join_seat(closed, "Bob").seat
    message_id, _ = services.message_post(seat=bob, content="hello", now=now)
    services.message_edit(seat=bob, message_id=message_id, content="hello!", now=now)
    services.message_react(seat=ann, message_id=message_id, emoji="👍", on=True)
    upload = stored_file(bob, age=40 * DAY)
    Message.objects.filter(room=closed).update(sent_at=now - 40 * DAY)
    services.room_close(room_id=closed.pk, now=now - 35 * DAY)
    Participant.objects.filter(room=closed).update(left_at=now - 35 * DAY)
    assert Change.objects.filter(room=closed).count() == 2
    # Open and quiet for as long, everyone gone: it goes too.
    quiet, owner = used_room("Quiet", made=40 * DAY, spoken=40 * DAY)
    services.participant_leave(participant_id=owner.participant_id, now=now - 39 * DAY)
    # Open, made long ago, everyone gone, but a message of yesterday.
    recent, owner = used_room("Recent", made=40 * DAY, spoken=DAY)
    services.participant_leave(participant_id=owner.participant_id, now=now - 20 * DAY)
    # Open, made long ago, its history gone, but someone in it.
    occupied, _ = used_room("Occupied", made=40 * DAY, spoken=40 * DAY)
    # Closed 10 days ago: everything in it gone, but closed less than the retention ago.
    shut, owner = used_room("Shut", made=40 * DAY, spoken=40 * DAY)
    services.room_close(room_id=shut.pk, now=now - 10 * DAY)
    kept = {recent.pk, occupied.pk, shut.pk}

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # blobs go once a delete commits
        call_command("purge_files", stdout=out)  # messages, participants, the quiet room; files
        call_command("purge_files", stdout=out)  # the closed room, now without its file
    assert set(Room.objects.values_list("pk", flat=True)) == kept
    assert not Change.objects.filter(room=closed).exists() and not (files_root / upload.blob).exists()
    assert out.getvalue().splitlines()[0].endswith("; 1 room left empty, older than CHAT_RETENTION_DAYS (30)")
    assert out.getvalue().splitlines()[2] == (
        "purge_files: removed 1 room left empty, older than CHAT_RETENTION_DAYS (30)"
    )
    assert Message.objects.filter(room=recent).exists() and Participant.objects.filter(room=occupied).exists()

    settings.CHAT_RETENTION_DAYS = 0  # content kept for ever: so are rooms
    Message.objects.filter(room=recent).delete()
    assert retention.apply_retention(now=now + 1000 * DAY).emptied_rooms == 0
    assert set(Room.objects.values_list("pk", flat=True)) == kept


def test_a_room_someone_joins_once_it_was_chosen_is_kept(settings):
    """A batch of rooms is chosen (and locked), then deleted only if still empty: a join
    that came in between (on PostgreSQL, one committed before the lock; a later one
    waits for the delete) keeps its room and its row."""
    settings.CHAT_RETENTION_DAYS = 30
    now = timezone.now()
    room, owner, _ = make_room()
    Room.objects.filter(pk=room.pk).update(created_at=now - 40 * DAY)
    services.message_post(seat=owner, content="hi", now=now - 40 * DAY)
    Message.objects.filter(room=room).delete()  # as the retention leaves it
    Participant.objects.filter(room=room).delete()
    joined: list[services.Seat] = []
    chose: list[str] = []

    def join_once_chosen(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if 'FROM "chat_room"' in sql and not chose:  # the batch's choice, the first
            chose.append(sql)
            joined.append(join_seat(room, "Back").seat)
        return result

    chosen = retention.emptied_rooms(now)
    assert list(chosen) == [room]
    with connection.execute_wrapper(join_once_chosen):
        assert retention._delete_in_batches(chosen) == 0
    assert Room.objects.filter(pk=room.pk).exists()
    assert Participant.objects.filter(pk=joined[0].participant_id, left_at__isnull=True).exists()


def test_browser_sessions_forget_the_rooms_where_their_rows_are_gone():
    """A session's list of joined rooms (for `/files/<id>`) loses a room once no
    participant row of the session is left there, instead of living as long as the
    session; a session with nothing else in it goes."""
    now = timezone.now()
    keys = [browser_sessions.mint() for _ in range(2)]
    gone_long, gone_lately, present = (make_room()[0] for _ in range(3))

    def joined(room: Room, key: str, left: timedelta | None = None) -> None:
        where = services.Where("chan", "proc", "10.0.0.1", services.token_hash(key))
        seat = services.room_join(
            room=room, name=key[:8], where=where, owner_token=None, since=None, now=now
        ).seat
        services.session_room_add(session_key=key, room_id=room.pk)
        if left is not None:
            services.participant_leave(participant_id=seat.participant_id, now=now - left)

    def rooms(key: str) -> list[str] | None:
        return SessionStore(key).load().get(services.SESSION_ROOMS_KEY)

    joined(gone_long, keys[0], left=4 * DAY)
    joined(gone_lately, keys[0], left=DAY)
    joined(present, keys[0])
    joined(gone_long, keys[1], left=5 * DAY)
    expiry = Session.objects.get(pk=keys[0]).expire_date

    assert rooms(keys[0]) == [str(gone_long.pk), str(gone_lately.pk), str(present.pk)]
    out = io.StringIO()
    call_command("purge_files", stdout=out)
    assert rooms(keys[0]) == [str(gone_lately.pk), str(present.pk)]
    assert out.getvalue().splitlines()[0] == (
        "purge_files: removed 2 participants gone longer than PARTICIPANTS_RETENTION_DAYS (3); "
        "2 joined rooms forgotten by browser sessions"
    )
    assert Session.objects.get(pk=keys[0]).expire_date == expiry  # the session lives no longer
    assert not Session.objects.filter(pk=keys[1]).exists()  # it held nothing else
    assert retention.apply_retention(now=now).session_rooms == 0


def test_a_page_of_browser_sessions_is_checked_in_one_query_on_the_sessions_index():
    """Every purge reads every live session: a query per session (and one reading the
    rows of every room the session lists) would make a big site's cron run take minutes
    with nothing to forget."""
    room = make_room()[0]
    now = timezone.now()
    for _ in range(5):
        key = browser_sessions.mint()
        where = services.Where("chan", "proc", "10.0.0.1", services.token_hash(key))
        services.room_join(room=room, name=key[:8], where=where, owner_token=None, since=None, now=now)
        services.session_room_add(session_key=key, room_id=room.pk)
    with CaptureQueriesContext(connection) as queries:
        assert retention.sessions_forget(now=now) == 0
    assert len(queries) == 3  # the page, its rooms, the empty page after it
    rooms_query = queries[1]["sql"]
    assert "session_hash" in rooms_query and "room_id" not in rooms_query.partition("WHERE")[2]


def test_admin_log_entries_go_after_their_retention(settings, django_user_model):
    """The admin log names what was moderated (a room, a participant, a file): it is
    kept ADMIN_LOG_RETENTION_DAYS, not for ever."""
    settings.ADMIN_LOG_RETENTION_DAYS = 90
    moderator = django_user_model.objects.create_superuser("moderator", password="not used")
    room, _, _ = make_room(name="Project Nightingale")
    now = timezone.now()

    def logged(ago: timedelta) -> LogEntry:
        return LogEntry.objects.create(
            action_time=now - ago,
            user=moderator,
            content_type=ContentType.objects.get_for_model(Room),
            object_id=str(room.pk),
            object_repr=str(room),
            action_flag=CHANGE,
            change_message="Closed the room.",
        )

    old = [logged(91 * DAY), logged(400 * DAY)]
    recent = logged(89 * DAY)
    out = io.StringIO()
    call_command("purge_files", stdout=out)
    assert list(LogEntry.objects.values_list("pk", flat=True)) == [recent.pk]
    assert out.getvalue().splitlines()[0] == (
        "purge_files: removed 2 admin log entries older than ADMIN_LOG_RETENTION_DAYS (90)"
    )
    assert not LogEntry.objects.filter(pk__in=[entry.pk for entry in old]).exists()

    settings.ADMIN_LOG_RETENTION_DAYS = 0  # kept for ever
    assert retention.apply_retention(now=now + 1000 * DAY).admin_log == 0
    assert LogEntry.objects.count() == 1
