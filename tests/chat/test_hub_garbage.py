"""Malformed channel-layer messages reach the hub (a bug, another version, anyone who
can write to Redis): each is logged and skipped; the receive loop carries on (issue 14,
item 9). Over the in-memory layer and Redis."""

import asyncio
import logging

from chat import hub as hub_module
from chat.hub import EVENT_TYPE, Hub, room_group
from chat.outbox import Outbox
from tests.helpers import ROOM_X, FakeSocket, X, no_messages_yet

GARBAGE = [
    {"type": EVENT_TYPE},
    {"type": EVENT_TYPE, "events": "not a list"},
    {"type": EVENT_TYPE, "events": None},
    {"type": "something.else", "x": 1},
    {"type": 7},
    {"no": "type"},
    {"type": EVENT_TYPE, "events": [1, "x", None, [], {}]},
    {
        "type": EVENT_TYPE,
        "events": [{"room": 5, "text": "t"}, {"room": X}, {"room": X, "text": 5}],
    },
    {"type": EVENT_TYPE, "events": [{"room": X, "text": "t", "seq": "1"}]},
    {"type": EVENT_TYPE, "events": [{"room": X, "text": "t", "seq": True}]},
    {"type": EVENT_TYPE, "events": [{"room": X, "text": "t", "exclude": 3}]},
    {"type": EVENT_TYPE, "events": [{"room": X, "text": "t", "close": "4000"}]},
    {"type": EVENT_TYPE, "events": [{"room": X, "text": "t", "participant_id": 3}]},
    {"type": EVENT_TYPE, "events": [{"room": X, "text": "t", "message_id": 1.5}]},
]


def test_room_event_problem_names_what_is_wrong_and_passes_what_publish_sends():
    room_event_problem = hub_module.room_event_problem
    assert room_event_problem({"room": "g", "text": "t", "exclude": None, "message_id": 4, "seq": 2}) is None
    assert room_event_problem({"room": "g", "text": "t", "participant_id": 3, "joined": False}) is None
    assert room_event_problem({"room": "g", "text": "t", "only": "abc", "close": 4001}) is None
    assert "seq" in room_event_problem({"room": "g", "text": "t", "seq": "1"})
    assert "joined" in room_event_problem({"room": "g", "text": "t", "participant_id": 3})
    assert "not an object" in room_event_problem([1])
    # The log line never carries the text (ciphertext, but still: shapes only).
    assert "secret" not in room_event_problem({"room": 1, "text": "secret"})


async def test_malformed_layer_messages_are_skipped_and_the_receive_carries_on(layer, settings, caplog):
    settings.HUB_WATCHDOG_INTERVAL = 60  # no restart hides a receive loop that died
    hub = Hub()
    hub.position = no_messages_yet
    socket = FakeSocket()
    await hub.join(ROOM_X, Outbox(socket.send, socket.close))
    receiver = hub.receiver
    caplog.set_level(logging.ERROR, logger="chat.hub")
    for garbage in GARBAGE:
        await hub.layer.group_send(room_group(X), garbage)
    # A batch with a bad event between good ones: the good ones still arrive, in order.
    batch = [
        {"room": X, "text": "before"},
        {"room": X, "text": 1},
        {"room": X, "text": "after"},
    ]
    await hub.layer.group_send(room_group(X), {"type": EVENT_TYPE, "events": batch})
    for _ in range(100):
        if len(socket.sent) >= 2:
            break
        await asyncio.sleep(0.02)
    assert socket.sent == ["before", "after"]
    assert hub.receiver is receiver and not receiver.done()
    assert caplog.text.count("hub: skipped a malformed") >= len(GARBAGE)
    hub.task.cancel()
    await asyncio.sleep(0)
