"""Redis clients of the server's own, beside the channel layer's connections: the
join-failure counters (chat/ratelimit.py) and the health check (chat/views.py)."""

import functools
from collections.abc import Callable

import redis.asyncio as redis
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.utils.module_loading import import_string
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff


def layer_hosts() -> list[str | dict]:
    """The Redis hosts of the default channel layer: URLs, or channels_redis's host
    dicts (`address` or `sentinels`); empty when the layer is not channels_redis's (or
    chat.layers.RedisChannelLayer, its subclass)."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if not is_redis(layer.get("BACKEND", "")):
        return []
    return list(layer.get("CONFIG", {}).get("hosts", ["redis://127.0.0.1:6379/0"]))


def on_layer_redis[T](made: dict[tuple[str, str], T], make: Callable[[str | dict, str], T]) -> T | None:
    """The server's own Redis counters where they live, the default channel layer's first
    host and its prefix: `make(host, prefix)`, made once per place and kept in `made`;
    None when the layer is not Redis (count in the process)."""
    hosts = layer_hosts()
    if not hosts:
        return None
    host, prefix = hosts[0], settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    place = (repr(host), prefix)
    if place not in made:
        made[place] = make(host, prefix)
    return made[place]


@functools.cache
def is_redis(backend: str) -> bool:
    return bool(backend) and issubclass(import_string(backend), RedisChannelLayer)


# Connections one client of ours opens at most (a process has one per loop and purpose).
MAX_CONNECTIONS = 32


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """The primary's connections through Sentinel, at most `max_connections`, callers
    past it waiting their turn (redis-py's own Sentinel pool fails them past 100)."""


def client(host: str | dict, *, timeout: float) -> redis.Redis:
    """A client of its own for one layer host. Connecting and each call fail after
    `timeout` seconds, once: redis-py's default retries (three, with backoff of up to
    10 s each) would make a hung Redis look like a slow one."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    if isinstance(host, dict) and "sentinels" in host:
        sentinel = Sentinel(host["sentinels"], sentinel_kwargs={"socket_timeout": timeout})
        return sentinel.master_for(
            host["master_name"],
            connection_pool_class=BlockingSentinelPool,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            **options,
        )
    url = host if isinstance(host, str) else host["address"]
    # Callers past MAX_CONNECTIONS wait (up to `timeout`) for a connection instead of
    # failing: redis-py's default pool raises "Too many connections" past 100, and 150
    # joins arriving together would get `server_error`.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=timeout, **options
    )
    return redis.Redis(connection_pool=pool)
