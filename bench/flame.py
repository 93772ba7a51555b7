"""The summary of a py-spy profile (its raw collapsed stacks, `py-spy record -f raw`) that
bench/README.md keeps beside the figures: where the samples are, by outermost frame, by the
function they were in (self), and by the frames they were under (inclusive).

    .venv/bin/python bench/flame.py /tmp/prof-8601.txt [--top 25]

A collapsed line is `thread;frame;frame;... COUNT`, each frame `function (file:line)`.
Files are shortened to the project's path or the package's (`websockets/...`).
"""

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Where a frame's file is cut: the package's folder, the standard library's, or this checkout.
PLACES = ("site-packages/", "lib/python3.12/", "lib/python3.11/", f"{Path(__file__).resolve().parents[1]}/")


def short(frame: str) -> str:
    """`function (file:line)` as `file:function`, the file relative to the project or
    the package, so that one function's lines count together."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for place in PLACES:
        if place in path:
            path = path.split(place, 1)[1]
    return f"{path}:{match['function']}"


def read(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summary(stacks: list[tuple[list[str], int]], top: int) -> str:
    total = sum(count for _, count in stacks) or 1
    threads, leaves, inclusive = Counter(), Counter(), Counter()
    for frames, count in stacks:
        threads[frames[0].strip()] += count
        names = [short(frame) for frame in frames[1:]]
        if names:
            leaves[names[-1]] += count
        for name in set(names):
            inclusive[name] += count

    def table(title: str, counter: Counter) -> list[str]:
        rows = [f"{title}:"]
        rows += [f"  {100 * n / total:5.1f} %  {name}" for name, n in counter.most_common(top)]
        return rows

    lines = [f"{total} samples"]
    lines += table("by outermost frame (main thread, a worker thread, a task seen alone)", threads)
    lines += table("self (the function a sample was in)", leaves)
    lines += table("inclusive (under this frame)", inclusive)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path, help="py-spy's raw collapsed stacks")
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    print(summary(read(options.profile), options.top))


if __name__ == "__main__":
    main()
