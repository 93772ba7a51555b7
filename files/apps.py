from django.apps import AppConfig


class FilesConfig(AppConfig):
    name = "files"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from files import (  # noqa: F401  (registers the system checks and the signal)
            checks,
            signals,
        )
