"""docs/production.md, followed step by step on this machine (`make deploy-check`).

A scratch folder stands for `/`. Blocks marked `run` are run as written, with the
paths moved into that folder, `sudo -u ...` dropped, and free ports and a scratch
database name put in; file blocks are written where they belong; `system` blocks
(packages, users, systemd, nginx's own config) are done here by their equivalent: two
processes started from the unit's lines and kept up as `Restart=always` would, nginx
with the documented site file and a self-signed certificate. Then the deployment is
used as people would: through nginx, over TLS, in a browser.
"""

import asyncio
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DOC = PROJECT / "docs" / "production.md"
BLOCK = re.compile(r"<!-- deploy: (run|system|file|step)(?: (\S+))? -->\n```[^\n]*\n(.*?)```", re.S)
HOST = "chat.example.org"

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(600)]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def unavailable() -> str | None:
    if nginx_binary() is None:
        return "nginx is not installed: the deployment docs were not followed (apt-get install nginx-light)"
    for what, port in (("PostgreSQL", 5432), ("Redis", 6379)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return f"{what} is not on 127.0.0.1:{port}, as docs/production.md has it"
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every probe stays bound until all are picked (one at a
    time, the kernel may hand out a port just let go: nginx then had its http and https
    servers on one port, and answered plain HTTP with 400)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def blocks() -> list[tuple[str, str | None, str]]:
    found = BLOCK.findall(DOC.read_text())
    assert found, "docs/production.md has no deploy blocks"
    return [(kind, target or None, text) for kind, target, text in found]


@dataclass
class Deployment:
    root: Path
    ports: dict[str, int]
    database: str
    swaps: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    processes: dict[int, "Supervised"] = field(default_factory=dict)
    nginx: subprocess.Popen | None = None
    skipped: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    umask: str = ""  # the last `umask` a block set: the operator's shell keeps it

    def __post_init__(self) -> None:
        p = self.ports
        found = subprocess.run([PROJECT / "bin" / "find-python"], capture_output=True, text=True)
        python = found.stdout.strip()
        self.swaps = {
            "git clone https://github.com/OWNER/chat.git": f"git clone --quiet {self.root / 'source'}",
            "python3 -m venv": f"{python} -m venv",
            "sudo -u postgres ": "PGHOST=127.0.0.1 PGUSER=postgres ",
            "sudo -u chat ": "",
            "CREATE ROLE chat ": f"CREATE ROLE {self.database} ",
            "--owner chat chat": f"--owner {self.database} {self.database}",
            "--dbname=chat ": f"--dbname={self.database} ",
            "--role=chat ": f"--role={self.database} ",
            "/var/backups/chat": f"{self.root}/var/backups/chat",
            "postgres://chat:": f"postgres://{self.database}:",
            "@127.0.0.1:5432/chat": f"@127.0.0.1:5432/{self.database}",
            "/etc/letsencrypt/live/chat.example.org": f"{self.root}/etc/tls",
            "/opt/chat": f"{self.root}/opt/chat",
            "/etc/chat": f"{self.root}/etc/chat",
            "/var/lib/chat": f"{self.root}/var/lib/chat",
            "/var/log/chat": f"{self.root}/var/log/chat",
            "/var/log/nginx/access.log": f"{self.root}/var/log/nginx-access.log",
            "127.0.0.1:8001": f"127.0.0.1:{p['first']}",
            "127.0.0.1:8002": f"127.0.0.1:{p['second']}",
            "http://127.0.0.1/healthz": f"http://127.0.0.1:{p['http']}/healthz",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{p['https']} ssl http2;",
            "listen 80;": f"listen 127.0.0.1:{p['http']};",
            "systemctl restart chat@$port": 'restart_chat "$port"',
            "for port in 8001 8002;": f"for port in {p['first']} {p['second']};",
        }

    def moved(self, text: str) -> str:
        for old, new in self.swaps.items():
            if old in text:
                self.used.add(old)
                text = text.replace(old, new)
        return text

    def env(self) -> dict[str, str]:
        """What a root shell on the machine has: a PATH, a HOME; never the test's settings."""
        return {
            "PATH": f"{self.root / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            # Our scratch deployment shares this machine's Redis with other tests.
            "CHANNEL_LAYER_PREFIX": f"deploy-{self.database}",
        }

    def shell(self, text: str) -> str:
        helpers = (
            f"manage() {{ env CHAT_ENV_FILE={self.root}/etc/chat/chat.env "
            f'{self.root}/opt/chat/.venv/bin/python {self.root}/opt/chat/manage.py "$@"; }}\n'
            f'restart_chat() {{ pid=$(cat {self.root}/run/chat@$1.pid); kill -TERM "$pid"; '
            f'while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; '
            f'until [ "$(cat {self.root}/run/chat@$1.pid)" != "$pid" ]; do sleep 0.1; done; }}\n'
        )
        if self.umask:
            helpers += f"umask {self.umask}\n"
        self.umask = next(iter(re.findall(r"^umask (\d+)$", text, re.M)[-1:]), self.umask)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", helpers + self.moved(text)],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.root,
            timeout=300,
        )
        output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        assert done.returncode == 0, f"this step failed:\n{text}\n{output}"
        return done.stdout

    # --- What the system blocks do, done here -------------------------------------------

    def folders(self, text: str) -> None:
        """The page's `install -d` lines, with their modes (the owner is this test's user:
        nginx's worker, another user, reads as `chat`'s "others" would)."""
        for mode, paths in re.findall(r"^install -d .*?-m (\d+) (.+)$", self.moved(text), re.M):
            for path in paths.split():
                Path(path).mkdir(parents=True, exist_ok=True)
                os.chmod(path, int(mode, 8))
        for path in ("var/lib/chat/files", "var/log/chat", "etc/chat", "etc/tls", "run", "home", "bin"):
            (self.root / path).mkdir(parents=True, exist_ok=True)
        # `sudo -u postgres psql` and `createdb` find the machine's PostgreSQL by PGHOST.
        self_signed(self.root / "etc" / "tls")

    def start_units(self, line: str) -> None:
        unit = (self.root / "etc/systemd/system/chat@.service").read_text()  # moved when written
        verify_unit(self.root / "etc/systemd/system/chat@.service")
        ports = [int(word.split("@")[1]) for word in line.split() if word.startswith("chat@")]
        assert ports == [8001, 8002], line
        for port in (self.ports["first"], self.ports["second"]):
            self.processes[port] = Supervised.from_unit(unit, port, self)
        for port, process in self.processes.items():
            try:
                wait_for_health(f"http://127.0.0.1:{port}/healthz", within=60)
            except AssertionError as exc:
                output = process.pid_file.with_suffix(".log").read_text()
                raise AssertionError(f"{exc}; its output:\n{output}") from None

    def start_nginx(self) -> None:
        site = self.root / "etc/nginx/sites-available/chat"
        conf = self.root / "etc/nginx/nginx.conf"
        # As on a real machine, nginx's worker is not the server's user: under root it is
        # `nobody`, who reads what the page's modes let `www-data` read.
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {self.root}/run/nginx.pid;\n"
            f"error_log {self.root}/var/log/nginx-error.log;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n  access_log {self.root}/var/log/nginx-access.log;\n"
            f"  client_body_temp_path {self.root}/run/body; proxy_temp_path {self.root}/run/proxy;\n"
            f"  fastcgi_temp_path {self.root}/run/f; uwsgi_temp_path {self.root}/run/u;\n"
            f"  scgi_temp_path {self.root}/run/s;\n"
            "  include /etc/nginx/mime.types;\n"
            f"  include {site};\n}}\n"
        )
        binary = nginx_binary()
        subprocess.run([binary, "-t", "-p", str(self.root), "-c", str(conf)], check=True, capture_output=True)
        self.nginx = subprocess.Popen([binary, "-p", str(self.root), "-c", str(conf)])
        wait_for_health(f"https://127.0.0.1:{self.ports['https']}/healthz", within=20, host=HOST)

    def follow(self, until: str) -> list[tuple[str, str | None, str]]:
        """Follow the page up to the block that contains `until`; returns the rest."""
        steps = blocks()
        for index, (kind, target, text) in enumerate(steps):
            if until in text:
                return steps[index:]
            self.log.append(f"{kind} {target or ''}: {text.splitlines()[0]}")
            if kind == "file":
                path = self.root / target.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(self.moved(text))
            elif kind == "run":
                self.shell(text)
            elif kind == "step":
                continue  # named steps (backup, restore): run by the tests that name them
            elif "useradd" in text:
                self.folders(text)
            elif "systemctl enable --now" in text:
                self.start_units(next(line for line in text.splitlines() if "enable --now" in line))
            elif "sites-enabled" in text:
                self.start_nginx()
            elif "chgrp chat" in text or "createsuperuser" in text:
                self.skipped.append(text.strip())
            else:
                raise AssertionError(f"a system step this proof does not know; teach it:\n{text}")
        raise AssertionError(f"docs/production.md has no step with {until!r}")

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(10)


class Supervised:
    """One `chat@PORT` unit: its ExecStart with its Environment, restarted when it exits
    (`Restart=always`, `RestartSec`), its pid in run/chat@PORT.pid for `restart_chat`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, pid_file: Path, pause: float) -> None:
        self.argv, self.env, self.cwd, self.pid_file, self.pause = argv, env, cwd, pid_file, pause
        self.stopping = False
        self.starts = 0
        self.process = self._start()
        self.thread = threading.Thread(target=self._keep_up, daemon=True)
        self.thread.start()

    @classmethod
    def from_unit(cls, unit: str, port: int, deployment: Deployment) -> "Supervised":
        lines = dict(
            line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
        )
        env = {**deployment.env(), **dict([lines["Environment"].split("=", 1)])}
        argv = shlex.split(lines["ExecStart"].replace("%i", str(port)))
        pause = float(lines["RestartSec"])
        assert lines["Restart"] == "always"
        return cls(argv, env, lines["WorkingDirectory"], deployment.root / f"run/chat@{port}.pid", pause)

    def _start(self) -> subprocess.Popen:
        log = open(self.pid_file.with_suffix(".log"), "a")  # noqa: SIM115 (the child keeps it)
        process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=log)
        self.pid_file.write_text(str(process.pid))
        self.starts += 1
        return process

    def _keep_up(self) -> None:
        while True:
            self.process.wait()
            if self.stopping:
                return
            time.sleep(self.pause)
            if self.stopping:
                return
            self.process = self._start()

    def stop(self) -> None:
        self.stopping = True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def verify_unit(unit: Path) -> None:
    """systemd's own reading of the unit, where systemd-analyze is installed."""
    if shutil.which("systemd-analyze") is None:
        return
    instance = unit.with_name("chat@8001.service")
    shutil.copy(unit, instance)
    verified = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True)
    instance.unlink()
    complaints = [line for line in verified.stderr.splitlines() if "chat@8001.service" in line]
    assert verified.returncode == 0 and not complaints, verified.stderr


def self_signed(folder: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(folder / "privkey.pem"),
         "-out", str(folder / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip


def tls(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root / "etc/tls/fullchain.pem"))


def fetch(url: str, *, host: str | None = None, context: ssl.SSLContext | None = None):
    """(status, headers, body) of a GET, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def wait_for_health(url: str, *, within: float, host: str | None = None) -> None:
    context = ssl._create_unverified_context() if url.startswith("https") else None
    deadline = time.monotonic() + within
    while True:
        try:
            if fetch(url, host=host, context=context)[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {within} s"
        time.sleep(0.2)


def snapshot(into: Path) -> None:
    """The project as it is now (committed or not), as the repository to clone."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=PROJECT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = PROJECT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    git = ["git", "-c", "user.name=deploy", "-c", "user.email=deploy@localhost"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"]):
        subprocess.run([*git, *step], cwd=into, check=True, capture_output=True)


@pytest.fixture(scope="module")
def deployment():
    if reason := unavailable():
        if os.environ.get("DEPLOY_TESTS_REQUIRED") == "1":
            pytest.fail(f"DEPLOY_TESTS_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    # Not under pytest's own temporary folder, which only this user may enter.
    root = Path(tempfile.mkdtemp(prefix="chat-deploy-"))
    os.chmod(root, 0o755)
    names = ("first", "second", "https", "http")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    deploy = Deployment(root, ports, database=f"chat_{uuid.uuid4().hex[:10]}")
    (root / "source").mkdir()
    snapshot(root / "source")
    began = time.monotonic()
    try:
        deploy.rest = deploy.follow(until="git pull --ff-only")
        deploy.seconds = time.monotonic() - began
        print(f"\nfirst deployment by docs/production.md: {deploy.seconds:.0f} s")
        yield deploy
    finally:
        deploy.stop()
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q",
             "-c", f"DROP DATABASE IF EXISTS {deploy.database}",
             "-c", f"DROP ROLE IF EXISTS {deploy.database}"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def test_every_step_of_the_page_was_followed(deployment):
    """Every rewrite this proof makes matched the page (a changed page changes the proof),
    and only the steps that need a real machine's root were left to it."""
    for _, _, text in deployment.rest:
        deployment.moved(text)
    assert set(deployment.swaps) == deployment.used, set(deployment.swaps) - deployment.used
    assert len(deployment.skipped) == 2, deployment.skipped
    env_file = (deployment.root / "etc/chat/chat.env").read_text()
    assert "DJANGO_SECRET_KEY=" in env_file and "$(" not in env_file


def test_health_checks_answer_and_plain_http_redirects_everything_else(deployment):
    ports = deployment.ports
    for port in (ports["first"], ports["second"]):
        assert fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
    status, _, body = fetch(f"http://127.0.0.1:{ports['http']}/healthz", host=HOST)
    assert status == 200 and b'"ok"' in body, (status, body)
    status, headers, _ = fetch(f"http://127.0.0.1:{ports['http']}/rooms/x/", host=HOST)
    assert status == 301 and headers["Location"] == f"https://{HOST}/rooms/x/"
    unverified = ssl._create_unverified_context()
    status, headers, _ = fetch(f"https://127.0.0.1:{ports['https']}/", host=HOST, context=unverified)
    assert status == 200 and "preload" in headers["Strict-Transport-Security"]


def test_static_files_have_hashed_names_that_browsers_may_keep(deployment):
    base = f"https://127.0.0.1:{deployment.ports['https']}"
    context = ssl._create_unverified_context()
    _, _, page = fetch(f"{base}/", host=HOST, context=context)
    script = re.search(rb'<script type="module" src="(/static/chat/app\.[0-9a-f]{12}\.js)"', page)
    assert script, page[:2000]
    status, headers, body = fetch(f"{base}{script[1].decode()}", host=HOST, context=context)
    # nginx's own header (the page's map), not WhiteNoise's behind try_files: nginx read it.
    assert status == 200 and headers["Cache-Control"] == "public, max-age=31536000, immutable"
    errors = (deployment.root / "var/log/nginx-error.log").read_text()
    assert "Permission denied" not in errors, errors
    imports = re.findall(rb'from "\./([a-z]+\.[0-9a-f]{12}\.js)"', body)
    assert imports, body[:500]
    for name in imports:
        assert fetch(f"{base}/static/chat/{name.decode()}", host=HOST, context=context)[0] == 200


def test_a_browser_session_through_nginx_chats_and_shares_a_file(deployment, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, browser_unavailable
    from tests.browser.pages import create_room, join_room, message_texts, say
    from tests.browser.test_files import file_items, pick

    if reason := browser_unavailable():
        pytest.skip(reason)
    https = deployment.ports["https"]
    playwright = sync_playwright().start()
    # chat.example.org is this machine, as DNS would have it.
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"]
    )

    def person(url: str):
        page = browser.new_context(ignore_https_errors=True, accept_downloads=True).new_page()
        page.goto(url)
        return page

    try:
        alice = person(f"https://{HOST}:{https}/")
        link = create_room(alice, "Through nginx", "Alice")
        bob = person(link)
        join_room(bob, "Bob")
        say(alice, "hello over TLS")
        expect(bob.locator("#messages li .text")).to_have_text(["hello over TLS"])
        pick(alice, "notes.txt", "text/plain", b"shared through nginx\n")
        link_in_bob = file_items(bob).get_by_role("link")
        expect(link_in_bob).to_have_text("notes.txt")
        with bob.expect_download() as download:
            link_in_bob.click()
        saved = tmp_path / "notes.txt"
        download.value.save_as(saved)
        assert saved.read_bytes() == b"shared through nginx\n"
        assert "hello over TLS" in message_texts(alice)
        # The share link's join key opens the room: nginx's access log keeps none.
        logged = (deployment.root / "var/log/nginx-access.log").read_text()
        join_key = link.partition("/rooms/")[2].partition("/")[0]
        assert join_key and join_key not in logged and '"GET / HTTP' in logged
    finally:
        browser.close()
        playwright.stop()


def through_nginx(deployment: Deployment) -> type:
    """The Python client, connecting to nginx's port as if it were chat.example.org."""
    from websockets.asyncio.client import connect

    from chatclient.client import ChatClient

    context = tls(deployment.root)

    class ThroughNginx(ChatClient):
        async def _open(self):
            return await connect(
                self._socket_url(), ssl=context, host="127.0.0.1", port=deployment.ports["https"],
                origin=f"https://{HOST}", max_size=self.max_frame, compression=None,
            )  # fmt: skip

    return ThroughNginx


def test_a_rooms_members_land_on_one_process(deployment):
    """nginx hashes the room hint the client puts in the socket's address
    (docs/production.md, "Room affinity"): every member who joins a room with it is
    served by one process."""
    ThroughNginx = through_nginx(deployment)
    url = f"wss://{HOST}:{deployment.ports['https']}/ws/"

    async def scenario() -> str:
        owner = await ThroughNginx.connect(url)
        room = await owner.create_room("Affinity", owner_name="Ann")
        members = [await ThroughNginx.connect(url, room=room.share_link) for _ in range(8)]
        for n, member in enumerate(members):
            await member.join_room(room.join_key, f"Member {n}")
        for client in (owner, *members):
            await client.close()
        return room.id

    room_id = asyncio.run(scenario())
    joins = {
        port: process.pid_file.with_suffix(".log").read_text().count(f"event=join room={room_id}")
        for port, process in deployment.processes.items()
    }
    assert sorted(joins.values()) == [0, 8], joins


def test_a_rolling_restart_while_a_client_chats_loses_nothing(deployment):
    """The upgrade steps, run as written, while a client sends: every message it was told
    was stored is in the history, once and in order, and each process was restarted."""
    from chatclient.events import History

    upgrade = next(text for kind, _, text in deployment.rest if "git pull --ff-only" in text)
    starts = {port: process.starts for port, process in deployment.processes.items()}
    url = f"wss://{HOST}:{deployment.ports['https']}/ws/"
    ThroughNginx = through_nginx(deployment)

    async def scenario() -> tuple[list[str], list[str]]:
        sender = await ThroughNginx.connect(url)
        room = await sender.create_room("Upgrade", owner_name="Ann")
        upgrading = asyncio.create_task(asyncio.to_thread(deployment.shell, upgrade))
        sent = []
        while not upgrading.done():
            sent.append((await sender.send(f"message {len(sent)}")).text)
            # A person's pace, under CHAT_RATE_SUSTAINED, and slow enough that an upgrade
            # of up to 50 s keeps every message within one History (CHAT_HISTORY_LIMIT).
            await asyncio.sleep(0.5)
        await upgrading
        sent.append((await sender.send("after the upgrade")).text)
        reader = await ThroughNginx.connect(url)
        await reader.join_room(room.join_key, "Reader")
        history = await anext(event async for event in reader.events() if isinstance(event, History))
        await sender.close()
        await reader.close()
        return sent, [message.text for message in history.messages]

    sent, stored = asyncio.run(scenario())
    assert stored == sent and len(sent) > 10
    assert all(process.starts == starts[port] + 1 for port, process in deployment.processes.items())


Answer = tuple[int, dict, bytes]


def requests_from(source: str, port: int, path: str, count: int, connections: int = 4) -> list[Answer]:
    """`count` GETs of `path` (each with a fresh random id in place of `{}`) through nginx,
    from the loopback address `source`, over `connections` kept-alive connections at once:
    (status, headers, body) of each."""
    answers: list[Answer] = []

    def one_connection(share: int) -> None:
        context = ssl._create_unverified_context()
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=context, source_address=(source, 0), timeout=10
        )
        try:
            for _ in range(share):
                headers = {"Host": HOST, "Cookie": f"__Host-sessionid={uuid.uuid4().hex}"}
                connection.request("GET", path.format(uuid.uuid4()), headers=headers)
                response = connection.getresponse()
                answers.append((response.status, dict(response.headers), response.read()))
        finally:
            connection.close()

    share = count // connections
    threads = [threading.Thread(target=one_connection, args=(share,)) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def by_nginx(answer: Answer) -> bool:
    """nginx's own 429 page: HTML signed by nginx, without the processes' Retry-After
    (theirs are text/plain: files/views.py `_read_much`, chat/security.py `busy`)."""
    status, headers, body = answer
    return status == 429 and b"<center>nginx" in body and "Retry-After" not in headers


@pytest.mark.parametrize(
    ("path", "zone", "source"),
    [
        ("/files/{}", "chat_downloads", "127.0.0.2"),
        ("/rooms/{}/", "chat_pages", "127.0.0.3"),
        ("/", "chat_app", "127.0.0.4"),
    ],
)
def test_a_flood_from_one_address_gets_nginxs_429_and_others_are_served(deployment, path, zone, source):
    """nginx's `limit_req` (docs/production.md, step 7): one client address's flood of
    downloads (or of pages) is refused by nginx past the zone's burst, so the processes
    answer at most the burst and the rate; another address is served meanwhile, and the
    same address again once it asks within the rate."""
    port = deployment.ports["https"]
    began = time.monotonic()
    flood = requests_from(source, port, path, count=480)
    seconds = time.monotonic() - began
    refused = [answer for answer in flood if by_nginx(answer)]
    passed = [answer for answer in flood if not by_nginx(answer)]
    statuses = sorted({status for status, _, _ in flood})
    assert refused, f"no 429 from nginx in {len(flood)} requests from one address (statuses {statuses})"
    site = (deployment.root / "etc/nginx/sites-available/chat").read_text()
    rate = int(re.search(rf"zone={zone}:\S+ rate=(\d+)r/s;", site)[1])
    burst = int(re.search(rf"limit_req zone={zone} burst=(\d+) nodelay;", site)[1])
    # What passed reached a process: a download of no file is its 404, a room page its page.
    assert all(status in (200, 404) for status, _, _ in passed), statuses
    assert len(passed) <= burst + rate * seconds + 2, (len(passed), burst, rate, seconds)
    # Another address, at once: served by a process, not refused.
    other = requests_from("127.0.0.1", port, path, count=1, connections=1)
    assert not by_nginx(other[0]) and other[0][0] in (200, 404), other[0][:2]
    # The flooding address itself, once it asks within the rate again.
    time.sleep(2 / rate)
    again = requests_from(source, port, path, count=1, connections=1)
    assert not by_nginx(again[0]) and again[0][0] in (200, 404), again[0][:2]
    if path == "/":
        # The WebSocket's handshakes on the same location are not counted: more of them
        # than the zone's burst, at once after the flood, all open.
        assert sockets_opened_from(deployment, source, burst + 10) == burst + 10


def site_file() -> str:
    return next(text for kind, target, text in blocks() if target == "/etc/nginx/sites-available/chat")


def test_an_ipv6_client_is_its_network_at_the_edge(tmp_path):
    """The site file's `limit_req` counts an IPv6 client by its /64 (IPV6_PREFIX_LENGTH),
    as the processes do, and an IPv4 client by its address. This machine connects from
    one IPv6 address, so the site file's `$chat_client` map and its download zone run in
    an nginx of their own that takes the client's address from X-Forwarded-For (the
    realip module), with the zone's rate cut to one a minute and a burst of 2."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("DEPLOY_TESTS_REQUIRED") == "1":
            pytest.fail("DEPLOY_TESTS_REQUIRED=1 but nginx is not installed")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    site = site_file()
    client_map = re.search(r"^map \$binary_remote_addr \$chat_client \{.*?^\}", site, re.S | re.M)[0]
    zone = re.search(r"^limit_req_zone \$chat_client zone=chat_downloads:\S+", site, re.M)[0]
    front, back = free_ports(2)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {tmp_path};" for kind in kinds)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n {temp}\n{client_map}\n{zone} rate=1r/m;\n limit_req_status 429;\n"
        f" server {{ listen 127.0.0.1:{back}; location / {{ return 200; }} }}\n"
        f" server {{\n  listen 127.0.0.1:{front};\n  set_real_ip_from 127.0.0.1;\n"
        "  real_ip_header X-Forwarded-For;\n"
        "  location / { limit_req zone=chat_downloads burst=2 nodelay;"
        f" proxy_pass http://127.0.0.1:{back}; }}\n"
        " }\n}\n"
    )
    nginx = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf)])
    try:
        wait_for_health(f"http://127.0.0.1:{front}/", within=20)

        def statuses(*clients: str) -> list[int]:
            answers = []
            for client in clients:
                connection = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
                connection.request("GET", "/", headers={"X-Forwarded-For": client})
                answers.append(connection.getresponse().status)
                connection.close()
            return answers

        # Three a client (one, and the burst of 2), each from a new address of its /64.
        network = ["2001:db8:1:2::a", "2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::b", "2001:db8:1:2::c"]
        assert statuses(*network) == [200, 200, 200, 429]
        assert statuses("2001:db8:1:3::a") == [200]  # the next /64
        assert statuses(*["192.0.2.1"] * 4, "192.0.2.2") == [200, 200, 200, 429, 200]
    finally:
        nginx.terminate()
        nginx.wait(10)


def sockets_opened_from(deployment: Deployment, source: str, count: int) -> int:
    """How many of `count` WebSockets opened one after the other from `source` through
    nginx got their handshake through (each closed before the next)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    port = deployment.ports["https"]

    async def scenario() -> int:
        opened = 0
        for _ in range(count):
            try:
                async with connect(
                    f"wss://{HOST}:{port}/ws/", ssl=tls(deployment.root), host="127.0.0.1", port=port,
                    origin=f"https://{HOST}", local_addr=(source, 0),
                ):  # fmt: skip
                    opened += 1
            except InvalidStatus:
                pass
        return opened

    return asyncio.run(scenario())


def test_the_cron_line_runs_with_an_empty_environment_and_purges(deployment):
    """The documented cron line, as cron runs it: /bin/sh, no environment at all."""
    line = (deployment.root / "etc/cron.d/chat").read_text().strip()
    fields = line.split(None, 6)
    assert fields[5] == "chat", "a cron.d line names its user"
    upload = subprocess.run(
        [sys.executable, "-c", UPLOAD_AND_DELETE, f"wss://{HOST}:{deployment.ports['https']}/ws/",
         str(deployment.root / "etc/tls/fullchain.pem"), str(deployment.ports["https"])],
        capture_output=True, text=True, timeout=60, cwd=PROJECT,
    )  # fmt: skip
    assert upload.returncode == 0, upload.stderr
    cron = ["env", "-i", "/bin/sh", "-c", fields[6]]
    ran = subprocess.run(cron, capture_output=True, text=True, timeout=90)
    assert ran.returncode == 0, ran.stderr
    log = (deployment.root / "var/log/chat/purge.log").read_text()
    assert "purge_files: removed 1 file (0 expired, 1 deleted" in log, log


UPLOAD_AND_DELETE = """
import asyncio, ssl, sys
from websockets.asyncio.client import connect
from chatclient.client import ChatClient

url, cafile, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.create_default_context(cafile=cafile)

class ThroughNginx(ChatClient):
    async def _open(self):
        return await connect(self.url, ssl=context, host="127.0.0.1", port=port,
                             origin="https://chat.example.org", max_size=self.max_frame, compression=None)

async def main():
    client = await ThroughNginx.connect(url)
    await client.create_room("Files", owner_name="Ann")
    shared = await client.upload_file(b"to be purged", name="purge.txt", mime_type="text/plain")
    await client.delete_file(shared.id)
    await client.close()

asyncio.run(main())
"""


def test_a_backup_taken_while_serving_restores_onto_a_wiped_site(deployment):
    """Step 10 as written, last (it replaces the site the tests above used): the backup
    while a client chats; the database, its role and /var/lib/chat gone, chat.env kept
    apart; steps 1 and 3, the restore, steps 5 and 6. The old share link joins through
    nginx, the history reads and the file downloads."""
    from chatclient.events import FileShared, History

    steps = {target: text for kind, target, text in deployment.rest if kind == "step"}
    url = f"wss://{HOST}:{deployment.ports['https']}/ws/"
    ThroughNginx = through_nginx(deployment)
    data = b"kept through a restore\n"

    async def before() -> tuple[str, list[str], str]:
        owner = await ThroughNginx.connect(url)
        room = await owner.create_room("Backed up", owner_name="Ann")
        sent = [(await owner.send("before the backup")).text]
        shared = await owner.upload_file(data, name="kept.txt", mime_type="text/plain")
        backing_up = asyncio.create_task(asyncio.to_thread(deployment.shell, steps["backup"]))
        while not backing_up.done():
            sent.append((await owner.send(f"during {len(sent)}")).text)
            await asyncio.sleep(0.2)
        await backing_up
        await owner.close()
        return room.share_link, sent, shared.id

    link, sent, file_id = asyncio.run(before())
    # A new machine: nothing of the site but the backup and chat.env (kept apart).
    for process in deployment.processes.values():
        process.stop()
    deployment.processes.clear()
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1",
         "-c", f"DROP DATABASE {deployment.database} WITH (FORCE)", "-c", f"DROP ROLE {deployment.database}"],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(deployment.root / "var/lib/chat")
    tls_folder = deployment.root / "etc/tls"
    certificate = {path.name: path.read_bytes() for path in tls_folder.iterdir()}
    page = blocks()
    deployment.folders(next(text for _, _, text in page if "useradd" in text))  # step 1
    for name, content in certificate.items():  # nginx keeps serving the one it has
        (tls_folder / name).write_bytes(content)
    deployment.shell(next(text for kind, _, text in page if kind == "run" and "CREATE ROLE" in text))
    deployment.shell(steps["restore"])
    deployment.shell(next(text for kind, _, text in page if kind == "run" and "manage migrate" in text))
    deployment.start_units(next(text for _, _, text in page if "systemctl enable --now" in text))

    async def after() -> tuple[list[str], list[str], bytes]:
        reader = await ThroughNginx.connect(url)
        await reader.join_room(link, "Bob")
        history = await anext(event async for event in reader.events() if isinstance(event, History))
        _, downloaded = await reader.download_file(file_id)
        await reader.close()
        texts = [message.text for message in history.messages if not isinstance(message, FileShared)]
        files = [message.name for message in history.messages if isinstance(message, FileShared)]
        return texts, files, downloaded

    texts, files, downloaded = asyncio.run(after())
    assert texts[:1] == sent[:1] and texts == sent[: len(texts)], (texts, sent)
    assert files == ["kept.txt"] and downloaded == data


def test_the_steps_run_the_python_the_named_systems_ship():
    """Step 1 names Debian 13 (Python 3.13) first, which has no `python3.12`: a step that
    names one fails there with "command not found" (the proof runs bin/find-python's
    interpreter instead, which hid it). No deployment needed."""
    for kind, _, text in blocks():
        if kind == "run":
            assert not re.search(r"\bpython3\.\d+\b", text), f"a run block names a Python version:\n{text}"


def test_the_upgrade_defines_the_manage_it_runs():
    """Step 9 is typed on a later day, in a new shell: the `manage` function step 5
    defined "for this session" is gone by then ("manage: command not found"; the proof's
    shell defines it for every block, which hid it). No deployment needed."""
    (upgrade,) = [text for _, _, text in blocks() if "git pull --ff-only" in text]
    definition = upgrade.find("manage() {")
    assert 0 <= definition < upgrade.find("\nmanage "), upgrade
