"""Moderation in the Django admin: every action goes through chat/moderation.py, so it
reaches the people connected now in every server process, and is in the admin log.

Rooms, participants and messages are made by clients, never here; their fields are
read-only (server processes cache room rows, so an edit would not reach them). The
password hash, the room key and the owner token hash are never shown, and neither is
message content (ciphertext: the admin cannot read it and does not pretend to).
"""

from uuid import UUID

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from chat import keys, moderation
from chat.models import Message, Participant, Room
from chat.protocol import FILE_MESSAGE_PREFIX

# Who is present first (a name's stale rows from before a reconnect come after it), then
# the most recent: newest join among the present, latest departure among those who left.
PRESENT_FIRST = F("left_at").desc(nulls_first=True)
PARTICIPANT_ORDERING = [PRESENT_FIRST, "-joined_at"]
# How many names one "already left" warning lists before "and N more".
GONE_NAMES_SHOWN = 10


def actor(request: HttpRequest) -> str:
    return f"admin:{request.user.pk}"


def already_gone_message(gone: list[Participant]) -> str:
    """Say, in words, that these rows had left before the admin removed them, and point
    at the present row of any name that is back in the same room (a reconnect leaves
    the old row behind, and that is the row an admin may have picked)."""
    if len(gone) == 1:
        text = f"{gone[0].name} had already left {gone[0].room}; nothing to remove."
    else:
        names = [f"{p.name} ({p.room})" for p in gone[:GONE_NAMES_SHOWN]]
        more = f" and {len(gone) - GONE_NAMES_SHOWN} more" if len(gone) > GONE_NAMES_SHOWN else ""
        text = f"{len(gone)} had already left; nothing to remove: {', '.join(names)}{more}."
    back: dict[tuple, Participant] = {}
    for participant in gone:
        key = (participant.room_id, participant.name_key)
        if key not in back and (
            Participant.objects.filter(room_id=participant.room_id, name_key=participant.name_key)
            .filter(left_at__isnull=True)
            .exists()
        ):
            back[key] = participant
    for participant in back.values():
        text += (
            f" {participant.name} is in {participant.room} again on a newer row, listed first"
            " with the present: select that row to remove them."
        )
    return text


def may_moderate(request: HttpRequest, model: type[Model]) -> bool:
    """Moderating a model takes Django's delete permission on it (production.md,
    "Moderation"), which also shows what it moderates."""
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Nothing is added or edited here; deleting goes through moderation."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by actions that tell the rooms
        return actions

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return may_moderate(request, self.model)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        """A moderator sees what they moderate: the delete permission (all that
        production.md, "Moderation", asks for) lists and opens it, as view would."""
        return super().has_view_permission(request, obj) or self.has_moderate_permission(request)


def room_rows(rows: QuerySet) -> Coalesce:
    """How many of `rows` (a model with a `room`) are each listed room's, as an
    annotation computed for the rooms a page shows only."""
    counted = rows.filter(room=OuterRef("pk")).order_by().values("room").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted), 0)


class JoinKeySearch(admin.ModelAdmin):
    """The list's search also finds the room whose join key (or share link) is searched
    for: the database keeps only the key's hash (`keys.join_key_hash`)."""

    room_field = "room_id"
    search_help_text = "Names, a room's join key or its share link."

    class Media:
        js = ["chat/admin/search.js"]  # a sealed link's secret is cut off before it is sent

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        key = search_term.strip().partition("#")[0]  # a sealed link's secret is not looked at
        if "/rooms/" in key:
            key = key.partition("/rooms/")[2].partition("/")[0]
        if key and " " not in key:
            # The room first (its unique index), then its rows: an OR of the names' match
            # and a join on the hash walks every row of a big table.
            room = Room.objects.filter(join_key_hash=keys.join_key_hash(key)).values_list("pk", flat=True)
            if room_id := room.first():
                found |= queryset.filter(**{self.room_field: room_id})
        return found, may_have_duplicates


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(closed_at__isnull=True)
        if self.value() == "closed":
            return queryset.filter(closed_at__isnull=False)
        return queryset


class PasswordFilter(admin.SimpleListFilter):
    title = "password"
    parameter_name = "password"

    def lookups(self, request, model_admin):
        return [("yes", "With password"), ("no", "Without password")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(password_hash="")
        if self.value() == "no":
            return queryset.filter(password_hash="")
        return queryset


def moderation_button(url: str, label: str) -> str:
    """A button on the room's page that posts its form (and so its CSRF token) to `url`."""
    return format_html(
        '<button type="submit" class="button" formmethod="post" formaction="{}">{}</button>', url, label
    )


class ModeratedInline(admin.TabularInline):
    """An inline of the room's page, read-only, with a moderation button on each row for
    those who may moderate (Django's delete permission on the model)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        """Shown to those who may moderate its rows too (ReadOnlyAdmin)."""
        return super().has_view_permission(request, obj) or may_moderate(request, self.model)

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        fields = list(self.fields or [])
        if may_moderate(request, self.model):
            fields.append("moderate")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return self.get_fields(request, obj)


# Rows a room's admin page lists of each kind, the first in the inline's order: a room
# may hold millions of messages and thousands of participants and files.
ROOM_PAGE_ROWS = 50


class FirstRows(BaseInlineFormSet):
    """The inline's first ROOM_PAGE_ROWS rows, read once: each of its forms asks."""

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_first_rows"):
            self._first_rows = super().get_queryset()[:ROOM_PAGE_ROWS]
        return self._first_rows


class ParticipantInline(ModeratedInline):
    model = Participant
    fields = ["name", "role", "joined_at", "left_at", "last_seen", "address"]
    ordering = PARTICIPANT_ORDERING
    formset = FirstRows
    verbose_name_plural = f"participants (the present first, then the newest; the first {ROOM_PAGE_ROWS})"

    @admin.display(description="")
    def moderate(self, participant: Participant) -> str:
        if participant.left_at is not None:
            return ""
        url = reverse("admin:chat_room_remove", args=[participant.room_id, participant.pk])
        return moderation_button(url, "Remove")


class MessageColumns:
    """What the admin shows of a message: never its content, which it cannot read."""

    @admin.display(description="kind")
    def kind(self, message: Message) -> str:
        return (
            "file link"
            if message.content.startswith(FILE_MESSAGE_PREFIX)
            else "ciphertext (not readable here)"
        )

    @admin.display(description="characters")
    def length(self, message: Message) -> int:
        return len(message.content)


class MessageInline(MessageColumns, ModeratedInline):
    model = Message
    formset = FirstRows
    fields = ["id", "sender", "sent_at", "kind", "length"]
    ordering = ["-id"]
    verbose_name_plural = f"messages (the newest {ROOM_PAGE_ROWS}; their ciphertext is not shown)"

    @admin.display(description="")
    def moderate(self, message: Message) -> str:
        return moderation_button(
            reverse("admin:chat_room_delete_message", args=[message.room_id, message.pk]), "Delete"
        )


@admin.register(Room)
class RoomAdmin(JoinKeySearch, ReadOnlyAdmin):
    show_full_result_count = False  # a second COUNT of a big table
    list_display = ["name", "owner_name", "created_at", "is_open", "sealed", "present"]
    list_filter = [OpenFilter, PasswordFilter, "sealed"]
    search_fields = ["name"]
    room_field = "pk"
    fields = [
        "name", "description", "has_password", "sealed", "owner_name", "created_at", "closed_at",
    ]  # fmt: skip
    readonly_fields = fields
    inlines = [ParticipantInline, MessageInline]
    actions = ["close_rooms", "delete_rooms"]

    def get_urls(self) -> list:
        """The room page's own moderation (issue 18): each a POST from its button."""
        view = self.admin_site.admin_view
        return [
            path("<uuid:room_id>/close/", view(self.close_view), name="chat_room_close"),
            path(
                "<uuid:room_id>/remove/<int:participant_id>/", view(self.remove_view), name="chat_room_remove"
            ),
            path(
                "<uuid:room_id>/delete-message/<int:message_id>/",
                view(self.delete_message_view),
                name="chat_room_delete_message",
            ),
            *super().get_urls(),
        ]

    def moderated(self, request: HttpRequest, room_id: UUID, acting_on: type[Model] = Room) -> Room:
        """The room, for a user who may moderate what the button acts on (Django's
        delete permission on that model, as its inline shows the button), else 403."""
        if not may_moderate(request, acting_on):
            raise PermissionDenied
        return Room.objects.get(pk=room_id)

    def get_deleted_objects(self, objs, request: HttpRequest) -> tuple:
        """A room's Delete takes its participants, messages and files with it
        (moderation.delete_room): the room's own delete permission is enough, though
        none of those may be deleted on its own here (their admins refuse it). The page
        counts what goes with the rooms, by kind, instead of listing every row of it
        (a room may hold millions of messages)."""
        rooms = list(objs)
        counts = {str(Room._meta.verbose_name_plural): len(rooms)}
        for relation in Room._meta.related_objects:
            related = relation.related_model
            number = related._default_manager.filter(**{f"{relation.field.name}__in": rooms}).count()
            if number:
                counts[str(related._meta.verbose_name_plural)] = number
        return [str(room) for room in rooms], counts, set(), []

    def back_to(self, room: Room) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:chat_room_change", args=[room.pk]))

    @method_decorator(require_POST)
    def close_view(self, request: HttpRequest, room_id: UUID) -> HttpResponseRedirect:
        room = self.moderated(request, room_id)
        if moderation.close_room(room_id=room.pk, now=timezone.now(), actor=actor(request)):
            self.log_change(request, room, "Closed the room.")
            self.message_user(request, f"Closed {room}: everyone in it was disconnected.", messages.SUCCESS)
        else:
            self.message_user(request, f"{room} was closed already.", messages.WARNING)
        return self.back_to(room)

    @method_decorator(require_POST)
    def remove_view(self, request: HttpRequest, room_id: UUID, participant_id: int) -> HttpResponseRedirect:
        room = self.moderated(request, room_id, Participant)
        participant = Participant.objects.filter(pk=participant_id, room=room).first()
        if participant is not None and moderation.remove_participant(
            participant_id=participant.pk, now=timezone.now(), actor=actor(request)
        ):
            self.log_change(request, participant, "Removed from the room.")
            self.message_user(request, f"Removed {participant.name} from {room}.", messages.SUCCESS)
        else:
            gone = [participant] if participant is not None else []
            self.message_user(
                request, already_gone_message(gone) if gone else "No such participant.", messages.WARNING
            )
        return self.back_to(room)

    @method_decorator(require_POST)
    def delete_message_view(
        self, request: HttpRequest, room_id: UUID, message_id: int
    ) -> HttpResponseRedirect:
        room = self.moderated(request, room_id, Message)
        message = Message.objects.filter(pk=message_id, room=room).first()
        if message is not None:
            self.log_deletions(request, [message])
            moderation.delete_messages(message_ids=[message.pk], actor=actor(request))
            self.message_user(request, f"Deleted message {message_id}.", messages.SUCCESS)
        else:
            self.message_user(request, f"Message {message_id} was deleted already.", messages.WARNING)
        return self.back_to(room)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A count for each room shown, not a join of every room's rows (`room_rows`).
        present = room_rows(Participant.objects.filter(left_at__isnull=True))
        return super().get_queryset(request).annotate(present_count=present)

    @admin.display(boolean=True, description="open", ordering="closed_at")
    def is_open(self, room: Room) -> bool:
        return room.closed_at is None

    @admin.display(boolean=True, description="password")
    def has_password(self, room: Room) -> bool:
        return room.has_password

    @admin.display(description="present", ordering="present_count")
    def present(self, room: Room) -> int:
        return room.present_count

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        moderation.delete_room(room_id=obj.pk, now=timezone.now(), actor=actor(request))

    @admin.action(
        description="Close the selected rooms (everyone in them is disconnected)", permissions=["moderate"]
    )
    def close_rooms(self, request: HttpRequest, queryset: QuerySet) -> None:
        closed = 0
        for room in queryset:
            if moderation.close_room(room_id=room.pk, now=timezone.now(), actor=actor(request)):
                self.log_change(request, room, "Closed the room.")
                closed += 1
        self.message_user(request, f"Closed {closed} room(s).", messages.SUCCESS)

    @admin.action(
        description="Delete the selected rooms with their messages and files", permissions=["moderate"]
    )
    def delete_rooms(self, request: HttpRequest, queryset: QuerySet) -> None:
        rooms = list(queryset)
        self.log_deletions(request, rooms)
        for room in rooms:
            moderation.delete_room(room_id=room.pk, now=timezone.now(), actor=actor(request))
        self.message_user(request, f"Deleted {len(rooms)} room(s).", messages.SUCCESS)


class PresentFilter(admin.SimpleListFilter):
    title = "presence"
    parameter_name = "present"

    def lookups(self, request, model_admin):
        return [("yes", "Present"), ("no", "Left")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(left_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(left_at__isnull=False)
        return queryset


@admin.register(Participant)
class ParticipantAdmin(JoinKeySearch, ReadOnlyAdmin):
    show_full_result_count = False  # a second COUNT of a big table
    list_display = ["name", "room", "role", "is_present", "joined_at", "left_at", "address"]
    list_filter = [PresentFilter, "role"]
    search_fields = ["name", "room__name"]
    list_select_related = ["room"]
    fields = ["name", "room", "role", "joined_at", "left_at", "last_seen", "address", "process_id"]
    readonly_fields = fields
    actions = ["remove_from_room"]
    ordering = PARTICIPANT_ORDERING

    @admin.display(boolean=True, description="present", ordering=PRESENT_FIRST)
    def is_present(self, participant: Participant) -> bool:
        return participant.left_at is None

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(
        description="Remove from the room (and keep the name out for a while)", permissions=["moderate"]
    )
    def remove_from_room(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Only a present row can be removed: moderation answers False for a row that
        had left (before the click, or meanwhile), and the admin is told so by name."""
        removed = 0
        gone: list[Participant] = []
        for participant in queryset.select_related("room"):
            if moderation.remove_participant(
                participant_id=participant.pk, now=timezone.now(), actor=actor(request)
            ):
                self.log_change(request, participant, "Removed from the room.")
                removed += 1
            else:
                gone.append(participant)
        if removed:
            self.message_user(request, f"Removed {removed} participant(s).", messages.SUCCESS)
        if gone:
            self.message_user(request, already_gone_message(gone), messages.WARNING)


@admin.register(Message)
class MessageAdmin(MessageColumns, JoinKeySearch, ReadOnlyAdmin):
    show_full_result_count = False  # a second COUNT of a big table
    list_display = ["id", "room", "sender", "sent_at", "kind", "length"]
    search_fields = ["sender"]
    list_select_related = ["room"]
    fields = ["id", "room", "sender", "sent_at", "kind", "length"]
    readonly_fields = fields
    actions = ["delete_messages"]

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        moderation.delete_messages(message_ids=[obj.pk], actor=actor(request))

    @admin.action(description="Delete the selected messages (the rooms are told)", permissions=["moderate"])
    def delete_messages(self, request: HttpRequest, queryset: QuerySet) -> None:
        messages_ = list(queryset)
        self.log_deletions(request, messages_)
        deleted = moderation.delete_messages(message_ids=[m.pk for m in messages_], actor=actor(request))
        self.message_user(request, f"Deleted {deleted} message(s).", messages.SUCCESS)
