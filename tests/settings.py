"""The project's settings, with development defaults for a test run."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
# Fast, but still Argon2id, so tests exercise the real hasher.
os.environ.setdefault("ROOM_PASSWORD_ARGON2_MEMORY_KIB", "1024")
os.environ.setdefault("ROOM_PASSWORD_ARGON2_TIME_COST", "1")

from config.settings import *  # noqa: E402,F403
