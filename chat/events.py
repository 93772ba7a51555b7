"""Structured operational log lines: `event=NAME key=value ...` on the `chat.events`
logger, one per connection opened or closed, room created or joined, error answered,
rate limit tripped. Never message content, keys, passwords, tokens or session ids:
only ids, codes, counts and the client address."""

import logging

log = logging.getLogger("chat.events")


def event(name: str, **fields: object) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("event=%s %s", name, " ".join(f"{key}={value}" for key, value in fields.items()))
