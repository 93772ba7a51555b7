"""What each process of tests/chat/test_room_keys.py's race runs: a module of its own,
importing nothing that needs Django set up, so that a fresh forkserver can load it."""

from chat import keys


def read_key(path: str, start, results) -> None:
    start.wait()
    try:
        results.put(keys.development_key(path))
    except Exception as exc:  # the failure is the test's answer
        results.put(repr(exc))
