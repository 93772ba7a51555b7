from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import (
            checks,  # noqa: F401  (registers the system checks)
            daphne_close,
        )

        daphne_close.install()  # runserver sends 1008/1009/1013 closes and 404/429 refusals (see there)
