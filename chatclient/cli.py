"""The terminal chat: `chatclient create|join URL ...` (or `python -m chatclient ...`),
interactive or scripted.

Interactive: typed lines are sent, and events print above the prompt without garbling
the line being typed (prompt_toolkit's `patch_stdout`). Scripted (`--send`, `--listen`,
`--json`): no prompt, one line per event, for shell pipelines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shlex
import sys
import threading
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from chatclient.client import ChatClient, ChatError, ConnectionLost, read_link, socket_url
from chatclient.events import (
    ErrorEvent,
    Event,
    EventsDropped,
    FileDeleted,
    FileShared,
    History,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    MissedMessages,
    Reactions,
    Reconnected,
    Reconnecting,
    RoomInfo,
    Typing,
    safe_name,
)

EXIT_REFUSED = 1  # the server refused a request (a protocol error)
EXIT_USAGE = 2  # argparse's own, and a link or key that is not the room's (LINK_CODES)
EXIT_CONNECTION = 3  # no connection, or it ended for good (room closed, kicked, gave up)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
# The client's own refusals of what it was given to join with: no share link or a
# truncated one (found before connecting), or a secret that is not the room's.
LINK_CODES = ("link_invalid", "link_incomplete", "link_wrong")
EXIT_STATUSES = (
    f"Exit status: 0 done; {EXIT_REFUSED} refused by the server (its code is printed); "
    f"{EXIT_USAGE} bad usage: the command line, or a link that is not the room's "
    f"({', '.join(LINK_CODES)}; the first two found before connecting); {EXIT_CONNECTION} could "
    "not connect, or the connection ended for good (room closed, kicked, gave up "
    f"reconnecting); {EXIT_INTERRUPTED} interrupted (Ctrl-C)."
)

HELP = """\
Type a line to send it (start it with // to send a line that starts with /).
  /members            who is here
  /reply ID TEXT      answer the message #ID
  /edit ID TEXT       change the text of your message #ID
  /react ID EMOJI     react to message #ID (again with the same emoji: take it back)
  /delete ID          delete message #ID (yours, or any if you own the room), or a file by its id
  /older [N]          show N older messages (default 20)
  /upload PATH        share a file
  /get ID [DEST]      download a file (into DEST, a file or directory; default: here)
  /leave              leave the room and quit
  /quit               quit (Ctrl-D too)
  /help               this list"""
# The commands HELP lists: another typed `/name` is answered with it, said to be none.
COMMANDS = frozenset(re.findall(r"^  /(\w+)", HELP, re.MULTILINE))

# How many times the client sends a request the server refuses for its rate
# (`rate_limited`) again (`ChatClient(retry_rate_limited=)`), after waits doubling from
# half a second to 4 s: 18 is a minute of waiting (0.5 + 1 + 2 + 4 + 14 x 4 s). So a
# pipe's lines all arrive, in order, and a typed line is not lost, or the CLI fails on
# the one that could not be sent. Refused requests this seldom stay far below the
# server's 1008 rule (ABUSE_RATE_LIMITED_FRAMES refusals in ABUSE_WINDOW).
RATE_RETRIES = 18

# Messages remembered for reply quotes, and how much of one a quote shows.
QUOTED = 1000
# Seconds a "typing..." line is not printed again for the same person (the server relays
# one every 3 s while they type): one line a burst, not a line every 3 s.
TYPING_QUIET = 30.0
QUOTE_LENGTH = 60

KINDS = {
    Message: "message",
    FileShared: "file_shared",
    Joined: "joined",
    Left: "left",
    FileDeleted: "file_deleted",
    MessageDeleted: "message_deleted",
    MessageEdited: "message_edited",
    Reactions: "reactions",
    Typing: "typing",
    ErrorEvent: "error",
    Reconnecting: "reconnecting",
    Reconnected: "reconnected",
    MissedMessages: "missed_messages",
    EventsDropped: "events_dropped",
}
# Shown as "?" so that nobody can drive the reader's terminal (escape sequences), reorder
# the line (bidirectional controls) or start a line of its own (line separators).
_BIDI_CONTROLS = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_LINE_SEPARATORS = ("Zl", "Zp")
# What a message's further lines start with: never taken for an event line, a reply's
# quote or reaction chips, which another could not then forge under their own message.
CONTINUATION = "\n    | "
# A message id as typed (`12` or `#12`): ASCII digits only ("²" is a digit to isdigit()).
MESSAGE_ID = re.compile(r"#?([0-9]+)")
# A text the client cannot read because it joined a sealed room without its secret.
LOCKED = "(locked: needs the whole link)"
# In --json output: what json.dumps leaves raw but a terminal may obey or reorder.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


# What the usage lines call the CLI: the module, or the script that `pip install` puts on
# PATH (pyproject.toml, [project.scripts]).
MODULE_PROG = "python -m chatclient"
SCRIPT_PROG = "chatclient"


def build_parser(prog: str = MODULE_PROG) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--help", action="help", help="show this help message and exit")
    common.add_argument(
        "url",
        help="server address: ws://host:port/ws/ or wss://... (http(s):// and host:port work too); "
        "for join, the room's share link alone will do",
    )
    common.add_argument(
        "--password",
        default=os.environ.get("CHAT_ROOM_PASSWORD"),
        help="room password (default: $CHAT_ROOM_PASSWORD)",
    )
    common.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="TEXT",
        help="send TEXT and exit (repeatable; '-' sends each line of standard input)",
    )
    common.add_argument(
        "--listen",
        type=count,
        metavar="N",
        help="print events until N messages from others have arrived (history included), then exit",
    )
    common.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Encrypted chat rooms in the terminal: interactive, or scripted with "
        "--send/--listen/--json.",
        epilog=EXIT_STATUSES,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # No -h, no abbreviations, and the last positional optional (see parse_args): a join
    # key is url-safe base64 and may well start with "-".
    create = commands.add_parser(
        "create",
        help="create a room and join it as its owner",
        parents=[common],
        add_help=False,
        allow_abbrev=False,
    )
    create.add_argument("room", nargs="?", help="room name")
    create.add_argument("--description", default="", help="room description")
    create.add_argument("--name", help="your name in the room (default: Owner)")
    create.add_argument(
        "--sealed",
        action="store_true",
        help="a sealed room: the server never sees its key, which travels only in the share link",
    )
    join = commands.add_parser(
        "join",
        help="join a room by its share link or join key",
        parents=[common],
        add_help=False,
        allow_abbrev=False,
    )
    join.add_argument(
        "join_key",
        nargs="?",
        help="the room's whole share link (a sealed room needs all of it), or its join key "
        "(default: $CHAT_ROOM_LINK, which keeps a sealed room's secret out of ps and shell history)",
    )
    join.add_argument("--name", required=True, help="your name in the room")
    join.add_argument(
        "--owner-token",
        default=os.environ.get("CHAT_ROOM_OWNER_TOKEN") or None,
        metavar="TOKEN",
        help="the room's owner token (the creator's, from create --json): join with owner rights "
        "(default: $CHAT_ROOM_OWNER_TOKEN, which keeps it out of ps and shell history)",
    )
    parser.set_defaults(commands={"create": create, "join": join})  # for their own usage lines
    return parser


def count(text: str) -> int:
    """--listen's N: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, not {text!r}")
    return value


def parse_args(argv: list[str] | None = None, prog: str = MODULE_PROG) -> argparse.Namespace:
    """argparse, except that a room name or join key may start with "-" ("-Xa3..." is no option)."""
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    last = "room" if args.command == "create" else "join_key"
    if getattr(args, last) is None and len(unknown) == 1:
        setattr(args, last, unknown.pop())
    if "/rooms/" in args.url and args.command == "join" and args.join_key is None:
        # A share link where the server's address goes: the server is the link's own
        # (socket_url), and the link is the room, so `join LINK --name X` is enough.
        args.join_key = args.url
    try:
        args.url = socket_url(args.url)
    except ValueError as exc:
        parser.error(f"{args.command}: {exc}")
    if args.command == "join" and args.join_key is None:
        args.join_key = os.environ.get("CHAT_ROOM_LINK") or None  # like $CHAT_ROOM_PASSWORD
    if getattr(args, last) is None:
        also = " (or $CHAT_ROOM_LINK)" if args.command == "join" else ""
        args.commands[args.command].error(f"the {last.replace('_', ' ')} is required{also}")
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if any(not text.strip() for text in args.send):
        parser.error("--send: a message needs some text")
    return args


def script() -> int:
    """Called as the `chatclient` script that `pip install` makes."""
    return main(prog=SCRIPT_PROG)


def main(argv: list[str] | None = None, prog: str = MODULE_PROG) -> int:
    args = parse_args(argv, prog)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read the output stopped (`... --listen 10 | head -3`): it had what it
        # wanted. Python would fail again flushing standard output as it exits.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


async def run(args: argparse.Namespace) -> int:
    out = Output(args.json)
    try:
        joining = args.join_key if args.command == "join" else None
        if joining is not None:
            read_link(joining)  # a link that is none, or cut short: said before connecting
        client = await ChatClient.connect(args.url, room=joining, retry_rate_limited=RATE_RETRIES)
    except ChatError as exc:
        out.fail(exc)
        return exit_status(exc)
    try:
        if args.command == "create":
            room = await client.create_room(
                args.room, args.description, args.password, args.name, sealed=args.sealed
            )
        else:
            room = await client.join_room(
                args.join_key, args.name, args.password, owner_token=args.owner_token
            )
        out.entered(room, client)
        if not (args.json or args.send or args.listen is not None or sys.stdin.isatty()):
            args.send = ["-"]  # piped in without flags: send the lines
        if args.json or args.send or args.listen is not None:
            await scripted(client, args, out)
        else:
            await interactive(client, out)
        return 0
    except ChatError as exc:
        out.fail(exc)
        return exit_status(exc)
    finally:
        await client.close()


def exit_status(exc: ChatError) -> int:
    """The CLI's exit status for what ended it (EXIT_STATUSES)."""
    if isinstance(exc, ConnectionLost):
        return EXIT_CONNECTION
    return EXIT_USAGE if exc.code in LINK_CODES else EXIT_REFUSED


# --- Scripting mode -------------------------------------------------------------


async def scripted(client: ChatClient, args: argparse.Namespace, out: Output) -> None:
    sent = set()
    for text in args.send:
        async for line in stdin_lines() if text == "-" else one(text):
            if not line.strip():
                continue  # a blank line is no message (nor is it one in the browser)
            message = await client.send(line)
            sent.add(message.id)
            out.event(message)
    if not args.listen:
        return
    heard = 0
    async for event in client.events():
        # A History's messages one by one: N may be reached within it.
        for one_event in event.messages if isinstance(event, History) else [event]:
            if not (isinstance(one_event, Message) and one_event.id in sent):  # printed when sent
                out.event(one_event, history=isinstance(event, History))
            heard += isinstance(one_event, Message | FileShared) and one_event.sender != client.name
            if heard >= args.listen:
                return


async def stdin_lines() -> AsyncIterator[str]:
    """Standard input's lines as they come: `tail -f log | ... --send -` sends each line
    when it is written, not once the input ends. They are read in a daemon thread: one of
    asyncio's own, blocked in a read, held Ctrl-C's exit until the input gave a line."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue(maxsize=100)  # read no further ahead

    def read() -> None:
        try:
            for line in itertools.chain(sys.stdin, [None]):  # None: the input's end
                asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
        except RuntimeError:  # the loop is closed: the CLI has ended
            pass

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        yield line.rstrip("\r\n")


async def one(text: str) -> AsyncIterator[str]:
    yield text


# --- Interactive mode -----------------------------------------------------------


async def interactive(client: ChatClient, out: Output) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    out.note("Type to chat; /help lists the commands.")
    with patch_stdout():
        printer = asyncio.create_task(print_events(client, out))
        prompter = asyncio.create_task(prompt_lines(client, PromptSession(), out))
        try:
            done, _ = await asyncio.wait({printer, prompter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Ctrl-C cancels the wait: both still end here, so a send the prompt was
            # waiting on (a reconnect under way) fails into nothing, not a traceback.
            for task in (printer, prompter):
                task.cancel()
            await asyncio.gather(printer, prompter, return_exceptions=True)
        for task in done:
            task.result()  # the printer raises ConnectionLost when the room is gone


async def print_events(client: ChatClient, out: Output) -> None:
    async for event in client.events():
        out.event(event)


async def prompt_lines(client: ChatClient, session, out: Output) -> None:
    while True:
        try:
            line = await session.prompt_async(f"{client.name}> ")
        except (EOFError, KeyboardInterrupt):
            return
        try:
            if not await command(client, line, out):
                return
        except ConnectionLost as exc:
            if client.ended:
                raise
            # One drop, which the client mends by itself: only this request is lost.
            out.note(f"! {clean(exc.code)}: {clean(exc.message).rstrip('.')}; try again")
        except ChatError as exc:
            out.note(f"! {clean(exc.code)}: {clean(exc.message)}")
        except OSError as exc:
            out.note(f"! {clean(os_error(exc))}")


async def command(client: ChatClient, line: str, out: Output) -> bool:
    """Run one typed line; False when the chat should end."""
    if not line.strip():
        return True
    if not line.startswith("/") or line.startswith("//"):
        await client.send(line.removeprefix("/") if line.startswith("//") else line)
        return True
    if line.startswith(("/reply ", "/edit ")):  # the text is taken as typed, quotes and all
        name, typed_id, *text = line.split(maxsplit=2)
        message_id = message_id_of(typed_id)
        if not text or message_id is None:
            out.note(HELP)
        elif name == "/reply":
            await client.send(text[0], reply_to=message_id)
        else:
            await client.edit(message_id, text[0])
        return True
    try:
        name, *args = shlex.split(line[1:]) or [""]
    except ValueError as exc:  # an unbalanced quote: /upload Bob's notes.txt
        out.note(f'! {exc}: put a name that holds \' or " in the other quotes ("Bob\'s notes.txt")')
        return True
    given_id = message_id_of(args[0]) if args else None
    if name == "members":
        out.note("Here: " + ", ".join(map(clean, await client.members())))
    elif name == "react" and len(args) == 2 and given_id is not None:
        given = out.reactions.get(given_id, ())
        mine = any(emoji == args[1] and client.name in names for emoji, names in given)
        await client.react(given_id, args[1], on=not mine)
    elif name == "older" and (
        not args or args[0].isascii() and args[0].isdecimal() and 1 <= int(args[0]) <= 100
    ):
        page = await client.history(limit=int(args[0]) if args else 20)
        for message in page:
            out.event(message, history=True)
        if not page:
            out.note("* that is the start of the room")
    elif name == "upload" and len(args) == 1:
        metadata = await client.upload_file(args[0])
        out.note(f"* uploaded {clean(metadata.name)} ({clean(metadata.size)} bytes), id {clean(metadata.id)}")
    elif name == "get" and len(args) in (1, 2):
        metadata, data = await client.download_file(args[0])
        shown = safe_name(metadata.name, metadata.mime_type)
        target = await asyncio.to_thread(save, shown, data, args[1:])
        out.note(f"* saved {clean(shown)} ({clean(metadata.size)} bytes) to {clean(target)}")
    elif name == "delete" and len(args) == 1 and given_id is not None:
        await client.delete_message(given_id)
    elif name == "delete" and len(args) == 1:  # a file's id (a UUID)
        await client.delete_file(args[0])
    elif name == "leave":
        await client.leave()
        out.note("* you left the room")
        return False
    elif name == "quit":
        return False
    else:
        if name not in COMMANDS:
            out.note(f"! /{clean(name)} is no command; these are:")
        out.note(HELP)
    return True


def os_error(exc: OSError) -> str:
    """A failed file operation as a sentence, not Python's `[Errno 17] ...`."""
    if isinstance(exc, FileExistsError):  # save() never writes over a file
        return f"file {exc.filename} already exists; not overwritten"
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def message_id_of(typed: str) -> int | None:
    """The message id typed (`12` or `#12`), or None when it is not one."""
    match = MESSAGE_ID.fullmatch(typed)
    return int(match[1]) if match else None


def save(name: str, data: bytes, dest: list[str]) -> Path:
    """Write a download under `name` (the file's safe name, `safe_name`) in DEST, or as
    DEST when it is no directory: never over an existing file, never outside DEST."""
    target = Path(dest[0]).expanduser() if dest else Path.cwd()
    if target.is_dir():
        # A safe name ends in an extension: it is never "", "." or "..".
        target = target / name.replace("/", "_").replace("\\", "_")
    with target.open("xb") as file:
        file.write(data)
    return target


# --- Output ---------------------------------------------------------------------


def clean(text: object, lines: bool = False) -> str:
    """What the server or another participant sent, safe to print: every control
    character, bidirectional control, line separator and lone surrogate (which no
    terminal's encoding takes) shows as "?". With `lines` (a
    message's text) tabs stay and a newline starts a continuation line (CONTINUATION)."""
    shown = "".join(c if lines and c in "\n\t" or not _hidden(c) else "?" for c in str(text))
    return shown.replace("\n", CONTINUATION) if lines else shown


def _hidden(c: str) -> bool:
    category = unicodedata.category(c)
    return category in ("Cc", "Cs") or category in _LINE_SEPARATORS or ord(c) in _BIDI_CONTROLS


def clock(sent_at: str) -> str:
    """`HH:MM` of a time the server sent, in local time (`Nov 30 HH:MM` on another day,
    `Nov 30 2025 HH:MM` in another year: history reaches back days); what it sent,
    cleaned, when it is none."""
    try:
        when = datetime.fromisoformat(sent_at).astimezone()
    except (ValueError, TypeError, OverflowError, OSError):
        return clean(sent_at)
    today = datetime.now().astimezone().date()
    if when.date() == today:
        return when.strftime("%H:%M")
    return when.strftime("%b %d %H:%M" if when.year == today.year else "%b %d %Y %H:%M")


class Output:
    """Events as text for people, or as JSON lines for programs."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # Recent messages' senders and texts by id, for the quote above a reply, and
        # their reactions (for /react to take one's own back).
        self.said: dict[int, tuple[str, str | None]] = {}
        self.reactions: dict[int, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        # Joined a sealed room without its secret: no text here can be read, which is no
        # sign of tampering (set by `entered`).
        self.locked = False
        # When each person's last "typing..." line was printed (text only; a message of
        # theirs ends the burst).
        self.typing: dict[str, float] = {}

    def emit(self, record: dict, text: str) -> None:
        if self.as_json:
            text = _JSON_UNSAFE.sub(lambda c: f"\\u{ord(c[0]):04x}", json.dumps(record, ensure_ascii=False))
        print(text, flush=True)

    def note(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)

    def entered(self, room: RoomInfo, client: ChatClient) -> None:
        if client.name is None:
            raise RuntimeError("entered() called before the client joined a room")
        record = {"event": "room", **asdict(room), "me": client.name, "owner_token": client.owner_token}
        lock = " (password)" if room.has_password else ""
        text = f"* in room {clean(room.name)}{lock} as {clean(client.name)}; join key: {clean(room.join_key)}"
        self.locked = room.sealed and not client.can_read
        if self.locked:
            # The link joined with has no secret: printing it as one to share would pass
            # the incomplete link on.
            text += (
                "\n* sealed room, but the link you joined with lacks its secret (the #k=... at its end):"
                " nothing here can be read.\n* Ask whoever shared it for the whole link, #k=... included."
            )
        elif room.sealed:
            text += f"\n* sealed room; share this whole link: {clean(room.share_link)}"
        self.emit(record, text)

    def event(self, event: Event, history: bool = False) -> None:
        if isinstance(event, History):
            for message in event.messages:
                self.event(message, history=True)
            return
        if not self.as_json and self.quiet(event):
            return
        record = {"event": KINDS[type(event)], **asdict(event)}
        if history:
            record["history"] = True
        text = describe(event, self.locked)
        if isinstance(event, Message | Reactions):
            self.reactions[event.id] = event.reactions
            if len(self.reactions) > QUOTED:
                del self.reactions[next(iter(self.reactions))]
        if isinstance(event, Message):
            if event.reply_to is not None:
                text = f"{quote(event.reply_to, self.said.get(event.reply_to))}\n{text}"
            self.said[event.id] = (event.sender, event.text)
            if len(self.said) > QUOTED:
                del self.said[next(iter(self.said))]
        self.emit(record, text)

    def quiet(self, event: Event) -> bool:
        """Whether a Typing line would repeat one printed within TYPING_QUIET."""
        if isinstance(event, Message | FileShared):
            self.typing.pop(event.sender, None)
        if not isinstance(event, Typing):
            return False
        now = time.monotonic()
        if now - self.typing.get(event.name, -TYPING_QUIET) < TYPING_QUIET:
            return True
        self.typing.pop(event.name, None)
        self.typing[event.name] = now
        if len(self.typing) > QUOTED:
            del self.typing[next(iter(self.typing))]
        return False

    def fail(self, exc: ChatError) -> None:
        if self.as_json:
            self.emit({"event": "failed", "code": exc.code, "message": exc.message}, "")
        print(f"error: {clean(exc.code)}: {clean(exc.message)}", file=sys.stderr, flush=True)


def quote(message_id: int, said: tuple[str, str | None] | None) -> str:
    """The line above a reply: the start of the message it answers, when known here."""
    sender, text = said or ("", None)
    if text is None:
        return f"  \u21aa #{message_id}"
    start = text if len(text) <= QUOTE_LENGTH else text[: QUOTE_LENGTH - 1] + "\u2026"
    start = start.replace("\n", " ")  # a quote is one line
    return f"  \u21aa #{message_id} {clean(sender)}: {clean(start)}"


def chips(reactions: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    """Reactions as the terminal shows them: `👍 2 (Ann, Bob)  🎉 1 (Ann)`."""
    return "  ".join(
        f"{clean(emoji)} {len(names)} ({', '.join(map(clean, names))})" for emoji, names in reactions
    )


def describe(event: Event, locked: bool = False) -> str:
    """An event as text for people. `locked`: the client has no key (a sealed room joined
    without its secret), so a text it cannot read is locked, not one that failed its check."""
    match event:
        case Message():
            if event.text is None:  # never shown under a name it may not be from
                unread = LOCKED if locked else "(a message that could not be verified)"
                return f"[{clock(event.sent_at)} #{event.id}] {unread}"
            edited = " (edited)" if event.edited_at else ""
            text = clean(event.text, lines=True)
            line = f"[{clock(event.sent_at)} #{event.id}] {clean(event.sender)}: {text}{edited}"
            return line + (f"\n    {chips(event.reactions)}" if event.reactions else "")
        case Reactions():
            return f"* #{event.id} reactions: {chips(event.reactions) or 'none'}"
        case Typing():
            return f"* {clean(event.name)} is typing..."
        case FileShared():
            shared = f"shared {clean(event.name)}: /get {clean(event.file_id)}"
            return f"[{clock(event.sent_at)} #{event.id}] {clean(event.sender)} {shared}"
        case Joined():
            return f"* {clean(event.name)} joined"
        case Left():
            return f"* {clean(event.name)} left"
        case FileDeleted():
            return f"* file {clean(event.file_id)} was deleted"
        case MessageDeleted():
            return f"* message #{event.id} was deleted"
        case MessageEdited():
            if event.text is None:
                unread = LOCKED if locked else "(the new text could not be verified)"
                return f"* message #{event.id} was edited {unread}"
            return f"* #{event.id} edited: {clean(event.sender or '?')}: {clean(event.text, lines=True)}"
        case ErrorEvent():
            return f"! {clean(event.code)}: {clean(event.message)}"
        case Reconnecting():
            return "* connection lost; reconnecting..."
        case Reconnected():
            return "* reconnected"
        case MissedMessages():
            return f"! messages after #{event.after} and before #{event.before} were missed while away"
        case EventsDropped():
            return f"! {event.count} events dropped: they came faster than they were shown"
    return repr(event)
