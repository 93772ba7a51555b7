"""The terminal chat against a real server: scripted (pipes) and interactive (a pseudo-terminal)."""

import asyncio
import fcntl
import json
import os
import pty
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from chatclient import (
    ChatClient,
    ChatError,
    ConnectionLost,
    ErrorEvent,
    FileDeleted,
    FileMetadata,
    FileShared,
    Joined,
    Left,
    Message,
    MessageDeleted,
    MessageEdited,
    RoomInfo,
    Typing,
    cli,
    decrypt,
    encrypt,
    safe_name,
)
from chatclient import client as client_module
from chatclient.cli import CONTINUATION, HELP, Output, clean, clock, command, parse_args, prompt_lines
from chatclient.crypto import link_fragment, new_room_secret
from tests.chatclient.conftest import FAKE_KEY, FakeRoom, fake_server, next_of
from tests.e2e.servers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

CLI = [sys.executable, "-m", "chatclient"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")


async def run_cli(*args: str, stdin: bytes = b"", parse: bool = True) -> tuple[int, list, str]:
    """Run the CLI with pipes to the end; returns (exit status, JSON lines or text lines, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), 30)
    lines = [json.loads(line) if parse else line for line in stdout.decode().splitlines()]
    return process.returncode, lines, stderr.decode()


@pytest.mark.parametrize("key", ["-hX9a", "-LXFvCHnt", "--jsonX", "plain"])
def test_a_join_key_may_start_with_a_dash(key):
    """Join keys are url-safe base64: "-h..." is a key, not a request for help."""
    args = parse_args(["join", "ws://host/ws/", key, "--name", "Bob", "--json"])
    assert (args.join_key, args.name, args.json) == (key, "Bob", True)
    assert parse_args(["join", "--name", "Bob", "ws://host/ws/", key]).join_key == key


def test_the_link_to_join_may_come_from_the_environment(monkeypatch, capsys):
    """$CHAT_ROOM_LINK, like $CHAT_ROOM_PASSWORD, keeps a sealed room's secret off the
    command line (ps, shell history); one given on the command line wins."""
    link = "https://chat.example/rooms/-AbC/#k=" + "A" * 43
    monkeypatch.setenv("CHAT_ROOM_LINK", link)
    assert parse_args(["join", "ws://host/ws/", "--name", "Bob"]).join_key == link
    assert parse_args(["join", "ws://host/ws/", "-Other", "--name", "Bob"]).join_key == "-Other"
    assert parse_args(["join", "--name", "Bob", "ws://host/ws/", "plain"]).join_key == "plain"
    with pytest.raises(SystemExit):
        parse_args(["join", "--help"])
    assert "(default: $CHAT_ROOM_LINK" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setenv("CHAT_ROOM_LINK", "")
    with pytest.raises(SystemExit):
        parse_args(["join", "ws://host/ws/", "--name", "Bob"])
    assert "the join key is required (or $CHAT_ROOM_LINK)" in capsys.readouterr().err


def test_a_missing_name_or_key_shows_its_commands_usage(capsys):
    for argv, subcommand in (
        (["create", "ws://h/ws/"], "create"),
        (["join", "ws://h/ws/", "--name", "X"], "join"),
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
        said = capsys.readouterr().err
        assert said.startswith(f"usage: python -m chatclient {subcommand} ") and "is required" in said, said


def test_a_share_link_alone_names_its_server_and_its_room():
    link = "https://chat.example.org/rooms/Xa3k/#k=" + "s" * 43
    args = parse_args(["join", link, "--name", "X"])
    assert (args.url, args.join_key) == ("wss://chat.example.org/ws/", link)
    args = parse_args(["join", link, "Xa3k", "--name", "X"])  # the key given too: the link's server
    assert (args.url, args.join_key) == ("wss://chat.example.org/ws/", "Xa3k")
    with pytest.raises(SystemExit):  # no host to take the server from
        parse_args(["join", "/rooms/Xa3k/", "--name", "X"])


async def test_scripted_create_listen_and_join_send(server):
    """`create --listen` prints the room, then what others say; `join --send` says it."""
    creator = await asyncio.create_subprocess_exec(
        *CLI, "create", server.url, "Pipes", "--name", "Alice", "--json", "--listen", "2",
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    room = json.loads(await asyncio.wait_for(creator.stdout.readline(), 30))
    assert (room["event"], room["name"], room["me"]) == ("room", "Pipes", "Alice")
    assert room["owner_token"]

    status, lines, _ = await run_cli(
        "join", server.url, room["join_key"], "--name", "Bob", "--send", "hello", "--send", "-", "--json",
        stdin="über\n".encode(),
    )  # fmt: skip
    assert status == 0
    assert [(line["event"], line.get("text")) for line in lines] == [
        ("room", None),
        ("message", "hello"),
        ("message", "über"),
    ]
    stdout, _ = await asyncio.wait_for(creator.communicate(), 30)
    assert creator.returncode == 0
    heard = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [(line["event"], line.get("sender"), line.get("text")) for line in heard] == [
        ("joined", None, None),
        ("message", "Bob", "hello"),
        ("message", "Bob", "über"),
    ]
    assert heard[1]["id"] < heard[2]["id"]

    # A late listener gets both from the history; what it sends itself shows once.
    status, lines, _ = await run_cli(
        "join", server.url, room["join_key"], "--name", "Carol", "--send", "hi all", "--listen", "2", "--json"
    )
    assert status == 0
    assert [(line["sender"], line["text"], line.get("history", False)) for line in lines[1:]] == [
        ("Carol", "hi all", False),
        ("Bob", "hello", True),
        ("Bob", "über", True),
    ]


async def test_listen_stops_at_n_within_the_history_and_a_reader_gone_is_no_crash(server, clients):
    """`--listen 1` in a room with three messages prints one (it printed the whole
    History); `... | head` closing the pipe ends the CLI quietly, status 0."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    for text in ("one", "two", "three"):
        await alice.send(text)
    status, lines, _ = await run_cli(
        "join", server.url, room.join_key, "--name", "Bob", "--listen", "1", "--json"
    )
    assert status == 0 and [line.get("text") for line in lines] == [None, "one"], lines

    read, write = os.pipe()
    os.close(read)  # the reader, gone before the first line
    process = await asyncio.create_subprocess_exec(
        *CLI, "join", server.url, room.join_key, "--name", "Carl", "--listen", "3",
        cwd=ROOT, stdout=write, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0 and b"Traceback" not in stderr, stderr.decode()


async def test_blank_lines_are_no_messages_and_bad_counts_are_usage_errors(server, clients):
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    status, lines, _ = await run_cli(
        "join", server.url, room.join_key, "--name", "Bob", "--send", "-", "--json", stdin=b"a\n\n   \nb\n"
    )
    assert status == 0 and [line.get("text") for line in lines] == [None, "a", "b"], lines
    for wrong in (["--send", ""], ["--send", "  "], ["--listen", "-1"], ["--listen", "x"]):
        status, _, stderr = await run_cli(
            "join", server.url, room.join_key, "--name", "Cy", *wrong, parse=False
        )
        assert status == 2 and "usage:" in stderr, (wrong, stderr)


async def test_the_readmes_listen_pipeline_prints_only_what_was_said(server, clients):
    """README, scripting mode: `--listen N --json | jq -r FILTER` prints the messages'
    texts, one a line (`.text` printed "null" for the room line and for each join or leave)."""
    jq = shutil.which("jq") or pytest.skip("jq is not installed")
    readme = (ROOT / "README.md").read_text()
    (jq_args,) = re.findall(r"--listen 10 --json \| jq -r (.+)$", readme, re.M)
    alice = await clients()
    room = await alice.create_room("Alerts", owner_name="Alice")
    await alice.send("disk full on db1")
    status, lines, _ = await run_cli(
        "join", server.url, room.join_key, "--name", "bot", "--listen", "1", "--json", parse=False
    )
    assert status == 0
    process = await asyncio.create_subprocess_exec(
        jq, "-r", *shlex.split(jq_args), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate("\n".join(lines).encode()), 30)
    assert stdout.decode().splitlines() == ["disk full on db1"], stdout


async def test_create_with_json_prints_the_room_and_exits(server):
    status, lines, _ = await run_cli("create", server.url, "Alerts", "--password", "pw", "--json")
    assert status == 0
    (room,) = lines
    assert (room["event"], room["name"], room["has_password"]) == ("room", "Alerts", True)
    status, lines, _ = await run_cli("join", server.url, room["join_key"], "--name", "Bob", "--json")
    assert (status, lines[0]["code"]) == (1, "wrong_password")
    # Piped in without flags: the lines are sent, and each prints once echoed.
    status, lines, _ = await run_cli(
        "join", server.url, room["join_key"], "--name", "Dan", "--password", "pw",
        stdin=b"one\ntwo\n", parse=False,
    )  # fmt: skip
    assert status == 0
    assert [line.split("] ", 1)[-1] for line in lines[1:]] == ["Dan: one", "Dan: two"]


async def test_refusals_and_connection_failures_exit_non_zero(server):
    status, lines, stderr = await run_cli("join", server.url, "no-such-key", "--name", "Bob", "--json")
    assert status == 1
    assert [(line["event"], line["code"]) for line in lines] == [("failed", "room_not_found")]
    assert "room_not_found" in stderr
    port = server.port
    server.stop()
    status, _, stderr = await run_cli("join", f"ws://127.0.0.1:{port}/ws/", "key", "--name", "Bob")
    assert status == 3
    assert stderr.startswith("error: connection_failed: cannot connect to ws://127.0.0.1:")


async def test_each_exit_status_means_what_the_help_says(server):
    """1: the server refused; 2: the command line, or a link that is not the room's (no
    link, cut short, or another room's secret), never taken for a refusal by the server,
    and found before connecting where it can be (a server that is down does not make it
    3); 3: no connection. `--help` lists them."""
    status, lines, _ = await run_cli("create", server.url, "Quiet", "--sealed", "--name", "Ann", "--json")
    link = lines[0]["share_link"]
    other = link.partition("#")[0] + "#" + link_fragment(new_room_secret())
    for joining, code in ((other, "link_wrong"), (link[:-4], "link_incomplete"), ("no#link", "link_invalid")):
        status, lines, stderr = await run_cli("join", server.url, joining, "--name", "Eve", "--json")
        assert (status, [(line["event"], line["code"]) for line in lines]) == (2, [("failed", code)]), stderr
    status, lines, _ = await run_cli("join", server.url, "no-such-key", "--name", "Bob", "--json")
    assert (status, [line["code"] for line in lines]) == (1, ["room_not_found"])
    status, _, stderr = await run_cli("create", server.url, parse=False)  # no room name: argparse's
    assert status == 2 and stderr.startswith("usage: python -m chatclient create ")
    status, help_lines, _ = await run_cli("--help", parse=False)
    shown = " ".join(" ".join(help_lines).split())
    statuses = ("0 done", "1 refused by the server", "2 bad usage", "3 could not connect", "130 interrupted")
    assert all(said in shown for said in statuses), shown
    server.stop()
    status, lines, _ = await run_cli("join", server.url, link[:-4], "--name", "Eve", "--json")
    assert (status, lines[0]["code"]) == (2, "link_incomplete")
    status, lines, _ = await run_cli("join", server.url, link, "--name", "Eve", "--json")
    assert (status, lines[0]["code"]) == (3, "connection_failed")


async def test_an_unknown_command_is_answered_with_the_commands(capsys):
    """A `/name` that is no command says so and lists the commands, as `/help` does;
    nothing is sent."""
    room = FakeRoom()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        await asyncio.wait_for(prompt_lines(client, Typed("/frobnicate now", "/help"), Output(False)), 10)
        await client.close()
    assert capsys.readouterr().out == f"! /frobnicate is no command; these are:\n{HELP}\n{HELP}\n"
    assert "/help               this list" in HELP
    assert [frame["type"] for frame in room.frames] == ["JoinRoom"]


class Terminal:
    """A process on a pseudo-terminal: type lines, wait for text on its screen."""

    def __init__(self, *args: str, cwd) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.process = subprocess.Popen(
            [*CLI, *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = ""
        self.seen = 0
        self.changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self.read)

    def read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO once the process has gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += ANSI.sub("", data.decode(errors="replace"))
        self.changed.set()

    async def expect(self, text: str, within: float = 20) -> None:
        """Wait until `text` shows after what the last expect matched."""

        async def shown() -> None:
            while True:
                self.changed.clear()
                found = self.output.find(text, self.seen)
                if found >= 0:
                    self.seen = found + len(text)
                    return
                await self.changed.wait()

        try:
            await asyncio.wait_for(shown(), within)
        except TimeoutError:
            raise AssertionError(f"{text!r} not shown; screen so far: {self.output[-2000:]!r}") from None

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    async def exit_status(self) -> int:
        return await asyncio.to_thread(self.process.wait, 20)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


@pytest.fixture
async def terminals():
    opened: list[Terminal] = []

    def open_terminal(*args: str, cwd=ROOT) -> Terminal:
        opened.append(Terminal(*args, cwd=cwd))
        return opened[-1]

    yield open_terminal
    for terminal in opened:
        terminal.close()


async def test_terminal_chat_sends_receives_and_runs_commands(server, clients, terminals, tmp_path):
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    earlier = await alice.send("before Bob came")
    bob = terminals("join", server.url, room.join_key, "--name", "Bob", cwd=tmp_path)
    await bob.expect(f"join key: {room.join_key}")
    await bob.expect("Alice: before Bob came")
    assert await next_of(alice, Joined) == Joined("Bob")

    # Control characters show as "?": nobody drives another's terminal.
    sent = await alice.send("hi Bob, \x1b[31mred?")
    assert await next_of(alice, Message) == sent
    await bob.expect("Alice: hi Bob, ?[31mred?")
    bob.type("hello Alice")
    said = await next_of(alice, Message)
    assert (said.sender, said.text) == ("Bob", "hello Alice") and said.id > earlier.id
    bob.type("//slash")
    assert (await next_of(alice, Message)).text == "/slash"
    # A message that arrives while Bob is typing prints above his line, which survives whole.
    os.write(bob.master, b"half a ")
    await bob.expect("half a")
    interruption = await alice.send("interruption")
    await bob.expect("Alice: interruption")
    await bob.expect("half a")  # the half-typed line, drawn again below the message
    bob.type("line")
    assert await next_of(alice, Message) == interruption
    assert (await next_of(alice, Message)).text == "half a line"

    bob.type("/members")
    await bob.expect("Here: Alice, Bob")
    (tmp_path / "notes.txt").write_text("Bob's notes")
    bob.type(f"/upload {tmp_path / 'notes.txt'}")
    shared = await next_of(alice, FileShared)
    assert (shared.sender, shared.name) == ("Bob", "notes.txt")
    await bob.expect(f" #{shared.id}] Bob shared notes.txt: /get {shared.file_id}")  # its id: /reply, /react
    uploaded = await alice.upload_file(b"from Alice", name="alice.txt")
    (tmp_path / "downloads").mkdir()
    bob.type(f"/get {uploaded.id} downloads")
    await bob.expect("saved alice.txt")
    assert (tmp_path / "downloads" / "alice.txt").read_bytes() == b"from Alice"
    bob.type(f"/get {uploaded.id} downloads")  # never over an existing file
    await bob.expect("alice.txt already exists; not overwritten")
    bob.type(f"/get {shared.file_id} downloads/")
    await bob.expect("saved notes.txt")
    assert (tmp_path / "downloads" / "notes.txt").read_text() == "Bob's notes"
    bob.type("/delete not-a-file")
    await bob.expect("! file_not_found")
    bob.type("/frobnicate")
    await bob.expect("! /frobnicate is no command; these are:")
    await bob.expect("/quit               quit (Ctrl-D too)")

    bob.type("/quit")
    assert await bob.exit_status() == 0
    assert await next_of(alice, Left) == Left("Bob")


class Busy(FakeRoom):
    """A fake room that refuses the next ChatMessages with the codes in `refusals`."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[str] = []

    async def reply(self, websocket, frame):
        if frame["type"] == "ChatMessage" and self.refusals:
            return {"type": "Error", "code": self.refusals.pop(0), "message": "No."}
        return await super().reply(websocket, frame)


async def test_a_line_typed_while_rate_limited_is_sent_and_printed_once(terminals):
    """A typed line the server refused `rate_limited` was lost (the chat said "!
    rate_limited" and sent nothing); only scripted lines were sent again. The CLI's
    client now sends any request again while it is refused for its rate
    (`retry_rate_limited`): the line goes, once."""
    room = Busy()
    async with fake_server(room) as url:
        bob = terminals("join", url, "k", "--name", "Bob")
        await bob.expect("Type to chat")
        room.refusals = ["rate_limited", "rate_limited"]
        bob.type("hello")
        await bob.expect("Bob: hello")
        bob.type("/quit")
        assert await bob.exit_status() == 0
    assert bob.output.count("Bob: hello") == 1 and "rate_limited" not in bob.output, bob.output
    sent = room.sent("ChatMessage")
    assert len(sent) == 3 and {decrypt(FAKE_KEY, frame["content"]) for frame in sent} == {"hello"}


async def test_sealed_rooms_from_the_command_line_travel_by_their_whole_link(server):
    """`create --sealed` prints the share link with its secret; `join LINK` reads and
    writes; the link without its fragment joins and reads nothing, and says why."""
    status, lines, _ = await run_cli("create", server.url, "Quiet", "--sealed", "--name", "Ann", "--json")
    assert status == 0
    (room,) = lines
    assert room["sealed"] is True and "#k=" in room["share_link"] and room["key_check"]
    link = room["share_link"]
    status, lines, _ = await run_cli("join", server.url, link, "--name", "Bob", "--send", "psst", "--json")
    assert status == 0 and [(line["event"], line.get("text")) for line in lines] == [
        ("room", None),
        ("message", "psst"),
    ]
    # The link alone is enough: the server is the link's own.
    status, lines, _ = await run_cli("join", link, "--name", "Cy", "--listen", "1", "--json")
    assert status == 0 and [(line["sender"], line["text"]) for line in lines[1:]] == [("Bob", "psst")]
    status, lines, _ = await run_cli(
        "join", server.url, link.partition("#")[0], "--name", "Eve", "--listen", "1", parse=False
    )
    text = "\n".join(lines)
    assert "Ask whoever shared it for the whole link" in text and "psst" not in text
    status, lines, _ = await run_cli("join", server.url, link[:-4], "--name", "Eve", "--json")
    assert (status, lines[0]["code"]) == (2, "link_incomplete")


async def test_a_pipe_faster_than_the_rate_limit_loses_no_line(env, servers):
    """`--send -` outrunning CHAT_RATE_SUSTAINED: a line refused `rate_limited` is sent
    again after a wait, so that every line arrives, in order (the CLI used to stop at
    the first refusal, exit 1, and drop the rest)."""
    (server,) = servers({**env, "CHAT_RATE_BURST": "3", "CHAT_RATE_SUSTAINED": "4"}, 1)
    listener = await ChatClient.connect(server.url)
    try:
        room = await listener.create_room("Alerts", owner_name="Ann")
        with pytest.raises(ChatError) as refused:  # the rate is in force: the 4th in a row is refused
            for n in range(4):
                await listener.send(f"Ann {n}")
        assert refused.value.code == "rate_limited"
        lines = [f"line {n}" for n in range(1, 16)]
        status, printed, stderr = await run_cli(
            "join", server.url, room.join_key, "--name", "cron", "--send", "-", "--json",
            stdin="".join(f"{line}\n" for line in lines).encode(),
        )  # fmt: skip
        assert (status, stderr) == (0, "")
        assert [(line["event"], line.get("text")) for line in printed[1:]] == [("message", t) for t in lines]
        heard: list[str | None] = []
        while len(heard) < len(lines):
            message = await next_of(listener, Message)
            if message.sender == "cron":
                heard.append(message.text)
        assert heard == lines
    finally:
        await listener.close()


@asynccontextmanager
async def piped_into_a_room(server) -> AsyncIterator[tuple[ChatClient, asyncio.subprocess.Process]]:
    """Ann's client in a new room, and `join ... --name tail --send -` in it with its
    standard input a pipe the test writes to; both ended at the end."""
    owner = await ChatClient.connect(server.url)
    process = None
    try:
        room = await owner.create_room("Logs", owner_name="Ann")
        process = await asyncio.create_subprocess_exec(
            *CLI, "join", server.url, room.join_key, "--name", "tail", "--send", "-",
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        yield owner, process
    finally:
        if process is not None and process.returncode is None:
            process.kill()
        await owner.close()


async def test_a_pipe_that_stays_open_is_sent_line_by_line(server):
    """`tail -f log | ... --send -`: each line goes when it is written (the CLI read the
    whole input first, so an open pipe sent nothing)."""
    async with piped_into_a_room(server) as (listener, process):
        for line in ("first", "second"):
            process.stdin.write(f"{line}\n".encode())
            await process.stdin.drain()
            message = await next_of(listener, Message, within=15)
            assert (message.sender, message.text) == ("tail", line)  # the pipe still open
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 15) == 0


async def test_ctrl_c_ends_a_pipe_that_is_still_open(server):
    """The lines were read in a thread of asyncio's own, which Ctrl-C's exit waited for:
    with the input still open, the CLI never ended."""
    async with piped_into_a_room(server) as (owner, process):
        assert (await next_of(owner, Joined)) == Joined("tail")  # in the room, reading its input
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 130


async def test_a_scripted_line_refused_for_its_rate_is_sent_again_a_bounded_number_of_times(
    monkeypatch, capsys
):
    """Scripted sends: `rate_limited` is waited out by the CLI's client (the same line
    again, after doubling waits), RATE_RETRIES times at most; any other refusal fails at once."""
    monkeypatch.setattr(client_module, "RATE_RETRY_FIRST", 0.01)
    monkeypatch.setattr(client_module, "RATE_RETRY_MOST", 0.02)
    room = Busy()
    async with fake_server(room) as url:
        args = ["join", url, "k", "--name", "Bob", "--send", "one", "--json"]
        for refusals, status, sent in [
            (["rate_limited"] * 3, 0, 4),
            (["rate_limited"] * 100, 1, cli.RATE_RETRIES + 1),
            (["message_too_large", "rate_limited"], 1, 1),
        ]:
            room.frames.clear()
            room.refusals = refusals
            assert await asyncio.wait_for(cli.run(parse_args(args)), 10) == status, refusals
            assert len(room.sent("ChatMessage")) == sent, refusals
            assert {decrypt(FAKE_KEY, frame["content"]) for frame in room.sent("ChatMessage")} == {"one"}
        assert room.refusals == ["rate_limited"]
    out, err = capsys.readouterr()
    assert [json.loads(line)["event"] for line in out.splitlines()] == [
        "room",
        "message",
        "room",
        "failed",
        "room",
        "failed",
    ]
    assert err.splitlines() == ["error: rate_limited: No.", "error: message_too_large: No."]


async def test_a_sealed_room_joined_without_its_secret_says_what_is_missing(server):
    """The link without its `#k=...` joins and reads nothing: the terminal says the link
    lacks its secret and to ask for the whole one, never offers that link as the one to
    share, and shows each message as locked, not as one that failed its check."""
    status, lines, _ = await run_cli("create", server.url, "Quiet", "--sealed", "--name", "Ann", "--json")
    link = lines[0]["share_link"]
    status, _, _ = await run_cli("join", server.url, link, "--name", "Bob", "--send", "psst", "--json")
    assert status == 0
    partial = link.partition("#")[0]
    status, lines, _ = await run_cli(
        "join", server.url, partial, "--name", "Eve", "--listen", "1", parse=False
    )
    assert status == 0
    text = "\n".join(lines)
    assert "the link you joined with lacks its secret" in text and "the whole link, #k=... included" in text
    assert "share this whole link" not in text and partial not in text
    assert lines[-1].endswith("] (locked: needs the whole link)") and "verified" not in text


def test_a_message_that_fails_its_check_is_not_called_locked(capsys):
    """ "Could not be verified" (tampering) only when the client holds the key."""
    sealed = RoomInfo("r", "Room", "", "key", False, "Ann", "2026", True, "check", "https://x/rooms/key/")
    for can_read in (True, False):
        out = Output(False)
        out.entered(sealed, SimpleNamespace(name="Bob", owner_token=None, can_read=can_read))
        out.event(Message(5, "Mallory", None, "2026"))
        out.event(MessageEdited(5, "Mallory", None, "2026"))
    shown = capsys.readouterr().out.splitlines()
    assert shown[1:4] == [
        "* sealed room; share this whole link: https://x/rooms/key/",
        "[2026 #5] (a message that could not be verified)",
        "* message #5 was edited (the new text could not be verified)",
    ]
    assert "https://x/rooms/key/" not in "\n".join(shown[4:])
    assert shown[-2:] == [
        "[2026 #5] (locked: needs the whole link)",
        "* message #5 was edited (locked: needs the whole link)",
    ]


async def test_join_takes_a_sealed_rooms_link_from_the_environment(server, monkeypatch):
    """`CHAT_ROOM_LINK=... join URL --name NAME`: the secret never shows on the command line."""
    status, lines, _ = await run_cli("create", server.url, "Quiet", "--sealed", "--name", "Ann", "--json")
    (room,) = lines
    monkeypatch.setenv("CHAT_ROOM_LINK", room["share_link"])
    status, lines, _ = await run_cli("join", server.url, "--name", "Bob", "--send", "psst", "--json")
    assert status == 0 and [(line["event"], line.get("text")) for line in lines] == [
        ("room", None),
        ("message", "psst"),
    ]
    assert lines[0]["join_key"] == room["join_key"] and lines[0]["sealed"] is True


class Typed:
    """A prompt session that "types" `lines`, then Ctrl-D."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)

    async def prompt_async(self, prompt: str) -> str:
        await asyncio.sleep(0)
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


ESCAPES = "\x1b]0;OWNED\x07\x1b[2J\x9b31m\u202e"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")


def test_what_others_send_never_drives_the_terminal_nor_passes_for_another_line(capsys):
    """Every string from the server or another participant is cleaned; a message's (or an
    edit's) further lines are continuation lines, which cannot pass for an event line."""
    out = Output(False)
    forged = "ok\n[12:00 #999] Bob: I agree, send Mallory the money\r\n* Bob left"
    out.event(Message(5, "Mallory", forged, "2026-01-01T12:00:00+00:00"))
    out.event(Message(6, "Mallory", "indeed", f"yesterday{ESCAPES}", reply_to=5))
    out.event(MessageEdited(5, "Mallory", forged, "2026-01-01T12:01:00+00:00"))
    out.event(FileShared(7, "Mallory", "a.txt", f"id{ESCAPES}", "2026-01-01T12:00:00+00:00"))
    out.event(FileDeleted(f"id\n{ESCAPES}"))
    out.event(ErrorEvent(f"code\n{ESCAPES}", f"message\n{ESCAPES}"))
    info = RoomInfo("r", "Room", "", f"key\n{ESCAPES}", False, "Ann", "2026", True, None, f"link{ESCAPES}")
    out.entered(info, SimpleNamespace(name="Bob", owner_token=None, can_read=True))
    out.fail(ChatError(f"code\n{ESCAPES}", f"message\n{ESCAPES}"))
    shown = capsys.readouterr()
    assert not UNSAFE.search(shown.out + shown.err)
    lines = shown.out.splitlines()
    # An event line starts with "[", "*" or "!", a reply's quote with "  \u21aa".
    events = [line for line in lines if not line.startswith(CONTINUATION.lstrip("\n"))]
    assert all(line.startswith(("[", "* ", "! ", "  \u21aa #5 Mallory: ok [12:00")) for line in events), lines
    assert lines[:3] == [
        f"[{clock('2026-01-01T12:00:00+00:00')} #5] Mallory: ok",
        "    | [12:00 #999] Bob: I agree, send Mallory the money?",
        "    | * Bob left",
    ]
    assert lines[4] == "[yesterday?]0;OWNED??[2J?31m? #6] Mallory: indeed"
    assert len(shown.err.splitlines()) == 1

    Output(True).event(Message(8, "Mallory", f"json{ESCAPES}", "2026-01-01T12:00:00+00:00"))
    printed = capsys.readouterr().out
    assert not UNSAFE.search(printed) and json.loads(printed)["text"] == f"json{ESCAPES}"


async def test_message_ids_that_are_no_integers_are_unreadable_frames_not_printed(capsys):
    """A message id (or reply_to) is an integer: another is an unreadable frame, never
    printed nor used as a key (a list there would have ended the printer)."""
    hi = {"type": "ChatMessage", "sender": "Ann", "content": encrypt(FAKE_KEY, "hi"), "sent_at": "2026"}
    hostile = [
        {"type": "Reactions", "id": [1], "reactions": []},
        {"type": "MessageDeleted", "id": f"1{ESCAPES}"},
        {"type": "MessageEdited", "id": f"1{ESCAPES}", "content": hi["content"], "edited_at": "2026"},
        {**hi, "id": 2, "reply_to": f"1{ESCAPES}"},
        {**hi, "id": f"3{ESCAPES}"},
        {**hi, "id": 4, "reply_to": 2},
    ]

    shown = await printed_after_join(capsys, [json.dumps(frame) for frame in hostile])
    assert not UNSAFE.search(shown) and shown.count("! invalid_frame: ") == 5
    assert shown.splitlines()[-2:] == ["  \u21aa #2", "[2026 #4] Ann: hi"]


async def printed_after_join(capsys, texts: list[str]) -> str:
    """What the terminal chat prints of the events a fake server sends right after the
    join's answer: `texts`, as they are (one event each)."""

    class Hostile(FakeRoom):
        async def reply(self, websocket, frame):
            answer = await super().reply(websocket, frame)
            if frame["type"] == "JoinRoom":
                await websocket.send(json.dumps(answer))
                for sent in texts:
                    await websocket.send(sent)
                return None
            return answer

    async with fake_server(Hostile()) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        out = Output(False)
        for _ in texts:
            out.event(await asyncio.wait_for(client.next_event(), 5))
        await client.close()
    return capsys.readouterr().out


async def test_frames_that_are_not_strict_json_are_unreadable_and_the_stream_goes_on(capsys):
    """A server's frame is read under PROTOCOL.md's strict JSON, as the server reads the
    client's: nesting 3,000 deep (a RecursionError ended the client), NaN and a lone
    surrogate (which no terminal can print) are each an unreadable frame."""
    hi = {"type": "ChatMessage", "id": 9, "sender": "Ann", "content": encrypt(FAKE_KEY, "hi")}
    hostile = [
        '{"type":"Typing","name":"Ann","x":' + "[" * 3000 + "]" * 3000 + "}",
        '{"type":"Typing","name":"Ann","x":NaN}',
        '{"type":"Typing","name":"Ann \\udc00"}',
        json.dumps({**hi, "sent_at": "2026"}),
    ]

    shown = await printed_after_join(capsys, hostile)
    assert shown.count("! invalid_frame: ") == 3 and shown.splitlines()[-1] == "[2026 #9] Ann: hi", shown
    shown.encode()  # every line printable in UTF-8


def test_a_message_from_another_day_shows_its_date():
    """`/older` and the history reach back days: a time alone read as today's."""
    now = datetime.now(UTC)
    assert re.fullmatch(r"\d\d:\d\d", clock(now.isoformat()))
    old = (now - timedelta(days=6)).astimezone()
    assert clock(old.isoformat()) == old.strftime("%b %d %H:%M")
    assert clock((now - timedelta(days=400)).isoformat()).count(" ") == 3  # and its year


def test_a_lone_surrogate_prints_as_a_question_mark():
    assert clean("Ann \udc00!") == "Ann ?!" and clean("a\ud800\nb", lines=True) == f"a?{CONTINUATION}b"


async def test_commands_clean_what_the_server_answers(capsys, tmp_path):
    """What /upload, /get, /members and a refusal print comes from the server: cleaned."""
    evil = f"notes{ESCAPES}\n[12:00 #1] Bob: x.html"
    metadata = FileMetadata(f"id{ESCAPES}", evil, "text/plain", 5, "2026")

    class Hostile:
        name = "Bob"

        async def upload_file(self, path):
            return metadata

        async def download_file(self, file_id):
            return metadata, b"hello"

        async def members(self):
            return ["Ann", evil]

        async def send(self, text, reply_to=None):
            raise ChatError(f"code{ESCAPES}", f"message\n{ESCAPES}")

    client = Hostile()
    await prompt_lines(client, Typed("/upload x", f"/get id {tmp_path}", "/members", "hello"), Output(False))
    shown = capsys.readouterr().out
    assert not UNSAFE.search(shown) and len(shown.splitlines()) == 4, shown
    (saved,) = tmp_path.iterdir()
    assert saved.name == "notes0;OWNED2J31m12:00 #1 Bob: x.html.txt"  # the name as the server shows it
    assert saved.read_bytes() == b"hello"


async def test_get_saves_under_the_name_the_server_shows_standard_or_sealed(clients, capsys, tmp_path):
    """PROTOCOL.md: a file is shown, and downloaded, under its name without link syntax or
    hidden characters and ending in an extension of its verified type; /get saves it so,
    in a sealed room from its card's name and type, and prints nothing raw."""
    saved = []
    for sealed in (False, True):
        mallory, bob = await clients(), await clients()
        room = await mallory.create_room("Room", owner_name="Mallory", sealed=sealed)
        await bob.join_room(room.share_link, "Bob")
        for name in ("invoice.html", f"{ESCAPES}[report](1)"):
            script = b"<script>alert(1)</script>"
            uploaded = await mallory.upload_file(script, name=name, mime_type="text/plain")
            shared = await next_of(bob, FileShared)  # a sealed room's card: its name as the uploader gave it
            assert shared.name == (name if sealed else safe_name(name, "text/plain"))
            (tmp_path / str(sealed)).mkdir(exist_ok=True)
            await command(bob, f"/get {uploaded.id} {tmp_path / str(sealed)}", Output(False))
        saved.append(sorted(path.name for path in (tmp_path / str(sealed)).iterdir()))
    assert saved == [["0;OWNED2J31mreport1.txt", "invoice.html.txt"]] * 2
    shown = capsys.readouterr().out
    assert "saved invoice.html.txt (25 bytes)" in shown and not UNSAFE.search(shown)


async def test_get_over_an_existing_file_says_so_in_words_and_the_chat_goes_on(capsys, tmp_path):
    """/get never writes over a file: it says so in a sentence (not `[Errno 17] ...`),
    whether DEST is the file or its directory, and the next command still runs."""

    class Files:
        name = "Bob"

        async def download_file(self, file_id):
            return FileMetadata("f", "notes.txt", "text/plain", 5, "2026"), b"hello"

        async def members(self):
            return ["Ann", "Bob"]

    existing = tmp_path / "notes.txt"
    existing.write_bytes(b"mine")
    typed = Typed(f"/get f {tmp_path}", f"/get f {existing}", "/members")
    await prompt_lines(Files(), typed, Output(False))
    assert capsys.readouterr().out.splitlines() == [
        f"! file {existing} already exists; not overwritten",
        f"! file {existing} already exists; not overwritten",
        "Here: Ann, Bob",
    ]
    assert existing.read_bytes() == b"mine"


async def test_unbalanced_quotes_and_other_digits_never_end_the_interactive_chat(capsys):
    """shlex refuses an unbalanced quote; "²" is a digit to str.isdigit() but no id to int():
    each typed line is answered, and the chat goes on."""
    room = FakeRoom()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        lines = ["/upload Bob's notes.txt", "/delete ²", "/react ² 👍", "/older ²", "/reply ² a", "/edit ² a"]
        await asyncio.wait_for(prompt_lines(client, Typed(*lines, "hello"), Output(False)), 10)
        await client.close()
    shown = capsys.readouterr().out
    assert "! No closing quotation" in shown and "! file_not_found" in shown
    assert shown.count("/react ID EMOJI") == 4  # the help, for each line with no id
    assert [frame["type"] for frame in room.frames] == ["JoinRoom", "DeleteFile", "ChatMessage"]
    assert room.frames[1]["file_id"] == "²"  # not a message id: a file's


@pytest.mark.parametrize("close_code", [None, 4001])
async def test_a_drop_the_client_mends_does_not_end_the_interactive_chat(close_code, capsys):
    """A request that is not sent again after a reconnect (/react here) fails with
    connection_lost when the connection drops under it: the chat says so and goes on,
    unless the connection has ended for good (close 4001, kicked)."""

    class Dropping(FakeRoom):
        async def reply(self, websocket, frame):
            if frame["type"] == "React" and len(self.sent("React")) == 1:
                if close_code is None:
                    websocket.transport.abort()  # a network drop
                else:
                    await websocket.close(close_code)
                return None
            return await super().reply(websocket, frame)

    room = Dropping()
    async with fake_server(room) as url:
        client = await ChatClient.connect(url)
        await client.join_room("k", "Bob")
        typed = Typed("/react 1 👍", "hello after")
        if close_code is None:
            await asyncio.wait_for(prompt_lines(client, typed, Output(False)), 10)
            assert "! connection_lost: The connection dropped; try again" in capsys.readouterr().out
            (sent,) = room.sent("ChatMessage")
            assert decrypt(FAKE_KEY, sent["content"]) == "hello after"
        else:
            with pytest.raises(ConnectionLost):
                await asyncio.wait_for(prompt_lines(client, typed, Output(False)), 10)
            assert client.ended and typed.lines == ["hello after"]
        await client.close()


async def test_ctrl_c_while_a_line_waits_for_the_server_ends_without_a_traceback(server, clients, terminals):
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    bob = terminals("join", server.url, room.join_key, "--name", "Bob")
    await bob.expect(f"join key: {room.join_key}")
    server.kill()
    bob.type("said while the server is down")
    await asyncio.sleep(1)  # the line waits on the reconnect
    bob.process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(bob.process.wait, 10) == 130
    await asyncio.sleep(0.2)  # the last output read
    assert "Traceback" not in bob.output and "never retrieved" not in bob.output, bob.output


def test_join_takes_the_owner_token_from_the_environment(monkeypatch, capsys):
    """`join --owner-token`, by default $CHAT_ROOM_OWNER_TOKEN, which keeps it out of ps."""
    assert parse_args(["join", "ws://host/ws/", "key", "--name", "Ann"]).owner_token is None
    monkeypatch.setenv("CHAT_ROOM_OWNER_TOKEN", "from-env")
    assert parse_args(["join", "ws://host/ws/", "key", "--name", "Ann"]).owner_token == "from-env"
    args = parse_args(["join", "ws://host/ws/", "key", "--name", "Ann", "--owner-token=-given"])
    assert args.owner_token == "-given"
    with pytest.raises(SystemExit):
        parse_args(["join", "--help"])
    assert "(default: $CHAT_ROOM_OWNER_TOKEN" in " ".join(capsys.readouterr().out.split())


async def test_a_returning_owner_joins_from_the_terminal_as_owner(server, clients, terminals, monkeypatch):
    """`join` with $CHAT_ROOM_OWNER_TOKEN: the room's creator, back from a terminal, may
    delete anyone's message."""
    alice = await clients()
    room = await alice.create_room("Room", owner_name="Alice")
    monkeypatch.setenv("CHAT_ROOM_OWNER_TOKEN", alice.owner_token)
    await alice.close()
    bob = await clients()
    await bob.join_room(room.join_key, "Bob")
    spam = await bob.send("spam")
    owner = terminals("join", server.url, room.join_key, "--name", "Alice")
    await owner.expect(f"join key: {room.join_key}")
    owner.type(f"/delete {spam.id}")
    assert await next_of(bob, MessageDeleted) == MessageDeleted(spam.id)
    owner.type("/quit")
    assert await owner.exit_status() == 0


def test_typing_is_one_line_a_burst_in_text_and_every_event_in_json(capsys, monkeypatch):
    """The server relays a Typing every 3 s while someone types: the terminal printed a
    line each time. Now one a burst (TYPING_QUIET), again once the person has spoken."""
    clock_now = [1000.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock_now[0])
    text, as_json = Output(False), Output(True)
    said = Message(1, "Ann", "hi", "2026-01-01T00:00:00Z")
    for event in (Typing("Ann"), Typing("Ann"), Typing("Bob"), said, Typing("Ann")):
        clock_now[0] += 3
        text.event(event)
        as_json.event(event)
    lines = capsys.readouterr().out.splitlines()
    typed = [line for line in lines if line.startswith("* ")]
    assert typed == ["* Ann is typing...", "* Bob is typing...", "* Ann is typing..."], lines
    assert sum('"event": "typing"' in line for line in lines) == 4
    clock_now[0] += cli.TYPING_QUIET
    text.event(Typing("Bob"))
    assert capsys.readouterr().out == "* Bob is typing...\n"
