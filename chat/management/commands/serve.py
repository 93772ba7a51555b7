"""The production server process: daphne with the transport limit from settings."""

from channels.routing import get_default_application
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSockets in production (daphne). The WebSocket frame limit is "
        "WS_MAX_FRAME, which follows FILES_MAX_SIZE. Run one per core behind a proxy."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="Take the client address from X-Forwarded-For (only behind a trusted proxy).",
        )
        parser.add_argument("--ping-interval", type=int, default=20)
        parser.add_argument("--ping-timeout", type=int, default=30)

    def handle(self, *args, **options) -> None:
        endpoints = build_endpoint_description_strings(host=options["host"], port=options["port"])
        self.stdout.write(
            f"Serving on {options['host']}:{options['port']} "
            f"(WebSocket frames up to {settings.WS_MAX_FRAME} bytes)"
        )
        Server(
            application=get_default_application(),
            endpoints=endpoints,
            websocket_max_message_size=settings.WS_MAX_FRAME,
            websocket_max_frame_size=settings.WS_MAX_FRAME,
            ping_interval=options["ping_interval"],
            ping_timeout=options["ping_timeout"],
            proxy_forwarded_address_header="X-Forwarded-For" if options["proxy_headers"] else None,
            proxy_forwarded_port_header="X-Forwarded-Port" if options["proxy_headers"] else None,
            proxy_forwarded_proto_header="X-Forwarded-Proto" if options["proxy_headers"] else None,
            action_logger=None,
        ).run()
