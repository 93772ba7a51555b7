"""Settings for the chat server, every knob read from the environment.

A deployment keeps them in one file that CHAT_ENV_FILE names (config/envfile.py).
Without DATABASE_URL and REDIS_URL the server runs on SQLite and the in-memory
channel layer, so `make run` needs no services. Every limit of PROTOCOL.md is read
from the environment variable of the same name.
"""

import math
import resource
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from config import envfile, sqlite

envfile.load()  # CHAT_ENV_FILE, when a deployment sets it (docs/production.md)


class Env(environ.Env):
    """django-environ's reader (env.str, env.int, env.float, env.bool, env.list, env.db_url),
    strict where django-environ is lenient, so a typo stops the start naming its variable:

    - a number or boolean set to nothing (blank) is its default;
    - a value that does not parse is ImproperlyConfigured (django-environ lets int()'s
      ValueError out and reads a float from its digits alone: "5s" as 5.0, "1e3" as 13.0);
    - a boolean is 1/true/yes/on or 0/false/no/off, any case (django-environ reads a typo
      as False);
    - a number is finite and 0 or more (no setting means anything by a negative one;
      "nan" would pass every comparison a limit makes);
    - a list drops blank items and the spaces around each;
    - a value starting with "$" is itself (django-environ would read the variable it
      names; a secret key may start with "$").
    """

    TRUE = {"1", "true", "yes", "on"}
    FALSE = {"0", "false", "no", "off"}
    EXPECTED = {
        bool: "1/true/yes/on or 0/false/no/off",
        int: "a number (int) of 0 or more",
        float: "a number (float) of 0 or more",
    }

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(var)
        if raw is None or (cast in self.EXPECTED and raw.strip() == ""):
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable")
            return default
        try:
            return self.parse_value(raw, cast)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{var} must be {self.EXPECTED[cast]}, not {raw!r}") from exc

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool:
            value = value.strip().lower()
            if value not in cls.TRUE | cls.FALSE:
                raise ValueError(value)
            return value in cls.TRUE
        if cast is float:
            number = float(value)
            if not (math.isfinite(number) and number >= 0):
                raise ValueError(value)
            return number
        if cast is int:
            whole = int(value)
            if whole < 0:
                raise ValueError(value)
            return whole
        if cast is list:
            return [item.strip() for item in value.split(",") if item.strip()]
        return super().parse_value(value, cast)


env = Env()


def open_files_limit() -> int:
    """This process's soft limit on open files (a million if there is none)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1_000_000 if soft == resource.RLIM_INFINITY else soft


BASE_DIR = Path(__file__).resolve().parent.parent
# Data: the SQLite database, generated keys, blobs, static files. Nothing here creates it:
# the first SQLite connection makes the folder (config/sqlite.py), and each file's writer
# makes its own (files/store.py, files/blobs.py, chat/keys.py, collectstatic).
VAR_DIR = Path(env.str("CHAT_VAR_DIR", str(BASE_DIR / "var")))


def database_from_url(url: str) -> dict:
    """DATABASE_URL as a DATABASES entry: postgres://user:pass@host:port/db, or
    sqlite:////abs/path (sqlite:///abs/path too: a SQLite path is always absolute here)."""
    try:
        parsed = env.db_url_config(url)
    except ValueError as exc:  # a port that is not a number; never echo the URL (a password)
        raise ImproperlyConfigured(f"DATABASE_URL does not parse: {exc}") from exc
    if parsed.get("ENGINE") == "django.db.backends.postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parsed["NAME"],
            "USER": parsed["USER"],
            "PASSWORD": parsed["PASSWORD"],
            "HOST": parsed["HOST"],
            "PORT": str(parsed["PORT"]),
            # Django docs, "Persistent connections": under ASGI use CONN_MAX_AGE 0;
            # psycopg's pool gives the reuse back without leaking connections.
            "CONN_MAX_AGE": 0,
            # A request waits at most DATABASE_POOL_TIMEOUT s for a connection: with the
            # database down, clients get server_error in seconds instead of hanging.
            "OPTIONS": {
                "pool": {"min_size": 1, "max_size": 8, "timeout": env.float("DATABASE_POOL_TIMEOUT", 5)},
                "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", 5),
            },
        }
    if parsed.get("ENGINE") == "django.db.backends.sqlite3":
        return sqlite_database(Path("/", parsed["NAME"]))
    raise ImproperlyConfigured(f"DATABASE_URL scheme {urlsplit(url).scheme!r} is not supported")


def sqlite_database(path: Path) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        # One process, one database thread (chat/workers.py, `on_database_thread`): a persistent
        # connection in WAL mode keeps joins and posts off the fsync path.
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            # Checkpoints run in a background thread (chat/checkpoint.py); the serving
            # connections only checkpoint as a safety net.
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY; "
                # A deleted or edited message's old content is zeroed in the file, not
                # left in free space (Debian's build does it anyway; not every build does).
                "PRAGMA secure_delete=ON; "
                f"PRAGMA wal_autocheckpoint={env.int('SQLITE_WAL_AUTOCHECKPOINT', 20000)};"
            ),
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            # sqlite3.connect's connection class: makes the database's folder first.
            "factory": sqlite.Connection,
        },
        "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
    }


DEBUG = env.bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "Set DJANGO_SECRET_KEY, in the environment or in the file CHAT_ENV_FILE names "
            "(or DJANGO_DEBUG=1 for development)."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
    "files",
]

MIDDLEWARE = [
    # The response headers of every answer, /healthz and static files included.
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.csp.ContentSecurityPolicyMiddleware",
    # /healthz, before the host check (CommonMiddleware): a check asks a process on its
    # own address, which is no allowed host (SECURE_REDIRECT_EXEMPT: over plain HTTP too).
    "chat.views.HealthzFirst",
    # Serves the browser app's static files under `serve` (DEBUG off) as well.
    "chat.staticfiles.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "files.context_processors.upload_limits",  # the page's upload limits
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", "")
DATABASES = {
    "default": database_from_url(DATABASE_URL) if DATABASE_URL else sqlite_database(VAR_DIR / "db.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One Redis URL, or several separated by commas: the channel layer then spreads room
# groups and process channels over them (channels-redis's consistent hashing); the
# join-failure counters and quotas live on the first (docs/production.md, "Redis").
REDIS_URL = env.str("REDIS_URL", "")
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", "chat")
# Layer messages (batches of room events) that may wait for one layer channel before the
# layer drops new ones. Each process has one channel for all its rooms (chat/hub.py), so
# this is per process.
CHANNEL_CAPACITY = env.int("CHANNEL_CAPACITY", 10000)
# The hub's watchdog (chat/hub.py): every HUB_WATCHDOG_INTERVAL seconds it sends the
# hub a probe; a receive that returns nothing for HUB_WATCHDOG_TIMEOUT seconds while a
# probe is out is replaced by one on a new channel.
HUB_WATCHDOG_INTERVAL = env.float("HUB_WATCHDOG_INTERVAL", 2)
HUB_WATCHDOG_TIMEOUT = env.float("HUB_WATCHDOG_TIMEOUT", 10)
# Seconds the Redis layer keeps a channel in a group unless it is added again
# (channels-redis's group_expiry; its default is a day). Every process's hub is in the
# group of each room it has sockets in and renews its places every HUB_WATCHDOG_INTERVAL;
# a process that stops leaves its groups, and one that is killed is dropped by the first
# send to each room after this long. Whole seconds (Redis EXPIRE), at least three renewals, and the servers'
# clocks must agree to well within it (the layer compares each sender's clock with the
# renewing process's).
CHANNEL_GROUP_EXPIRY = env.int("CHANNEL_GROUP_EXPIRY", 30)
if CHANNEL_GROUP_EXPIRY < 3 * HUB_WATCHDOG_INTERVAL:
    raise ImproperlyConfigured(
        f"CHANNEL_GROUP_EXPIRY ({CHANNEL_GROUP_EXPIRY} s) must be at least three hub renewals, "
        f"3 x HUB_WATCHDOG_INTERVAL ({HUB_WATCHDOG_INTERVAL} s)."
    )
# Frames that may wait for one socket; a client that stops reading past this is
# closed with 4002 instead of growing server memory.
WS_SEND_QUEUE_LIMIT = env.int("WS_SEND_QUEUE_LIMIT", 1000)
# Hostile clients (issue 14, items 1 and 8): bytes that may wait for one socket (4002
# past them too); CreateRoom/JoinRoom and GetMembers/GetFile/GetHistory frames per
# connection per minute; open sockets of one client address in this process; bytes of
# upload frames this process holds at once (docs/protocol-notes.md, "Uploads in flight").
WS_SEND_QUEUE_BYTES = env.int("WS_SEND_QUEUE_BYTES", 33554432)
# The same for all of one client address's sockets, and all of this process's: a socket
# that queues past either is closed 4002 too (chat/outbox.py over_backlog).
WS_SEND_QUEUE_BYTES_PER_ADDRESS = env.int("WS_SEND_QUEUE_BYTES_PER_ADDRESS", 2 * WS_SEND_QUEUE_BYTES)
WS_SEND_QUEUE_BYTES_PER_PROCESS = env.int("WS_SEND_QUEUE_BYTES_PER_PROCESS", 16 * WS_SEND_QUEUE_BYTES)
JOINS_PER_MINUTE = env.int("JOINS_PER_MINUTE", 20)
# The same for all the sockets of one client address (in Redis across processes).
JOINS_PER_ADDRESS_PER_MINUTE = env.int("JOINS_PER_ADDRESS_PER_MINUTE", 120)
# Client addresses each per-address limit kept in the process remembers at most (the
# least recently seen are forgotten first): about 100 bytes to 20 KiB each.
ADDRESSES_REMEMBERED = env.int("ADDRESSES_REMEMBERED", 100_000)
READS_PER_MINUTE = env.int("READS_PER_MINUTE", 60)
CONNECTIONS_PER_ADDRESS = env.int("CONNECTIONS_PER_ADDRESS", 50)
# An IPv6 client is counted by its network of this many bits in every per-address limit
# (chat/security.py client_address): 64, a customer's usual allocation; 128, each address.
IPV6_PREFIX_LENGTH = env.int("IPV6_PREFIX_LENGTH", 64)
UPLOADS_IN_FLIGHT_BYTES = env.int("UPLOADS_IN_FLIGHT_BYTES", 64 * 1024 * 1024)
DOWNLOADS_IN_FLIGHT_BYTES = env.int("DOWNLOADS_IN_FLIGHT_BYTES", 256 * 1024 * 1024)
# While a download finds no room in DOWNLOADS_IN_FLIGHT_BYTES, those whose clients have
# read under the rate (512 kbit/s) since their body started, the grace ago at least, are
# cut off, the slowest first, until it fits (files/views.py; `serve` only). 0: never.
DOWNLOAD_MIN_BYTES_PER_SECOND = env.int("DOWNLOAD_MIN_BYTES_PER_SECOND", 64 * 1024)
DOWNLOAD_GRACE_SECONDS = env.float("DOWNLOAD_GRACE_SECONDS", 10.0)
# TCP connections under `manage.py serve` (chat/http_guard.py), before any request: the
# seconds a request head may take from the connection's opening or the previous response
# (then it is closed), and the connections one address (not a trusted proxy) and the
# process may hold open, WebSockets included; past either a new one is closed at once.
# The process's default leaves 256 of its open-file limit to the database, files and logs.
HTTP_HEADER_TIMEOUT = env.float("HTTP_HEADER_TIMEOUT", 5)
# Bytes a request head may take (its URL and headers); past it, 431 and the connection closed.
HTTP_HEADER_MAX = env.int("HTTP_HEADER_MAX", 64 * 1024)
# Headers in one request head at most (chat/http_guard.py); past it, 431. A browser sends
# about 15, nginx in front adds 4.
HTTP_HEADERS_MAX = env.int("HTTP_HEADERS_MAX", 100)
if HTTP_HEADERS_MAX < 32:  # a browser's request with a proxy's headers would not fit
    raise ImproperlyConfigured(f"HTTP_HEADERS_MAX must be at least 32, not {HTTP_HEADERS_MAX}")
# Requests one connection may send ahead of their answers (HTTP/1.1 pipelining); past it,
# the connection is closed. Browsers send none ahead.
HTTP_PIPELINED_MAX = env.int("HTTP_PIPELINED_MAX", 16)
TCP_CONNECTIONS_PER_ADDRESS = env.int("TCP_CONNECTIONS_PER_ADDRESS", CONNECTIONS_PER_ADDRESS + 50)
TCP_CONNECTIONS_PER_PROCESS = env.int("TCP_CONNECTIONS_PER_PROCESS", max(64, open_files_limit() - 256))
if HTTP_HEADER_TIMEOUT <= 0:  # every connection would be closed before its first request
    raise ImproperlyConfigured(f"HTTP_HEADER_TIMEOUT must be more than 0 seconds, not {HTTP_HEADER_TIMEOUT}")
if HTTP_PIPELINED_MAX < 0:
    raise ImproperlyConfigured(f"HTTP_PIPELINED_MAX must be at least 0, not {HTTP_PIPELINED_MAX}")
if HTTP_HEADER_MAX < 1024:  # no browser's request would fit
    raise ImproperlyConfigured(f"HTTP_HEADER_MAX must be at least 1024 bytes, not {HTTP_HEADER_MAX}")
# HTTP requests in flight (chat/security.py RequestLimit), counted from when the body is
# in until answered: of one client address, and of the process. Django runs each in a
# thread with a database connection of its own; past either a request gets 503 at once.
# /healthz is not counted.
HTTP_REQUESTS_PER_ADDRESS = env.int("HTTP_REQUESTS_PER_ADDRESS", 16)
HTTP_REQUESTS_PER_PROCESS = env.int("HTTP_REQUESTS_PER_PROCESS", 64)
# `/files/<id>` downloads in flight, from their start until their body is sent: of one
# client address (a page fetches at most two previews at once), and of the process.
FILE_REQUESTS_PER_ADDRESS = env.int("FILE_REQUESTS_PER_ADDRESS", 6)
FILE_REQUESTS_PER_PROCESS = env.int("FILE_REQUESTS_PER_PROCESS", 64)
for _name, _bound in [
    ("HTTP_REQUESTS_PER_ADDRESS", HTTP_REQUESTS_PER_ADDRESS),
    ("HTTP_REQUESTS_PER_PROCESS", HTTP_REQUESTS_PER_PROCESS),
    ("FILE_REQUESTS_PER_ADDRESS", FILE_REQUESTS_PER_ADDRESS),
    ("FILE_REQUESTS_PER_PROCESS", FILE_REQUESTS_PER_PROCESS),
]:
    if _bound < 1:  # every page would be 503
        raise ImproperlyConfigured(f"{_name} must be at least 1, not {_bound}")
# The largest HTTP request body, in bytes (chat/security.py BodyLimit): Django stores a
# body in a temporary file before anything looks at it; past this, 413. The default is
# Django's own bound on form data (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MiB); files go over
# the WebSocket, not HTTP.
HTTP_BODY_MAX = env.int("HTTP_BODY_MAX", 2_621_440)
if HTTP_BODY_MAX < 0:  # every request would be 413
    raise ImproperlyConfigured(f"HTTP_BODY_MAX must be at least 0 bytes, not {HTTP_BODY_MAX}")
# Seconds a request's body may take to come in whole, from its head; past it, 408 and the
# connection closed. And the bytes of bodies not yet answered (held by Django meanwhile)
# of one client address and of the process; past either, 503.
HTTP_BODY_TIMEOUT = env.float("HTTP_BODY_TIMEOUT", 30)
# Rooms a browser session remembers having joined (its files' downloads), the most recent.
SESSION_ROOMS_MAX = env.int("SESSION_ROOMS_MAX", 200)
if SESSION_ROOMS_MAX < 1:  # a join would not let its own session download the room's files
    raise ImproperlyConfigured(f"SESSION_ROOMS_MAX must be at least 1, not {SESSION_ROOMS_MAX}")
HTTP_BODY_BYTES_PER_ADDRESS = env.int("HTTP_BODY_BYTES_PER_ADDRESS", 4 * HTTP_BODY_MAX)
HTTP_BODY_BYTES_PER_PROCESS = env.int("HTTP_BODY_BYTES_PER_PROCESS", 16 * HTTP_BODY_MAX)
if HTTP_BODY_TIMEOUT <= 0:
    raise ImproperlyConfigured(f"HTTP_BODY_TIMEOUT must be more than 0 seconds, not {HTTP_BODY_TIMEOUT}")
# Seconds a response may wait on a client that reads nothing of it (the server's write
# buffer full all along: chat/http_guard.py); then the connection is aborted. A download
# holds its file in memory until read.
HTTP_WRITE_TIMEOUT = env.float("HTTP_WRITE_TIMEOUT", 30)
if HTTP_WRITE_TIMEOUT <= 0:
    raise ImproperlyConfigured(f"HTTP_WRITE_TIMEOUT must be more than 0 seconds, not {HTTP_WRITE_TIMEOUT}")
for _name, _bound in (
    ("HTTP_BODY_BYTES_PER_ADDRESS", HTTP_BODY_BYTES_PER_ADDRESS),
    ("HTTP_BODY_BYTES_PER_PROCESS", HTTP_BODY_BYTES_PER_PROCESS),
):
    if _bound < HTTP_BODY_MAX:  # a body the server takes could never come in
        raise ImproperlyConfigured(f"{_name} must be at least HTTP_BODY_MAX ({HTTP_BODY_MAX}), not {_bound}")


# Redis behind Sentinel (failover): "host:port,host:port" of the sentinels, and the
# name they know the primary by. Takes the place of REDIS_URL.
def sentinel(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ImproperlyConfigured(f"REDIS_SENTINELS must be host:port items, comma-separated, not {item!r}")
    return host, int(port)


REDIS_SENTINELS = [sentinel(item) for item in env.list("REDIS_SENTINELS", default=[])]
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", "mymaster")
# Seconds a Redis read may take before the call fails. An idle process's layer receive
# waits in Redis for 5 s (channels-redis), so this must be longer: at redis-py's default
# (5 s) an idle receive failed now and then, and the hub paused a second to retry.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", 10)


def redis_layer_host(url: str) -> dict:
    """One `hosts` entry of the Redis channel layer: REDIS_SENTINELS if set, else `url`."""
    if REDIS_SENTINELS:
        host: dict = {"sentinels": REDIS_SENTINELS, "master_name": REDIS_SENTINEL_MASTER}
    else:
        host = {"address": url}
    return {**host, "socket_timeout": REDIS_SOCKET_TIMEOUT}


if REDIS_URL or REDIS_SENTINELS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisChannelLayer",
            "CONFIG": {
                "hosts": [redis_layer_host(url) for url in REDIS_URL.split(",")],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": CHANNEL_CAPACITY,
                "group_expiry": CHANNEL_GROUP_EXPIRY,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Pages name static files by their hashes (app.3f9c2a1b7e4d.js) from the manifest of
# `collectstatic`, so a cache may keep a file for good and a release changes every name it
# changes. Without a manifest (development, tests), or for a file it lacks, the plain name;
# WhiteNoise finds the apps' static files itself, so no collectstatic step is needed there.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Readable by all whatever the umask of the shell that runs collectstatic: they are
    # public, and nginx (another user) serves them (docs/production.md, steps 1 and 7).
    "staticfiles": {
        "BACKEND": "chat.staticfiles.ManifestStaticFilesStorage",
        "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755},
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# A secure cookie is also a `__Host-` one: a browser takes it only from this origin over
# HTTPS, with no Domain, so neither a sibling subdomain nor a plain-HTTP answer can plant a
# session of its own choosing in a browser (its joins' download rights would then be the
# planter's too), nor a CSRF token. Plain HTTP (development, tests) keeps Django's names.
SESSION_COOKIE_NAME = "__Host-sessionid" if SESSION_COOKIE_SECURE else "sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken" if CSRF_COOKIE_SECURE else "csrftoken"
# Production is served over TLS (README, Production): plain HTTP is redirected, and
# browsers are told to use HTTPS only. Both can be turned off for a plain-HTTP test.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
# Set these to 0 when the chat shares its domain with sites that are not all HTTPS.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    # One line per connection from the servers themselves is noise at this volume.
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "uvicorn.error": {"level": "WARNING"},
        # What any client can make the server log as often as it likes: a traceback for
        # each request with a foreign Host (its value repeated, up to the head's size:
        # 236 KiB a request), a line for each 404 and 405 with its path. The 400, 404 and
        # 405 still go to the client; a proxy's access log has them.
        "django.security.DisallowedHost": {"handlers": ["null"], "propagate": False},
        "django.request": {"level": "ERROR"},
    },
}

# `manage.py serve` writes one line per HTTP request (uvicorn's access log, at INFO) to
# the log output when this is on. Off by default: a proxy in front usually logs requests
# already, and these lines hold each room page's join key (/rooms/KEY/) and client address.
CHAT_ACCESS_LOG = env.bool("CHAT_ACCESS_LOG", False)

# `event=error` lines (one per refused frame) are rate-limited: at most this many a
# minute for one connection and a second for the process; the next line says how many
# were left out (chat/oplog.py).
LOG_ERRORS_PER_CONNECTION = env.int("LOG_ERRORS_PER_CONNECTION", 10)
LOG_ERRORS_PER_PROCESS = env.int("LOG_ERRORS_PER_PROCESS", 100)

# Error pages (DEBUG's technical 500) and reports hide DATABASE_URL, REDIS_URL and any
# URL with credentials, besides Django's *KEY*, *SECRET*, *PASS*... (config/reporting.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.reporting.SafeReporterFilter"

# --- Protocol limits (PROTOCOL.md, "Limits"); read where used, never at import. ---
FILES_MAX_SIZE = env.int("FILES_MAX_SIZE", 10 * 1024 * 1024)
FILES_ALLOWED_MIME_TYPES = [
    item.lower()
    for item in env.list(
        "FILES_ALLOWED_MIME_TYPES",
        default=[
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "application/pdf",
            "text/plain",
            "application/zip",
        ],
    )
]
FILES_TTL = env.int("FILES_TTL", 86400)
FILES_ROOM_QUOTA = env.int("FILES_ROOM_QUOTA", 100 * 1024 * 1024)
# Live files' bytes one client address may have uploaded in all rooms, and all rooms'
# together (files/services.py check_quota).
FILES_ADDRESS_QUOTA = env.int("FILES_ADDRESS_QUOTA", 1024 * 1024 * 1024)
FILES_TOTAL_QUOTA = env.int("FILES_TOTAL_QUOTA", 20 * 1024 * 1024 * 1024)
FILES_UPLOADS_PER_MINUTE = env.int("FILES_UPLOADS_PER_MINUTE", 10)
CHAT_MAX_CONTENT = env.int("CHAT_MAX_CONTENT", 65536)
# Seconds after sending during which the author may edit a message (PROTOCOL.md, Conversations).
CHAT_EDIT_WINDOW = env.int("CHAT_EDIT_WINDOW", 86400)
# Seconds between the browser page's asks for the room's whole member list (GetMembers,
# one of READS_PER_MINUTE), while it is shown: a ParticipantJoined or ParticipantLeft
# lost on the bus (its Redis restarted) is mended by the next. 0: never asked again.
MEMBERS_REFRESH = env.float("MEMBERS_REFRESH", 300)
# Distinct emoji one message may hold (PROTOCOL.md, Conversations).
REACTIONS_PER_MESSAGE = env.int("REACTIONS_PER_MESSAGE", 20)
# Reactions (one person's emoji) one message may hold in all: each is a name in every
# History entry and Reactions frame of that message, so it bounds their size.
REACTIONS_PER_MESSAGE_IN_ALL = env.int("REACTIONS_PER_MESSAGE_IN_ALL", 500)
# A room's last steps whose edit, delete or reaction a hub that missed it on the bus can
# read back (chat/models.py Change): at most this many rows a room (at least 1).
CHANGES_KEPT_STEPS = env.int("CHANGES_KEPT_STEPS", 1000)
# Typing frames a connection may send a second (burst: twice that) before the extra ones,
# dropped without an answer anyway, count toward the 1008 rule (ABUSE_RATE_LIMITED_FRAMES).
TYPING_FRAMES_PER_SECOND = env.float("TYPING_FRAMES_PER_SECOND", 10)
CHAT_RATE_BURST = env.float("CHAT_RATE_BURST", 20)
CHAT_RATE_SUSTAINED = env.float("CHAT_RATE_SUSTAINED", 10)
# What one client address may store through the chat commands of all its sockets, in
# all processes together when the channel layer is Redis (else in the process): a
# bucket of bytes (content, plus 512 a frame for its row: actions.ROW_BYTES), so one
# address adds at most about 1.3 GiB a day to the disk (docs/protocol-notes.md).
CHAT_BYTES_PER_ADDRESS_BURST = env.int("CHAT_BYTES_PER_ADDRESS_BURST", 2 * 1024 * 1024)
CHAT_BYTES_PER_ADDRESS_SUSTAINED = env.int("CHAT_BYTES_PER_ADDRESS_SUSTAINED", 16 * 1024)
# What one client address's room events may cost to hand out, counted in deliveries (a
# socket of the room each, in every process): its chat messages, edits, deletes,
# reactions, file messages and Typing. Burst, then per second; with Redis one bucket for
# every process (DELIVERIES_LEASE), else the process's own. In a room of five that is 1,000
# messages a second; in a room of a thousand, 5 a second after 50 at once: one address
# (a venue's NAT, too) cannot keep a process busy by chatting in a large room.
DELIVERIES_PER_ADDRESS_BURST = env.int("DELIVERIES_PER_ADDRESS_BURST", 50_000)
DELIVERIES_PER_ADDRESS_SUSTAINED = env.int("DELIVERIES_PER_ADDRESS_SUSTAINED", 5_000)
# What one room's chat may cost to hand out, whoever says it: the same deliveries, from a
# bucket of the room's (with Redis, one for every process). Twenty addresses, each within its own bucket
# above, could still keep a process busy in one large room and slow every other room;
# this bounds one room's share. In a room of a thousand: 100 messages at once, then 20 a
# second; in a room of fifty, 400 a second.
DELIVERIES_PER_ROOM_BURST = env.int("DELIVERIES_PER_ROOM_BURST", 100_000)
DELIVERIES_PER_ROOM_SUSTAINED = env.int("DELIVERIES_PER_ROOM_SUSTAINED", 20_000)
# What one client address may read through GetHistory, GetMembers and GetFile replies of
# all its sockets in this process, and its /files/ downloads: a bucket of bytes, refilled
# per second. READS_PER_MINUTE
# is per connection, and 50 sockets of one address read 109 MB/s of History.
READ_BYTES_PER_ADDRESS_BURST = env.int("READ_BYTES_PER_ADDRESS_BURST", 64 * 1024 * 1024)
READ_BYTES_PER_ADDRESS_SUSTAINED = env.int("READ_BYTES_PER_ADDRESS_SUSTAINED", 4 * 1024 * 1024)
# With Redis, what a process takes from an address's bucket at once beyond what a frame
# needs, to spend without asking Redis again (chat/ratelimit.py RedisAddressBuckets).
CHAT_BYTES_LEASE = env.int("CHAT_BYTES_LEASE", 64 * 1024)
# The same for the deliveries buckets (DELIVERIES_PER_*): a room of five asks Redis once
# in 400 messages, a room of a thousand once in two.
DELIVERIES_LEASE = env.int("DELIVERIES_LEASE", 2_000)
# Most chat messages (or reactions) a process stores in one transaction (chat/batching.py).
CHAT_WRITE_BATCH = env.int("CHAT_WRITE_BATCH", 200)
# Least seconds between the starts of two such transactions: under load the messages of
# that span go together (a message that finds the writer idle longer is written at once).
CHAT_WRITE_INTERVAL = env.float("CHAT_WRITE_INTERVAL", 0.01)
# Most room events a process sends in one channel-layer message (chat/hub.py).
CHAT_PUBLISH_BATCH = env.int("CHAT_PUBLISH_BATCH", 500)
JOIN_FAILURES_PER_MINUTE = env.int("JOIN_FAILURES_PER_MINUTE", 5)
# Failed admin logins one client address may make a minute (in Redis across processes
# when set), and admin logins one process checks a password for at once; past either a
# login is answered 429 / 503 without hashing anything (chat/admin_login.py).
ADMIN_LOGIN_FAILURES_PER_MINUTE = env.int("ADMIN_LOGIN_FAILURES_PER_MINUTE", 5)
ADMIN_LOGIN_CHECKS_AT_ONCE = env.int("ADMIN_LOGIN_CHECKS_AT_ONCE", 1)
CHAT_HISTORY_LIMIT = env.int("CHAT_HISTORY_LIMIT", 100)
# base64 of FILES_MAX_SIZE plus 64 KiB for the JSON around it.
WS_MAX_FRAME = env.int("WS_MAX_FRAME", 4 * ((FILES_MAX_SIZE + 2) // 3) + 64 * 1024)
# Frames over 256 KiB (uploads) arriving or being handled at once, per client address and
# per process, and the bytes of them an address may send a minute after a burst of two
# (chat/frame_budget.py; `serve` only). Past them the server waits before reading on.
LARGE_FRAMES_PER_ADDRESS = env.int("LARGE_FRAMES_PER_ADDRESS", 2)
LARGE_FRAMES_PER_PROCESS = env.int("LARGE_FRAMES_PER_PROCESS", 16)
LARGE_FRAME_BYTES_PER_MINUTE = env.int(
    "LARGE_FRAME_BYTES_PER_MINUTE", FILES_UPLOADS_PER_MINUTE * WS_MAX_FRAME
)
# While a socket waits for a process slot, the slowest holder read for the grace at under
# the rate (512 kbit/s) is closed with 1013, and its slot goes to the waiting. 0: never.
LARGE_FRAME_MIN_BYTES_PER_SECOND = env.int("LARGE_FRAME_MIN_BYTES_PER_SECOND", 64 * 1024)
LARGE_FRAME_GRACE_SECONDS = env.float("LARGE_FRAME_GRACE_SECONDS", 10.0)
# Seconds `serve` waits, once stopped (SIGTERM), for its sockets' closes to be written
# before it cancels what is left and shuts the app down (the hub leaves the room bus): a
# peer that reads nothing would hold it until systemd's SIGKILL (TimeoutStopSec=20).
SHUTDOWN_TIMEOUT = env.int("SHUTDOWN_TIMEOUT", 10)

# --- Files at rest (files/blobs.py) ---
# Private directory of the encrypted blobs: outside any web root, never served directly.
FILES_ROOT = Path(env.str("FILES_ROOT", str(VAR_DIR / "files")))
# base64 of 32 bytes: the AES-256-GCM key of the blobs. Unset: a key generated once into
# FILES_KEY_FILE (development; chat.W002 asks production to set it).
FILES_ENCRYPTION_KEY = env.str("FILES_ENCRYPTION_KEY", "")
FILES_KEY_FILE = Path(env.str("FILES_KEY_FILE", str(VAR_DIR / "files.key")))
# The key being replaced, while `manage.py reseal_files` moves the blobs off it.
FILES_ENCRYPTION_KEY_PREVIOUS = env.str("FILES_ENCRYPTION_KEY_PREVIOUS", "")
# Blobs without a row are removed by purge_files once older than this (an upload in
# flight writes its blob just before its row).
FILES_ORPHAN_GRACE = env.float("FILES_ORPHAN_GRACE", 3600)
# /healthz is 503 (`"storage": "full"`) when the SQLite database's folder or FILES_ROOT
# has fewer free bytes than this: the database still answers a SELECT on a full disk
# while every message and upload fails.
HEALTHZ_MIN_FREE_BYTES = env.int("HEALTHZ_MIN_FREE_BYTES", 64 * 1024 * 1024)
# Threads that decode, hash and encrypt files beside the event loop.
FILES_WORK_THREADS = env.int("FILES_WORK_THREADS", 1)
# Malware scanning: off unless a clamd is configured (unix socket, or host and port).
CLAMAV_SOCKET = env.str("CLAMAV_SOCKET", "")
CLAMAV_HOST = env.str("CLAMAV_HOST", "")
CLAMAV_PORT = env.int("CLAMAV_PORT", 3310)
CLAMAV_TIMEOUT = env.float("CLAMAV_TIMEOUT", 30)

# --- Room keys at rest and storage bounds (chat/keys.py, chat/retention.py) ---
# base64 of 32 bytes: the key-encryption key that wraps every room key in the database
# (AES-256-GCM, the room id as associated data). Unset: a key generated once into
# ROOM_KEY_ENCRYPTION_KEY_FILE (development; chat.W005 asks production to set it).
ROOM_KEY_ENCRYPTION_KEY = env.str("ROOM_KEY_ENCRYPTION_KEY", "")
ROOM_KEY_ENCRYPTION_KEY_FILE = Path(env.str("ROOM_KEY_ENCRYPTION_KEY_FILE", str(VAR_DIR / "room-keys.key")))
# The key being replaced, while `manage.py rewrap_room_keys` moves rooms off it.
ROOM_KEY_ENCRYPTION_KEY_PREVIOUS = env.str("ROOM_KEY_ENCRYPTION_KEY_PREVIOUS", "")
# Rooms one client address may create per hour (in Redis across processes when set).
ROOMS_PER_HOUR = env.int("ROOMS_PER_HOUR", 20)
# Messages older than this many days, and the files shared as long ago (before FILES_TTL
# if that is longer), are deleted by purge_files, then the rooms written in that this
# leaves with no message, file or participant and that were made (and closed) longer
# ago than that (chat/retention.py, emptied_rooms); 0 keeps them forever.
CHAT_RETENTION_DAYS = env.float("CHAT_RETENTION_DAYS", 0)
# Participants who left more than this many days ago are deleted by purge_files (their
# tokens then join as new participants); 0 keeps them forever.
PARTICIPANTS_RETENTION_DAYS = env.float("PARTICIPANTS_RETENTION_DAYS", 3)
# Rooms made more than this many days ago that nobody ever wrote in (no message, no
# file) and nobody is in are deleted by purge_files; 0 keeps them forever.
UNUSED_ROOMS_RETENTION_DAYS = env.float("UNUSED_ROOMS_RETENTION_DAYS", 7)
# Admin log entries (django_admin_log: each moderation action, with the name of the room,
# participant or file it acted on) older than this many days are deleted by purge_files;
# 0 keeps them forever.
ADMIN_LOG_RETENTION_DAYS = env.float("ADMIN_LOG_RETENTION_DAYS", 90)

# 51st rate-limited frame within this window closes the socket with 1008.
ABUSE_RATE_LIMITED_FRAMES = env.int("ABUSE_RATE_LIMITED_FRAMES", 50)
ABUSE_WINDOW = env.float("ABUSE_WINDOW", 10)
# A participant an admin removed may not rejoin that room under that name, from the
# same browser session or client address, for this long.
KICK_BAN_SECONDS = env.float("KICK_BAN_SECONDS", 3600)

# Presence: every process refreshes its participants' last_seen every
# PRESENCE_HEARTBEAT seconds; a participant unseen for PRESENCE_TIMEOUT is a ghost
# (its process died) and is swept. Worst case a ghost shows for
# PRESENCE_TIMEOUT + PRESENCE_HEARTBEAT seconds: 45 + 15 = 60 s by default.
PRESENCE_HEARTBEAT = env.float("PRESENCE_HEARTBEAT", 15)
PRESENCE_TIMEOUT = env.float("PRESENCE_TIMEOUT", 45)

# Room passwords: Argon2id (memory-hard) at OWASP's minimum profile m=9 MiB, t=4,
# p=1, about 20 ms of one core here; see README "Room passwords".
ROOM_PASSWORD_ARGON2_MEMORY_KIB = env.int("ROOM_PASSWORD_ARGON2_MEMORY_KIB", 9 * 1024)
ROOM_PASSWORD_ARGON2_TIME_COST = env.int("ROOM_PASSWORD_ARGON2_TIME_COST", 4)
# Threads (at the lowest CPU priority) that hash and check room passwords. One leaves
# the other core of a two-core machine to the event loop during a storm of joins.
PASSWORD_HASH_THREADS = env.int("PASSWORD_HASH_THREADS", 1)
# Bounded work queues (issue 14, item 3): jobs waiting or running in the password
# threads and in the file/big-frame threads of one process, and of those the jobs of
# one client address; past either bound the frame is refused `rate_limited`.
PASSWORD_HASH_QUEUE = env.int("PASSWORD_HASH_QUEUE", 32)
FILES_WORK_QUEUE = env.int("FILES_WORK_QUEUE", 32)
WORK_QUEUE_PER_ADDRESS = env.int("WORK_QUEUE_PER_ADDRESS", 4)
# Clients' requests (joins, members, ...) waiting for or in the database thread of one
# process; past it they are refused `rate_limited`. Chat writes and leaves are not counted.
DATABASE_QUEUE = env.int("DATABASE_QUEUE", 200)

# Seconds between background WAL checkpoints on SQLite (0 turns them off), and the log's
# length in pages past which such a checkpoint also starts the log over (0: never).
SQLITE_CHECKPOINT_INTERVAL = env.float("SQLITE_CHECKPOINT_INTERVAL", 0.5)
SQLITE_WAL_RESTART = env.int("SQLITE_WAL_RESTART", 4000)
# A garbage-collector pass of at least this many seconds is logged (event=gc_pause); 0: off.
GC_PAUSE_LOG = env.float("GC_PAUSE_LOG", 0.02)
# Under `manage.py serve`, an event loop that wakes this many seconds or more late is
# logged (event=loop_stall: nothing else ran meanwhile); 0: off. The watcher wakes every
# LOOP_STALL_TICK seconds: a stall of LOOP_STALL_LOG + LOOP_STALL_TICK is always logged.
LOOP_STALL_LOG = env.float("LOOP_STALL_LOG", 0.04)
LOOP_STALL_TICK = env.float("LOOP_STALL_TICK", 0.05)
if LOOP_STALL_TICK <= 0:  # a timer due at once, again and again: the loop would spin
    raise ImproperlyConfigured(f"LOOP_STALL_TICK must be more than 0 seconds, not {LOOP_STALL_TICK}")

# `manage.py serve` sets the garbage collector's young-generation threshold to this
# (Python's is 700); see chat/runtime.py's `tune_collector`.
GC_GEN0_THRESHOLD = env.int("GC_GEN0_THRESHOLD", 5000)
if GC_GEN0_THRESHOLD < 1:  # 0 turns the collector off: closed sockets' cycles would stay
    raise ImproperlyConfigured(f"GC_GEN0_THRESHOLD must be at least 1, not {GC_GEN0_THRESHOLD}")

# daphne's runserver reads these; `manage.py serve` passes the same value.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = WS_MAX_FRAME
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = WS_MAX_FRAME
