"""A browser tab left open all day in a busy room: what the page holds as the room goes on.

One `serve` (SQLite, the in-memory layer, chat rates raised), Debian's chromium driven by
Playwright with the page in a standard room, and a Python client (tests/e2e/wsclient.py)
posting messages as fast as the server stores them. At each checkpoint the page's DOM
nodes, JS heap (after a forced GC), event listeners, live blob URLs and pending timers
(Chrome DevTools Protocol `Performance.getMetrics`, and counters an init script keeps),
the messages shown, and the time from another client's send to its message on the page
(median of a few, the room idle). Then (`--older`) pages of older messages read by
scrolling up, (`--images`) image files previewed in a sealed room, and (`--rooms`)
leaving and joining rooms in the same tab.

    .venv/bin/python bench/long_session.py --messages 1000,5000,20000 --older 40 --images 60 --rooms 30

Ports 9200-9299 only (`--port`); the database goes under `--var` (a fresh directory).
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.async_api import async_playwright  # noqa: E402

from chatclient.crypto import SealedKeys, seal_file, seal_message, secret_from_link  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.test_files import tiny_png  # noqa: E402
from tests.e2e.servers import ServerProcess, manage, production_env  # noqa: E402
from tests.e2e.wsclient import Client  # noqa: E402

# Counters the page's own code cannot see: blob URLs alive, timers pending, observed items.
COUNTERS = """
window.__blobs = new Set();
const create = URL.createObjectURL, revoke = URL.revokeObjectURL;
URL.createObjectURL = (blob) => { const url = create(blob); window.__blobs.add(url); return url; };
URL.revokeObjectURL = (url) => { window.__blobs.delete(url); revoke(url); };
window.__timers = new Set();
const st = window.setTimeout, ct = window.clearTimeout;
window.setTimeout = (fn, ms, ...args) => {
  const id = st((...a) => { window.__timers.delete(id); typeof fn === "function" && fn(...a); }, ms, ...args);
  window.__timers.add(id);
  return id;
};
window.clearTimeout = (id) => { window.__timers.delete(id); ct(id); };
window.__observed = 0;
const observer = IntersectionObserver.prototype;
const { observe, unobserve, disconnect } = observer;
observer.observe = function (t) { window.__observed += 1; return observe.call(this, t); };
observer.unobserve = function (t) { window.__observed -= 1; return unobserve.call(this, t); };
observer.disconnect = function () { window.__observed = 0; return disconnect.call(this); };
"""

SCROLL_DOWN = "() => { const l = document.getElementById('messages'); l.scrollTop = l.scrollHeight; }"

LIMITS = {
    "CHAT_RATE_BURST": "1000000",
    "CHAT_RATE_SUSTAINED": "1000000",
    "CHAT_BYTES_PER_ADDRESS_BURST": "1000000000",
    "CHAT_BYTES_PER_ADDRESS_SUSTAINED": "1000000000",
    "READS_PER_MINUTE": "100000",
    "FILES_UPLOADS_PER_MINUTE": "100000",
    "ROOMS_PER_HOUR": "100000",
    "LARGE_FRAME_BYTES_PER_MINUTE": "10000000000",
}


def renderers_mb() -> float:
    """The resident memory of this script's chromium renderers (descendants of this process)."""
    parents, total = {}, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != os.getpid():
            ancestor = parents.get(ancestor)
        if not ancestor:
            continue
        try:
            if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return round(total / 1024, 1)


async def metrics(page, cdp) -> dict:
    await cdp.send("HeapProfiler.collectGarbage")
    got = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
    counted = await page.evaluate(
        """() => ({shown: document.querySelectorAll('#messages li.message').length,
                  blobs: window.__blobs.size, timers: window.__timers.size, observed: window.__observed})"""
    )
    return {
        "nodes": int(got["Nodes"]),
        "heap_mb": round(got["JSHeapUsedSize"] / 2**20, 1),
        "listeners": int(got["JSEventListeners"]),
        "renderers_mb": renderers_mb(),
        **counted,
    }


async def flood(sender: Client, count: int, tag: str, batch: int = 500) -> float:
    """`count` messages, `batch` in flight at a time; the seconds it took the server."""
    started = time.monotonic()
    sent = 0
    while sent < count:
        n = min(batch, count - sent)
        for i in range(n):
            await sender.say(f"{tag} {sent + i} " + "lorem ipsum dolor sit amet " * 3)
        for _ in range(n):
            await sender.expect("ChatMessage", within=60)
        sent += n
    return time.monotonic() - started


async def last_text(page, text: str, within: float = 600) -> None:
    await page.wait_for_function(
        """(text) => { const all = document.querySelectorAll('#messages li.message .text');
                       return all.length && all[all.length - 1].textContent === text; }""",
        arg=text,
        timeout=within * 1000,
        polling=100,
    )


async def render_ms(page, server, join_key: str, samples: int = 5) -> float:
    """Median time from a send by another client to its message on the page (a client of
    its own each time: one that stayed would have to read the whole flood)."""
    prober = await Client.open(server.url)
    await prober.join(join_key, f"Carol {time.monotonic_ns()}")
    times = []
    for i in range(samples):
        text = f"probe {time.monotonic_ns()} {i}"
        await page.evaluate(
            """(text) => new Promise((ready) => {
                 window.__probe = null;
                 const list = document.getElementById('messages');
                 const seen = new MutationObserver(() => {
                   const last = list.querySelector('li.message:last-of-type .text');
                   if (last && last.textContent === text) { window.__probe = Date.now(); seen.disconnect(); }
                 });
                 seen.observe(list, {childList: true, subtree: true});
                 ready();
               })""",
            text,
        )
        start = time.time() * 1000
        await prober.say(text)
        await prober.expect("ChatMessage")
        await page.wait_for_function("() => window.__probe !== null", polling=10, timeout=120_000)
        times.append(await page.evaluate("() => window.__probe") - start)
    await prober.close()
    return round(statistics.median(times), 1)


async def create_room(page, name: str, sealed: bool = False) -> str:
    await page.fill("#create-name", name)
    await page.fill("#create-owner", "Alice")
    await page.set_checked("#create-sealed", sealed)
    await page.click("#create-form button[type=submit]")
    await page.wait_for_function("(n) => document.getElementById('room-name').textContent === n", arg=name)
    await page.wait_for_function("() => document.getElementById('share-link').value")
    return await page.input_value("#share-link")


def join_key_of(link: str) -> str:
    return link.split("#")[0].rstrip("/").rsplit("/", 1)[1]


def report(label: str, row: dict) -> None:
    print(json.dumps({"at": label, **row}), flush=True)


async def messages_phase(page, cdp, server, checkpoints: list[int]) -> tuple[Client, str]:
    link = await create_room(page, "Busy")
    bob = await Client.open(server.url)
    await bob.join(join_key_of(link), "Bob")
    report("0", {**await metrics(page, cdp), "render_ms": await render_ms(page, server, join_key_of(link))})
    posted = 0
    for target in checkpoints:
        started = time.monotonic()
        took = await flood(bob, target - posted, f"m{target}")
        posted = target
        await bob.say(end := f"end {target}")
        await bob.expect("ChatMessage")
        await last_text(page, end)
        drained = time.monotonic() - started
        row = await metrics(page, cdp)
        row["render_ms"] = await render_ms(page, server, join_key_of(link))
        row.update(server_s=round(took, 1), page_s=round(drained, 1))
        report(str(target), row)
    return bob, link


async def older_phase(browser, server, link: str, pages: int):
    """Another tab joins the long room and scrolls to the top `pages` times: each asks
    for 50 older messages. Returns the page."""
    page = await open_page(browser, server, link)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    await page.fill("#join-name", "Dave")
    await page.click("#join-form button[type=submit]")
    await page.wait_for_selector("#room", state="visible")
    await page.wait_for_function("() => document.querySelectorAll('#messages li.message').length > 0")
    report("older: joined", await metrics(page, cdp))
    for i in range(pages):
        before = await page.evaluate("() => document.querySelectorAll('#messages li.message').length")
        await page.evaluate("() => { const l = document.getElementById('messages'); l.scrollTop = 0; }")
        # A preview that loads grows its message, and the list no longer shows its end:
        # scrolled down as a person would.
        await page.evaluate(SCROLL_DOWN)
        try:
            await page.wait_for_function(
                "(n) => document.querySelectorAll('#messages li.message').length !== n",
                arg=before,
                timeout=10_000,
                polling=50,
            )
        except Exception:
            pass
        if (i + 1) % 10 == 0:
            report(f"older page {i + 1}", await metrics(page, cdp))
    return page, cdp


async def images_phase(browser, cdp_page, server, count: int) -> None:
    """A sealed room where Bob shares `count` images (64 KiB PNGs), each previewed in view."""
    page = await open_page(browser, server)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    link = await create_room(page, "Pictures", sealed=True)
    keys = SealedKeys.from_secret(secret_from_link(link))
    bob = await Client.open(server.url)
    joined = await bob.join(join_key_of(link), "Bob")
    room_id = joined["room_info"]["id"]
    report("images 0", await metrics(page, cdp))
    for i in range(count):
        data = tiny_png(128 + i, 128)
        file_key, blob = seal_file(data)
        await bob.send(
            type="UploadFile", name="encrypted.bin", mime_type="application/octet-stream",
            content=base64.b64encode(blob).decode(),
        )  # fmt: skip
        file_id = (await bob.expect("FileUploaded"))["metadata"]["id"]
        card = {
            "t": "file", "id": file_id, "name": f"picture {i}.png", "mime_type": "image/png",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "key": base64.b64encode(file_key).decode(),
        }  # fmt: skip
        await bob.send(type="ChatMessage", content=seal_message(keys.message_key, room_id, "Bob", card))
        await bob.expect("ChatMessage")
        # A preview that loads grows its message, and the list no longer shows its end:
        # scrolled down as a person would.
        await page.evaluate(SCROLL_DOWN)
        try:
            await page.wait_for_function(
                "() => document.querySelector('#messages li.message:last-of-type img.preview')",
                timeout=60_000,
            )
        except Exception:
            print(await page.evaluate("() => document.getElementById('messages').lastElementChild.outerHTML"))
            raise
        if (i + 1) % 20 == 0:
            await page.wait_for_timeout(1000)
            report(f"images {i + 1}", await metrics(page, cdp))
    await bob.close()


async def rooms_phase(browser, server, count: int) -> None:
    """Leave and create a room `count` times in the same tab, a few messages in each."""
    page = await open_page(browser, server)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    await create_room(page, "First")
    report("rooms 0", await metrics(page, cdp))
    for i in range(count):
        await page.click("#leave")
        await page.wait_for_selector("#lobby", state="visible")
        link = await create_room(page, f"Room {i}")
        guest = await Client.open(server.url)
        await guest.join(join_key_of(link), "Guest")
        for j in range(20):
            await guest.say(f"hello {j}")
        await last_text(page, "hello 19")
        await guest.close()
        if (i + 1) % 10 == 0:
            report(f"rooms {i + 1}", await metrics(page, cdp))
    await page.context.close()


async def open_page(browser, server, url: str = ""):
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_init_script(COUNTERS)
    page = await context.new_page()
    page.on("pageerror", lambda error: print("pageerror:", error, file=sys.stderr))
    await page.goto(url or server.http)
    return page


async def main(args) -> None:
    var = Path(args.var or tempfile.mkdtemp(prefix="long-session-", dir="/tmp/h2"))
    env = production_env(CHAT_VAR_DIR=str(var), **LIMITS)
    manage(env, "migrate", "--noinput")
    server = ServerProcess(env, port=args.port, log_dir=var).start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await open_page(browser, server)
                cdp = await page.context.new_cdp_session(page)
                await cdp.send("Performance.enable")
                checkpoints = [int(n) for n in args.messages.split(",") if n]
                if checkpoints:
                    bob, link = await messages_phase(page, cdp, server, checkpoints)
                    if args.older:
                        await page.context.close()
                        page, cdp = await older_phase(browser, server, link, args.older)
                        await page.evaluate(SCROLL_DOWN)
                        await bob.close()  # unread meanwhile: its socket is held up
                        bob = await Client.open(server.url)
                        await bob.join(join_key_of(link), "Erin")
                        took = await flood(bob, 200, "after")
                        await bob.say("end after")
                        await bob.expect("ChatMessage")
                        await last_text(page, "end after")
                        report(
                            "back at the bottom, 200 more",
                            {**await metrics(page, cdp), "server_s": round(took, 1)},
                        )
                    await bob.close()
                if args.rooms:
                    await rooms_phase(browser, server, args.rooms)
                if args.images:
                    await images_phase(browser, cdp, server, args.images)
            finally:
                await browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", default="1000,5000", help="checkpoints: messages posted in all")
    parser.add_argument("--older", type=int, default=0, help="older pages to scroll back through")
    parser.add_argument("--images", type=int, default=0, help="images shared in a sealed room")
    parser.add_argument("--rooms", type=int, default=0, help="rooms left and joined")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--var", default="")
    asyncio.run(main(parser.parse_args()))
