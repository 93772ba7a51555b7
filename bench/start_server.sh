#!/usr/bin/env bash
# Start one production server process (daphne, via `manage.py serve`) for benchmarking,
# on a fresh SQLite database in a new temporary directory (CHAT_VAR_DIR).
#
#   PORT=8100 CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000 \
#       CHAT_BYTES_PER_ADDRESS_BURST=1000000000 CHAT_BYTES_PER_ADDRESS_SUSTAINED=1000000000 bash bench/start_server.sh &
#
# The script execs the server, so `$!` above is the server's PID (for `loadgen.py idle
# --server-pid`, and to stop it with `kill`). The rest of the environment passes through
# unchanged: REDIS_URL, DATABASE_URL, CHAT_RATE_*, CHAT_BYTES_PER_ADDRESS_*, CHANNEL_CAPACITY,
# ROOM_PASSWORD_ARGON2_*, ... The temporary directory is left behind; its path is printed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# As many open files as the hard limit allows: one per WebSocket connection.
hard_limit="$(ulimit -Hn)"
ulimit -n "$hard_limit" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true

export DJANGO_DEBUG=0
export DJANGO_SECRET_KEY=bench-only-secret
export DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
export DJANGO_SSL_REDIRECT=0 DJANGO_SECURE_COOKIES=0  # plain HTTP on loopback
CHAT_VAR_DIR="$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")"
export CHAT_VAR_DIR

echo "start_server.sh: CHAT_VAR_DIR=$CHAT_VAR_DIR, open files $(ulimit -n), port ${PORT:-8000}" >&2
.venv/bin/python manage.py migrate --noinput -v0
# SERVE_ARGS: more options for serve (behind bench/run.sh's nginx: --proxy-headers).
# shellcheck disable=SC2086
exec .venv/bin/python manage.py serve --host 127.0.0.1 --port "${PORT:-8000}" ${SERVE_ARGS:-}
