#!/usr/bin/env bash
# Every benchmark of bench/README.md, each on fresh server processes started here.
#
#   bash bench/run.sh one     # one process: SQLite and the in-memory layer (embedded defaults)
#   bash bench/run.sh files   # file throughput, and chat latency during uploads (one process)
#   bash bench/run.sh soak    # 10-minute soak (1,000 connections, 200 rooms) and 5,000 idle
#   bash bench/run.sh two     # one and two processes sharing PostgreSQL and Redis behind nginx
#   bash bench/run.sh redis   # one process on SQLite and Redis, direct: the hub's receive path
#   bash bench/run.sh hostile # 50 rooms chatting while one attacker per attack of issue 14 tries
#   bash bench/run.sh crowd   # one address chatting in a room of 1,000, its deliveries lifted and bound
#   bash bench/run.sh relay   # issue 17's table: each load on bench/relay.py, then on one serve
#   bash bench/run.sh processes # 1, 2, 4, 8 processes behind nginx with room affinity (issue 17)
#   bash bench/run.sh mixed   # chat with and without 20 % Typing and 10 % React frames (issue 18)
#   bash bench/run.sh         # both
#
# Figures go to stdout and, as JSON lines, to bench/results/<date>-<scenario>.json.
# Two processes need DATABASE_URL (PostgreSQL; a scratch database beside it is made
# and dropped) and REDIS_URL, defaulting to the machine's services on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
# Clients come from 200 loopback addresses (127.0.1.1-200), as a crowd would: the
# server's per-address limits (CONNECTIONS_PER_ADDRESS, ROOMS_PER_HOUR, the large
# replies an address's sockets may have waiting) would otherwise refuse the load as one
# attacker. A scenario may pass its own --sources after this one.
LOADGEN="$PY bench/loadgen.py --sources 200"
RESULTS=bench/results
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
PIDS=()
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The chat rate limit is raised only for the scenarios that send faster than a person
# (hostile_one and crowd_pairs set them back to their defaults). The flood's one sender
# in a room of 50 would otherwise be held to DELIVERIES_PER_*: 100 messages a second.
export CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000
export CHAT_BYTES_PER_ADDRESS_BURST=1000000000 CHAT_BYTES_PER_ADDRESS_SUSTAINED=1000000000
export DELIVERIES_PER_ADDRESS_BURST=1000000000 DELIVERIES_PER_ADDRESS_SUSTAINED=1000000000
export DELIVERIES_PER_ROOM_BURST=1000000000 DELIVERIES_PER_ROOM_SUSTAINED=1000000000
# The defaults of all of the above, for the scenarios that measure an attack against them.
DEFAULT_LIMITS=(CHAT_RATE_BURST=20 CHAT_RATE_SUSTAINED=10 CHAT_BYTES_PER_ADDRESS_BURST=2097152
    CHAT_BYTES_PER_ADDRESS_SUSTAINED=16384 DELIVERIES_PER_ADDRESS_BURST=50000 DELIVERIES_PER_ADDRESS_SUSTAINED=5000
    DELIVERIES_PER_ROOM_BURST=100000 DELIVERIES_PER_ROOM_SUSTAINED=20000)

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

# start_proxy PORT UPSTREAM_PORT...: nginx on PORT in front of the server processes, the
# way docs/production.md puts it (WebSocket upgrade), one worker process; least_conn, or
# the room affinity hash with PROXY_AFFINITY=1.
# Debian's nginx is installed when missing.
start_proxy() {
    local port=$1
    shift
    if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light >/dev/null \
            || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
                 --no-install-recommends nginx-light >/dev/null; }
    fi
    local dir servers=""
    dir="$(mktemp -d "${TMPDIR:-/tmp}/chat-bench-nginx.XXXXXX")"
    for upstream in "$@"; do servers+="server 127.0.0.1:$upstream max_fails=0; "; done
    # PROXY_AFFINITY=1: docs/production.md's room affinity (hash of the socket's room hint).
    local balance="least_conn;"
    [ "${PROXY_AFFINITY:-0}" = 1 ] && balance="hash \$chat_affinity consistent;"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile 100000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 50000; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    map \$arg_room \$chat_affinity { "~^[0-9a-f]{8}\$" \$arg_room; default \$request_id; }
    upstream chat { $balance $servers keepalive 32; }
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
            proxy_request_buffering off;
            proxy_buffering off;
        }
    }
}
CONF
    "$(command -v nginx || echo /usr/sbin/nginx)" -p "$dir" -c "$dir/nginx.conf" &
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

# Processes that share a database must share the key that wraps room keys (each
# CHAT_VAR_DIR would otherwise generate its own, and no process could open another's rooms).
SHARED_KEYS=(ROOM_KEY_ENCRYPTION_KEY="$($PY -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')")

# scratch_database fresh|drop NAME: a scratch PostgreSQL database beside DB_BASE's,
# made afresh or dropped.
scratch_database() {
    $PY - "$DB_BASE" "$1" "$2" <<'PY'
import sys, psycopg
_, base, action, name = sys.argv
with psycopg.connect(base, autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if action == "fresh":
        conn.execute(f'CREATE DATABASE "{name}"')
PY
}

# shared_behind_proxy N LABEL: N server processes on one scratch PostgreSQL database and
# Redis, behind nginx on port 8510 (the generator sees one port, as a browser would);
# fan-out, flood, joins and a many-rooms soak (200 rooms of 5, 1,000 msg/s, 2 minutes),
# and with several processes the soak again straight to their ports, without nginx.
shared_behind_proxy() {
    local count=$1 label=$2 name="chat_bench_$$_$1" ports=()
    scratch_database fresh "$name"
    for ((n = 1; n <= count; n++)); do
        ports+=($((8510 + n)))
        start_one $((8510 + n)) DATABASE_URL="${DB_BASE%/*}/$name" REDIS_URL="$REDIS" \
            CHANNEL_LAYER_PREFIX="bench$$-$count" SERVE_ARGS=--proxy-headers "${SHARED_KEYS[@]}"
    done
    start_proxy 8510 "${ports[@]}"
    local url=(--url ws://127.0.0.1:8510/ws/)
    $LOADGEN --json "${url[@]}" fanout --members 50 --senders 4 --rate 5 --duration 30 | record "fanout-$label"
    $LOADGEN --json "${url[@]}" flood --members 50 --duration 15 | record "flood-$label"
    $LOADGEN --json "${url[@]}" joins --count 1500 --concurrency 20 | record "joins-$label"
    $LOADGEN --json "${url[@]}" soak --rooms 200 --members 5 --rate 5 --duration 120 | record "rooms-$label"
    if [ "$count" -gt 1 ]; then  # the same processes without the proxy: what the extra hop costs
        local direct=()
        for port in "${ports[@]}"; do direct+=(--url "ws://127.0.0.1:$port/ws/"); done
        $LOADGEN --json "${direct[@]}" soak --rooms 200 --members 5 --rate 5 --duration 120 \
            | record "rooms-$label-direct"
    fi
    stop_servers
    scratch_database drop "$name"
}

# One and two processes on PostgreSQL and Redis, each behind nginx, side by side; plus
# the many-rooms soak on the embedded defaults (SQLite, in-memory layer) for the third
# column. DATABASE_URL and REDIS_URL default to the machine's services.
two_processes() {
    echo "== one and two processes behind nginx, PostgreSQL + Redis =="
    DB_BASE=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
    shared_behind_proxy 1 proxy-one
    shared_behind_proxy 2 proxy-two
    start_one 8509
    $LOADGEN --json --url ws://127.0.0.1:8509/ws/ soak --rooms 200 --members 5 --rate 5 --duration 120 \
        | record rooms-one
    stop_servers
}

# One process on SQLite and Redis, straight to its port: everything a room sends goes
# through the hub's Redis receive. Then /healthz, 200 times, on the idle process.
redis_one() {
    echo "== one process, SQLite + Redis =="
    local env=(REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}" CHANNEL_LAYER_PREFIX="bench$$-redis")
    local url=(--url ws://127.0.0.1:8520/ws/)
    start_one 8520 "${env[@]}"
    $LOADGEN --json "${url[@]}" fanout --members 50 --senders 4 --rate 5 --duration 30 | record fanout-redis-one
    $LOADGEN --json "${url[@]}" flood --members 50 --duration 15 | record flood-redis-one
    $LOADGEN --json "${url[@]}" soak --rooms 200 --members 5 --rate 5 --duration 60 | record rooms-redis-one
    $PY - <<'PY' | record healthz-redis-one
import json, statistics, time, urllib.error, urllib.request
seconds, statuses = [], []
for _ in range(200):
    began = time.perf_counter()
    try:
        with urllib.request.urlopen("http://127.0.0.1:8520/healthz", timeout=10) as response:
            statuses.append(response.status)
    except urllib.error.HTTPError as exc:
        statuses.append(exc.code)
    seconds.append(time.perf_counter() - began)
seconds.sort()
print(json.dumps({"scenario": "healthz", "requests": 200, "ok": statuses.count(200),
                  "p50_ms": round(statistics.median(seconds) * 1000, 2),
                  "p99_ms": round(seconds[197] * 1000, 2), "max_ms": round(seconds[-1] * 1000, 2)}))
PY
    stop_servers
}

# 50 rooms of 5 chatting (5 msg/s each, the chat limits at their defaults, the clients
# spread over 50 addresses) for 60 s, alone and then while bench/hostile.py runs one
# attacker per attack of issue 14, each from an address of its own.
hostile_one() {
    echo "== hostile: 50 rooms chatting, without and with the attackers =="
    local env=("${DEFAULT_LIMITS[@]}")
    local soak=(soak --rooms 50 --members 5 --rate 5 --duration 60 --sample-every 2)
    start_one 8540 "${env[@]}"
    $LOADGEN --json --url ws://127.0.0.1:8540/ws/ --sources 50 "${soak[@]}" --server-pid "${PIDS[0]}" \
        | record hostile-baseline
    stop_servers
    start_one 8541 "${env[@]}"
    local attacks="${TMPDIR:-/tmp}/bench-hostile-$$.json"
    $PY bench/hostile.py --port 8541 --duration 90 --server-pid "${PIDS[0]}" >"$attacks" &
    local attacker=$!
    sleep 20  # the attackers set up (a room with a large history) and start
    $LOADGEN --json --url ws://127.0.0.1:8541/ws/ --sources 50 "${soak[@]}" --server-pid "${PIDS[0]}" \
        | record hostile-attacked
    wait "$attacker" || true
    record hostile-attacks <"$attacks"
    stop_servers
}

# start_relay PORT: bench/relay.py, the plain websockets relay that stores nothing.
start_relay() {
    $PY bench/relay.py --port "$1" >"${TMPDIR:-/tmp}/bench-relay-$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "relay on port $1 did not start" >&2
    return 1
}

# One address's chat in a room of 1,000 readers (bench/hostile.py's crowd attack) while
# 50 other rooms chat, with DELIVERIES_PER_ADDRESS_* lifted and at its defaults; two
# runs of each, alternating, each on a fresh process. The other rooms join first (a
# saturated server once held their joins back until the attack was over, and the soak
# then measured a quiet server); the attack starts 3 s later; its crowd joins for 55 s
# (each join takes the room's deliveries: at the defaults a room of 1,000 fills in about
# 45 s); its 50 sockets speak from 58 s; the other rooms' 20 s soak sends from 63 s.
# CROWD_SPEAKERS_FROM=N: the 50 sockets from N addresses instead, and the room's bound
# (DELIVERIES_PER_ROOM_*) lifted and at its defaults. CROWD_CHURN=1: 200 sockets of 20
# addresses join and leave the room as fast as their join limits let them, saying
# nothing, in a room of 500 (its crowd joins for 12 s), with both deliveries bounds
# lifted and at their defaults.
crowd_pairs() {
    local from=${CROWD_SPEAKERS_FROM:-1} port=8750 run label suffix="" lifted churn=() crowd=1000 fill=55
    if [ "${CROWD_CHURN:-0}" = 1 ]; then
        echo "== crowd: 200 sockets of 20 addresses joining and leaving a room of 500, without and with the deliveries bounds =="
        lifted=(DELIVERIES_PER_ADDRESS_BURST=1000000000 DELIVERIES_PER_ADDRESS_SUSTAINED=1000000000
            DELIVERIES_PER_ROOM_BURST=1000000000 DELIVERIES_PER_ROOM_SUSTAINED=1000000000)
        from=20 suffix="-churn" churn=(--churn --speakers 200) crowd=500 fill=12
    elif [ "$from" = 1 ]; then
        echo "== crowd: one address chatting in a room of 1,000, without and with its deliveries bound =="
        lifted=(DELIVERIES_PER_ADDRESS_BURST=1000000000 DELIVERIES_PER_ADDRESS_SUSTAINED=1000000000)
    else
        echo "== crowd: $from addresses chatting in a room of 1,000, without and with the room's deliveries bound =="
        lifted=(DELIVERIES_PER_ROOM_BURST=1000000000 DELIVERIES_PER_ROOM_SUSTAINED=1000000000)
        suffix="-from$from"
    fi
    for run in 1 2; do
        for label in lifted defaults; do
            port=$((port + 1))
            # Every limit at its default (this script lifts them for the loads above).
            # The crowd reads every byte but answers no ping: pinged every 10 minutes, it
            # is not closed as dead (40 s after it joined) before its run is over.
            if [ "$label" = lifted ]; then
                start_one "$port" "${DEFAULT_LIMITS[@]}" "${lifted[@]}" SERVE_ARGS="--ping-interval 600"
            else
                start_one "$port" "${DEFAULT_LIMITS[@]}" SERVE_ARGS="--ping-interval 600"
            fi
            local attacks="${TMPDIR:-/tmp}/bench-crowd-$$.json" soak="${TMPDIR:-/tmp}/bench-crowd-soak-$$.json"
            local t0
            t0=$(date +%s)
            $PY bench/loadgen.py --sources 50 --json --url "ws://127.0.0.1:$port/ws/" soak --rooms 50 \
                --members 5 --rate 5 --duration 20 --sample-every 2 --server-pid "${PIDS[0]}" \
                --start-at "$((t0 + 3 + fill + 5))" >"$soak" &
            local soaker=$!
            sleep 3
            $PY bench/hostile.py --port "$port" --duration "$((fill + 34))" --attack crowd --crowd "$crowd" \
                --speakers-from "$from" "${churn[@]}" --speak-at "$((t0 + 3 + fill))" \
                --server-pid "${PIDS[0]}" >"$attacks" &
            local attacker=$!
            wait "$soaker" || true
            record "crowd-soak-$label$run$suffix" <"$soak"
            wait "$attacker" || true
            record "crowd-attack-$label$run$suffix" <"$attacks"
            stop_servers
        done
    done
}

# Issue 17's table, side by side: the relay and one serve process (embedded defaults),
# one run of each load on a fresh process, the server's CPU read from /proc. Each load
# runs on the relay and then on the server, so that the two runs of a ratio are minutes
# apart at most: this machine's speed moves with its host's steal.
relay_table() {
    local port=8560 name
    for load in rooms-1000 rooms-2000 rooms-5000 fanout joins idle-1000 idle-3000; do
        for target in relay server; do
            port=$((port + 1))
            if [ "$target" = relay ]; then start_relay "$port"; else start_one "$port"; fi
            local url=ws://127.0.0.1:$port/ws/ pid=${PIDS[0]}
            case $load in
                rooms-*) $LOADGEN --json --url "$url" soak --rooms 200 --members 5 --senders 5 \
                             --rate $((${load#rooms-} / 200)) --duration 20 --server-pid "$pid" ;;
                fanout) $LOADGEN --json --cpu-pid "$pid" --url "$url" fanout --members 50 --senders 1 \
                             --rate 20 --duration 30 --server-pid "$pid" ;;
                joins) $LOADGEN --json --cpu-pid "$pid" --url "$url" joins --count 3000 --concurrency 20 ;;
                idle-*) $LOADGEN --json --url "$url" idle --count "${load#idle-}" --rooms 200 --server-pid "$pid" ;;
            esac | record "$load-$target" || true
            stop_servers
        done
    done
}

# Issue 17, part 5: 1, 2, 4 and 8 processes on one scratch PostgreSQL database and Redis
# behind nginx with room affinity, 200 rooms of 5 at 200 msg/s in all for 30 s (below
# what the machine saturates at); then 4 and 8 without affinity. bench/scale.py reports
# per process the room events published and received, and Redis commands per message.
scale_processes() {
    echo "== 1, 2, 4, 8 processes behind nginx, PostgreSQL + Redis =="
    DB_BASE=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
    local work="${TMPDIR:-/tmp}/bench-scale-$$"
    mkdir -p "$work"
    # SCALE_RUNS: COUNT:AFFINITY pairs to run instead (e.g. "4:1 4:0"); SCALE_DURATION: seconds.
    for run in ${SCALE_RUNS:-1:1 2:1 4:1 8:1 4:0 8:0}; do
        local count=${run%:*} affinity=${run#*:} name="chat_bench_$$_scale" ports=() pids=() logs=()
        local label="scale-$count-$([ "$affinity" = 1 ] && echo affinity || echo least-conn)"
        scratch_database fresh "$name"
        for ((n = 1; n <= count; n++)); do
            ports+=($((8580 + n)))
            start_one $((8580 + n)) DATABASE_URL="${DB_BASE%/*}/$name" REDIS_URL="$REDIS" \
                CHANNEL_LAYER_PREFIX="bench$$-$label" SERVE_ARGS=--proxy-headers "${SHARED_KEYS[@]}"
            pids+=("${PIDS[-1]}")
            logs+=("${TMPDIR:-/tmp}/bench-server-$((8580 + n)).log")
        done
        PROXY_AFFINITY=$affinity start_proxy 8580 "${ports[@]}"
        $PY bench/scale.py snapshot "$REDIS" "${pids[@]}" >"$work/before.json"
        $LOADGEN --json --url ws://127.0.0.1:8580/ws/ soak --rooms 200 --members 5 --senders 5 --rate 1 \
            --duration "${SCALE_DURATION:-30}" $([ "$affinity" = 1 ] && echo --affinity) >"$work/soak.json"
        $PY bench/scale.py snapshot "$REDIS" "${pids[@]}" >"$work/after.json"
        stop_servers  # each process logs its totals as it stops
        $PY bench/scale.py summary "$work/before.json" "$work/after.json" "$work/soak.json" "${logs[@]}" \
            | $PY -c "import json, sys; print(json.dumps({'scenario': '$label', **json.load(sys.stdin)}))" \
            | record "$label"
        scratch_database drop "$name"
    done
}

# Issue 18: 200 rooms of 5 at 1,000 chat messages/s, with and without 20 % of all frames
# Typing and 10 % React (on the last message each sender saw), three runs of each,
# alternating, each on a fresh process; the chat's latency is what is compared.
mixed_frames() {
    echo "== chat with and without Typing and React, one process =="
    local port=8570
    for round in 1 2 3; do
        for mix in plain mixed; do
            port=$((port + 1))
            start_one "$port" CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000 \
                CHAT_BYTES_PER_ADDRESS_BURST=1000000000 CHAT_BYTES_PER_ADDRESS_SUSTAINED=1000000000
            local extra=()
            [ "$mix" = mixed ] && extra=(--typing-share 0.2 --react-share 0.1)
            $LOADGEN --json --url "ws://127.0.0.1:$port/ws/" soak --rooms 200 --members 5 --senders 5 --rate 5 \
                --duration 30 --server-pid "${PIDS[0]}" "${extra[@]}" | record "mixed-$mix-$round" || true
            stop_servers
        done
    done
}

case "${1:-all}" in
    one) one_process ;;
    files) files_one ;;
    soak) soak_one ;;
    two) two_processes ;;
    redis) redis_one ;;
    hostile) hostile_one ;;
    crowd) crowd_pairs ;;
    relay) relay_table ;;
    processes) scale_processes ;;
    mixed) mixed_frames ;;
    all) one_process; files_one; two_processes ;;
    *) echo "usage: bench/run.sh [one|files|soak|two|redis|hostile|crowd|relay|processes|mixed|all]" >&2; exit 2 ;;
esac
