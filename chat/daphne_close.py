"""`runserver` (daphne) sends the protocol's close codes too, and answers a refused
handshake with its HTTP status.

daphne closes a socket through autobahn's `sendClose`, which lets an application send
only 1000 and 3000-4999 and raises for the rest: a consumer's close with 1008 (abuse,
PROTOCOL.md's Limits), 1009 or 1013 then never reached the client, and the socket
stayed open. Codes a server may send by RFC 6455 go out as the close frame itself,
exactly as autobahn writes it for the allowed ones.

daphne knows no ASGI denial response (`websocket.http.response`): every refused
handshake was a 403, so a socket opened on a wrong path (chat.security.no_such_path)
sent its developer looking for an Origin problem. daphne now offers the extension and
answers with the status the application gives (autobahn sends the status line alone,
without the body or headers). `manage.py serve` (uvicorn) does all of this itself.
"""

from http import HTTPStatus
from typing import Any

# Close codes RFC 6455 (section 7.4.1) lets an endpoint send itself.
SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def close_code_sendable(code: int) -> bool:
    return code in SENDABLE or 3000 <= code <= 4999


def server_close(protocol, code: int | None = None) -> None:
    """daphne's `WebSocketProtocol.serverClose`, for every code a server may send."""
    code = 1000 if code is None else code
    if code == 1000 or 3000 <= code <= 4999:
        protocol.sendClose(code=code)
    elif close_code_sendable(code):
        protocol.sendCloseFrame(code=code, isReply=False)
    else:
        raise ValueError(f"close code {code} may not be sent")


DENIAL = "websocket.http.response"


def with_denial_response(create_application):
    """daphne's `Server.create_application`, offering a socket's application the denial
    response in its scope."""

    def create(server: Any, protocol: Any, scope: dict) -> Any:
        if scope.get("type") == "websocket":
            scope["extensions"] = {**(scope.get("extensions") or {}), DENIAL: {}}
        return create_application(server, protocol, scope)

    return create


def with_denial_replies(handle_reply):
    """daphne's `WebSocketProtocol.handle_reply`, reading a denial response before the
    handshake: the status from its start, the answer sent at its last body."""

    def handle(protocol: Any, message: dict) -> None:
        kind = message.get("type")
        if kind == f"{DENIAL}.start" and protocol.state == protocol.STATE_CONNECTING:
            protocol.denial_status = message["status"]
        elif kind == f"{DENIAL}.body" and getattr(protocol, "denial_status", None):
            if not message.get("more_body"):
                server_deny(protocol, protocol.denial_status)
        else:
            handle_reply(protocol, message)

    return handle


def server_deny(protocol: Any, status: int) -> None:
    """daphne's `WebSocketProtocol.serverReject`, with `status` for its 403."""
    from autobahn.websocket.types import ConnectionDeny

    protocol.handshake_deferred.errback(ConnectionDeny(code=status, reason=HTTPStatus(status).phrase))
    del protocol.handshake_deferred
    protocol.server.protocol_disconnected(protocol)
    client = "{}:{}".format(*protocol.client_addr) if protocol.client_addr else None
    protocol.server.log_action("websocket", "rejected", {"path": protocol.request.path, "client": client})


def install() -> None:
    """Called once at start-up (chat/apps.py); harmless where daphne does not serve."""
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return
    if getattr(Server.create_application, "offers_denial", False):
        return
    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol.handle_reply = with_denial_replies(WebSocketProtocol.handle_reply)
    Server.create_application = with_denial_response(Server.create_application)
    Server.create_application.offers_denial = True  # type: ignore[attr-defined]
