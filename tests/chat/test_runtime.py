"""What a server process starts besides sockets (chat/runtime.py)."""

import asyncio
import gc
import logging
import time

import pytest

from chat import runtime


@pytest.fixture
def unwatched():
    """The collector as if no server had started in this test process; restored after."""
    saved = list(gc.callbacks)
    gc.callbacks[:] = [callback for callback in saved if callback is not runtime._collector_timing]
    yield
    gc.callbacks[:] = saved


def gc_pause_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=gc_pause")]


def test_a_long_collector_pass_is_logged_once_per_pass(unwatched, caplog, settings):
    settings.GC_PAUSE_LOG = 1e-9  # every pass counts as long
    caplog.set_level(logging.INFO, logger="chat.events")
    runtime.watch_collector()
    runtime.watch_collector()  # once per process, however often it is called
    assert gc.callbacks.count(runtime._collector_timing) == 1
    gc.collect()
    (line,) = gc_pause_lines(caplog)
    assert line.startswith("event=gc_pause generation=2 ms=")
    settings.GC_PAUSE_LOG = 60.0  # no pass takes a minute: nothing more is logged
    gc.collect()
    assert len(gc_pause_lines(caplog)) == 1


def test_the_collector_is_not_watched_when_the_setting_is_off(unwatched, settings):
    settings.GC_PAUSE_LOG = 0
    runtime.watch_collector()
    assert runtime._collector_timing not in gc.callbacks


@pytest.fixture
async def loop_watched(settings):
    """`runtime.watch_loop` in this test's loop, its task stopped after."""
    settings.LOOP_STALL_LOG = 0.05
    runtime._loop_watcher = None
    runtime.watch_loop()
    watcher = runtime._loop_watcher
    yield watcher
    watcher.cancel()
    runtime._loop_watcher = None


def loop_stall_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=loop_stall")]


async def test_a_loop_held_past_loop_stall_log_is_logged_with_how_late_it_woke(
    loop_watched, caplog, settings
):
    caplog.set_level(logging.INFO, logger="chat.events")
    runtime.watch_loop()  # once per process, however often it is called
    assert runtime._loop_watcher is loop_watched
    await asyncio.sleep(0.03)  # the watcher is waiting out a tick
    time.sleep(0.25)  # noqa: ASYNC251 - a callback that holds the loop, on purpose
    await asyncio.sleep(0.03)
    stalls = [float(line.removeprefix("event=loop_stall ms=")) for line in loop_stall_lines(caplog)]
    # The hold, less the tick it fell in; any other stall (a loaded machine) is shorter.
    assert [ms for ms in stalls if ms >= 250 - settings.LOOP_STALL_TICK * 1000] == [max(stalls)]
    assert max(stalls) < 1000


async def test_the_loop_is_not_watched_when_the_setting_is_off(settings):
    settings.LOOP_STALL_LOG = 0
    runtime._loop_watcher = None
    runtime.watch_loop()
    assert runtime._loop_watcher is None


def test_the_young_generation_threshold_comes_from_the_setting(settings):
    saved = gc.get_threshold()
    settings.GC_GEN0_THRESHOLD = 4321
    try:
        runtime.tune_collector()
        assert gc.get_threshold() == (4321, 10, 10)
    finally:
        gc.set_threshold(*saved)
