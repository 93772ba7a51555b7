#!/usr/bin/env python3
"""Static files under `serve`: ServeStatic's middleware against the WhiteNoise wrapper.

    .venv/bin/python bench/static.py [--runs 3] [--duration 10] [--concurrency 20]

One `collectstatic` (hashed names and their .gz copies) and one migrated SQLite database
in a new CHAT_VAR_DIR, then, for each of --runs rounds, one fresh `serve` process per
variant (DEBUG off, uvicorn, as production starts it), alternating A B A B ...:

  wrapper      the settings as they are: chat.staticfiles.AsyncWhiteNoiseMiddleware, the
               async wrapper around WhiteNoise's middleware
  servestatic  the same settings with that middleware replaced by ServeStatic's
               (servestatic.middleware.ServeStaticMiddleware, finders on, autorefresh
               off, as WhiteNoise's; needs `.venv/bin/pip install servestatic==4.4.0`,
               which requirements.txt does not list)

Both serve the same STATIC_ROOT, the gzip copies included, with the same storage.

--concurrency keep-alive HTTP/1.1 connections (raw asyncio streams) request, for
--duration seconds after one second of warm-up, the files the chat page loads (its CSS
and the JS modules it imports, by hashed name) in turn, each three ways: plain, with
`Accept-Encoding: gzip, br` (must come back gzip) and with `If-None-Match` (must be a
304). Per run: requests/s, p50/p99 latency, the server's CPU seconds (user + system,
all threads, /proc/PID/stat) per 1,000 requests, the cores the server and this client
kept busy, and the load averages before the run. One JSON object per run, then the
medians per variant, on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = "chat.staticfiles.AsyncWhiteNoiseMiddleware"
SERVESTATIC = "servestatic.middleware.ServeStaticMiddleware"
VARIANTS = ("servestatic", "wrapper")
SPECIFIER = re.compile(r"""\bfrom\s*["']([^"']+)["']|\bimport\s*\(?\s*["']([^"']+)["']""")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FIGURES = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_s_per_1000")


# --- The server side: the `serve` command with the chosen middleware -------------------


def serve(variant: str, port: int) -> None:
    """Run `manage.py serve` in this process, the middleware swapped for the ServeStatic variant."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    if variant == "servestatic":
        settings.MIDDLEWARE = [SERVESTATIC if name == WRAPPER else name for name in settings.MIDDLEWARE]
        settings.SERVESTATIC_USE_FINDERS = True  # as WHITENOISE_USE_FINDERS
        settings.SERVESTATIC_AUTOREFRESH = False  # as WHITENOISE_AUTOREFRESH with DEBUG off
    assert settings.MIDDLEWARE.count(WRAPPER) == (variant == "wrapper"), settings.MIDDLEWARE
    call_command("serve", host="127.0.0.1", port=port)


# --- The client: keep-alive HTTP/1.1 over asyncio streams ------------------------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def get(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "chunked" not in headers.get("transfer-encoding", ""):
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
            return int(status_line.split()[1]), headers, body
        chunks = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")  # no trailers
        return int(status_line.split()[1]), headers, b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


def request(path: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def page_files(port: int) -> list[str]:
    """The CSS and every JS module the chat page loads, as it names them."""
    connection = await Connection.open(port)
    try:
        status, _, body = await connection.get(request("/"))
        assert status == 200, status
        links = re.findall(r'(?:src|href)="(/static/[^"]+)"', body.decode())
        seen, queue = set(links), [link for link in links if link.endswith(".js")]
        while queue:
            url = queue.pop()
            status, _, body = await connection.get(request(url))
            assert status == 200, (url, status)
            for a, b in SPECIFIER.findall(body.decode()):
                name = urljoin(url, a or b)
                if name not in seen:
                    seen.add(name)
                    queue.append(name)
        return sorted(seen)
    finally:
        connection.close()


async def request_mix(port: int) -> list[tuple[bytes, int, str | None]]:
    """(request, expected status, expected Content-Encoding) for every file, three ways."""
    connection = await Connection.open(port)
    mix = []
    try:
        for path in await page_files(port):
            status, headers, _ = await connection.get(request(path))
            assert status == 200 and "immutable" in headers["cache-control"], (path, headers)
            mix.append((request(path), 200, None))
            mix.append((request(path, Accept_Encoding="gzip, br"), 200, "gzip"))
            mix.append((request(path, If_None_Match=headers["etag"]), 304, None))
    finally:
        connection.close()
    return mix


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


async def load(port: int, pid: int, concurrency: int, duration: float, warmup: float = 1.0) -> dict:
    mix = await request_mix(port)
    latencies: list[float] = []
    errors: list[str] = []
    state = {"measuring": False, "stop": False}

    async def worker(offset: int) -> None:
        connection = await Connection.open(port)
        try:
            index = offset
            while not state["stop"]:
                raw, want_status, want_encoding = mix[index % len(mix)]
                index += 1
                started = time.perf_counter()
                status, headers, _ = await connection.get(raw)
                elapsed = time.perf_counter() - started
                if status != want_status or headers.get("content-encoding") != want_encoding:
                    errors.append(f"{raw.split()[1].decode()}: {status} {headers.get('content-encoding')}")
                if state["measuring"]:
                    latencies.append(elapsed)
        finally:
            connection.close()

    tasks = [asyncio.create_task(worker(i * len(mix) // concurrency)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    state["measuring"], cpu_before, started = True, cpu_seconds(pid), time.perf_counter()
    client_before = time.process_time()
    await asyncio.sleep(duration)
    state["measuring"], cpu_after, elapsed = False, cpu_seconds(pid), time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    state["stop"] = True
    await asyncio.gather(*tasks)
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "requests_per_s": round(count / elapsed, 1),
        "p50_ms": round(latencies[count // 2] * 1000, 3),
        "p99_ms": round(latencies[int(count * 0.99)] * 1000, 3),
        "server_cpu_s_per_1000": round((cpu_after - cpu_before) / count * 1000, 4),
        # Cores busy: the server (all its threads) and this client, to see which one bounds.
        "server_cores": round((cpu_after - cpu_before) / elapsed, 2),
        "client_cores": round(client_cpu / elapsed, 2),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "files": len(mix) // 3,
    }


# --- The rounds ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request("/healthz"))
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def one_run(variant: str, env: dict, args: argparse.Namespace) -> dict:
    port = free_port()
    load_average = Path("/proc/loadavg").read_text().split()[:3]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", variant, str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        wait_healthy(port, process)
        measured = load(port, process.pid, args.concurrency, args.duration)
        result = asyncio.run(measured, loop_factory=loop_factory())
    except BaseException:
        log.seek(0)
        print(log.read().decode(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    return {"variant": variant, "load_average_before": " ".join(load_average), **result}


def loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 4)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="rounds of A B (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per run (default 10)")
    parser.add_argument("--concurrency", type=int, default=20, help="keep-alive connections (default 20)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="order of the variants in a round")
    parser.add_argument("--var-dir", help="CHAT_VAR_DIR (default: a new temporary directory)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if "servestatic" in variants and importlib.util.find_spec("servestatic") is None:
        parser.error("the servestatic variant needs `.venv/bin/pip install servestatic==4.4.0`")
    var_dir = args.var_dir or tempfile.mkdtemp(prefix="chat-bench-static.")
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "CHAT_VAR_DIR": var_dir,
    }
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--clear"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v0"], cwd=ROOT, env=env, check=True)
    print(f"CHAT_VAR_DIR={var_dir}, {args.runs} rounds of {' '.join(variants)}", file=sys.stderr)
    runs = []
    for _ in range(args.runs):
        for variant in variants:
            run = one_run(variant, env, args)
            runs.append(run)
            print(json.dumps(run), flush=True)
    for variant in variants:
        mine = [run for run in runs if run["variant"] == variant]
        summary = {key: median_of(mine, key) for key in FIGURES}
        loads = [run["load_average_before"].split()[0] for run in mine]
        print(json.dumps({"variant": variant, "median_of": len(mine), **summary, "load_1min_before": loads}))


if __name__ == "__main__":
    main()
