"""ASGI entry point: HTTP through Django, WebSockets through the chat consumer, and the
server's start and stop (the ASGI lifespan)."""

import os
from collections.abc import Awaitable, Callable

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat import runtime  # noqa: E402
from chat.security import BodyLimit, ConnectionLimit, OriginValidator, RequestLimit  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

runtime.start()  # every background task and thread: listed in chat/runtime.py


async def lifespan(
    scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
) -> None:
    """The server's start and stop: uvicorn (`manage.py serve`) sends both; daphne
    (`runserver`) sends neither. On start, `runtime.watch_loop`; on stop, once uvicorn
    has closed the sockets, `runtime.stop` (the hub leaves the bus group)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            runtime.watch_loop()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await runtime.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        # HTTP_BODY_MAX: a larger body gets 413 before Django stores it (chat.security).
        # HTTP_REQUESTS_PER_ADDRESS, HTTP_REQUESTS_PER_PROCESS: requests in flight (each a
        # thread under Django); past either, 503 from the event loop (chat.security).
        "http": BodyLimit(RequestLimit(django_asgi_app)),
        # No session middleware on sockets: it wraps every send, and only joins need the
        # session (chat.security.session_key_of reads the cookie then).
        # CONNECTIONS_PER_ADDRESS: past it a handshake is refused with 429 (chat.security).
        "websocket": OriginValidator(ConnectionLimit(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)
