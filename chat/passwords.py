"""Room passwords: Argon2id through Django's hasher framework.

Room passwords guard a join key that is itself 128 random bits, so the hash only has
to resist offline guessing of a leaked database. Argon2id is memory-hard (GPUs gain
little), and OWASP's minimum profile m=9 MiB, t=4, p=1 verifies in about 20 ms of
one core; argon2-cffi releases the GIL while it works, so checks run in low-priority
threads beside the event loop and the database thread. PBKDF2 at Django's default
1,000,000 iterations costs ~0.24 s per check, which caps joins at ~8/s.
"""

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher, make_password

from chat.workers import Workers


class RoomPasswordHasher(Argon2PasswordHasher):
    """Argon2id with parameters from settings, read per use so tests can tune them."""

    parallelism = 1

    @property
    def time_cost(self) -> int:  # type: ignore[override]
        return settings.ROOM_PASSWORD_ARGON2_TIME_COST

    @property
    def memory_cost(self) -> int:  # type: ignore[override]
        return settings.ROOM_PASSWORD_ARGON2_MEMORY_KIB


def password_hash(password: str) -> str:
    """The slow half of creating a room with a password; run it with `off_loop`."""
    return make_password(password, hasher=RoomPasswordHasher())


def password_matches(password: str | None, encoded: str) -> bool:
    """Run it with `off_loop`. A room without a password lets anyone in."""
    if not encoded:
        return True
    if not password:
        return False
    return RoomPasswordHasher().verify(password, encoded)


hashing = Workers("password-hash", "PASSWORD_HASH_THREADS", "PASSWORD_HASH_QUEUE")


async def off_loop(function, *args):
    """Run a password function in the low-priority hashing threads
    (PASSWORD_HASH_THREADS of them), never on the loop or the database thread."""
    return await hashing.run(function, *args)


def busy() -> bool:
    """Whether the hashing threads' queue would refuse this frame's work now."""
    return hashing.full()
