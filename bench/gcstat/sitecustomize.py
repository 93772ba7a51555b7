"""Counts and times every pass of the garbage collector of a server process, by generation.

    PYTHONPATH=bench/gcstat GCSTAT_OUT=gc.json PORT=8100 bash bench/start_server.sh &
    ... load ...
    kill -USR2 $server_pid   # writes GCSTAT_OUT

Python imports this module at start when its folder is on PYTHONPATH. On SIGUSR2 it writes,
per generation: passes, their total and largest wall time in ms, the 99th percentile, and how
many took 5 and 10 ms or more. The server logs only passes of GC_PAUSE_LOG (20 ms) or more;
this counts all of them (bench/README.md, issue 17: the young generation's threshold).
Benchmarks only.
"""

import gc
import json
import os
import signal
import time

_passes: dict[int, list[float]] = {0: [], 1: [], 2: []}
_began = [0.0]


def _timing(phase: str, info: dict) -> None:
    if phase == "start":
        _began[0] = time.perf_counter()
    else:
        _passes[info["generation"]].append((time.perf_counter() - _began[0]) * 1000)


def _write(*_: object) -> None:
    figures = {}
    for generation, took in _passes.items():
        took = sorted(took)
        figures[generation] = {
            "n": len(took),
            "total_ms": round(sum(took), 1),
            "max_ms": round(took[-1], 1) if took else 0,
            "p99_ms": round(took[int(len(took) * 0.99)], 2) if took else 0,
            "over5": sum(ms >= 5 for ms in took),
            "over10": sum(ms >= 10 for ms in took),
        }
    with open(os.environ.get("GCSTAT_OUT", "gcstat.json"), "w") as out:
        json.dump(figures, out)


gc.callbacks.append(_timing)
signal.signal(signal.SIGUSR2, _write)
