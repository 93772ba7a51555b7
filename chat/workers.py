"""Low-priority worker threads for CPU-heavy work, so it never runs on the event loop."""

import asyncio
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings


def _lower_priority() -> None:
    # Linux applies nice per thread: the event loop's thread then always wins the CPU
    # over a storm of hashes or uploads, so chat in other rooms keeps its latency.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


# How long a worker pauses between slices of long CPU work (see `let_loop_run`).
PAUSE = 0.0001


def let_loop_run() -> None:
    """Hand the GIL to the event loop between slices of CPU work in a worker thread.

    A thread that never blocks keeps the GIL until another thread has waited for it
    for the switch interval (5 ms), and the event loop waits that long each time it
    wakes: a chat hop that wakes it a few times then took 20-50 ms during a 10 MiB
    upload. Sleeping a moment releases the GIL at once, so the loop waits for at most
    one slice (~0.2 ms) instead.
    """
    time.sleep(PAUSE)


class Workers:
    """A pool of `size_setting` threads at the lowest CPU priority, made on first use."""

    def __init__(self, name: str, size_setting: str) -> None:
        self.name = name
        self.size_setting = size_setting
        self.executor: ThreadPoolExecutor | None = None

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(
                max_workers=getattr(settings, self.size_setting),
                thread_name_prefix=self.name,
                initializer=_lower_priority,
            )
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)


# Big-frame parsing and file work (decode, hash, encrypt): FILES_WORK_THREADS threads.
heavy = Workers("heavy-work", "FILES_WORK_THREADS")
