"""The production server process: uvicorn, with the transport limit from settings.

uvicorn (uvloop, httptools, the sans-I/O `websockets` protocol) costs about half of
what daphne costs per WebSocket frame on this workload (bench/README.md), so it serves
production; `runserver` stays daphne's, for development. Both take WS_MAX_FRAME.
"""

import ctypes
import gc

import uvicorn
from channels.routing import get_default_application
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections

from chat import runtime
from chat.frame_budget import BudgetedWebSocket
from chat.http_guard import GuardedHttp


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSockets in production (uvicorn). The WebSocket frame limit is "
        "WS_MAX_FRAME, which follows FILES_MAX_SIZE. Run one per core behind a proxy."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="Take the client address from X-Forwarded-For, trusting only --forwarded-allow-ips.",
        )
        parser.add_argument("--forwarded-allow-ips", default="127.0.0.1")
        parser.add_argument("--ping-interval", type=float, default=20.0)
        parser.add_argument("--ping-timeout", type=float, default=20.0)

    def handle(self, *args, **options) -> None:
        # The database's checks too (chat.E002, files.E003: the keys open the rooms and
        # files there), on this thread, which becomes the event loop's: it keeps no
        # connection.
        self.check(tags=[Tags.database], databases=[DEFAULT_DB_ALIAS])
        connections.close_all()
        # Freeze what start-up made (Django, the app: ~10^5 objects) so that the
        # collector's full passes stop walking it: chat p99 went from 10.6-12.7 ms to
        # 8 ms (bench/README.md).
        gc.freeze()
        runtime.tune_collector()
        give_back_large_blocks()
        self.stdout.write(
            f"Serving on {options['host']}:{options['port']} "
            f"(WebSocket frames up to {settings.WS_MAX_FRAME} bytes)"
        )
        config = uvicorn.Config(
            get_default_application(),
            host=options["host"],
            port=options["port"],
            loop="uvloop",
            # httptools, with a deadline for each request head and a bound on open
            # connections per address and per process (chat/http_guard.py).
            http=GuardedHttp,
            # The sans-I/O `websockets` protocol, reading large frames within their
            # budget per address and per process (chat/frame_budget.py).
            ws=BudgetedWebSocket,
            ws_max_size=settings.WS_MAX_FRAME,
            # Content is ciphertext and files are compressed already; deflate would
            # only cost CPU (and compressing secrets beside attacker text is a risk).
            ws_per_message_deflate=False,
            ws_ping_interval=options["ping_interval"],
            ws_ping_timeout=options["ping_timeout"],
            proxy_headers=options["proxy_headers"],
            forwarded_allow_ips=options["forwarded_allow_ips"],
            # Its shutdown event stops the hub once the sockets are closed (config/asgi.py),
            # or once SHUTDOWN_TIMEOUT has passed without them.
            lifespan="on",
            timeout_graceful_shutdown=settings.SHUTDOWN_TIMEOUT,
            # One line per HTTP request, only when asked for (CHAT_ACCESS_LOG).
            access_log=settings.CHAT_ACCESS_LOG,
            log_config=None,
        )
        uvicorn.Server(config).run()


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def give_back_large_blocks() -> None:
    """Keep every block over 1 MiB in a mapping of its own, returned to the system when
    freed. glibc raises that threshold to the largest block freed so far (up to 32 MiB),
    after which each upload's 10-14 MiB buffers come from the heap and their pages stay
    with the process: the uploads attack peaked 43 MiB higher (bench/README.md, "Hostile
    clients"). A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
