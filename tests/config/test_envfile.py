"""CHAT_ENV_FILE: one settings file for servers, commands and cron (config/envfile.py)."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import envfile

PROJECT = Path(__file__).resolve().parents[2]


def test_names_values_quotes_and_whole_line_comments():
    text = "# a comment\n\n; another\nA=1\n  B = two words  \nC='quoted # not a comment'\nD=\"x=y\"\nE=\n"
    assert envfile.parse(text, "f") == {
        "A": "1",
        "B": "two words",
        "C": "quoted # not a comment",
        "D": "x=y",
        "E": "",
    }


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("DJANGO_SECRET_KEY=s3cr3t # the key", "has a comment after its value"),
        ("FILES_ROOT=/var/lib/chat/files ; data", "has a comment after its value"),
        ("export REDIS_URL=redis://x", "expected NAME=value"),
        ("just words", "expected NAME=value"),
        ("PASSWORD=a\\b", "backslash"),
    ],
)
def test_what_systemd_would_read_otherwise_is_refused_naming_the_line_never_the_value(line, says):
    with pytest.raises(ImproperlyConfigured, match=says) as refused:
        envfile.parse(f"OK=1\n{line}\n", "/etc/chat/chat.env")
    assert "/etc/chat/chat.env, line 2" in str(refused.value)
    assert "s3cr3t" not in str(refused.value) and "a\\b" not in str(refused.value)


def test_the_environment_wins_over_the_file(tmp_path):
    path = tmp_path / "chat.env"
    path.write_text("A=from the file\nB=from the file\n")
    environ = {"CHAT_ENV_FILE": str(path), "A": "from the environment"}
    envfile.load(environ)
    assert environ["A"] == "from the environment" and environ["B"] == "from the file"


def test_a_missing_file_is_an_error_not_a_silent_default(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="CHAT_ENV_FILE=.*No such file"):
        envfile.load({"CHAT_ENV_FILE": str(tmp_path / "absent.env")})


def test_a_command_with_an_empty_environment_runs_on_the_file_alone(tmp_path):
    """As cron runs the purge: nothing but the file (tests/deploy runs the documented line)."""
    (tmp_path / "chat.env").write_text(
        "# as docs/production.md writes it\n"
        "DJANGO_SECRET_KEY=a-long-random-secret-for-this-test-only-0123456789\n"
        f"CHAT_VAR_DIR={tmp_path / 'var'}\n"
        f"FILES_ROOT={tmp_path / 'var' / 'files'}\n"
        "DJANGO_ALLOWED_HOSTS=chat.example.org\n"
    )
    manage = [sys.executable, str(PROJECT / "manage.py")]
    empty = {"CHAT_ENV_FILE": str(tmp_path / "chat.env")}
    for command in (["migrate", "--noinput"], ["purge_files"]):
        done = subprocess.run([*manage, *command], env=empty, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "purge_files: nothing to do"
    without = subprocess.run([*manage, "purge_files"], env={}, capture_output=True, text=True, timeout=60)
    assert without.returncode != 0 and "in the file CHAT_ENV_FILE names" in without.stderr
