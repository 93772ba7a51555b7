"""FILES_ROOT as a folder the server can prove is its own.

The purge deletes files, so it must never take anything but blobs: a FILES_ROOT that
is (or is inside) the project's code once made it delete the `files` package. The
store is a folder that holds nothing but

- blobs, named `xx/xxxxxxxx...` (32 hex digits, the first two also the folder's name:
  `blobs.new_name()`),
- `.chat-files-store`, the mark the server writes on first use, and `.purge.lock`.

It is claimed (marked) on first use only when it is new, empty, or holds blobs and
nothing else (a store from before the mark); a folder holding anything else, or lying
inside the project's code, is refused by uploads, the purge and `manage.py check`.
"""

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from django.conf import settings

MARK = ".chat-files-store"
LOCK = ".purge.lock"
HOUSEKEEPING = frozenset({MARK, LOCK})
BLOB_NAME = re.compile(r"([0-9a-f]{2})/\1[0-9a-f]{30}")
FOLDER_NAME = re.compile(r"[0-9a-f]{2}")


class UnsafeStore(Exception):
    """FILES_ROOT is not a folder of blobs the server may write and purge."""


def misplaced(root: Path) -> str | None:
    """Why FILES_ROOT may not hold the store where it is, or None: it must not be in
    the project's code (its var/ folder is data), nor hold the project, the static
    files, the generated key or the SQLite database."""
    root = root.resolve()
    project = Path(settings.BASE_DIR).resolve()
    if root == project or (root.is_relative_to(project) and not root.is_relative_to(project / "var")):
        return f"FILES_ROOT ({root}) lies inside the project's code ({project})"
    database = settings.DATABASES["default"]
    sqlite = database["NAME"] if database["ENGINE"].endswith("sqlite3") else None
    for what, path in (
        ("the project", project),
        ("STATIC_ROOT", settings.STATIC_ROOT),
        ("FILES_KEY_FILE", settings.FILES_KEY_FILE),
        ("the database", sqlite),
    ):
        if path and Path(path).resolve().is_relative_to(root):
            return f"FILES_ROOT ({root}) holds {what} ({path})"
    return None


def entries(root: Path, *, first_level_only: bool = False) -> Iterator[tuple[str, os.DirEntry, bool]]:
    """Everything under `root` but the housekeeping files: (name relative to `root`
    with /, its entry, whether it is the store's own: a blob or a blob folder)."""
    with os.scandir(root) as top:
        for entry in top:
            if entry.name in HOUSEKEEPING:
                continue
            folder = FOLDER_NAME.fullmatch(entry.name) is not None and entry.is_dir(follow_symlinks=False)
            yield entry.name, entry, folder
            if folder and not first_level_only:
                with os.scandir(entry.path) as inner:
                    for blob in inner:
                        name = f"{entry.name}/{blob.name}"
                        own = BLOB_NAME.fullmatch(name) is not None and blob.is_file(follow_symlinks=False)
                        yield name, blob, own


def stranger(root: Path, *, first_level_only: bool = False) -> str | None:
    """The first path under `root` that is not the store's own, or None."""
    return next((name for name, _, own in entries(root, first_level_only=first_level_only) if not own), None)


def refused(root: Path, name: str) -> UnsafeStore:
    return UnsafeStore(f"FILES_ROOT ({root}) holds {name!r}, which is not one of this server's blobs")


def problem(root: Path) -> str | None:
    """What makes `root` unfit for the store, for `manage.py check` (the folder's
    first level only once it is marked, so a large store costs little)."""
    if reason := misplaced(root):
        return reason
    if not root.is_dir():
        return None if not root.exists() else f"FILES_ROOT ({root}) is not a folder"
    found = stranger(root, first_level_only=(root / MARK).is_file())
    return None if found is None else str(refused(root, found))


def claim(root: Path) -> None:
    """Make `root` the store, or raise UnsafeStore saying why it cannot be."""
    if reason := misplaced(root):
        raise UnsafeStore(reason)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (root / MARK).is_file():
        return
    if (found := stranger(root)) is not None:
        raise refused(root, found)
    (root / MARK).write_text("This folder holds the chat server's encrypted file blobs (FILES_ROOT).\n")


@cache
def _claimed(root: Path) -> None:
    claim(root)


def ready() -> Path:
    """FILES_ROOT, claimed once per process (before the first blob is written)."""
    root = Path(settings.FILES_ROOT)
    _claimed(root)
    return root


def blob_times(root: Path) -> list[tuple[str, float]]:
    """Every blob's name and modification time, or UnsafeStore if the folder is not
    the marked store or holds anything else: the caller has deleted nothing yet."""
    if not (root / MARK).is_file():
        raise UnsafeStore(f"FILES_ROOT ({root}) is not marked as this server's store ({MARK} is missing)")
    found = []
    for name, entry, own in entries(root):
        if not own:
            raise refused(root, name)
        if "/" in name:
            try:
                found.append((name, entry.stat(follow_symlinks=False).st_mtime))
            except FileNotFoundError:  # deleted meanwhile (another purge, a moderator)
                continue
    return found
