"""What `manage.py purge_files` clears besides files: expired browser sessions, expired
bans, participants that left more than PARTICIPANTS_RETENTION_DAYS ago, rooms made
more than UNUSED_ROOMS_RETENTION_DAYS ago that nobody ever wrote in and nobody is in,
admin log entries older than ADMIN_LOG_RETENTION_DAYS (they name the rooms, participants
and files moderated) and, with CHAT_RETENTION_DAYS set, messages older than that (the
files shared as long ago go in the files' purge that follows: files/purge.py), then the
rooms that leaves with nothing in them (`emptied_rooms`); and each browser session
forgets the rooms it joined where no participant row of it is left (`sessions_forget`).
Deletes go in small batches, each its own transaction, so a run never holds long locks;
two runs at once (or a run killed half way, then run again) only split the work between
them.

A participant's row is what its token resumes (services._participant_resume), so
PARTICIPANTS_RETENTION_DAYS is how long a token can come back after its participant
left; later it joins as a new participant. Its messages keep their `author` (ids are
never reused, so nobody else gets them) and its files lose their uploader (SET_NULL):
only an owner can delete them then. Present participants are never deleted."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from chat.models import Ban, Change, Message, Participant, Room
from chat.services import SESSION_ROOMS_KEY, token_hash

BATCH = 1000


@dataclass
class RetentionReport:
    dry_run: bool
    sessions: int = 0
    messages: int = 0
    participants: int = 0
    bans: int = 0
    rooms: int = 0
    emptied_rooms: int = 0
    admin_log: int = 0
    session_rooms: int = 0

    def line(self) -> str | None:
        """One line when anything went (or would go), else None (purge_files then prints only its own)."""
        days = {name: f"{name} ({getattr(settings, name):g})" for name in RETENTION_SETTINGS}
        parts = [
            f"{counted(number, noun)} {why.format(**days)}"
            for number, noun, why in [
                (self.sessions, "expired session", ""),
                (self.messages, "message", "older than {CHAT_RETENTION_DAYS}"),
                (self.participants, "participant", "gone longer than {PARTICIPANTS_RETENTION_DAYS}"),
                (self.bans, "expired ban", ""),
                (self.rooms, "room", "unused for {UNUSED_ROOMS_RETENTION_DAYS}"),
                (self.emptied_rooms, "room", "left empty, older than {CHAT_RETENTION_DAYS}"),
                (self.admin_log, "admin log entry", "older than {ADMIN_LOG_RETENTION_DAYS}"),
                (self.session_rooms, "joined room", "forgotten by browser sessions"),
            ]
            if number
        ]
        if not parts:
            return None
        label = "purge_files (dry run)" if self.dry_run else "purge_files"
        verb = "would remove" if self.dry_run else "removed"
        return f"{label}: {verb} {'; '.join(part.rstrip() for part in parts)}"


RETENTION_SETTINGS = (
    "CHAT_RETENTION_DAYS",
    "PARTICIPANTS_RETENTION_DAYS",
    "UNUSED_ROOMS_RETENTION_DAYS",
    "ADMIN_LOG_RETENTION_DAYS",
)


def counted(number: int, noun: str) -> str:
    """`1 room`, `2 rooms`, `2 admin log entries`."""
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {noun[:-1]}ies" if noun.endswith("y") else f"{number} {noun}s"


def message_cutoff(now: datetime) -> datetime | None:
    """Messages sent before this go; None keeps every message (CHAT_RETENTION_DAYS 0)."""
    days = settings.CHAT_RETENTION_DAYS
    return now - timedelta(days=days) if days > 0 else None


def participant_cutoff(now: datetime) -> datetime | None:
    """Participants that left before this go; None keeps them (PARTICIPANTS_RETENTION_DAYS 0)."""
    days = settings.PARTICIPANTS_RETENTION_DAYS
    return now - timedelta(days=days) if days > 0 else None


def admin_log_cutoff(now: datetime) -> datetime | None:
    """Admin log entries made before this go; None keeps them (ADMIN_LOG_RETENTION_DAYS 0)."""
    days = settings.ADMIN_LOG_RETENTION_DAYS
    return now - timedelta(days=days) if days > 0 else None


def unused_rooms(now: datetime) -> QuerySet:
    """Rooms made more than UNUSED_ROOMS_RETENTION_DAYS ago in which no message was ever
    stored (message_seq 0, so no files either) and nobody is present; none with 0."""
    days = settings.UNUSED_ROOMS_RETENTION_DAYS
    if days <= 0:
        return Room.objects.none()
    present = Participant.objects.filter(room=OuterRef("pk"), left_at__isnull=True)
    return Room.objects.filter(created_at__lt=now - timedelta(days=days), message_seq=0).exclude(
        Exists(present)
    )


def emptied_rooms(now: datetime) -> QuerySet:
    """Rooms once written in that retention has emptied: no message, no file and no
    participant row is left (so nobody is present, and the last one left more than
    PARTICIPANTS_RETENTION_DAYS ago), and the room was made, and closed if it is, more
    than CHAT_RETENTION_DAYS ago; none without CHAT_RETENTION_DAYS, which keeps content
    for ever. Rooms never written in are `unused_rooms`' (their own retention).

    Every row that refers to a room is content that keeps it, except its bookkeeping
    (Change, Ban), which goes with it: its files too, which `chat` knows only as a
    relation. It is deleted as a moderator's delete deletes (moderation.delete_room,
    less the close: nobody is there to tell): its rows cascade and its blobs go once
    that commits (files/signals.py)."""
    before = message_cutoff(now)
    if before is None:
        return Room.objects.none()
    rooms = Room.objects.filter(message_seq__gt=0, created_at__lt=before).filter(
        Q(closed_at__isnull=True) | Q(closed_at__lt=before)
    )
    for relation in Room._meta.related_objects:
        if relation.related_model not in (Change, Ban):
            refers = relation.related_model._default_manager.filter(**{relation.field.name: OuterRef("pk")})
            rooms = rooms.exclude(Exists(refers))
    return rooms


def _delete_in_batches(queryset: QuerySet) -> int:
    """Delete what `queryset` selects, BATCH rows a transaction. Each batch is locked as
    it is chosen (FOR UPDATE on PostgreSQL, skipping rows another run holds) and deleted
    only if it still matches then: a row changed meanwhile so that it no longer matches
    (a participant resuming, a room someone joined: the join's row refers to the locked
    room, so it commits before the lock or waits for the delete) is left alone, and one
    changed after waits for the delete, then finds no row."""
    model = queryset.model
    removed = 0
    while True:
        with transaction.atomic():
            # Unordered: a model's default ordering would sort every candidate a batch.
            chosen = queryset.order_by().select_for_update(skip_locked=True)
            batch = list(chosen.values_list("pk", flat=True)[:BATCH])
            if not batch:
                return removed
            # Counted per model: what cascades with them (reactions, ...) is not counted.
            removed += queryset.filter(pk__in=batch).delete()[1].get(model._meta.label, 0)


def _forget_rooms(session: dict, seated: set[str]) -> int:
    """Drop from `session` (decoded) the rooms it joined that are not `seated` (where a
    participant row of the session is left, present or gone); returns how many went."""
    rooms = session.get(SESSION_ROOMS_KEY, [])
    kept = [room for room in rooms if room in seated]
    if len(kept) == len(rooms):
        return 0
    if kept:
        session[SESSION_ROOMS_KEY] = kept
    else:
        del session[SESSION_ROOMS_KEY]
    return len(rooms) - len(kept)


def _seated(session_keys: list[str]) -> dict[str, set[str]]:
    """Each session's rooms where a participant row of it is left: one query, on the
    index that begins with the session's hash (`participant_session`)."""
    hashes = {token_hash(key): key for key in session_keys}
    seated: dict[str, set[str]] = {key: set() for key in session_keys}
    rows = Participant.objects.filter(session_hash__in=hashes).order_by()
    for session_hash, room_id in rows.values_list("session_hash", "room_id").distinct():
        seated[hashes[session_hash]].add(str(room_id))
    return seated


def sessions_forget(*, now: datetime, dry_run: bool = False) -> int:
    """A browser session lists the rooms it joined (services.session_room_add), for
    `/files/<id>`, which also needs a present seat of the session there
    (services.session_may_download): a room whose participant rows of the session are
    gone (PARTICIPANTS_RETENTION_DAYS after its last seat left, or with the room) leaves
    the list, which would otherwise keep it as long as the session lives. Returns how
    many went.

    Sessions are read BATCH at a time without locks, with one query a page for their
    rooms. One to change is then locked alone, skipping it if a join holds it (the next
    run has it), read again, and written back without touching its expiry, or deleted
    if nothing else is in it (its first join next makes a new row)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    forgotten, after = 0, ""
    while True:
        page = list(
            Session.objects.filter(session_key__gt=after, expire_date__gte=now)
            .order_by("session_key")
            .values_list("session_key", "session_data")[:BATCH]
        )
        if not page:
            return forgotten
        after = page[-1][0]
        joined = {key: session for key, data in page if SESSION_ROOMS_KEY in (session := store.decode(data))}
        seated = _seated(list(joined))
        for key, session in joined.items():
            stale = _forget_rooms(session, seated[key])
            if not stale or dry_run:
                forgotten += stale
                continue
            with transaction.atomic():
                locked = Session.objects.select_for_update(skip_locked=True).filter(pk=key)
                data = locked.values_list("session_data", flat=True).first()
                if data is None:
                    continue
                session, row = store.decode(data), Session.objects.filter(pk=key)
                forgotten += _forget_rooms(session, _seated([key])[key])
                if session:
                    row.update(session_data=store.encode(session))
                else:
                    row.delete()


def apply_retention(*, now: datetime, dry_run: bool = False) -> RetentionReport:
    report = RetentionReport(dry_run=dry_run)
    message_before, participant_before = message_cutoff(now), participant_cutoff(now)
    log_before = admin_log_cutoff(now)
    doomed = {
        "sessions": Session.objects.filter(expire_date__lt=now),
        "messages": (
            Message.objects.filter(sent_at__lt=message_before) if message_before else Message.objects.none()
        ),
        "participants": (
            Participant.objects.filter(left_at__lt=participant_before)
            if participant_before
            else Participant.objects.none()
        ),
        "bans": Ban.objects.filter(until__lte=now),
        "rooms": unused_rooms(now),
        # After the messages and participants: a room they empty goes in the same run
        # (a dry run counts only the rooms empty already), one whose files went in the
        # files' purge (after this), in the next.
        "emptied_rooms": emptied_rooms(now),
        "admin_log": (
            LogEntry.objects.filter(action_time__lt=log_before) if log_before else LogEntry.objects.none()
        ),
    }
    for name, queryset in doomed.items():
        setattr(report, name, queryset.count() if dry_run else _delete_in_batches(queryset))
    # After the rows it checks: a dry run counts only the rooms forgettable already.
    report.session_rooms = sessions_forget(now=now, dry_run=dry_run)
    return report
