"""Shared files in the admin: listed with their state; deleting tells the room
(files/moderation.py). A room's page shows its files, and the room list how many are
live: the chat's RoomAdmin, extended here, since `chat` knows nothing of files."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from chat import admin as chat_admin
from chat.admin import JoinKeySearch, ReadOnlyAdmin, actor
from chat.models import Room
from files import moderation
from files.models import SharedFile


class FileStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", "Live"), ("expired", "Expired"), ("deleted", "Deleted")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "live":
            return queryset.live(now)
        if self.value() == "expired":
            return queryset.filter(deleted_at__isnull=True, expires_at__lte=now)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(SharedFile)
class SharedFileAdmin(JoinKeySearch, ReadOnlyAdmin):
    show_full_result_count = False  # a second COUNT of a big table
    list_display = ["name", "room", "uploader_name", "mime_type", "size", "expires_at", "state"]
    list_filter = [FileStateFilter, "mime_type"]
    search_fields = ["name", "uploader_name"]
    list_select_related = ["room"]
    fields = [
        "id", "name", "room", "uploader_name", "mime_type", "size", "sha256",
        "created_at", "expires_at", "deleted_at", "state",
    ]  # fmt: skip
    readonly_fields = fields
    actions = ["delete_files"]

    @admin.display(description="state")
    def state(self, file: SharedFile) -> str:
        if file.deleted_at is not None:
            return "deleted"
        return "expired" if file.expires_at <= timezone.now() else "live"

    def delete_model(self, request: HttpRequest, obj: SharedFile) -> None:
        """The change page's Delete marks it deleted (the purge removes the row)."""
        moderation.delete_file(file_id=obj.pk, now=timezone.now(), actor=actor(request))

    @admin.action(description="Delete the selected files (the rooms are told)", permissions=["moderate"])
    def delete_files(self, request: HttpRequest, queryset: QuerySet) -> None:
        deleted = 0
        for file in queryset:
            if moderation.delete_file(file_id=file.pk, now=timezone.now(), actor=actor(request)):
                self.log_change(request, file, "Deleted the file.")
                deleted += 1
        self.message_user(request, f"Deleted {deleted} file(s).", messages.SUCCESS)


class FileInline(admin.TabularInline):
    model = SharedFile
    formset = chat_admin.FirstRows
    ordering = ["-created_at"]
    verbose_name_plural = f"files (the newest {chat_admin.ROOM_PAGE_ROWS})"
    fields = ["name", "uploader_name", "mime_type", "size", "created_at", "expires_at", "deleted_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    fk_name = "room"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        """Shown to those who may delete files too (chat.admin.ReadOnlyAdmin)."""
        return super().has_view_permission(request, obj) or chat_admin.may_moderate(request, SharedFile)


admin.site.unregister(Room)


@admin.register(Room)
class RoomAdmin(chat_admin.RoomAdmin):
    list_display = [*chat_admin.RoomAdmin.list_display, "live_files"]
    inlines = [*chat_admin.RoomAdmin.inlines, FileInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        live = chat_admin.room_rows(SharedFile.objects.live(timezone.now()))
        return super().get_queryset(request).annotate(live_file_count=live)

    @admin.display(description="live files", ordering="live_file_count")
    def live_files(self, room: Room) -> int:
        return room.live_file_count
