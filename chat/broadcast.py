"""Room broadcasts: the message is encoded to JSON once, then fanned out as text."""

from typing import Any

from chat import protocol

EVENT_TYPE = "room.event"


async def to_room(layer: Any, group: str, message: dict, *, exclude: str | None = None) -> None:
    """Send a server message to everyone in `group` but the channel `exclude`."""
    await layer.group_send(
        group,
        {"type": EVENT_TYPE, "group": group, "text": protocol.encode(message), "exclude": exclude},
    )
