"""What the browser app's file sharing needs from the server, on every page a template
renders: templates/chat/index.html hands it to the script as json_script "files-config"
(beside the chat's own "chat-config", chat/views.py)."""

from django.conf import settings
from django.http import HttpRequest

from files import validation


def upload_limits(request: HttpRequest) -> dict:
    """The page offers exactly the types the server accepts (never html or svg, only
    types whose bytes it can verify), so it can refuse the others before sending."""
    allowed = [validation.normalise_mime(t) for t in settings.FILES_ALLOWED_MIME_TYPES]
    offered = [t for t in allowed if validation.mime_allowed(t, allowed)]
    return {
        "files_config": {
            "files_max_size": settings.FILES_MAX_SIZE,
            "files_allowed_mime_types": offered,
            # What a sealed room's files are saved under, as the server names a standard
            # room's (validation.shown_name): the page's `shownName`.
            "files_extensions": {t: validation.EXTENSIONS.get(t, (".bin",)) for t in offered},
            # How each type's bytes begin (validation.SIGNATURES, in hex), so the page checks
            # a file's contents as the server checks a standard room's: a sealed room's
            # server cannot, and the page previews only images that are what they say.
            "files_signatures": {
                t: [signature.hex() for signature in validation.SIGNATURES[t]]
                for t in offered
                if t in validation.SIGNATURES
            },
        }
    }
