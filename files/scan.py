"""Malware scanning as a pluggable step: a clamd over its INSTREAM command.

Off unless CLAMAV_SOCKET (a unix socket) or CLAMAV_HOST (with CLAMAV_PORT) is set.
`scan` returns the signature name of an infected file, or None when clean; a scanner
that cannot be reached raises `ScannerUnavailable`, and the upload is refused (fail
closed: an operator who asked for scanning never gets unscanned files).
"""

import socket
import struct

from django.conf import settings

CHUNK = 64 * 1024


class ScannerUnavailable(Exception):
    pass


def enabled() -> bool:
    return bool(settings.CLAMAV_SOCKET or settings.CLAMAV_HOST)


def _connect() -> socket.socket:
    if settings.CLAMAV_SOCKET:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(settings.CLAMAV_TIMEOUT)
        connection.connect(settings.CLAMAV_SOCKET)
        return connection
    return socket.create_connection(
        (settings.CLAMAV_HOST, settings.CLAMAV_PORT), timeout=settings.CLAMAV_TIMEOUT
    )


def scan(data: bytes) -> str | None:
    """Ask clamd about `data` (blocking: run it in a worker thread)."""
    try:
        with _connect() as connection:
            connection.sendall(b"zINSTREAM\0")
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                piece = view[start : start + CHUNK]
                connection.sendall(struct.pack("!I", len(piece)) + piece)
            connection.sendall(struct.pack("!I", 0))
            reply = b""
            while not reply.endswith(b"\0"):
                received = connection.recv(4096)
                if not received:
                    break
                reply += received
    except OSError as exc:
        raise ScannerUnavailable(f"clamd did not answer: {exc}") from exc
    return parse_reply(reply.rstrip(b"\0").decode("utf-8", "replace"))


def parse_reply(reply: str) -> str | None:
    """`stream: OK` -> None; `stream: Eicar-Signature FOUND` -> the signature."""
    status = reply.split(":", 1)[-1].strip()
    if status == "OK":
        return None
    if status.endswith(" FOUND"):
        return status.removesuffix(" FOUND").strip()
    raise ScannerUnavailable(f"clamd answered {reply!r}")
