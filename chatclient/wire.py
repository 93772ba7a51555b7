"""JSON from the other side, read under PROTOCOL.md's strict rules, as the server reads
the client's: a server's frame, and the plaintext of a sealed room's message, which any
member of the room can write. Python's `json` takes more than JSON (NaN, Infinity), and
raises what no caller expects (RecursionError on deep nesting) or hands back strings
that cannot be printed or encoded (lone surrogates); all of that is a ValueError here,
so one hostile member or server can not end a client."""

import json
import re
from typing import Any

# As deep as the server lets a client nest (chat/protocol.py, MAX_DEPTH).
MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def loads(text: str | bytes) -> Any:
    """`text` as JSON; ValueError for what is not strict JSON (NaN, Infinity, invalid
    UTF-8), nests deeper than MAX_DEPTH, or holds a lone surrogate in a string."""
    try:
        value = _decoder.decode(text.decode() if isinstance(text, bytes) else text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deep") from exc
    _check(value, 1)
    return value


def _check(value: Any, depth: int) -> None:
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            raise ValueError("a string holds a lone surrogate")
    elif isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
        for key in value if isinstance(value, dict) else ():
            _check(key, depth)
        for item in value.values() if isinstance(value, dict) else value:
            _check(item, depth + 1)
