"""The WebSocket routes, and every client command with the action that runs it: the
chat's (chat/actions.py) and the files' (files/actions.py). They meet here, in the
project's wiring, because `files` depends on `chat` and never the reverse
(docs/architecture.md)."""

from django.urls import path, re_path

from chat import actions
from chat.consumers import ChatConsumer
from chat.security import no_such_path
from files import actions as file_actions

COMMANDS = actions.ACTIONS | file_actions.ACTIONS

websocket_urlpatterns = [
    path("ws/", ChatConsumer.as_asgi(commands=COMMANDS)),
    # A client written from the seed's guide connects to ws://host:port with no path.
    path("", ChatConsumer.as_asgi(commands=COMMANDS)),
    re_path("", no_such_path),  # any other path
]
