"""Every background task and thread a server process runs, in one list: what starts
it and what stops it. `start` and `stop` are called by the ASGI application
(config/asgi.py) when the process starts and, under `manage.py serve`, when it stops
(uvicorn's lifespan; daphne sends none, and its process simply ends).

- SQLite WAL checkpoints, a thread with its own connection (chat/checkpoint.py):
  started by `start` when the database is SQLite; ends with the process.
- The hub's layer receive and watchdog, tasks (chat/hub.py): started by the first room
  created or joined (`hub.start`); `stop` takes the hub off the room bus. Two short
  tasks of its own: leaving rooms left (`Hub.prune`) and renewing its places when a
  publish found one lost (`Hub.renew_soon`); `stop` cancels both.
- Presence's heartbeat and ghost sweep, a task (chat/presence.py): started by the first
  socket (`connection_opened`), cancelled when the last one closes.
- Each socket's outbox writer, a task (chat/outbox.py): from its accept to its close.
- Group commit of chat messages and of reactions (chat/batching.py, `message_writer`,
  `reaction_writer`) and batched room events to the bus (chat/hub.py,
  `event_sender`): a task per burst, ending when nothing waits.
- Upload and download work (chat/workers.py, `file_work`: large frames, base64, sha256,
  AES-GCM, clamd) and password hashing (chat/passwords.py, `hashing`), low-priority
  threads made on first use; they end with the process.
- Database calls: asgiref's one thread (`workers.on_database_thread`); clients' requests
  wait for it in the bounded queue `workers.database`.
- The large-frame budget's wake-ups (chat/frame_budget.py, `serve` only): timers while
  a paced socket waits.
- Each HTTP connection's request-head deadline (chat/http_guard.py, `serve` only): a
  timer from its opening, or its last response, until its next request head is in.
- Timing of Python's garbage collector (`watch_collector`): a callback, no thread; its
  young generation's size (`tune_collector`, `manage.py serve`).
- The event loop's stalls (`watch_loop`), a timer every LOOP_STALL_TICK: started by
  uvicorn's lifespan startup (`manage.py serve`; daphne sends none), cancelled by `stop`.

Everything but the checkpoint thread starts on first use, so a process that serves
only pages never runs the hub or the heartbeat.
"""

import asyncio
import gc
import sys
import time

from django.conf import settings

from chat import checkpoint
from chat.hub import hub
from chat.oplog import event


def start() -> None:
    checkpoint.start()
    watch_collector()
    # Everything loaded so far (Django, the apps, their modules) lives as long as the
    # process: out of the collector's sight, a full pass scans only what serving made.
    # Such a pass stopped a 10-minute soak for 211 ms (bench/README.md, issue 17).
    gc.collect()
    gc.freeze()


def tune_collector() -> None:
    """The young generation's threshold from GC_GEN0_THRESHOLD (Python's is 700). At
    700 and 5,000 messages/s, what a message holds for a group commit's 10 ms outlived
    two young passes and reached the oldest generation, whose growth then set off a
    full pass every 1.5-2 s: 15-50 ms each, walking every socket's objects. At 5,000,
    two full passes a run instead of 13-15, and the collector's time a seventh
    (bench/README.md, issue 17). Called by `manage.py serve`."""
    gc.set_threshold(settings.GC_GEN0_THRESHOLD, 10, 10)


def watch_collector() -> None:
    """A pass of Python's cyclic garbage collector stops every thread of the process
    for as long as it takes: one of GC_PAUSE_LOG seconds or more is logged
    (`event=gc_pause`), so that a latency spike can be laid beside it. Once per process."""
    if settings.GC_PAUSE_LOG <= 0 or _collector_timing in gc.callbacks:
        return
    gc.callbacks.append(_collector_timing)


_collection_began = [0.0]


def _collector_timing(phase: str, info: dict) -> None:
    if sys.is_finalizing():
        return  # the process is ending: its log's stream may be closed already
    if phase == "start":
        _collection_began[0] = time.perf_counter()
        return
    took = time.perf_counter() - _collection_began[0]
    if took >= settings.GC_PAUSE_LOG:
        generation, collected = info["generation"], info["collected"]
        event("gc_pause", generation=generation, ms=round(took * 1000, 1), collected=collected)


_loop_watcher: "LoopWatcher | None" = None


def watch_loop() -> None:
    """Nothing else runs on the event loop while a callback runs or the loop waits for
    the interpreter: a wake-up LOOP_STALL_LOG seconds or more late is logged
    (`event=loop_stall`), so that a latency spike can be laid beside it. Called in the
    loop, once per process."""
    global _loop_watcher
    if settings.LOOP_STALL_LOG <= 0 or (_loop_watcher is not None and not _loop_watcher.done()):
        return
    _loop_watcher = LoopWatcher(asyncio.get_running_loop(), settings.LOOP_STALL_TICK, settings.LOOP_STALL_LOG)


class LoopWatcher:
    """A timer every `tick` seconds that notes how late it fired. Each wake-up costs the
    process CPU even when idle (at 10 ms ticks, 1.3 % of a core: bench/README.md), so
    the tick is coarser than the stalls it logs: a stall of `threshold + tick` or more
    is always logged, a shorter one when a wake-up fell due early enough in it, and
    each is logged with how late the wake-up it held was (never more than its length).
    A plain timer callback, not a task: no future and no task step per wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float, threshold: float) -> None:
        self.loop = loop
        self.tick = tick
        self.threshold = threshold
        self.due = loop.time() + tick
        self.timer = loop.call_at(self.due, self.wake)

    def wake(self) -> None:
        now = self.loop.time()
        late = now - self.due
        if late >= self.threshold:
            event("loop_stall", ms=round(late * 1000, 1))
        self.due = now + self.tick
        self.timer = self.loop.call_at(self.due, self.wake)

    def cancel(self) -> None:
        self.timer.cancel()

    def done(self) -> bool:
        return self.timer.cancelled()


async def stop() -> None:
    """Once the server has closed the sockets: the hub leaves its room groups (within
    chat.hub.LEAVE_TIMEOUT), so this process is no longer sent their events; the log
    says how many room events it published and received (`event=hub_totals`)."""
    if _loop_watcher is not None:
        _loop_watcher.cancel()
    await hub.stop()
    event("hub_totals", published=hub.published, received=hub.received)
