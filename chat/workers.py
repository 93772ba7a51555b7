"""Low-priority worker threads for CPU-heavy work, so it never runs on the event loop."""

import asyncio
import os
import threading
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
