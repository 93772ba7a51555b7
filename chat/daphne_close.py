"""`runserver` (daphne) sends the protocol's close codes too.

daphne closes a socket through autobahn's `sendClose`, which lets an application send
only 1000 and 3000-4999 and raises for the rest: a consumer's close with 1008 (abuse,
PROTOCOL.md's Limits), 1009 or 1013 then never reached the client, and the socket
stayed open. Codes a server may send by RFC 6455 go out as the close frame itself,
exactly as autobahn writes it for the allowed ones. `manage.py serve` (uvicorn) sends
every code and needs nothing of this.
"""

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


def install() -> None:
    """Called once at start-up (chat/apps.py); harmless where daphne does not serve."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return
    WebSocketProtocol.serverClose = server_close
