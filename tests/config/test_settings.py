"""config/settings.py reads the environment with django-environ, strictly: a typo is an error
at start, and importing the settings creates nothing."""

import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import ConnectionHandler

from config import sqlite
from config.settings import VAR_DIR, database_from_url, env

PROJECT = Path(__file__).resolve().parents[2]
SPELLINGS = [("1", True), ("Yes", True), (" on ", True), ("0", False), ("OFF", False)]


def start(tmp_path: Path, code: str, **variables: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter on config.settings, with nothing of this run's environment
    that the settings read but `variables` (and PATH)."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CHAT_VAR_DIR": str(tmp_path / "var"),
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(("raw", "value"), SPELLINGS)
def test_booleans_take_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("CHAT_TEST_FLAG", raw)
    assert env.bool("CHAT_TEST_FLAG", not value) is value


@pytest.mark.parametrize("raw", ["ture", "2", "enabled", "n"])
def test_a_boolean_typo_stops_the_start(monkeypatch, raw):
    monkeypatch.setenv("CHAT_TEST_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="CHAT_TEST_FLAG must be"):
        env.bool("CHAT_TEST_FLAG", False)


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("CHAT_TEST_FLAG", raising=False)
    assert env.bool("CHAT_TEST_FLAG", True) is True
    monkeypatch.setenv("CHAT_TEST_FLAG", "  ")
    assert env.bool("CHAT_TEST_FLAG", False) is False
    assert env.int("CHAT_TEST_FLAG", 7) == 7 and env.float("CHAT_TEST_FLAG", 0.5) == 0.5


NOT_NUMBERS = [
    ("int", "abc"),
    ("int", "1.5"),
    ("float", "5s"),
    ("float", "ten"),
    ("int", "-5"),  # no setting means anything by a negative number
    ("float", "-0.5"),
    ("float", "nan"),  # passes no comparison: a limit of nan is no limit
    ("float", "inf"),
]


@pytest.mark.parametrize(("method", "raw"), NOT_NUMBERS)
def test_a_number_that_is_not_one_is_an_error_naming_the_variable(monkeypatch, method, raw):
    """django-environ alone lets int()'s ValueError out and reads "5s" as the float 5.0."""
    monkeypatch.setenv("CHAT_TEST_NUMBER", raw)
    with pytest.raises(ImproperlyConfigured, match=f"CHAT_TEST_NUMBER must be a number \\({method}\\)"):
        getattr(env, method)("CHAT_TEST_NUMBER", 1)


def test_numbers_lists_and_strings_read_as_before(monkeypatch):
    monkeypatch.setenv("CHAT_TEST_INT", " 42 ")
    monkeypatch.setenv("CHAT_TEST_FLOAT", "1e3")
    monkeypatch.setenv("CHAT_TEST_LIST", " a.example, b.example,, ")
    monkeypatch.setenv("CHAT_TEST_STR", "$not-a-variable-name")
    assert env.int("CHAT_TEST_INT", 0) == 42
    assert env.float("CHAT_TEST_FLOAT", 0) == 1000.0
    assert env.list("CHAT_TEST_LIST", default=[]) == ["a.example", "b.example"]
    assert env.str("CHAT_TEST_STR", "") == "$not-a-variable-name"


def test_importing_the_settings_creates_no_directory(tmp_path):
    done = start(tmp_path, "import config.settings", DJANGO_DEBUG="1")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "var").exists()


def test_the_first_sqlite_connection_creates_the_folder_of_a_fresh_checkout(tmp_path):
    code = "import django; django.setup()\nfrom django.db import connection\nconnection.ensure_connection()"
    done = start(tmp_path, code, DJANGO_DEBUG="1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "db.sqlite3").is_file()


def test_a_sqlite_connection_makes_its_folder_first(tmp_path):
    path = tmp_path / "a" / "b" / "db.sqlite3"
    connection = ConnectionHandler({"default": database_from_url(f"sqlite:///{path}")})["default"]
    with closing(connection.get_new_connection(connection.get_connection_params())) as db:
        assert isinstance(db, sqlite.Connection)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA secure_delete").fetchone() == (1,)
        db.execute("CREATE TABLE t (x)")
    assert path.is_file()
    # For this user only, and so its WAL: browser sessions' keys are in it.
    assert {oct(p.stat().st_mode & 0o777) for p in path.parent.iterdir()} == {"0o600"}


def test_a_boolean_typo_stops_django_setup_naming_the_variable(tmp_path):
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", DJANGO_SSL_REDIRECT="ture")
    assert done.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SSL_REDIRECT must be 1/true/yes/on or 0/false/no/off" in done.stderr


def test_a_number_typo_stops_django_setup_naming_the_variable(tmp_path):
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", CHANNEL_CAPACITY="abc")
    assert done.returncode != 0
    said = "ImproperlyConfigured: CHANNEL_CAPACITY must be a number (int) of 0 or more, not 'abc'"
    assert said in done.stderr


@pytest.mark.parametrize("sentinels", ["host1", "host1:port", ":26379", "a:26379,b", "a:²"])
def test_a_sentinel_without_its_port_stops_django_setup_naming_the_variable(tmp_path, sentinels):
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", REDIS_SENTINELS=sentinels)
    assert done.returncode != 0
    assert "ImproperlyConfigured: REDIS_SENTINELS must be host:port items" in done.stderr, done.stderr


def test_a_loop_stall_tick_of_zero_stops_django_setup(tmp_path):
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", LOOP_STALL_TICK="0")
    assert done.returncode != 0
    assert "ImproperlyConfigured: LOOP_STALL_TICK must be more than 0 seconds, not 0.0" in done.stderr


def test_a_header_timeout_of_zero_stops_django_setup(tmp_path):
    """0 would close every connection of `manage.py serve` before its first request."""
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", HTTP_HEADER_TIMEOUT="0")
    assert done.returncode != 0
    assert "ImproperlyConfigured: HTTP_HEADER_TIMEOUT must be more than 0 seconds, not 0.0" in done.stderr


def test_the_process_connection_limit_leaves_file_descriptors_to_the_rest(tmp_path):
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1])); from django.conf import settings; "
        "print(settings.TCP_CONNECTIONS_PER_PROCESS, settings.TCP_CONNECTIONS_PER_ADDRESS)"
    )
    done = start(tmp_path, code, DJANGO_DEBUG="1", CONNECTIONS_PER_ADDRESS="10")
    assert done.stdout.split() == ["768", "60"], done.stderr


def test_http_requests_in_flight_are_read_from_the_environment(tmp_path):
    code = (
        "from django.conf import settings; "
        "print(settings.HTTP_REQUESTS_PER_ADDRESS, settings.HTTP_REQUESTS_PER_PROCESS)"
    )
    assert start(tmp_path, code, DJANGO_DEBUG="1").stdout.split() == ["16", "64"]
    bounds = {"HTTP_REQUESTS_PER_ADDRESS": "3", "HTTP_REQUESTS_PER_PROCESS": "20"}
    done = start(tmp_path, code, DJANGO_DEBUG="1", **bounds)
    assert done.stdout.split() == ["3", "20"], done.stderr


@pytest.mark.parametrize("name", ["HTTP_REQUESTS_PER_ADDRESS", "HTTP_REQUESTS_PER_PROCESS"])
def test_no_http_request_in_flight_stops_django_setup(tmp_path, name):
    """0 would answer every page 503."""
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", **{name: "0"})
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {name} must be at least 1, not 0" in done.stderr


def test_a_young_generation_threshold_of_zero_stops_django_setup(tmp_path):
    """0 would turn the garbage collector off for good under `manage.py serve`."""
    done = start(tmp_path, "import django; django.setup()", DJANGO_DEBUG="1", GC_GEN0_THRESHOLD="0")
    assert done.returncode != 0
    assert "ImproperlyConfigured: GC_GEN0_THRESHOLD must be at least 1, not 0" in done.stderr


# What the hand-written database_from_url before django-environ gave for these URLs
# (DATABASE_POOL_TIMEOUT and DATABASE_CONNECT_TIMEOUT unset).
POOL = {"pool": {"min_size": 1, "max_size": 8, "timeout": 5.0}, "connect_timeout": 5}
POSTGRES = [
    (
        "postgres://user:p%40ss@host:5433/db",
        {"NAME": "db", "USER": "user", "PASSWORD": "p@ss", "HOST": "host", "PORT": "5433"},
    ),
    (
        "postgresql://postgres@127.0.0.1/test",
        {"NAME": "test", "USER": "postgres", "PASSWORD": "", "HOST": "127.0.0.1", "PORT": ""},
    ),
    (
        "pgsql://u:a%2Fb%3Ac@[::1]:5432/my%20db",
        {"NAME": "my db", "USER": "u", "PASSWORD": "a/b:c", "HOST": "::1", "PORT": "5432"},
    ),
    (
        "postgres://chat:pass+word@DB.Example.org:5432/chat",
        {"NAME": "chat", "USER": "chat", "PASSWORD": "pass+word", "HOST": "db.example.org", "PORT": "5432"},
    ),
]


@pytest.fixture
def default_pool(monkeypatch):
    monkeypatch.delenv("DATABASE_POOL_TIMEOUT", raising=False)
    monkeypatch.delenv("DATABASE_CONNECT_TIMEOUT", raising=False)


@pytest.mark.parametrize(("url", "parts"), POSTGRES)
def test_a_postgres_url_gives_the_same_entry_as_before(default_pool, url, parts):
    assert database_from_url(url) == {
        "ENGINE": "django.db.backends.postgresql",
        **parts,
        "CONN_MAX_AGE": 0,
        "OPTIONS": POOL,
    }


@pytest.mark.parametrize("url", ["sqlite:////srv/chat/db.sqlite3", "sqlite:///srv/chat/db.sqlite3"])
def test_a_sqlite_url_names_an_absolute_path_as_before(url):
    assert database_from_url(url) == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": Path("/srv/chat/db.sqlite3"),
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY; "
                "PRAGMA secure_delete=ON; PRAGMA wal_autocheckpoint=20000;"
            ),
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "factory": sqlite.Connection,
        },
        "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
    }


@pytest.mark.parametrize(("url", "scheme"), [("mysql://u@h/db", "mysql"), ("foo://h/x", "foo")])
def test_an_unsupported_database_is_refused(url, scheme):
    with pytest.raises(ImproperlyConfigured, match=f"DATABASE_URL scheme '{scheme}' is not supported"):
        database_from_url(url)


def test_a_port_that_is_not_a_number_is_refused_without_the_password():
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL does not parse") as refused:
        database_from_url("postgres://u:s3cr3t@h:abc/db")
    assert "s3cr3t" not in str(refused.value)


def test_the_access_log_is_off_unless_asked_for(tmp_path):
    """`serve` passes CHAT_ACCESS_LOG to uvicorn; tests/e2e/test_zero_knowledge.py reads the lines."""
    code = "import django; django.setup()\nfrom django.conf import settings\nprint(settings.CHAT_ACCESS_LOG)"
    unset = start(tmp_path, code, DJANGO_DEBUG="1")
    on = start(tmp_path, code, DJANGO_DEBUG="1", CHAT_ACCESS_LOG="on")
    typo = start(tmp_path, code, DJANGO_DEBUG="1", CHAT_ACCESS_LOG="yes please")
    assert (unset.stdout, on.stdout) == ("False\n", "True\n"), unset.stderr + on.stderr
    assert "ImproperlyConfigured: CHAT_ACCESS_LOG must be 1/true/yes/on" in typo.stderr
