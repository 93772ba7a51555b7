"""A flood of downloads from one client address against another address's joins and page
loads, through nginx with docs/production.md's site file (of any revision), as
bench/README.md's "nginx's limit_req against a download flood" ran it.

    .venv/bin/python bench/download_flood.py --site HEAD --upstreams 8901 8902 --listen 8910

With --site REV the script starts nginx itself (as root, its workers `nobody`) from the
site file in REV's docs/production.md, its ports and paths moved into a scratch folder and
a self-signed certificate, in front of the `manage.py serve --proxy-headers` processes on
--upstreams; without it, --url is asked as it is.

From --probe-source, every --interval seconds, alternately: a join (a fresh socket with
the room's affinity hint; `JoinRoom` to `RoomJoined` timed) and a page load
(`GET /rooms/<key>/`, on a kept-alive connection, timed to its last byte). First --alone
seconds alone, then --flood seconds while --connections connections from --flood-source
loop `GET /files/<random id>` with a random session cookie, each kept alive (reopened
when closed), in a child process. Prints one JSON object: the probes' p50/p90/p99 alone
and under the flood, and the flood's answers per second by who gave them (nginx's own
429 page or a process's answer).
"""

import argparse
import asyncio
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import connect

PROJECT = Path(__file__).resolve().parents[1]
SITE_BLOCK = re.compile(r"<!-- deploy: file /etc/nginx/sites-available/chat -->\n```nginx\n(.*?)```", re.S)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of these processes so far (their threads included)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def percentiles(samples: list[float]) -> dict[str, float | int]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(point: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * point / 100))], 1)

    return {"count": len(ordered), "p50_ms": at(50), "p90_ms": at(90), "p99_ms": at(99), "max_ms": at(100)}


# --- nginx from the documented site file ------------------------------------------------


def start_nginx(revision: str, upstreams: list[int], listen: int, folder: Path) -> subprocess.Popen:
    doc = subprocess.run(
        ["git", "show", f"{revision}:docs/production.md"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    site = SITE_BLOCK.search(doc)[1]
    swaps = {
        "127.0.0.1:8001": f"127.0.0.1:{upstreams[0]}",
        "127.0.0.1:8002": f"127.0.0.1:{upstreams[1]}",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{listen} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{listen + 1};",
        "/etc/letsencrypt/live/chat.example.org": str(folder),
        "/var/log/nginx/access.log": str(folder / "access.log"),
        "/var/lib/chat": str(folder),
    }
    for old, new in swaps.items():
        assert old in site, old
        site = site.replace(old, new)
    (folder / "site.conf").write_text(site)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=chat.example.org",
         "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log {folder}/access.log;\n  client_body_temp_path {folder}/body;\n"
        f"  proxy_temp_path {folder}/proxy; fastcgi_temp_path {folder}/f; uwsgi_temp_path {folder}/u;\n"
        f"  scgi_temp_path {folder}/s;\n  include /etc/nginx/mime.types;\n  include {folder}/site.conf;\n}}\n"
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run([binary, "-t", "-p", str(folder), "-c", str(conf)], check=True, capture_output=True)
    return subprocess.Popen([binary, "-p", str(folder), "-c", str(conf)])


# --- The flood (a child process) --------------------------------------------------------


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    if length := re.search(rb"(?i)\r\ncontent-length: *(\d+)", head):
        return await reader.readexactly(int(length[1]))
    body = b""  # chunked
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return body


async def flood_connection(host: str, port: int, source: str, stop: float, counts: Counter) -> None:
    context = ssl._create_unverified_context()
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=host, local_addr=(source, 0)
            )
        except OSError:
            counts["connect failed"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < stop:
                writer.write(
                    f"GET /files/{uuid.uuid4()} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Cookie: __Host-sessionid={uuid.uuid4().hex}\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                body = await read_body(reader, head)
                counts[f"{status} {'nginx' if b'<center>nginx' in body else 'process'}"] += 1
                if re.search(rb"(?i)\r\nconnection: *close", head):
                    break
        except (OSError, asyncio.IncompleteReadError, ValueError, TypeError) as exc:
            counts[f"connection lost ({type(exc).__name__})"] += 1
        finally:
            writer.close()


def flood(host: str, port: int, source: str, connections: int, seconds: float, out) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    counts: Counter = Counter()

    async def main() -> None:
        stop = time.monotonic() + seconds
        await asyncio.gather(
            *(flood_connection(host, port, source, stop, counts) for _ in range(connections))
        )

    asyncio.run(main())
    out.put(dict(counts))


# --- The probes -------------------------------------------------------------------------


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host, self.port = args.host, args.port
        self.context = ssl._create_unverified_context()
        self.page = None

    def ws_url(self, join_key: str | None = None) -> str:
        url = f"wss://{self.host}:{self.port}/ws/"
        if join_key:
            url += "?room=" + hashlib.sha256(f"chat-room-affinity:{join_key}".encode()).hexdigest()[:8]
        return url

    async def socket(self, join_key: str | None = None):
        return await connect(
            self.ws_url(join_key), ssl=self.context, host="127.0.0.1", port=self.port,
            origin=f"https://{self.host}", local_addr=(self.args.probe_source, 0), compression=None,
        )  # fmt: skip

    async def request(self, ws, frame: dict, reply: str) -> dict:
        await ws.send(json.dumps(frame))
        while True:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if answer["type"] == reply:
                return answer
            if answer["type"] == "Error":
                raise RuntimeError(answer)

    async def join(self, join_key: str, n: int) -> float:
        ws = await self.socket(join_key)
        try:
            began = time.perf_counter()
            await self.request(
                ws, {"type": "JoinRoom", "join_key": join_key, "name": f"probe {n}"}, "RoomJoined"
            )
            return time.perf_counter() - began
        finally:
            await ws.close()

    def load_page(self, join_key: str) -> float:
        began = time.perf_counter()
        for attempt in range(2):
            if self.page is None:
                self.page = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=self.context, source_address=(self.args.probe_source, 0),
                    timeout=30,
                )  # fmt: skip
            try:
                self.page.request("GET", f"/rooms/{join_key}/", headers={"Host": self.host})
                response = self.page.getresponse()
                response.read()
                assert response.status == 200, response.status
                return time.perf_counter() - began
            except (OSError, http.client.HTTPException):
                self.page.close()
                self.page = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


async def run(args: argparse.Namespace) -> dict:
    probe = Probe(args)
    owner = await probe.socket()
    room = await probe.request(
        owner,
        {"type": "CreateRoom", "name": "flood bench", "description": "", "owner_name": "Owner"},
        "RoomCreated",
    )
    join_key = room["room_info"]["join_key"]
    samples: dict[str, dict[str, list[float]]] = {
        "alone": {"join": [], "page": []},
        "flood": {"join": [], "page": []},
    }
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = None
    began = time.monotonic()
    cpu = {"alone": -cpu_seconds(args.server_pids)}
    n = 0
    while time.monotonic() - began < args.alone + args.flood:
        phase = "alone" if time.monotonic() - began < args.alone else "flood"
        if phase == "flood" and child is None:
            cpu["alone"] += cpu_seconds(args.server_pids)
            cpu["flood"] = -cpu_seconds(args.server_pids)
            child = multiprocessing.Process(
                target=flood,
                args=(args.host, args.port, args.flood_source, args.connections, args.flood, queue),
            )
            child.start()
            flood_began = time.monotonic()
            await asyncio.sleep(1)  # the flood under way
        tick = time.monotonic()
        n += 1
        if n % 2:
            samples[phase]["join"].append(await probe.join(join_key, n))
        else:
            samples[phase]["page"].append(await asyncio.to_thread(probe.load_page, join_key))
        await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - tick)))
    cpu["flood"] = cpu.get("flood", 0) + cpu_seconds(args.server_pids)
    answers = queue.get(timeout=60) if child else {}
    flood_seconds = time.monotonic() - flood_began if child else 0
    if child:
        child.join(30)
    await owner.close()
    return {
        "site": args.site,
        "url": f"https://{args.host}:{args.port}",
        "flood_connections": args.connections,
        # The server processes' CPU, in cores (1.0: one core all the time), per phase.
        "servers_cpu_alone": round(cpu["alone"] / args.alone, 2),
        "servers_cpu_flood": round(cpu["flood"] / flood_seconds, 2) if child else None,
        "flood_answers_per_second": {
            key: round(value / flood_seconds) for key, value in sorted(answers.items())
        },
        **{
            f"{kind}_{phase}": percentiles(samples[phase][kind])
            for phase in ("alone", "flood")
            for kind in ("join", "page")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", help="start nginx with docs/production.md's site file of this git revision")
    parser.add_argument(
        "--upstreams", type=int, nargs=2, default=[8901, 8902], help="the two processes' ports"
    )
    parser.add_argument("--listen", type=int, default=8910, help="nginx's HTTPS port (plain HTTP: the next)")
    parser.add_argument("--port", type=int, help="the HTTPS port to ask (default: --listen)")
    parser.add_argument("--server-pids", type=int, nargs="*", default=[], help="their CPU is reported")
    parser.add_argument("--host", default="chat.example.org")
    parser.add_argument("--flood-source", default="127.0.3.1")
    parser.add_argument("--probe-source", default="127.0.3.2")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--alone", type=float, default=10.0)
    parser.add_argument("--flood", type=float, default=20.0)
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between probes (joins and pages)"
    )
    args = parser.parse_args()
    args.port = args.port or args.listen
    nginx = None
    folder = Path(tempfile.mkdtemp(prefix="chat-flood-nginx."))
    os.chmod(folder, 0o755)
    try:
        if args.site:
            nginx = start_nginx(args.site, args.upstreams, args.listen, folder)
            time.sleep(1)
        figures = asyncio.run(run(args))
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    json.dump(figures, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
