"""FILES_ROOT must be the server's own store: the purge never deletes what it cannot
prove is one of its blobs (files/store.py)."""

import io
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError

from files import blobs, store
from files.models import SharedFile
from tests.helpers import seat_in_new_room, stored_file

pytestmark = pytest.mark.django_db(transaction=True)

PROJECT = Path(__file__).resolve().parents[2]


def purge() -> str:
    out = io.StringIO()
    call_command("purge_files", stdout=out)
    return out.getvalue().strip()


def backdate(root: Path) -> None:
    """Everything under `root` older than the orphan grace, as on a server that ran for days."""
    long_ago = time.time() - 86400
    for path in [root, *root.rglob("*")]:
        os.utime(path, (long_ago, long_ago))


def errors() -> list[str]:
    return [message.id for message in run_checks() if message.id == "files.E001"]


def test_the_reported_layout_the_projects_own_files_package_is_refused_and_kept(settings, tmp_path):
    """The docs once set FILES_ROOT to the checkout's files/ folder: the purge deleted
    the package's modules as orphaned blobs. A copy of the project stands in for it."""
    checkout = tmp_path / "srv" / "chat"
    shutil.copytree(PROJECT / "files", checkout / "files", ignore=shutil.ignore_patterns("__pycache__"))
    backdate(checkout / "files")
    before = sorted(path.relative_to(checkout) for path in (checkout / "files").rglob("*"))
    settings.BASE_DIR, settings.FILES_ROOT = checkout, checkout / "files"

    assert errors() == ["files.E001"]
    refused = "refusing to run, nothing deleted: FILES_ROOT .* lies inside the project"
    with pytest.raises(CommandError, match=refused):
        purge()
    with pytest.raises(store.UnsafeStore):
        blobs.write(uuid.uuid4(), b"an upload")
    assert sorted(path.relative_to(checkout) for path in (checkout / "files").rglob("*")) == before


def test_a_folder_holding_anything_else_is_refused_and_nothing_in_it_is_deleted(settings, tmp_path):
    root = tmp_path / "data"
    (root / "ab").mkdir(parents=True)
    (root / "ab" / ("ab" + "0" * 30)).write_bytes(b"looks like a blob")
    (root / "notes.txt").write_text("someone's notes")
    backdate(root)
    settings.FILES_ROOT = root

    assert errors() == ["files.E001"]
    with pytest.raises(CommandError, match="holds 'notes.txt', which is not one of this server's blobs"):
        purge()
    assert (root / "notes.txt").exists() and (root / "ab" / ("ab" + "0" * 30)).exists()
    assert not (root / store.MARK).exists()


def test_a_stranger_inside_a_blob_folder_stops_the_purge_before_it_deletes(settings, files_root):
    seat = seat_in_new_room()
    doomed = stored_file(seat, deleted=True)
    orphan = blobs.write(uuid.uuid4(), b"left behind")
    stranger = files_root / orphan.split("/")[0] / "settings.py"
    stranger.write_text("SECRET = 1\n")
    backdate(files_root)

    with pytest.raises(CommandError, match=r"holds '[0-9a-f]{2}/settings.py'"):
        purge()
    assert (files_root / orphan).exists() and stranger.exists() and (files_root / doomed.blob).exists()
    assert SharedFile.objects.filter(pk=doomed.pk).exists()
    stranger.unlink()
    assert purge().startswith("purge_files: removed 1 file (0 expired, 1 deleted")


def test_a_new_or_empty_folder_is_marked_on_first_use_and_then_purged(settings, files_root):
    assert not files_root.exists() and errors() == []
    blob = blobs.write(uuid.uuid4(), b"first upload")
    assert (files_root / store.MARK).is_file()
    backdate(files_root)
    assert "and 1 orphaned blob;" in purge()
    assert not (files_root / blob).exists() and (files_root / store.MARK).is_file()


def test_a_store_from_before_the_mark_holding_only_blobs_is_adopted(settings, files_root):
    settings.FILES_ROOT = files_root
    blob = blobs.write(uuid.uuid4(), b"written by the previous release")
    (files_root / store.MARK).unlink()
    backdate(files_root)
    assert errors() == []
    assert "and 1 orphaned blob;" in purge()
    assert (files_root / store.MARK).is_file() and not (files_root / blob).exists()


@pytest.mark.parametrize("where", ["project", "ancestor"])
def test_the_project_or_a_folder_above_it_is_refused(settings, tmp_path, where):
    checkout = tmp_path / "srv" / "chat"
    checkout.mkdir(parents=True)
    settings.BASE_DIR = checkout
    settings.FILES_ROOT = checkout if where == "project" else tmp_path / "srv"
    assert errors() == ["files.E001"]
    with pytest.raises(CommandError, match="refusing to run"):
        purge()


def test_a_folder_holding_the_static_files_or_the_key_is_refused(settings, tmp_path):
    """FILES_ROOT=/var/lib/chat, the data folder itself, would take in static/ and files.key."""
    data = tmp_path / "var" / "lib" / "chat"
    settings.STATIC_ROOT, settings.FILES_KEY_FILE = data / "static", data / "files.key"
    settings.FILES_ROOT = data
    assert errors() == ["files.E001"]
    with pytest.raises(CommandError, match="holds STATIC_ROOT"):
        purge()


def test_the_projects_var_folder_is_data_and_allowed(settings, tmp_path):
    """The embedded default, FILES_ROOT = var/files inside the checkout (ignored by git)."""
    checkout = tmp_path / "chat"
    settings.BASE_DIR, settings.FILES_ROOT = checkout, checkout / "var" / "files"
    settings.STATIC_ROOT = checkout / "var" / "static"
    assert errors() == []
    assert purge() == "purge_files: nothing to do"


def test_a_bad_blob_name_from_a_row_is_never_a_path_to_delete(files_root):
    with pytest.raises(ValueError):
        blobs.remove("../settings.py")


def test_a_missing_store_is_not_made_by_the_purge_and_is_an_error_once_files_exist(files_root):
    """A FILES_ROOT with a typo, or a volume not mounted: cron's purge must not make an
    empty store there and report "nothing to do" for ever."""
    assert purge() == "purge_files: nothing to do" and not files_root.exists()  # a new site
    seat = seat_in_new_room()
    stored_file(seat)
    shutil.rmtree(files_root)  # the volume, unmounted
    with pytest.raises(CommandError, match="does not exist, but the database holds files"):
        purge()
    assert not files_root.exists()
