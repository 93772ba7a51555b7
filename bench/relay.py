"""The yardstick of issue 17: a plain `websockets` relay that speaks enough of
../shared/PROTOCOL.md for bench/loadgen.py (CreateRoom, JoinRoom, ChatMessage,
GetMembers, LeaveRoom), stores nothing and broadcasts each message to its room, encoded
once. No validation, no limits, no database, no channel layer: what a message costs with
none of the server's work, on the same event loop library and the same machine.

    .venv/bin/python bench/relay.py --port 8200 &
    .venv/bin/python bench/loadgen.py --url ws://127.0.0.1:8200/ws/ soak --server-pid $!

Not a server for people: it trusts every frame.
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve


@dataclass
class Room:
    info: dict
    key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    members: dict[ServerConnection, str] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))


ROOMS: dict[str, Room] = {}


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_room(frame: dict) -> Room:
    join_key = secrets.token_urlsafe(16)
    info = {
        "id": secrets.token_hex(16),
        "name": frame.get("name", ""),
        "description": frame.get("description", ""),
        "join_key": join_key,
        "has_password": False,
        "owner": frame.get("owner_name", "Owner"),
        "created_at": now(),
        "sealed": False,
        "key_check": None,
    }
    ROOMS[join_key] = room = Room(info)
    return room


async def handle(socket: ServerConnection) -> None:
    room: Room | None = None
    name = ""
    try:
        async for raw in socket:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "ChatMessage" and room is not None:
                message = {"type": "ChatMessage", "id": next(room.ids), "sender": name}
                message |= {"content": frame["content"], "sent_at": now()}
                broadcast(room.members, json.dumps(message))
            elif kind in ("CreateRoom", "JoinRoom") and room is None:
                room = new_room(frame) if kind == "CreateRoom" else ROOMS.get(frame.get("join_key", ""))
                if room is None:
                    await socket.send(json.dumps({"type": "Error", "code": "room_not_found", "message": ""}))
                    continue
                name = frame.get("owner_name", "Owner") if kind == "CreateRoom" else frame["name"]
                broadcast(room.members, json.dumps({"type": "ParticipantJoined", "name": name}))
                room.members[socket] = name
                reply = {"room_info": room.info, "encryption_key": room.key, "name": name}
                if kind == "CreateRoom":
                    reply |= {"type": "RoomCreated", "owner_token": secrets.token_urlsafe(32)}
                else:
                    reply |= {"type": "RoomJoined", "participants": list(room.members.values())}
                await socket.send(json.dumps(reply))
            elif kind == "GetMembers" and room is not None:
                members = list(room.members.values())
                await socket.send(json.dumps({"type": "Members", "participants": members}))
            elif kind == "LeaveRoom" and room is not None:
                leave(room, socket, name)
                room = None
    finally:
        if room is not None:
            leave(room, socket, name)


def leave(room: Room, socket: ServerConnection, name: str) -> None:
    room.members.pop(socket, None)
    broadcast(room.members, json.dumps({"type": "ParticipantLeft", "name": name}))


async def main(port: int) -> None:
    # No per-message deflate, as `manage.py serve` runs (content is ciphertext).
    async with serve(handle, "127.0.0.1", port, compression=None, max_size=2**20):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8200)
    uvloop.run(main(parser.parse_args().port))
