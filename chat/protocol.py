"""The wire protocol (../shared/PROTOCOL.md), written down once, in pure code.

`parse_client_message()` turns one text frame into a typed command or raises
`ProtocolError` with the right code; the `*_message()` builders make every server
message as a dict of JSON primitives. Nothing here touches the ORM or Channels.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emoji import EMOJI_DATA, STATUS

from chat.errors import ErrorCode, ProtocolError

MAX_DEPTH = 32
MAX_INT_DIGITS = 20
MIN_CIPHERTEXT_BYTES = 12 + 16  # nonce + GCM tag
# Sealed rooms (PROTOCOL.md, "Sealed rooms"): the key check's bytes, and what every
# upload to a sealed room is called (the real name and type are inside the ciphertext).
KEY_CHECK_BYTES = 16
SEALED_FILE_NAME = "encrypted.bin"
SEALED_FILE_TYPE = "application/octet-stream"
NAME_MAX = 50
ROOM_NAME_MAX = 100
DESCRIPTION_MAX = 1000
FILE_NAME_MAX = 255

_BIDI_CONTROLS = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_INVISIBLE = {0x00AD, 0x200B, 0x2060, 0xFEFF}
_VISIBLE_CATEGORIES = ("L", "N", "P", "S")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Unicode's White_Space property: what names are trimmed of. Python's str.strip() also
# strips U+001C-U+001F (separators Unicode counts as controls, not white space).
UNICODE_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Message ids are the database's BIGINT: a `since` outside it is no id (and would
# overflow the query).
SINCE_MIN, SINCE_MAX = -(2**63), 2**63 - 1
# How the server's file message starts (PROTOCOL.md): client content, base64, never does.
FILE_MESSAGE_PREFIX = "[File: "
# A reaction's emoji: one RGI emoji of at most this many bytes of UTF-8.
EMOJI_MAX_BYTES = 32
FULLY_QUALIFIED = STATUS["fully_qualified"]
# GetHistory's `limit` (PROTOCOL.md, Conversations): 1-100, 50 when absent.
HISTORY_PAGE, HISTORY_PAGE_MAX = 50, 100


# --- Commands ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRoom:
    name: str
    description: str
    password: str | None
    owner_name: str
    sealed: bool = False
    key_check: str | None = None  # only in a sealed room: base64 of 16 bytes, as sent


@dataclass(frozen=True, slots=True)
class JoinRoom:
    join_key: str
    password: str | None
    name: str
    since: int | None
    owner_token: str | None
    participant_token: str | None = None  # comes back as that participant (Conversations)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    content: str
    reply_to: int | None = None  # the id of a message of the same room


@dataclass(frozen=True, slots=True)
class EditMessage:
    id: int
    content: str


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    id: int


@dataclass(frozen=True, slots=True)
class React:
    id: int
    emoji: str
    on: bool


@dataclass(frozen=True, slots=True)
class Typing:
    pass


@dataclass(frozen=True, slots=True)
class GetHistory:
    before: int  # messages with a smaller id, the newest `limit` of them
    limit: int = HISTORY_PAGE


@dataclass(frozen=True, slots=True)
class GetMembers:
    pass


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    pass


@dataclass(frozen=True, slots=True)
class UploadFile:
    name: str
    mime_type: str
    content: str
    # Parsed by `parse_large_frame`: content was not checked as a JSON string; a
    # content that is not base64 must be judged by the full parser (see there).
    large: bool = False


@dataclass(frozen=True, slots=True)
class GetFile:
    file_id: str


@dataclass(frozen=True, slots=True)
class DeleteFile:
    file_id: str


Command = (
    CreateRoom
    | JoinRoom
    | ChatMessage
    | EditMessage
    | DeleteMessage
    | React
    | Typing
    | GetHistory
    | GetMembers
    | LeaveRoom
    | UploadFile
    | GetFile
    | DeleteFile
)


# --- Decoding ------------------------------------------------------------------


def _invalid_json(detail: str = "The frame is not a JSON object.") -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_JSON, detail)


def _reject_constant(name: str) -> Any:
    raise _invalid_json(f"{name} is not JSON.")


def _parse_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _invalid_json("An integer has more than 20 digits.")
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _invalid_json("A number overflows a double.")
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)


def _check_value(value: Any, depth: int) -> None:
    """Walk a decoded value: nesting within MAX_DEPTH, no lone surrogates."""
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            raise _invalid_json("A string holds a lone surrogate.")
    elif isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise _invalid_json("JSON is nested deeper than 32 levels.")
        for key, item in value.items():
            _check_value(key, depth)
            _check_value(item, depth + 1)
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            raise _invalid_json("JSON is nested deeper than 32 levels.")
        for item in value:
            _check_value(item, depth + 1)


def decode_frame(text: str) -> dict[str, Any]:
    """Decode one text frame under PROTOCOL.md's strict JSON rules."""
    try:
        value = _decoder.decode(text)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise _invalid_json() from exc
    if not isinstance(value, dict):
        raise _invalid_json()
    _check_value(value, 1)
    return value


# --- Fields --------------------------------------------------------------------


def _invalid(field: str, why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, f"{field}: {why}")


def _required_str(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise _invalid(field, "a string is required.")
    return value


def _optional_str(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise _invalid(field, "must be a string or null.")
    return value


def _has_visible(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in _VISIBLE_CATEGORIES for ch in text)


def clean_name(value: str, *, field: str, max_length: int) -> str:
    """NFC, trim Unicode whitespace, refuse control/bidi/invisible characters."""
    name = unicodedata.normalize("NFC", value).strip(UNICODE_WHITESPACE)
    if not name:
        raise _invalid(field, "must not be empty.")
    if len(name) > max_length:
        raise _invalid(field, f"at most {max_length} characters.")
    for ch in name:
        code = ord(ch)
        if code in _BIDI_CONTROLS or code in _INVISIBLE or unicodedata.category(ch) == "Cc":
            raise _invalid(field, "holds a control or invisible character.")
    if not _has_visible(name):
        raise _invalid(field, "needs at least one letter, digit, punctuation or symbol.")
    return name


def name_key(name: str) -> str:
    """The form in which participant names are compared for uniqueness."""
    return unicodedata.normalize("NFC", name).casefold()


def clean_file_name(value: str) -> str:
    name = unicodedata.normalize("NFC", value)
    if not 1 <= len(name) <= FILE_NAME_MAX:
        raise _invalid("name", f"1 to {FILE_NAME_MAX} characters.")
    if "\x00" in name:
        raise _invalid("name", "must not hold NUL.")
    if not _has_visible(name):
        raise _invalid("name", "needs at least one letter, digit, punctuation or symbol.")
    return name


def _password(data: dict[str, Any]) -> str | None:
    return _optional_str(data, "password") or None


def _message_id(data: dict[str, Any], field: str) -> int | None:
    """An optional message id: a JSON integer within the database's BIGINT."""
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, "must be an integer message id or null.")
    if not SINCE_MIN <= value <= SINCE_MAX:
        raise _invalid(field, "is not a message id (64-bit integer).")
    return value


def _since(data: dict[str, Any]) -> int | None:
    """`JoinRoom.since`: a JSON integer; past the database's BIGINT it is above (or
    below) every id, which gives no `History` (or all of it), never an error."""
    value = data.get("since")
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, SINCE_MIN), SINCE_MAX)
    return _message_id(data, "since")


def _required_message_id(data: dict[str, Any], field: str) -> int:
    value = _message_id(data, field)
    if value is None:
        raise _invalid(field, "is required: a message id.")
    return value


def _react(data: dict[str, Any]) -> React:
    message_id = _required_message_id(data, "id")
    emoji = _required_str(data, "emoji")
    if len(emoji.encode("utf-8", "surrogatepass")) > EMOJI_MAX_BYTES or not is_rgi_emoji(emoji):
        raise _invalid("emoji", "must be one emoji (an RGI emoji sequence).")
    on = data.get("on")
    if not isinstance(on, bool):
        raise _invalid("on", "must be true (add the reaction) or false (take it back).")
    return React(id=message_id, emoji=emoji, on=on)


def is_rgi_emoji(text: str) -> bool:
    """One fully-qualified emoji of Unicode's list (the `emoji` package's data): what
    Unicode calls an RGI emoji, a skin tone, flag or family sequence included."""
    found = EMOJI_DATA.get(text)
    return found is not None and found["status"] == FULLY_QUALIFIED


def _get_history(data: dict[str, Any]) -> GetHistory:
    before = _required_message_id(data, "before")
    limit = data.get("limit")
    if limit is None:
        return GetHistory(before=before)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_PAGE_MAX:
        raise _invalid("limit", f"must be an integer from 1 to {HISTORY_PAGE_MAX}.")
    return GetHistory(before=before, limit=limit)


def _ciphertext(data: dict[str, Any]) -> str:
    content = _required_str(data, "content")
    raw = decode_base64(content, "content")
    if len(raw) < MIN_CIPHERTEXT_BYTES:
        raise _invalid("content", "ciphertext is shorter than nonce and tag.")
    return content


# --- Base64: the one rule for every base64 field of a client's frames -----------------

# Decoded a slice at a time (a multiple of 4), `pause` called between slices.
_BASE64_SLICE = 128 * 1024
# `check_base64` keeps at most this much decoded at once (a multiple of 4).
_CHECK_SLICE = 1024 * 1024


def decode_base64(text: str, field: str, pause: Callable[[], None] | None = None) -> bytes:
    """PROTOCOL.md's "standard base64" (RFC 4648 section 4), strictly: its alphabet,
    `=` padding only where it belongs, no whitespace, no stray bits; else `invalid_field`
    naming `field`. `pause` runs between slices of a long text (in a worker thread,
    chat/workers.py `let_loop_run`, so the event loop gets the GIL)."""
    try:
        raw = text.encode("ascii")
        if len(raw) % 4:
            raise ValueError("length is not a multiple of 4")
        parts = []
        for start in range(0, len(raw), _BASE64_SLICE):
            piece = raw[start : start + _BASE64_SLICE]
            if b"=" in piece[:-2] or (piece.endswith(b"=") and start + len(piece) < len(raw)):
                raise ValueError("padding inside the data")
            parts.append(binascii.a2b_base64(piece, strict_mode=True))
            if pause is not None:
                pause()
        data = b"".join(parts)
    except (UnicodeEncodeError, ValueError, binascii.Error) as exc:
        raise _invalid(field, "must be standard base64.") from exc
    tail = len(data) % 3 or 3
    if data and base64.b64encode(data[-tail:]) != raw[-4:]:
        raise _invalid(field, "base64 with stray bits.")
    return data


def check_base64(text: str, field: str, pause: Callable[[], None] | None = None) -> None:
    """What `decode_base64` refuses, refused the same way, keeping at most one slice of
    the bytes (an upload answered with a later error is still judged first)."""
    last = max(0, (len(text) - 1) // _CHECK_SLICE * _CHECK_SLICE)
    for start in range(0, last, _CHECK_SLICE):
        piece = text[start : start + _CHECK_SLICE]
        if "=" in piece:
            raise _invalid(field, "must be standard base64.")
        decode_base64(piece, field, pause)
    decode_base64(text[last:], field, pause)


def decoded_size(text: str) -> int:
    """The size base64 `text` decodes to, without decoding it."""
    return len(text) // 4 * 3 - text[-2:].count("=")


def _create_room(data: dict[str, Any]) -> CreateRoom:
    owner_name = _optional_str(data, "owner_name")
    description = unicodedata.normalize("NFC", _required_str(data, "description"))
    if len(description) > DESCRIPTION_MAX:
        raise _invalid("description", f"at most {DESCRIPTION_MAX} characters.")
    if "\x00" in description:  # PostgreSQL's text cannot hold it (names refuse every Cc)
        raise _invalid("description", "must not hold a NUL character.")
    sealed = data.get("sealed")
    if sealed is not None and not isinstance(sealed, bool):
        raise _invalid("sealed", "must be true or false.")
    return CreateRoom(
        name=clean_name(_required_str(data, "name"), field="name", max_length=ROOM_NAME_MAX),
        description=description,
        password=_password(data),
        owner_name=clean_name(
            "Owner" if owner_name is None else owner_name, field="owner_name", max_length=NAME_MAX
        ),
        sealed=bool(sealed),
        key_check=_key_check(data, sealed=bool(sealed)),
    )


def _key_check(data: dict[str, Any], *, sealed: bool) -> str | None:
    """A sealed room's `key_check`: standard base64 of 16 bytes (24 characters ending in
    `==`), kept as sent. A standard room has none (null counts as absent)."""
    key_check = _optional_str(data, "key_check")
    if not sealed:
        if key_check is not None:
            raise _invalid("key_check", "only a sealed room has one (send sealed: true).")
        return None
    if key_check is None:
        raise _invalid("key_check", "a sealed room needs one (PROTOCOL.md, Sealed rooms).")
    if len(key_check) != 24 or len(decode_base64(key_check, "key_check")) != KEY_CHECK_BYTES:
        raise _invalid("key_check", "must be standard base64 of 16 bytes.")
    return key_check


def _join_room(data: dict[str, Any]) -> JoinRoom:
    return JoinRoom(
        join_key=_required_str(data, "join_key"),
        password=_password(data),
        name=clean_name(_required_str(data, "name"), field="name", max_length=NAME_MAX),
        since=_since(data),
        owner_token=_optional_str(data, "owner_token"),
        participant_token=_optional_str(data, "participant_token"),
    )


def _upload_file(data: dict[str, Any]) -> UploadFile:
    return UploadFile(
        name=clean_file_name(_required_str(data, "name")),
        mime_type=_required_str(data, "mime_type"),
        content=_required_str(data, "content"),
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Command]] = {
    "CreateRoom": _create_room,
    "JoinRoom": _join_room,
    "ChatMessage": lambda data: ChatMessage(
        content=_ciphertext(data), reply_to=_message_id(data, "reply_to")
    ),
    "EditMessage": lambda data: EditMessage(id=_required_message_id(data, "id"), content=_ciphertext(data)),
    "DeleteMessage": lambda data: DeleteMessage(id=_required_message_id(data, "id")),
    "React": _react,
    "Typing": lambda data: Typing(),
    "GetHistory": _get_history,
    "GetMembers": lambda data: GetMembers(),
    "LeaveRoom": lambda data: LeaveRoom(),
    "UploadFile": _upload_file,
    "GetFile": lambda data: GetFile(file_id=_required_str(data, "file_id")),
    "DeleteFile": lambda data: DeleteFile(file_id=_required_str(data, "file_id")),
}


def parse_client_message(text: str) -> Command:
    """Called with one text frame; returns its command or raises ProtocolError."""
    if len(text) > COUNT_VALUES_FROM and sum(map(text.count, ",{[:")) > MAX_FRAME_VALUES:
        raise _invalid_json("The frame holds too many JSON values.")
    data = decode_frame(text)
    kind = data.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "Unknown or missing message type.")
    return parser(data)


# A frame's one long string (an upload's base64) is kept out of the JSON decoder: the
# decoder would hold the GIL for the whole string (~15 ms for 10 MiB), stalling the loop.
LARGE_STRING = 64 * 1024
_MAX_QUOTES = 4096
_PLACEHOLDER = f"large-string-{secrets.token_hex(16)}"


def _longest_plain_string(text: str) -> tuple[int, int] | None:
    """(start, end) of the longest string literal without escapes, quotes excluded;
    None if the frame has too many quotes to look."""
    longest, start, inside = None, 0, False
    position = text.find('"')
    for _ in range(_MAX_QUOTES):
        if position == -1:
            return longest
        if not inside:
            start, inside = position + 1, True
        else:
            backslashes = 0
            while text[position - 1 - backslashes] == "\\":
                backslashes += 1
            if backslashes % 2 == 0:
                inside = False
                if longest is None or position - start > longest[1] - longest[0]:
                    longest = (start, position)
        position = text.find('"', position + 1)
    return None


def parse_large_frame(text: str) -> Command:
    """Like `parse_client_message`, for frames carrying one long plain string (an
    upload): the rest is decoded with it replaced by a placeholder. Frames this cannot
    shortcut (no such string, or it is not an UploadFile's content) are decoded in
    full. Call it from a worker thread: it is CPU work on up to WS_MAX_FRAME bytes.

    The long string has no backslash and no quote; it can still hold control
    characters JSON forbids, which the decoder would refuse. Its one use, base64
    content, refuses those as well; chat/actions.py then asks `check_large_string`
    which error it is (`invalid_json` or `invalid_field`), as PROTOCOL.md's order says.
    """
    span = _longest_plain_string(text)
    if span is not None and span[1] - span[0] >= LARGE_STRING and text.find("\\", *span) == -1:
        start, end = span
        try:
            command = parse_client_message(text[:start] + _PLACEHOLDER + text[end:])
        except ProtocolError as exc:
            # Not JSON, or no known type, with any string in that place: final. A field
            # error may be the placeholder's doing: the full decoder decides.
            if exc.code != ErrorCode.INVALID_FIELD:
                raise
        else:
            if isinstance(command, UploadFile) and command.content == _PLACEHOLDER:
                return UploadFile(command.name, command.mime_type, text[start:end], large=True)
    return parse_client_message(text)


# Values a frame may hold (its commas, colons and containers, counted before decoding):
# the decoder builds each as an object, in the event loop for frames up to LARGE_STRING.
# 14 MB of `{},` made 320 MiB of them and held the interpreter for 2.5 s, and a 64 KiB
# frame of keys or numbers took 10-23 ms of the loop, each time. No frame of the protocol
# has more than a few dozen; a description full of commas, about a thousand
# (docs/protocol-notes.md). A frame shorter than COUNT_VALUES_FROM cannot hold many more
# (two characters a value), so a chat message is not counted.
MAX_FRAME_VALUES = 2_500
COUNT_VALUES_FROM = 4 * 1024


_JSON_FORBIDDEN = re.compile("[\x00-\x1f\ud800-\udfff]")


def check_large_string(value: str) -> None:
    """`invalid_json` if the string `parse_large_frame` set aside is not a valid JSON
    string (control characters, lone surrogates; it has no quote or backslash)."""
    if _JSON_FORBIDDEN.search(value):
        raise _invalid_json("A string holds a character JSON does not allow.")


# --- Server messages -------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """Encode a server message once; broadcasts carry the text, not the dict."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z, as every timestamp on the wire."""
    return moment.isoformat().replace("+00:00", "Z")


def error_message(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"type": "Error", "message": message, "code": code.value}


def room_info(
    *,
    room_id: object,
    name: str,
    description: str,
    join_key: str,
    has_password: bool,
    owner: str,
    created_at: datetime,
    sealed: bool,
    key_check: str | None,
) -> dict[str, Any]:
    """`room_info` of RoomCreated and RoomJoined."""
    return {
        "id": str(room_id),
        "name": name,
        "description": description,
        "join_key": join_key,
        "has_password": has_password,
        "owner": owner,
        "created_at": iso(created_at),
        "sealed": sealed,
        "key_check": key_check,
    }


def file_metadata(*, file_id: object, name: str, mime_type: str, size: int, expires_at: datetime) -> dict:
    """`metadata` of FileUploaded and FileContent."""
    return {
        "id": str(file_id),
        "name": name,
        "mime_type": mime_type,
        "size": size,
        "expires_at": iso(expires_at),
    }


def file_message(shown_name: str, file_id: object) -> str:
    """The chat content announcing a file: `[File: NAME](/files/ID)` (PROTOCOL.md)."""
    return f"{FILE_MESSAGE_PREFIX}{shown_name}](/files/{file_id})"


def file_content_frame(metadata: dict, content: str) -> str:
    """The whole `FileContent` frame around `content`, the file's base64, which is
    neither copied into a dict nor scanned again by the encoder (it is plain ASCII)."""
    head = encode({"type": "FileContent", "metadata": metadata})
    return f'{head[:-1]},"content":"{content}"}}'


def room_created_message(
    room_info: dict, encryption_key: str | None, owner_token: str, name: str, participant_token: str
) -> dict:
    """`encryption_key` is None (null) in a sealed room; `name` is the creator's, as stored."""
    return {
        "type": "RoomCreated",
        "room_info": room_info,
        "encryption_key": encryption_key,
        "owner_token": owner_token,
        "name": name,
        "participant_token": participant_token,
    }


def room_joined_message(
    room_info: dict, encryption_key: str | None, participants: list[str], name: str, participant_token: str
) -> dict:
    """`encryption_key` is None (null) in a sealed room; `name` is the joiner's, as stored."""
    return {
        "type": "RoomJoined",
        "room_info": room_info,
        "encryption_key": encryption_key,
        "participants": participants,
        "name": name,
        "participant_token": participant_token,
    }


def message_entry(
    message_id: int,
    sender: str,
    content: str,
    sent_at: datetime,
    reply_to: int | None = None,
    edited_at: datetime | None = None,
    reactions: list[dict] | None = None,
) -> dict:
    """One stored chat message, as `History` lists it (PROTOCOL.md, Conversations)."""
    return {
        **chat_entry(message_id, sender, content, sent_at, reply_to),
        "edited_at": iso(edited_at) if edited_at is not None else None,
        "reactions": reactions or [],
    }


def chat_entry(message_id: int, sender: str, content: str, sent_at: datetime, reply_to: int | None) -> dict:
    return {
        "id": message_id,
        "sender": sender,
        "content": content,
        "sent_at": iso(sent_at),
        "reply_to": reply_to,
    }


def chat_message(
    message_id: int, sender: str, content: str, sent_at: datetime, reply_to: int | None = None
) -> dict:
    return {"type": "ChatMessage", **chat_entry(message_id, sender, content, sent_at, reply_to)}


def reactions_message(message_id: int, reactions: list[dict]) -> dict:
    """A message's whole reaction state: [{emoji, names}], the first emoji first."""
    return {"type": "Reactions", "id": message_id, "reactions": reactions}


def typing_message(name: str) -> dict:
    return {"type": "Typing", "name": name}


def message_edited_message(message_id: int, content: str, edited_at: datetime) -> dict:
    return {"type": "MessageEdited", "id": message_id, "content": content, "edited_at": iso(edited_at)}


def history_message(messages: list[dict], before: int | None = None) -> dict:
    """The join's History, or (`before`) a page of older messages asked by GetHistory."""
    if before is None:
        return {"type": "History", "messages": messages}
    return {"type": "History", "messages": messages, "before": before}


def history_parts(messages: list[dict], before: int | None = None) -> Iterator[str]:
    """`encode(history_message(messages, before))` in pieces, one message each: a History
    of CHAT_HISTORY_LIMIT large messages (~6 MB) is encoded between other work on the
    loop instead of in one 20 ms block (`actions.history_frame` yields between pieces)."""
    empty = encode(history_message([], before))
    at = empty.index('"messages":[]') + len('"messages":[')
    yield empty[:at]
    for number, message in enumerate(messages):
        yield ("," if number else "") + encode(message)
    yield empty[at:]


def members_message(participants: list[str]) -> dict:
    return {"type": "Members", "participants": participants}


def participant_joined_message(name: str) -> dict:
    return {"type": "ParticipantJoined", "name": name}


def file_uploaded_message(metadata: dict) -> dict:
    return {"type": "FileUploaded", "metadata": metadata}


def message_deleted_message(message_id: int) -> dict:
    """Its author, an owner (PROTOCOL.md, Conversations) or an admin deleted a message."""
    return {"type": "MessageDeleted", "id": message_id}


def file_deleted_message(file_id: str) -> dict:
    return {"type": "FileDeleted", "file_id": file_id}


def participant_left_message(name: str) -> dict:
    return {"type": "ParticipantLeft", "name": name}
