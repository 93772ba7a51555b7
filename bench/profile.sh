#!/usr/bin/env bash
# A py-spy profile of one serve process under load, for comparing builds:
#
#   bash bench/profile.sh [CHECKOUT] [PORT] [SCENARIO]   # default: this checkout, 8601, flood
#
# SCENARIO: flood (one room of 50, one sender as fast as the server takes it) or rooms
# (200 rooms of 5, everyone sending, 1,000 messages/s in all: issue 17's many-rooms load)
# or rooms-5000 (the same at 5,000 messages/s)
# or mixed (rooms, with 20 % of the frames Typing and 10 % React: issue 18's mixed load)
# or joins (3,000 joins without a password, 20 at a time, each on a new connection)
# or fanout (one room of 50, one sender at 20 messages/s: 1,000 deliveries/s, issue 17's fan-out).
# Writes /tmp/prof-PORT.txt (py-spy's raw collapsed stacks, PROFILE_RATE Hz, default 200,
# 14 s; with PROFILE_NATIVE=1 also the C frames, pausing the process for each sample, and
# idle threads are then sampled too; summarise it
# with `.venv/bin/python bench/flame.py /tmp/prof-PORT.txt`) and /tmp/prof-SCENARIO-PORT.json
# (the load's figures). py-spy is not a requirement: `.venv/bin/pip install py-spy`
# first. Runs CHECKOUT's own bench scripts.
set -euo pipefail
checkout=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
port=${2:-8601}
scenario=${3:-flood}
cd "$checkout"
CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000 CHAT_BYTES_PER_ADDRESS_BURST=1000000000 CHAT_BYTES_PER_ADDRESS_SUSTAINED=1000000000 \
    DELIVERIES_PER_ADDRESS_BURST=1000000000 DELIVERIES_PER_ADDRESS_SUSTAINED=1000000000 \
    DELIVERIES_PER_ROOM_BURST=1000000000 DELIVERIES_PER_ROOM_SUSTAINED=1000000000 PORT=$port bash bench/start_server.sh \
    >"/tmp/prof-server-$port.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
case $scenario in
    flood) load=(flood --members 50 --duration 15); connections=0 ;;
    rooms) load=(soak --rooms 200 --members 5 --senders 5 --rate 5 --duration 30 --server-pid "$server")
           connections=1000 ;;
    rooms-5000) load=(soak --rooms 200 --members 5 --senders 5 --rate 25 --duration 30 --server-pid "$server")
           connections=1000 ;;
    mixed) load=(soak --rooms 200 --members 5 --senders 5 --rate 5 --duration 30 --server-pid "$server"
                 --typing-share 0.2 --react-share 0.1)
           connections=1000 ;;
    joins) load=(joins --count 3000 --concurrency 20); connections=0 ;;
    fanout) load=(fanout --members 50 --senders 1 --rate 20 --duration 30); connections=50 ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
.venv/bin/python bench/loadgen.py --sources 200 --json --url "ws://127.0.0.1:$port/ws/" "${load[@]}" \
    | tail -1 >"/tmp/prof-$scenario-$port.json" &
loadgen=$!
# The profile covers the load, not its set-up: it starts once every connection is open.
while [ "$(find /proc/$server/fd -lname 'socket:*' 2>/dev/null | wc -l)" -lt "$connections" ]; do sleep 0.2; done
sleep 1
mode=--nonblocking  # py-spy cannot read C frames without pausing the process
[ -n "${PROFILE_NATIVE:-}" ] && mode=--native
.venv/bin/py-spy record -p "$server" -r "${PROFILE_RATE:-200}" -d 14 -f raw -o "/tmp/prof-$port.txt" "$mode" \
    >/dev/null 2>&1
wait $loadgen
