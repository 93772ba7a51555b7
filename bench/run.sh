#!/usr/bin/env bash
# Every benchmark of bench/README.md, each on fresh server processes started here.
#
#   bash bench/run.sh one     # one process: SQLite and the in-memory layer (embedded defaults)
#   bash bench/run.sh files   # file throughput, and chat latency during uploads (one process)
#   bash bench/run.sh soak    # 10-minute soak (1,000 connections, 200 rooms) and 5,000 idle
#   bash bench/run.sh two     # two processes sharing PostgreSQL and Redis
#   bash bench/run.sh         # both
#
# Figures go to stdout and, as JSON lines, to bench/results/<date>-<scenario>.json.
# Two processes need DATABASE_URL (PostgreSQL; a scratch database beside it is made
# and dropped) and REDIS_URL, defaulting to the machine's services on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
LOADGEN="$PY bench/loadgen.py"
RESULTS=bench/results
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
PIDS=()
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The chat rate limit is raised only for the scenarios that send faster than a person.
export CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000

stop_servers() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_servers EXIT

wait_healthy() {
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "server on port $1 did not become healthy" >&2
    return 1
}

# start_one PORT [VAR=value ...]: one production server process on a fresh SQLite file.
start_one() {
    local port=$1
    shift
    env "$@" PORT="$port" bash bench/start_server.sh >"${TMPDIR:-/tmp}/bench-server-$port.log" 2>&1 &
    PIDS+=($!)
    wait_healthy "$port"
}

record() {  # record NAME: keep the JSON figures the loadgen printed on stdin
    tee -a "$RESULTS/$STAMP-$1.json"
}

one_process() {
    echo "== one process, SQLite + in-memory layer =="
    start_one 8501
    $LOADGEN --json --url ws://127.0.0.1:8501/ws/ fanout --members 50 --senders 4 --rate 5 --duration 30 | record fanout-one
    stop_servers

    start_one 8502
    $LOADGEN --json --url ws://127.0.0.1:8502/ws/ flood --members 50 --duration 15 | record flood-one
    stop_servers

    start_one 8503
    $LOADGEN --json --url ws://127.0.0.1:8503/ws/ joins --count 1500 --concurrency 20 | record joins-one
    stop_servers

    # A storm of password joins, and in another process a chat in another room.
    start_one 8504
    $LOADGEN --json --url ws://127.0.0.1:8504/ws/ joins --count 600 --concurrency 20 --password storm \
        >"$RESULTS/$STAMP-password-joins-one.json" &
    local storm=$!
    sleep 1
    $LOADGEN --json --url ws://127.0.0.1:8504/ws/ fanout --members 2 --senders 2 --rate 10 --duration 8 \
        | record probe-during-password-joins-one
    wait "$storm"
    cat "$RESULTS/$STAMP-password-joins-one.json"
    stop_servers

    start_one 8505
    $LOADGEN --json --url ws://127.0.0.1:8505/ws/ idle --count 1000 --rooms 10 --server-pid "${PIDS[0]}" \
        | record idle-one
    stop_servers
}

# Upload/download throughput, then a chat in another room timed alone, during 10 MiB
# uploads at 1/s, and during uploads back to back (two uploaders).
files_one() {
    echo "== files, one process =="
    start_one 8506 FILES_UPLOADS_PER_MINUTE=100000 FILES_ROOM_QUOTA=107374182400
    local url=ws://127.0.0.1:8506/ws/
    $LOADGEN --json --url $url files --sizes 1 10 --repeat 10 | record files-one
    $LOADGEN --json --url $url fanout --members 2 --senders 2 --rate 10 --duration 20 | record probe-alone-one
    for rate in 1 0; do
        $LOADGEN --json --url $url files --sizes 1 --repeat 1 --load-seconds 26 --uploaders 2 \
            --load-rate $rate >"$RESULTS/$STAMP-uploads-$rate-one.json" &
        local load=$!
        sleep 3
        $LOADGEN --json --url $url fanout --members 2 --senders 2 --rate 10 --duration 20 \
            | record "probe-during-uploads-$rate-one"
        wait "$load"
        cat "$RESULTS/$STAMP-uploads-$rate-one.json"
    done
    stop_servers
}

# Issue 7's loads on one process: a 10-minute soak of 1,000 connections in 200 rooms
# (5 messages/s each), then 5,000 idle joined connections held for 60 s.
soak_one() {
    echo "== soak and idle, one process =="
    start_one 8507
    $LOADGEN --json --url ws://127.0.0.1:8507/ws/ soak --rooms 200 --members 5 --rate 5 --duration 600 \
        --server-pid "${PIDS[0]}" | record soak-one
    stop_servers
    start_one 8508
    $LOADGEN --json --url ws://127.0.0.1:8508/ws/ idle --count 5000 --rooms 100 --server-pid "${PIDS[0]}" \
        --hold 60 | record idle-5000-one
    stop_servers
}

two_processes() {
    echo "== two processes, PostgreSQL + Redis =="
    local base=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    local redis=${REDIS_URL:-redis://127.0.0.1:6379/0}
    local name="chat_bench_$$"
    $PY - "$base" "$name" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{sys.argv[2]}"')
PY
    local url="${base%/*}/$name"
    for port in 8511 8512; do
        start_one "$port" DATABASE_URL="$url" REDIS_URL="$redis" CHANNEL_LAYER_PREFIX="bench$$"
    done
    local urls=(--url ws://127.0.0.1:8511/ws/ --url ws://127.0.0.1:8512/ws/)
    $LOADGEN --json "${urls[@]}" fanout --members 50 --senders 4 --rate 5 --duration 30 | record fanout-two
    $LOADGEN --json "${urls[@]}" flood --members 50 --duration 15 | record flood-two
    $LOADGEN --json "${urls[@]}" joins --count 1500 --concurrency 20 | record joins-two
    stop_servers
    $PY - "$base" "$name" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
PY
}

case "${1:-all}" in
    one) one_process ;;
    files) files_one ;;
    soak) soak_one ;;
    two) two_processes ;;
    all) one_process; files_one; two_processes ;;
    *) echo "usage: bench/run.sh [one|files|soak|two|all]" >&2; exit 2 ;;
esac
