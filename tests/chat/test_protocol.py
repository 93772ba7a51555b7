"""The protocol parser: every frame gives a command or a ProtocolError with its code."""

import base64
import json

import pytest

from chat import protocol
from chat.errors import ErrorCode, ProtocolError
from files import validation

CIPHERTEXT = base64.b64encode(b"\x00" * 40).decode()


def code_of(text: str) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_client_message(text)
    return info.value.code


def frame(**fields) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '"CreateRoom"',
        "42",
        "null",
        '{"type": "GetMembers", "x": NaN}',
        '{"type": "GetMembers", "x": Infinity}',
        '{"type": "GetMembers", "x": -Infinity}',
        '\ufeff{"type": "GetMembers"}',
        '{"type": "GetMembers", "x": "\\ud800"}',
        '{"type": "GetMembers", "\\udc00": 1}',
        '{"type": "GetMembers", "x": 123456789012345678901}',
        '{"type": "GetMembers", "x": 1e999}',
        '{"type": "GetMembers", "x": ' + "[" * 32 + "]" * 32 + "}",
        "[" * 100000 + "]" * 100000,
        "",
    ],
)
def test_malformed_frames_are_invalid_json(text):
    """Anything outside strict RFC 8259 objects is invalid_json."""
    assert code_of(text) == ErrorCode.INVALID_JSON


def test_limits_of_strict_json_that_still_pass():
    """31 nested levels inside the frame, 20-digit integers and surrogate pairs pass."""
    nested = "[" * 31 + "]" * 31
    assert isinstance(
        protocol.parse_client_message('{"type":"GetMembers","x":' + nested + "}"), protocol.GetMembers
    )
    assert isinstance(
        protocol.parse_client_message('{"type":"GetMembers","x":-12345678901234567890}'), protocol.GetMembers
    )
    assert isinstance(
        protocol.parse_client_message('{"type":"GetMembers","x":"\\ud83d\\ude00"}'), protocol.GetMembers
    )


def test_duplicate_keys_last_one_counts():
    command = protocol.parse_client_message(
        '{"type":"ChatMessage","content":1,"content":"' + CIPHERTEXT + '"}'
    )
    assert command == protocol.ChatMessage(content=CIPHERTEXT)


@pytest.mark.parametrize(
    "text", ['{"a": 1}', '{"type": 5}', '{"type": null}', '{"type": "Nope"}', '{"type": "room.event"}']
)
def test_missing_or_unknown_type_is_unknown_type(text):
    assert code_of(text) == ErrorCode.UNKNOWN_TYPE


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "CreateRoom", "description": ""},
        {"type": "CreateRoom", "name": "Room"},
        {"type": "CreateRoom", "name": 5, "description": ""},
        {"type": "CreateRoom", "name": "", "description": ""},
        {"type": "CreateRoom", "name": "   ", "description": ""},
        {"type": "CreateRoom", "name": "x" * 101, "description": ""},
        {"type": "CreateRoom", "name": "Room", "description": "d" * 1001},
        {"type": "CreateRoom", "name": "Room", "description": "nul\x00"},  # PostgreSQL's text cannot hold it
        {"type": "CreateRoom", "name": "Room", "description": "", "password": 5},
        {"type": "CreateRoom", "name": "Room", "description": "", "owner_name": "a\u202eb"},
        {"type": "JoinRoom", "join_key": "k", "name": "x" * 51},
        {"type": "JoinRoom", "join_key": "k", "name": "bad\x07name"},
        {"type": "JoinRoom", "join_key": "k", "name": "bad\u0085name"},
        {"type": "JoinRoom", "join_key": "k", "name": "zero\u200bwidth"},
        {"type": "JoinRoom", "join_key": "k", "name": "\u00ad"},
        {"type": "JoinRoom", "join_key": "k", "name": "\u200d"},
        {"type": "JoinRoom", "join_key": "k", "name": "ok", "since": "3"},
        {"type": "JoinRoom", "join_key": "k", "name": "ok", "since": True},
        {"type": "JoinRoom", "join_key": "k", "name": "ok", "since": 1.5},
        {"type": "JoinRoom", "join_key": 7, "name": "ok"},
        {"type": "JoinRoom", "join_key": "k", "name": "ok", "owner_token": 1},
        {"type": "ChatMessage"},
        {"type": "ChatMessage", "content": 1},
        {"type": "ChatMessage", "content": "hello, plaintext"},
        {"type": "ChatMessage", "content": "[File: x](/files/1)"},
        {"type": "ChatMessage", "content": base64.b64encode(b"short").decode()},
        {"type": "ChatMessage", "content": CIPHERTEXT[:-2]},
        {"type": "ChatMessage", "content": CIPHERTEXT, "reply_to": "3"},
        {"type": "ChatMessage", "content": CIPHERTEXT, "reply_to": True},
        {"type": "ChatMessage", "content": CIPHERTEXT, "reply_to": 2**63},
        {"type": "EditMessage", "content": CIPHERTEXT},
        {"type": "EditMessage", "id": "1", "content": CIPHERTEXT},
        {"type": "EditMessage", "id": 1},
        {"type": "EditMessage", "id": 1, "content": "plain words"},
        {"type": "DeleteMessage"},
        {"type": "DeleteMessage", "id": None},
        {"type": "DeleteMessage", "id": False},
        {"type": "GetHistory"},
        {"type": "GetHistory", "before": None},
        {"type": "GetHistory", "before": "10"},
        {"type": "GetHistory", "before": 10.5},
        {"type": "GetHistory", "before": 10, "limit": 0},
        {"type": "GetHistory", "before": 10, "limit": 101},
        {"type": "GetHistory", "before": 10, "limit": "5"},
        {"type": "GetHistory", "before": 10, "limit": True},
        {"type": "UploadFile", "name": "a\x00b", "mime_type": "text/plain", "content": ""},
        {"type": "UploadFile", "name": "n" * 256, "mime_type": "text/plain", "content": ""},
        {"type": "GetFile"},
        {"type": "DeleteFile", "file_id": None},
    ],
)
def test_bad_fields_are_invalid_field(fields):
    assert code_of(frame(**fields)) == ErrorCode.INVALID_FIELD


def test_conversation_fields_are_read():
    assert protocol.parse_client_message(frame(type="ChatMessage", content=CIPHERTEXT, reply_to=7)) == (
        protocol.ChatMessage(content=CIPHERTEXT, reply_to=7)
    )
    assert (
        protocol.parse_client_message(frame(type="ChatMessage", content=CIPHERTEXT, reply_to=None)).reply_to
        is None
    )
    assert protocol.parse_client_message(frame(type="GetHistory", before=10)) == protocol.GetHistory(
        before=10, limit=50
    )
    assert protocol.parse_client_message(frame(type="GetHistory", before=10, limit=100)).limit == 100
    assert protocol.parse_client_message(frame(type="GetHistory", before=10, limit=None)).limit == 50


def test_names_are_normalised_and_trimmed():
    command = protocol.parse_client_message(
        frame(type="JoinRoom", join_key="k", name="  Cafe\u0301\u3000", password="")
    )
    assert command == protocol.JoinRoom(
        join_key="k", password=None, name="Caf\u00e9", since=None, owner_token=None
    )


def test_emoji_with_zero_width_joiner_is_a_valid_name():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    command = protocol.parse_client_message(frame(type="JoinRoom", join_key="k", name=family))
    assert command.name == family


def test_create_room_defaults():
    command = protocol.parse_client_message(frame(type="CreateRoom", name="R", description="", password=None))
    assert command == protocol.CreateRoom(name="R", description="", password=None, owner_name="Owner")


def test_null_optional_fields_mean_absent():
    command = protocol.parse_client_message(
        frame(type="JoinRoom", join_key="k", name="n", since=None, owner_token=None, password=None)
    )
    assert (command.since, command.owner_token, command.password) == (None, None, None)


HIGHEST, LOWEST = 2**63 - 1, -(2**63)


@pytest.mark.parametrize(
    ("since", "read_as"),
    [(HIGHEST, HIGHEST), (2**63, HIGHEST), (10**19, HIGHEST), (LOWEST, LOWEST), (-(10**19), LOWEST)],
)
def test_a_since_past_the_database_ids_is_above_or_below_every_id(since, read_as):
    """PROTOCOL.md: a `since` above every id gives no History and is never an error."""
    command = protocol.parse_client_message(frame(type="JoinRoom", join_key="k", name="n", since=since))
    assert command.since == read_as


def test_unknown_extra_fields_are_ignored():
    assert protocol.parse_client_message(frame(type="GetMembers", extra={"a": 1})) == protocol.GetMembers()


def test_name_key_is_casefold_of_nfc():
    assert protocol.name_key("STRASSE") == protocol.name_key("straße")
    assert protocol.name_key("Cafe\u0301") == protocol.name_key("CAFÉ")


def test_server_messages_encode_compactly_without_escaping_unicode():
    text = protocol.encode(protocol.participant_joined_message("Zoë"))
    assert text == '{"type":"ParticipantJoined","name":"Zoë"}'


# --- Frames with one long string (uploads) take a shortcut around the JSON decoder ---

BIG = "QUJD" * 20000  # 80,000 characters, over protocol.LARGE_STRING


def outcome(parse, text):
    try:
        return parse(text)
    except protocol.ProtocolError as exc:
        return exc.code


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"type": "UploadFile", "name": "a.zip", "mime_type": "application/zip", "content": BIG}),
        json.dumps({"content": BIG, "type": "UploadFile", "name": "a.zip", "mime_type": "x"}),
        json.dumps(
            {
                "type": "UploadFile",
                "name": 'q"uote\\\\',
                "mime_type": "x",
                "content": BIG,
                "n": [1, {"a": "b"}],
            }
        ),
        json.dumps({"type": "UploadFile", "name": BIG, "mime_type": "x", "content": "QUJD"}),  # big name
        json.dumps({"type": "UploadFile", "name": "a", "mime_type": "x", "content": BIG, "content": "QUJD"}),  # noqa: F601
        '{"type": "UploadFile", "name": "a", "mime_type": "x", "content": "' + BIG + '", "content": "QUJD"}',
        json.dumps({"type": "ChatMessage", "content": BIG}),
        json.dumps({"type": "Nope", "pad": BIG}),
        json.dumps({"type": "UploadFile", "name": "a", "mime_type": "x", "content": BIG})[:-1],  # truncated
        '{"type": "UploadFile", "name": "a", "mime_type": "x", "content": "' + BIG + '", "x": NaN}',
        '{"type": "UploadFile", "name": "a", "mime_type": "x", "content": "' + BIG + '\\n"}',  # escape in it
        '["UploadFile", "' + BIG + '"]',
        '{"type": "UploadFile", "name": "a", "mime_type": "x", "content": "' + BIG + '"' + "]" * 40,
        '{"type": "UploadFile", "name": "a", "mime_type": "x", "content": '
        + "[" * 40
        + '"'
        + BIG
        + '"'
        + "]" * 40
        + "}",
        '"' * 5000 + BIG,
    ],
)
def test_large_frames_parse_exactly_as_the_full_decoder_does(text):
    fast, full = outcome(protocol.parse_large_frame, text), outcome(protocol.parse_client_message, text)
    if isinstance(full, protocol.UploadFile):
        assert isinstance(fast, protocol.UploadFile) and (fast.name, fast.mime_type, fast.content) == (
            full.name,
            full.mime_type,
            full.content,
        )
    else:
        assert fast == full


def test_a_large_upload_skips_the_decoder_and_keeps_its_content():
    text = json.dumps({"type": "UploadFile", "name": "a.zip", "mime_type": "application/zip", "content": BIG})
    command = protocol.parse_large_frame(text)
    assert command.large and command.content == BIG and command.name == "a.zip"


def test_a_large_frame_of_many_tiny_values_is_refused_before_it_is_decoded(monkeypatch):
    """14 MB of `{},` decoded made 320 MiB of objects and held the interpreter 2.5 s:
    past MAX_FRAME_VALUES a large frame is invalid_json, the decoder never runs."""
    wide = '{"type": "GetMembers", "x": [' + "{}," * 200_000 + "{}]}"
    decoded = []
    monkeypatch.setattr(protocol, "decode_frame", lambda text: decoded.append(text) or {})
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_large_frame(wide)
    assert refused.value.code == "invalid_json" and not decoded
    monkeypatch.undo()
    # A thousand commas in a description (and 70 KiB of padding) are nowhere near it.
    busy = json.dumps({"type": "GetMembers", "x": [1] * 1000, "pad": "," * 1000 + BIG})
    assert isinstance(protocol.parse_large_frame(busy), protocol.GetMembers)


@pytest.mark.parametrize(
    "values",
    [
        ",".join(["1"] * 30_000),  # numbers
        ",".join(f'{{"k{n}": 1}}' for n in range(4_000)),  # keys
        ",".join(["[]"] * 20_000),  # containers
    ],
)
def test_a_frame_on_the_loop_of_many_values_is_refused_before_it_is_decoded(values, monkeypatch):
    """A frame under LARGE_STRING is decoded on the event loop: 64 KiB of numbers, keys or
    lists took it 10-23 ms each (a reviewer's socket sent 56 a second: 69 % of a core, and
    chat elsewhere waited 300 ms). Past MAX_FRAME_VALUES they are refused undecoded."""
    frame = '{"type": "ChatMessage", "x": [' + values + "]}"
    assert protocol.COUNT_VALUES_FROM < len(frame) <= protocol.LARGE_STRING
    decoded = []
    monkeypatch.setattr(protocol, "decode_frame", lambda text: decoded.append(text) or {})
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_client_message(frame)
    assert refused.value.code == "invalid_json" and not decoded


def test_a_long_chat_message_and_a_description_of_commas_are_within_the_values():
    content = base64.b64encode(bytes(48 * 1024)).decode()  # 64 KiB of base64: no value at all
    assert isinstance(protocol.parse_client_message(json.dumps({"type": "ChatMessage", "content": content})),
                      protocol.ChatMessage)  # fmt: skip
    create = {"type": "CreateRoom", "name": "R", "description": ",:" * 500, "password": "pw" * 3000}
    assert isinstance(protocol.parse_client_message(json.dumps(create)), protocol.CreateRoom)


@pytest.mark.parametrize("bad", ["\x00", "\x1f", "\ud800"])
def test_a_set_aside_string_with_what_json_forbids_is_invalid_json(bad):
    protocol.check_large_string(BIG)
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.check_large_string(BIG + bad)
    assert caught.value.code == "invalid_json"


VALID_40 = base64.b64encode(bytes(range(40))).decode()  # 40 bytes: "...Jyg=" (one pad)


@pytest.mark.parametrize(
    "text",
    [
        VALID_40[:-2] + "h=",  # stray bits in the last quantum
        VALID_40 + "\n",  # whitespace
        " " + VALID_40[1:],
        VALID_40[:-1],  # not a multiple of 4
        VALID_40[:8] + "=" + VALID_40[9:],  # padding inside
        VALID_40 + "====",  # padding beyond the end
        VALID_40.replace("/", "_").replace("+", "-")
        if "/" in VALID_40
        else VALID_40[:-4] + "-_-_",  # urlsafe
        VALID_40[:-4] + "QUé=",  # not ASCII
    ],
)
def test_chat_content_and_uploads_follow_one_base64_rule(text):
    """PROTOCOL.md's "standard base64", strictly, for a ChatMessage as for an upload:
    each text is refused `invalid_field` on `content` by both."""
    with pytest.raises(ProtocolError) as chat:
        protocol.parse_client_message(json.dumps({"type": "ChatMessage", "content": text}))
    with pytest.raises(ProtocolError) as upload:
        validation.decode_base64(text)
    assert chat.value.code == upload.value.code == ErrorCode.INVALID_FIELD
    assert chat.value.message.startswith("content: ") and upload.value.message.startswith("content: ")


def test_base64_decodes_in_slices_calling_pause_between_them():
    data = bytes(range(256)) * 2000  # 512,000 bytes: several 128 KiB slices of base64
    pauses = []
    assert (
        protocol.decode_base64(base64.b64encode(data).decode(), "content", lambda: pauses.append(1)) == data
    )
    assert len(pauses) == -(-len(base64.b64encode(data)) // (128 * 1024))
