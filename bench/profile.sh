#!/usr/bin/env bash
# A py-spy profile of one serve process under the flood scenario, for comparing builds:
#
#   bash bench/profile.sh [CHECKOUT] [PORT]    # default: this checkout, port 8601
#
# Writes /tmp/prof-PORT.txt (py-spy's raw collapsed stacks, 200 Hz, 14 s) and
# /tmp/prof-flood-PORT.json (the flood's figures). py-spy is not a requirement:
# `.venv/bin/pip install py-spy` first. Run CHECKOUT's own bench scripts.
set -euo pipefail
checkout=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
port=${2:-8601}
cd "$checkout"
CHAT_RATE_BURST=100000 CHAT_RATE_SUSTAINED=100000 PORT=$port bash bench/start_server.sh \
    >"/tmp/prof-server-$port.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
.venv/bin/py-spy record -p "$server" -r 200 -d 14 -f raw -o "/tmp/prof-$port.txt" --nonblocking >/dev/null 2>&1 &
profiler=$!
.venv/bin/python bench/loadgen.py --sources 200 --json --url "ws://127.0.0.1:$port/ws/" \
    flood --members 50 --duration 15 | tail -1 >"/tmp/prof-flood-$port.json"
wait $profiler
