"""Rooms, the people in them and what they said (ciphertext only)."""

import uuid

from django.db import models
from django.db.models import Q


class Room(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=1000)
    # sha256 of the join key (keys.join_key_hash): the key itself is only in share links,
    # so a copy of the database cannot join its rooms through the live server.
    join_key_hash = models.CharField(max_length=64, unique=True)
    # Django password-hasher format (Argon2id); empty when the room has no password.
    password_hash = models.CharField(max_length=256, blank=True)
    # The room's AES-256 key, wrapped under ROOM_KEY_ENCRYPTION_KEY with the room id as
    # associated data (chat/keys.py): a copy of the database alone cannot read the room.
    # Empty in a sealed room: its key never reaches the server.
    wrapped_key = models.CharField(max_length=128, blank=True)
    # A sealed room (PROTOCOL.md, "Sealed rooms"): the key lives only in the share link's
    # fragment; `key_check` (base64 of 16 bytes derived from it, as the creator sent it)
    # lets joiners tell a wrong link from a right one.
    # Defaults in the database too, so that a process of the previous release, which
    # knows neither column, can still create rooms during a rolling restart.
    sealed = models.BooleanField(default=False, db_default=False)
    key_check = models.CharField(max_length=24, blank=True, default="", db_default="")
    # sha256 of the owner token: the token itself is only ever in the creator's hands.
    owner_token_hash = models.CharField(max_length=64)
    owner_name = models.CharField(max_length=50)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    # The room's last message sequence number (see Message.seq).
    message_seq = models.BigIntegerField(default=0)

    # Not a column: the unwrapped room key (base64), set once per room per process where
    # the row is read for joins (selectors.room_door) or made (services.room_create).
    encryption_key: str | None = None
    # Not a column either: the join key, where the row was read by it or made.
    join_key: str = ""

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)


class Participant(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    # No index of its own: those below that begin with the room serve its lookups.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="participants", db_index=False)
    name = models.CharField(max_length=50)
    # casefold() of the NFC name: what uniqueness compares (PROTOCOL.md, Precise rules).
    name_key = models.CharField(max_length=200)
    # The socket's outbox (chat/outbox.py, `Outbox.id`): what an admin's kick addresses.
    outbox_id = models.CharField(max_length=200)
    # Which server process holds the socket (for operators; presence goes by seat ids).
    process_id = models.CharField(max_length=32)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    address = models.GenericIPAddressField(null=True, blank=True)
    # sha256 of the browser session's key, when the socket carried one (for kick bans).
    session_hash = models.CharField(max_length=64, blank=True, default="")
    # sha256 of the participant token (PROTOCOL.md, Conversations: resuming); emptied
    # when an admin removes the participant, which makes the token dead. A database
    # default too: a process of the previous release still records joins meanwhile.
    token_hash = models.CharField(max_length=64, blank=True, default="", db_default="")
    joined_at = models.DateTimeField()
    left_at = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            # At most one present participant per name: the database decides races.
            models.UniqueConstraint(
                fields=["room", "name_key"],
                condition=Q(left_at__isnull=True),
                name="participant_name_unique_present",
            )
        ]
        indexes = [
            models.Index(fields=["left_at", "last_seen"], name="participant_presence"),
            models.Index(fields=["process_id", "left_at"], name="participant_process"),
            models.Index(fields=["room", "token_hash"], name="participant_token"),
            # A browser session's rows in every room (chat/retention.py, sessions_forget).
            models.Index(fields=["session_hash", "room"], name="participant_session"),
        ]

    def __str__(self) -> str:
        return f"{self.name} in {self.room_id}"


class Message(models.Model):
    # Global auto-increment: strictly increasing within each room, not by 1.
    id = models.BigAutoField(primary_key=True)
    # No index of its own: those below that begin with the room serve its lookups, and
    # each index is written by every message (bench/README.md, issue 17).
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages", db_index=False)
    sender = models.CharField(max_length=50)
    content = models.TextField()
    sent_at = models.DateTimeField()
    # 1, 2, 3 ... within the room, without gaps, taken under the room row's lock: each
    # server process's hub delivers a room's messages in this order and fetches any it
    # missed (chat/hub.py), so messages stored by different processes reach every
    # socket in id order.
    seq = models.BigIntegerField(null=True, blank=True)
    # The participant (its row's id) who sent it: edits and deletes are theirs, also
    # after they resume with their participant token. Null for the server's own lines.
    author = models.BigIntegerField(null=True, blank=True)
    # The id of the message of the same room this one answers (PROTOCOL.md,
    # Conversations); it stays when that message is deleted, and clients show it gone.
    reply_to = models.BigIntegerField(null=True, blank=True)
    # When its author last edited it; the row keeps only the latest content.
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["room", "id"], name="message_room_id"),
            models.Index(fields=["room", "seq"], name="message_room_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} by {self.sender}"


class Reaction(models.Model):
    """One participant's emoji on a message (PROTOCOL.md, Conversations): at most one of
    each emoji per participant, at most REACTIONS_PER_MESSAGE distinct emoji a message."""

    # No index of its own: `reaction_once` begins with the message.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions", db_index=False)
    participant_id = models.BigIntegerField()
    name = models.CharField(max_length=50)  # the participant's, when they reacted
    emoji = models.CharField(max_length=32)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "participant_id", "emoji"], name="reaction_once"),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.name} on #{self.message_id}"


class Change(models.Model):
    """Which message an edit, a delete or a reaction changed, by the room step it took
    (`Room.message_seq`): a hub that missed the change on the bus reads it back here
    and hands out the message's state now (chat/hub.py, `stored_events`). A room has
    CHANGES_KEPT_STEPS places, `slot` = `seq` modulo that: each change takes the place of
    the one that many steps before it (chat/sql.py, `changes_write`), so a room never
    holds more rows than that, and no write deletes any."""

    class Kind(models.TextChoices):
        EDIT = "edit"
        DELETE = "delete"
        REACT = "react"

    pk = models.CompositePrimaryKey("room", "slot")
    # No index of its own: the primary key begins with the room.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="changes", db_index=False)
    slot = models.IntegerField()
    seq = models.BigIntegerField()
    # No foreign key: the row outlives its message's delete, which it tells of.
    message_id = models.BigIntegerField()
    kind = models.CharField(max_length=6, choices=Kind.choices)

    def __str__(self) -> str:
        return f"{self.kind} of #{self.message_id} at {self.seq}"


class Ban(models.Model):
    """A participant an admin removed from a room: its browser session and its client
    address may not rejoin under any name until `until` (KICK_BAN_SECONDS). `name_key`
    records whom it was for (and tells a removed seat from one that left)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    name_key = models.CharField(max_length=200)
    session_hash = models.CharField(max_length=64, blank=True, default="")
    address = models.GenericIPAddressField(null=True, blank=True)
    until = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["room", "name_key"], name="ban_room_name")]

    def __str__(self) -> str:
        return f"{self.name_key} until {self.until:%Y-%m-%d %H:%M}"
