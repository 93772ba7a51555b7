"""What a server process starts besides sockets (chat/runtime.py)."""

import gc
import logging

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
