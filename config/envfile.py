"""CHAT_ENV_FILE: one file of settings for every process of a deployment.

`manage.py serve` under systemd, the commands an operator runs and the cron job all
read the file named by CHAT_ENV_FILE, so they cannot drift apart (cron gives its jobs
no environment at all). The format is the part of systemd's EnvironmentFile that both
read alike: `NAME=value` lines; blank lines and lines starting with `#` or `;` are
comments; a value may be in single or double quotes. A `#` after a value is refused
rather than taken as a comment (systemd would keep it in the value), and so are
backslashes (systemd would read them as escapes). Variables already set in the
environment win over the file.
"""

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INLINE_COMMENT = re.compile(r"\s[#;]")


def parse(text: str, source: str) -> dict[str, str]:
    """The file's variables; ImproperlyConfigured naming the line (never its value)."""
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = (part.strip() for part in line.partition("="))
        where = f"{source}, line {number}"
        if not equals or not NAME.fullmatch(name):
            raise ImproperlyConfigured(f"{where}: expected NAME=value")
        if "\\" in value:
            raise ImproperlyConfigured(f"{where}: {name} holds a backslash, which systemd reads as an escape")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif INLINE_COMMENT.search(value):
            raise ImproperlyConfigured(
                f"{where}: {name} has a comment after its value; an environment file has no inline "
                "comments (systemd keeps them in the value): put it on a line of its own"
            )
        values[name] = value
    return values


def load(environ: MutableMapping[str, str] = os.environ) -> None:
    """Fill `environ` from CHAT_ENV_FILE, if it is set."""
    path = environ.get("CHAT_ENV_FILE", "")
    if not path:
        return
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ImproperlyConfigured(f"CHAT_ENV_FILE={path}: {exc.strerror}") from exc
    for name, value in parse(text, path).items():
        environ.setdefault(name, value)
