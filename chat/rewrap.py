"""Moving room keys from one key-encryption key to the current one (rewrap_room_keys)."""

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import transaction

from chat import keys
from chat.models import Room


class RewrapFailed(Exception):
    """A room key that neither the current nor the old key-encryption key unwraps."""


@dataclass
class RewrapReport:
    rewrapped: int = 0
    current: int = 0

    def line(self) -> str:
        return (
            f"rewrap_room_keys: re-wrapped {self.rewrapped} room key{'s' * (self.rewrapped != 1)}; "
            f"{self.current} already under the current key"
        )


def rewrap_one(room_id, wrapped: str, *, new: AESGCM, old: AESGCM | None) -> str | None:
    """The room key wrapped under `new`, or None when it is under `new` already."""
    try:
        keys.unwrap_with(room_id, wrapped, new)
        return None
    except InvalidTag:
        pass
    if old is None:
        raise RewrapFailed(
            f"room {room_id} is not under the current key and no old key was given "
            "(--old-key-file, or ROOM_KEY_ENCRYPTION_KEY_PREVIOUS); nothing more changed"
        )
    try:
        plain = keys.unwrap_with(room_id, wrapped, old)
    except InvalidTag:
        raise RewrapFailed(
            f"room {room_id} is under neither the current nor the old key; rooms before it in this run "
            "were re-wrapped and stay so (run again with the right old key)"
        ) from None
    return keys.wrap(room_id, plain, new)


def rewrap_all(*, old: AESGCM | None, batch: int = 500) -> RewrapReport:
    """Re-wrap every room's key under the current key-encryption key, `batch` rooms per
    transaction, in primary-key order. Rows are locked while they are rewritten (two runs
    at once wait for each other, and each leaves a row under the current key)."""
    new, report, after = keys.current(), RewrapReport(), None
    while True:
        with transaction.atomic():
            rows = Room.objects.filter(sealed=False).order_by("pk")  # a sealed room has no key
            if after is not None:
                rows = rows.filter(pk__gt=after)
            chunk = list(rows.select_for_update().values_list("pk", "wrapped_key")[:batch])
            for room_id, wrapped in chunk:
                rewrapped = rewrap_one(room_id, wrapped, new=new, old=old)
                if rewrapped is None:
                    report.current += 1
                else:
                    Room.objects.filter(pk=room_id).update(wrapped_key=rewrapped)
                    report.rewrapped += 1
        if len(chunk) < batch:
            return report
        after = chunk[-1][0]
