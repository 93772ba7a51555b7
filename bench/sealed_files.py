"""What a sealed room's file costs the clients (issue 16): encrypting before the upload and
decrypting and checking after the download, for a file of FILES_MAX_SIZE (10 MiB).

- The page: Debian's chromium (Playwright), `chat/static/chat/sealed.js` and `crypto.js`
  as the app loads them, served from a local static server. Besides each step's time it
  reports the longest stall of the page's main thread while the step ran (a 1 ms timer's
  largest gap): WebCrypto runs off the main thread, base64 does not.
- The Python client: `chatclient.crypto.seal_file` / `open_file` and the sha256 check.

    .venv/bin/python bench/sealed_files.py [--size BYTES] [--runs N]

Prints one JSON object; bench/README.md, "Sealed files", keeps the figures.
"""

import argparse
import functools
import hashlib
import http.server
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatclient.crypto import open_file, seal_file  # noqa: E402

STATIC = ROOT / "chat" / "static"

# One step in the page: its time and the main thread's longest stall meanwhile.
PAGE_STEPS = """async ([size, runs]) => {
  const sealed = await import("/chat/sealed.js");
  const { toBase64, fromBase64 } = await import("/chat/crypto.js");
  const bytes = crypto.getRandomValues(new Uint8Array(65536));
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += bytes.length) {
    data.set(bytes.subarray(0, Math.min(bytes.length, size - i)), i);
  }
  async function timed(step) {
    let last = performance.now(), stall = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      stall = Math.max(stall, now - last);
      last = now;
    }, 1);
    const start = performance.now();
    const result = await step();
    const ms = performance.now() - start;
    clearInterval(ticker);
    stall = Math.max(stall, performance.now() - last);
    return { ms, stall, result };
  }
  const out = { seal: [], base64: [], unbase64: [], open: [] };
  for (let run = 0; run < runs; run++) {
    const seal = await timed(async () => {
      const file = await sealed.sealFile(data);
      return { file, card: { size: data.length, sha256: await sealed.sha256Hex(data), key: file.key } };
    });
    const encode = await timed(async () => toBase64(seal.result.file.blob));
    const decode = await timed(async () => fromBase64(encode.result));
    const open = await timed(async () => sealed.openFile(seal.result.card, decode.result));
    if (open.result.length !== size) throw new Error("round trip lost bytes");
    for (const [name, step] of [["seal", seal], ["base64", encode], ["unbase64", decode], ["open", open]]) {
      out[name].push({ ms: step.ms, stall: step.stall });
    }
  }
  return out;
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_static() -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def page_figures(size: int, runs: int) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    server, origin = serve_static()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{origin}/chat/")  # any page of the origin: a secure context (127.0.0.1)
            raw = page.evaluate(PAGE_STEPS, [size, runs])
            browser.close()
    finally:
        server.shutdown()
    return {
        step: {
            "median_ms": round(statistics.median(run["ms"] for run in runs_of), 1),
            "max_main_thread_stall_ms": round(max(run["stall"] for run in runs_of), 1),
        }
        for step, runs_of in raw.items()
    }


def python_figures(size: int, runs: int) -> dict:
    data = os.urandom(size)
    seal_ms, open_ms = [], []
    for _ in range(runs):
        start = time.perf_counter()
        key, blob = seal_file(data)
        digest = hashlib.sha256(data).hexdigest()
        seal_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        opened = open_file(key, blob)
        assert hashlib.sha256(opened).hexdigest() == digest
        open_ms.append((time.perf_counter() - start) * 1000)
    return {
        "seal_and_sha256_median_ms": round(statistics.median(seal_ms), 1),
        "open_and_check_median_ms": round(statistics.median(open_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10 * 1024 * 1024, help="bytes (FILES_MAX_SIZE)")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    figures = {
        "size": options.size,
        "runs": options.runs,
        "page": page_figures(options.size, options.runs),
        "python": python_figures(options.size, options.runs),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
