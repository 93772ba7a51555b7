"""`manage.py check` refuses a FILES_ROOT the purge could not safely clean (files/store.py)."""

from pathlib import Path

from django.conf import settings
from django.core.checks import Error, register

from files import store


@register()
def files_root_is_a_store(app_configs, **kwargs) -> list[Error]:
    reason = store.problem(Path(settings.FILES_ROOT))
    if reason is None:
        return []
    return [
        Error(
            f"{reason}: uploads and manage.py purge_files refuse it.",
            hint="Give FILES_ROOT a folder of its own outside the project, holding only this "
            "server's blobs, e.g. /var/lib/chat/files (docs/production.md).",
            id="files.E001",
        )
    ]
