"""The operational log: structured lines `event=NAME key=value ...` on the
`chat.events` logger (the name operators filter on, docs/production.md "Logs"), one per
connection opened or closed, room created or joined, error answered, rate limit
tripped, moderation action. Never message content, keys, passwords, tokens or session
ids: only ids, codes, counts and the client address."""

import logging
import math
import time
import weakref

from django.conf import settings

log = logging.getLogger("chat.events")


def event(name: str, **fields: object) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("event=%s %s", name, " ".join(f"{key}={value}" for key, value in fields.items()))


class LineBudget:
    """At most `limit` lines per `window` seconds (fixed windows), counting the lines
    it refused so that the next line written can say how many were left out."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.started = -math.inf
        self.used = 0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if now - self.started >= self.window:
            self.started, self.used = now, 0
        if self.used < self.limit:
            self.used += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


# Each connection's budget of `event=error` lines, and the process's (made on first use).
_connection_budgets: weakref.WeakKeyDictionary[object, LineBudget] = weakref.WeakKeyDictionary()
_process_budget: list[LineBudget] = []


def _budgets(connection: object) -> tuple[LineBudget, LineBudget]:
    if not _process_budget:
        _process_budget.append(LineBudget(settings.LOG_ERRORS_PER_PROCESS, 1.0))
    budget = _connection_budgets.get(connection)
    if budget is None:
        budget = _connection_budgets[connection] = LineBudget(settings.LOG_ERRORS_PER_CONNECTION, 60.0)
    return budget, _process_budget[0]


def error_event(connection: object, **fields: object) -> None:
    """`event=error` for a refused frame, rate-limited: a flood of bad frames must not
    flood the log. At most LOG_ERRORS_PER_CONNECTION lines a minute for one connection
    and LOG_ERRORS_PER_PROCESS a second for the process; the next line written carries
    `suppressed=N`, the lines left out before it (of this connection, and of the
    process when it is past its own budget)."""
    if not log.isEnabledFor(logging.INFO):
        return
    mine, process = _budgets(connection)
    now = time.monotonic()
    if not mine.allow(now):
        return
    if not process.allow(now):
        mine.suppressed += 1  # said with this connection's next line
        return
    suppressed = mine.take_suppressed()
    process_suppressed = process.take_suppressed()
    extra = {"suppressed": suppressed} if suppressed else {}
    if process_suppressed:
        extra["process_suppressed"] = process_suppressed
    event("error", **fields, **extra)
