"""Redis clients of the server's own, beside the channel layer's connections: the
join-failure counters (chat/ratelimit.py) and the health check (chat/views.py)."""

import redis.asyncio as redis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff


def layer_hosts() -> list[str | dict]:
    """The Redis hosts of the default channel layer: URLs, or channels_redis's host
    dicts (`address` or `sentinels`); empty when the layer is not channels_redis."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if not layer.get("BACKEND", "").startswith("channels_redis"):
        return []
    return list(layer.get("CONFIG", {}).get("hosts", ["redis://127.0.0.1:6379/0"]))


def client(host: str | dict, *, timeout: float) -> redis.Redis:
    """A client of its own for one layer host. Connecting and each call fail after
    `timeout` seconds, once: redis-py's default retries (three, with backoff of up to
    10 s each) would make a hung Redis look like a slow one."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    if isinstance(host, dict) and "sentinels" in host:
        sentinel = Sentinel(host["sentinels"], sentinel_kwargs={"socket_timeout": timeout})
        return sentinel.master_for(host["master_name"], **options)
    url = host if isinstance(host, str) else host["address"]
    return redis.from_url(url, **options)
