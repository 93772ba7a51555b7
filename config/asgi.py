"""ASGI entry point: HTTP through Django, WebSockets through the chat consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat import checkpoint  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.security import OriginValidator  # noqa: E402

checkpoint.start()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # No session middleware on sockets: it wraps every send, and only joins need the
        # session (chat.consumers.session_key_of reads the cookie then).
        "websocket": OriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
