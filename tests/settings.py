"""The project's settings, with development defaults for a test run."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
# Fast, but still Argon2id, so tests exercise the real hasher.
os.environ.setdefault("ROOM_PASSWORD_ARGON2_MEMORY_KIB", "1024")
os.environ.setdefault("ROOM_PASSWORD_ARGON2_TIME_COST", "1")

from config.settings import *  # noqa: E402,F403

# Tests reach Redis only where they ask for it (the `layer` fixture, the e2e servers):
# a test that does not say which layer it wants gets the in-memory one, whatever
# REDIS_URL says, so no hub task of a test outlives it on a Redis connection.
CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer"}}  # noqa: F405
