"""The channel layers the server runs on, each with the few calls the room bus needs
(chat/hub.py) beside Channels' own.

The hub of each process receives on one channel, which is in the layer group of every
room the process has sockets in. A batch of room events is published with one read of
those groups' members (`group_members`) and one message per receiving hub
(`send_many`), and a hub renews or leaves all its groups at once (`group_add_many`,
`group_discard_many`). On Redis each of these is one round trip per Redis server
(a pipeline, or one Lua script), whatever the number of groups and hubs; channels-redis's
own `group_send` takes four round trips per group. `group_add_many` says which groups
the channel was not in (Redis restarted, or its place expired): the hub reads what it
missed there from the database.

`InMemoryChannelLayer` (one process, no services) also fixes two costs of Channels' own:
it walks every channel and group membership on every `receive()` to drop expired
messages (with N sockets in a room, one broadcast cost O(N^2)), and it deep-copies every
message once per recipient. This one walks at most once a second and copies only the
top-level dict (everything the server sends through the layer is strings and numbers,
never mutated).

`RedisChannelLayer` is channels-redis's, sharded by its consistent hashing over the
`hosts` it is given (REDIS_URL may list several servers): each group, and each hub's
channel, lives on one server.
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as ChannelsRedisChannelLayer

logger = logging.getLogger(__name__)

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

    async def group_add_many(self, groups: Iterable[str], channel: str) -> list[str]:
        """Put `channel` in each group (or renew it there); returns the groups it was
        not in (or had expired from), as the Redis layer does."""
        cutoff = time.time() - self.group_expiry
        added = []
        for group in groups:
            if self.groups.get(group, {}).get(channel, cutoff - 1) < cutoff:
                added.append(group)
            await self.group_add(group, channel)
        return added

    async def group_discard_many(self, groups: Iterable[str], channel: str) -> None:
        for group in groups:
            await self.group_discard(group, channel)

    async def group_members(self, groups: Iterable[str]) -> dict[str, list[str]]:
        """Each group's channels (a group nobody is in has none)."""
        cutoff = time.time() - self.group_expiry
        return {
            group: [channel for channel, added in self.groups.get(group, {}).items() if added >= cutoff]
            for group in groups
        }

    async def send_many(self, messages: dict[str, dict]) -> None:
        """Send each channel its message; a full channel misses it (as in group_send)."""
        full = 0
        for channel, message in messages.items():
            try:
                await self.send(channel, message)
            except ChannelFull:
                full += 1
        if full:
            logger.info("%s of %s channels over capacity", full, len(messages))


# Run on each Redis server by `send_many`: for each channel key, drop its expired
# messages, then add the message unless the channel is at its capacity. KEYS are the
# channel keys; ARGV the messages, then the capacities, then the time and the expiry.
SEND_MANY_LUA = """
local over_capacity = 0
local current_time = tonumber(ARGV[#ARGV - 1])
local expiry = tonumber(ARGV[#ARGV])
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, current_time - expiry)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


class ByChannel:
    """Stands in for channels-redis's round-robin choice of a server for channels without
    `!` (a hub's): that channel's server is its consistent hash, set before each call.

    channels-redis sends such a message to any server, and its receive waits on one
    server at a time, five seconds each, so with two servers a message could wait five
    seconds. Its `send` and `receive_single` take `next()` of this before their first
    await, so nothing else runs between setting `index` and its use."""

    index = 0

    def __next__(self) -> int:
        return self.index


class RedisChannelLayer(ChannelsRedisChannelLayer):
    """channels-redis's layer: the same keys, messages and expiries as its own
    `group_add`, `group_send` and `receive`, so either side can be its own; and over
    several servers, a channel without `!` on one of them (`ByChannel`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._send_index_generator = ByChannel()
        self._receive_index_generator = ByChannel()

    async def send(self, channel: str, message: dict) -> None:
        self._send_index_generator.index = self.consistent_hash(channel)
        await super().send(channel, message)

    async def receive_single(self, channel: str) -> tuple[str, dict]:
        self._receive_index_generator.index = self.consistent_hash(channel)
        return await super().receive_single(channel)

    def _by_server(self, names: Iterable[str]) -> dict[int, list[str]]:
        """`names` (groups, or channels without `!`) by the Redis server that holds them."""
        servers: dict[int, list[str]] = defaultdict(list)
        for name in names:
            servers[self.consistent_hash(name)].append(name)
        return servers

    async def _each_server(self, names: Iterable[str], call) -> list:
        """Await `call(index, names)` for each Redis server holding some of `names`,
        all servers at once; the results in server order."""
        servers = self._by_server(names)
        return await asyncio.gather(*(call(index, part) for index, part in sorted(servers.items())))

    async def group_add_many(self, groups: Iterable[str], channel: str) -> list[str]:
        """Put `channel` in each group (or renew it there); returns the groups it was
        not in: Redis forgot it (a restart), or a send dropped it as expired."""
        assert self.require_valid_channel_name(channel), "Channel name not valid"

        async def add(index: int, part: list[str]) -> list[str]:
            pipe = self.connection(index).pipeline(transaction=False)
            now = time.time()
            for group in part:
                key = self._group_key(group)
                pipe.zadd(key, {channel: now})
                pipe.expire(key, self.group_expiry)
            replies = await pipe.execute()
            return [group for n, group in enumerate(part) if replies[2 * n]]

        return [group for added in await self._each_server(groups, add) for group in added]

    async def group_discard_many(self, groups: Iterable[str], channel: str) -> None:
        async def discard(index: int, part: list[str]) -> None:
            pipe = self.connection(index).pipeline(transaction=False)
            for group in part:
                pipe.zrem(self._group_key(group), channel)
            await pipe.execute()

        await self._each_server(groups, discard)

    async def group_members(self, groups: Iterable[str]) -> dict[str, list[str]]:
        """Each group's channels, dropping those not renewed within the group expiry
        (as `group_send` does)."""

        async def read(index: int, part: list[str]) -> dict[str, list[str]]:
            pipe = self.connection(index).pipeline(transaction=False)
            cutoff = int(time.time()) - self.group_expiry
            for group in part:
                key = self._group_key(group)
                pipe.zremrangebyscore(key, min=0, max=cutoff)
                pipe.zrange(key, 0, -1)
            replies = await pipe.execute()
            return {group: [name.decode() for name in replies[2 * n + 1]] for n, group in enumerate(part)}

        members: dict[str, list[str]] = {}
        for found in await self._each_server(groups, read):
            members.update(found)
        return members

    async def send_many(self, messages: dict[str, dict]) -> None:
        """Send each channel (none process-local) its message: one script per Redis
        server. A full channel misses it (as in `group_send`)."""

        async def send(index: int, channels: list[str]) -> int:
            keys = [self.prefix + channel for channel in channels]
            args = [self.serialize(messages[channel]) for channel in channels]
            args += [self.get_capacity(channel) for channel in channels]
            args += [time.time(), self.expiry]
            return await self.connection(index).eval(SEND_MANY_LUA, len(keys), *keys, *args)

        assert not any("!" in channel for channel in messages), "process-local channel"
        full = sum(await self._each_server(messages, send))
        if full:
            logger.info("%s of %s channels over capacity", full, len(messages))
