"""What `manage.py purge_files` clears besides files: expired browser sessions and, with
CHAT_RETENTION_DAYS set, messages older than that. Deletes go in small batches, each
its own statement, so a run never holds long locks; two runs at once (or a run killed
half way, then run again) only split the work between them."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.sessions.models import Session

from chat.models import Message

BATCH = 1000


@dataclass
class RetentionReport:
    dry_run: bool
    sessions: int = 0
    messages: int = 0

    def line(self) -> str | None:
        """One line when anything went (or would go), else None (purge_files then prints only its own)."""
        if not (self.sessions or self.messages):
            return None
        label = "purge_files (dry run)" if self.dry_run else "purge_files"
        verb = "would remove" if self.dry_run else "removed"
        days = settings.CHAT_RETENTION_DAYS
        return (
            f"{label}: {verb} {self.sessions} expired session{'s' * (self.sessions != 1)} and "
            f"{self.messages} message{'s' * (self.messages != 1)} older than CHAT_RETENTION_DAYS ({days:g})"
        )


def message_cutoff(now: datetime) -> datetime | None:
    """Messages sent before this go; None keeps every message (CHAT_RETENTION_DAYS 0)."""
    days = settings.CHAT_RETENTION_DAYS
    return now - timedelta(days=days) if days > 0 else None


def _delete_in_batches(queryset) -> int:
    removed = 0
    while True:
        batch = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not batch:
            return removed
        removed += queryset.model.objects.filter(pk__in=batch).delete()[0]


def apply_retention(*, now: datetime, dry_run: bool = False) -> RetentionReport:
    report = RetentionReport(dry_run=dry_run)
    sessions = Session.objects.filter(expire_date__lt=now)
    cutoff = message_cutoff(now)
    messages = Message.objects.filter(sent_at__lt=cutoff) if cutoff else Message.objects.none()
    if dry_run:
        report.sessions, report.messages = sessions.count(), messages.count()
    else:
        report.sessions, report.messages = _delete_in_batches(sessions), _delete_in_batches(messages)
    return report
