"""The WebSocket endpoint: a Channels JSON consumer whose `decode_json` is PROTOCOL.md's
strict decoding and whose `receive_json` runs one action from its table of commands
(config/routing.py: chat/actions.py's and files/actions.py's). Every refused frame is an
`Error` frame; the socket stays open."""

from collections.abc import Callable, Mapping

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chat import actions, protocol
from chat.errors import ErrorCode, ProtocolError
from chat.security import client_address, session_key_of
from chat.workers import file_work, work_owner


class ChatConsumer(AsyncJsonWebsocketConsumer):
    # No channel per socket: rooms reach sockets through this process's hub (chat/hub.py).
    channel_layer_alias = None
    conn: actions.Connection | None = None

    def __init__(self, commands: Mapping[type, actions.Action]) -> None:
        super().__init__()
        self.commands = commands  # each command's type and the action that runs it

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Channels' loop without what serves a channel-layer channel, which this
        consumer has none of: Channels awaits each message in a new task through
        `asyncio.wait` so that it can listen to both; awaiting the one receive in turn
        keeps the same order for less CPU per frame (bench/README.md, issue 17)."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def connect(self) -> None:
        """Called when the handshake has passed the origin check."""
        self.conn = actions.open_connection(
            self.send_text,
            self.close_with,
            client_address(self.scope),
            session_key_of(self.scope),
            actions.immediate_writer(self.scope),
            actions.writable_waiter(self.scope),
        )
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.conn is not None:
            await actions.close_connection(self.conn, code)

    async def websocket_disconnect(self, message: dict) -> None:
        # Channels' also hops to the database thread to close its stale connections:
        # workers.on_database_thread checks them after every call already, and the hop was
        # one more per socket's life (bench/README.md, joins). No groups to leave.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def dispatch(self, message: dict) -> None:
        # Channels' dispatch hops to the database thread to close stale connections
        # before every handler; workers.on_database_thread does that check after each call.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_receive(self, message: dict) -> None:
        # The frame is taken out of the message, so that nothing that keeps the message
        # (Channels' own loop kept the last one until the next arrived) keeps an idle
        # socket's last upload.
        await self.receive(text_data=message.pop("text", None), bytes_data=message.pop("bytes", None))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Each client frame: decoded, acted on; errors become `Error`, never a close."""
        conn = self.conn
        if conn.outbox.closing is not None:
            return  # closing (kicked, room closed, abuse): nothing more is done for it
        work_owner.set(conn.address)  # its share of the work queues
        held = 0  # this frame's share of UPLOADS_IN_FLIGHT_BYTES
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.INVALID_JSON, "Binary frames are not accepted.")
            if len(text_data) > protocol.LARGE_STRING:
                held = actions.hold_frame(text_data)
            await self.receive_json(await self.decode_json(text_data))
        except ProtocolError as exc:
            await actions.refuse(conn, exc)
        except Exception as exc:
            await actions.fail(conn, exc)
        finally:
            actions.frame_done(conn, held)

    @classmethod
    async def decode_json(cls, text_data: str) -> protocol.Command:
        """PROTOCOL.md's strict JSON and fields; a large frame (an upload) off the loop."""
        if len(text_data) > protocol.LARGE_STRING:
            return await file_work.run(protocol.parse_large_frame, text_data)
        return protocol.parse_client_message(text_data)

    async def receive_json(self, content: protocol.Command, **kwargs: object) -> None:
        await actions.run(self.conn, self.commands[type(content)], content)

    async def send_text(self, text: str) -> None:
        # Straight to the server: this runs once per frame per socket.
        await self.base_send({"type": "websocket.send", "text": text})

    async def close_with(self, code: int) -> None:
        # A plain int: daphne's WebSocket library refuses a close code whose type is not
        # exactly int, and a CloseCode is an IntEnum.
        await self.close(code=int(code))
