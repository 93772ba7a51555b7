"""Issue 17, part 5: what each server process received from the layer, and what Redis
did, around one many-rooms soak through nginx (`bash bench/run.sh processes`).

    python bench/scale.py snapshot REDIS_URL PID... > before.json
    python bench/scale.py summary before.json after.json soak.json LOG...

`snapshot` reads each process's CPU time (/proc) and Redis's command counters (`INFO`).
`summary` prints one JSON object: per process the room events it published and received
(its `event=hub_totals` log line, written when it stops) and its CPU seconds; Redis
commands per stored message, in all and by command; and the soak's own figures.
"""

import json
import os
import re
import sys

from redis import Redis

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def snapshot(redis_url: str, pids: list[int]) -> dict:
    client = Redis.from_url(redis_url)
    stats = client.info("commandstats")
    commands = {name.removeprefix("cmdstat_"): counts["calls"] for name, counts in stats.items()}
    return {
        "cpu": {str(pid): cpu_seconds(pid) for pid in pids},
        "redis_commands": client.info("stats")["total_commands_processed"],
        "redis_by_command": commands,
    }


TOTALS = re.compile(r"event=hub_totals published=(\d+) received=(\d+)")


def summary(before: dict, after: dict, soak: dict, logs: list[str]) -> dict:
    processes = []
    for pid, log in zip(before["cpu"], logs, strict=True):
        with open(log) as text:
            found = TOTALS.findall(text.read())
        published, received = map(int, found[-1]) if found else (None, None)
        processes.append(
            {
                "published": published,
                "received": received,
                "cpu_seconds": round(after["cpu"][pid] - before["cpu"][pid], 2),
            }
        )
    stored = soak["messages_sent"]
    commands = after["redis_commands"] - before["redis_commands"] - 1  # less the INFO that read it
    earlier = before["redis_by_command"]
    by_command = {name: calls - earlier.get(name, 0) for name, calls in after["redis_by_command"].items()}
    published = sum(p["published"] or 0 for p in processes)
    received = sum(p["received"] or 0 for p in processes)
    return {
        "processes": processes,
        "events_published": published,
        "events_received": received,
        # Each event goes to every process with a member of its room: 1.0 when a room's
        # members all sit on one process.
        "receptions_per_event": round(received / published, 3) if published else None,
        "messages_stored": stored,
        "redis_commands_per_message": round(commands / stored, 2) if stored else None,
        "redis_by_command_per_message": {
            name: round(calls / stored, 3) for name, calls in sorted(by_command.items()) if calls and stored
        },
        "soak": {
            key: soak.get(key)
            for key in (
                "messages_per_s",
                "deliveries_received",
                "lost",
                "duplicates",
                "order_violations",
                "errors",
                "latency_ms",
            )
        },  # fmt: skip
    }


def main() -> None:
    command, *rest = sys.argv[1:]
    if command == "snapshot":
        print(json.dumps(snapshot(rest[0], [int(pid) for pid in rest[1:]])))
    else:
        loaded = []
        for path in rest[:3]:
            with open(path) as file:
                loaded.append(json.loads(file.read().strip().splitlines()[-1]))
        print(json.dumps(summary(*loaded, logs=rest[3:])))


if __name__ == "__main__":
    main()
