"""Channels' in-memory layer, made fit for one busy process.

Channels' `InMemoryChannelLayer` walks every channel and every group membership on
every `receive()` to drop expired messages: with N sockets in a room, one broadcast
costs O(N^2). It also deep-copies every message once per recipient. This layer does
the expiry walk at most once a second and copies only the top-level dict (everything
we send through the layer is strings and numbers, never mutated).
"""

import asyncio
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    _cleaned_at = 0.0

    async def send(self, channel: str, message: dict) -> None:
        """Called for each recipient of a group_send: queue a shallow copy."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull as exc:
            raise ChannelFull(channel) from exc

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_INTERVAL:
            self._cleaned_at = now
            super()._clean_expired()
