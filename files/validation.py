"""What an upload must be before anything is stored: pure functions, no I/O.

Each refusal is a `ProtocolError` with the code PROTOCOL.md gives it.
"""

import unicodedata

from chat import protocol
from chat.errors import ErrorCode, ProtocolError
from chat.workers import let_loop_run

# Never served, whatever FILES_ALLOWED_MIME_TYPES says: a browser would run them.
NEVER_ALLOWED = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml"})

# Leading bytes of each binary type the server can verify; a type that is neither here
# nor text/plain cannot be verified and is refused (chat.W003 warns at start-up).
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
    "application/zip": (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"),
    "application/gzip": (b"\x1f\x8b",),
    "image/bmp": (b"BM",),
    "audio/mpeg": (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"),
    "audio/ogg": (b"OggS",),
}
# Checked inside `bytes_match`: image/webp (RIFF....WEBP) and text/plain (UTF-8, no NUL).
VERIFIABLE = frozenset({*SIGNATURES, "image/webp", "text/plain"})


def decode_base64(text: str) -> bytes:
    """An upload's bytes: PROTOCOL.md's one base64 rule (`protocol.decode_base64`),
    decoded in slices that let the event loop run, and never empty."""
    data = protocol.decode_base64(text, "content", pause=let_loop_run)
    if not data:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "content: an empty file cannot be shared.")
    return data


def normalise_mime(value: str) -> str:
    """`Image/PNG; charset=x` -> `image/png` (PROTOCOL.md: compared without parameters)."""
    return value.split(";", 1)[0].strip().lower()


def mime_allowed(mime_type: str, allowed: list[str]) -> bool:
    return mime_type in allowed and mime_type not in NEVER_ALLOWED and mime_type in VERIFIABLE


def bytes_match(mime_type: str, data: bytes) -> bool:
    """Whether `data` really is of `mime_type` (magic bytes, or UTF-8 for text)."""
    if mime_type == "text/plain":
        if b"\x00" in data:
            return False
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    if mime_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(SIGNATURES.get(mime_type, ()) or (b"\x00never",))


def check_upload(mime_type: str, data: bytes, *, max_size: int, allowed: list[str]) -> None:
    """The checks after the rate limit, in PROTOCOL.md's order: size, then type."""
    if len(data) > max_size:
        raise ProtocolError(ErrorCode.FILE_TOO_LARGE, f"The file is over {max_size} bytes.")
    if not mime_allowed(mime_type, allowed):
        shown = _quoted(mime_type)
        raise ProtocolError(ErrorCode.MIME_NOT_ALLOWED, f"Files of type {shown} are not allowed.")
    if not bytes_match(mime_type, data):
        raise ProtocolError(ErrorCode.MIME_NOT_ALLOWED, f"The file's contents are not {mime_type}.")


# The longest part of a client's `mime_type` an error repeats: the field has no length
# limit of its own (only the frame's), and a reply as large as the frame would pass the
# address's backlog accounting, which counts only large replies (chat/outbox.py).
SHOWN_TYPE = 100


def _quoted(mime_type: str) -> str:
    return repr(mime_type if len(mime_type) <= SHOWN_TYPE else mime_type[:SHOWN_TYPE] + "\u2026")


# The extensions each verifiable type may be shown and served under; the first is the
# one appended to a name that ends in none of them (PROTOCOL.md, the file message).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "text/plain": (".txt",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "application/pdf": (".pdf",),
    "application/zip": (".zip",),
    "application/gzip": (".gz",),
    "image/bmp": (".bmp",),
    "audio/mpeg": (".mp3",),
    "audio/ogg": (".ogg", ".oga"),
    "application/octet-stream": (".bin",),
}
# What never stays in a shown name: the link's own syntax, and every control, format
# (bidirectional overrides and isolates, zero-width and other invisible characters:
# Unicode Cf) or line/paragraph separator character, which could disguise the name.
_LINK_SYNTAX = frozenset("[]()")
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _visible(char: str) -> bool:
    return char not in _LINK_SYNTAX and unicodedata.category(char) not in _HIDDEN_CATEGORIES


def shown_name(name: str, mime_type: str) -> str:
    """The name a file is announced (`[File: ...]`) and served (`Content-Disposition`)
    under: without link syntax or hidden characters, and ending in an extension of its
    verified type (`notes.html` as text/plain is `notes.html.txt`)."""
    shown = "".join(char for char in name if _visible(char))
    extensions = EXTENSIONS.get(mime_type, (".bin",))
    if shown.rstrip().lower().endswith(extensions):
        return shown
    stem = shown.rstrip() or "file"
    return stem + extensions[0]


def file_message(name: str, mime_type: str, file_id: str) -> str:
    return protocol.file_message(shown_name(name, mime_type), file_id)


def check_base64(text: str) -> None:
    """What `decode_base64` refuses, refused the same way, without keeping the bytes:
    for an upload answered with a later error, whose content must still be judged first
    (PROTOCOL.md's order)."""
    protocol.check_base64(text, "content", pause=let_loop_run)
    if not text:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "content: an empty file cannot be shared.")
