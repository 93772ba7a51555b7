"""A Python client for the encrypted chat rooms: `ChatClient`, its events, and a terminal chat.

It needs no Django and nothing from the server, only `websockets` and `cryptography`.
"""

from chatclient.client import ChatClient, ChatError, ClientOptions, ConnectionLost, socket_url
from chatclient.crypto import DecryptError, decrypt, encrypt
from chatclient.events import (
    ErrorEvent,
    Event,
    EventsDropped,
    FileDeleted,
    FileMetadata,
    FileShared,
    History,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    MissedMessages,
    Reactions,
    Reconnected,
    Reconnecting,
    RoomInfo,
    Typing,
    safe_name,
)

__all__ = [
    "ChatClient",
    "ChatError",
    "ClientOptions",
    "ConnectionLost",
    "DecryptError",
    "ErrorEvent",
    "Event",
    "EventsDropped",
    "FileDeleted",
    "FileMetadata",
    "FileShared",
    "History",
    "Joined",
    "Left",
    "Message",
    "MessageDeleted",
    "MessageEdited",
    "MissedMessages",
    "Reactions",
    "Reconnected",
    "Reconnecting",
    "RoomInfo",
    "Typing",
    "decrypt",
    "encrypt",
    "safe_name",
    "socket_url",
]
