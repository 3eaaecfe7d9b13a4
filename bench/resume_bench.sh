#!/usr/bin/env bash
# Resume benchmark ("a proxy restart"): 2 000 sessions drop at once with a reset, 5 messages are sent to
# each while they are away, then all come back with `resume`. Once against one instance, once against two
# instances and a nats-server with every session resuming on the other instance (the session moves).
# Reports the time to resume them all, messages replayed and lost, and the server's RSS per held session.
# Usage: bash bench/resume_bench.sh [sessions] [messages per session]   (defaults: 2000 5)
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-2000}
messages=${2:-5}
rooms=$((sessions / 10))
swift build -c release --product webrtc-server >/dev/null
swift build -c release --product signaling-load >/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
server() {  # server NAME SIGNALING_PORT TURN_PORT [flags...]
  local name=$1 sport=$2 tport=$3; shift 3
  .build/release/webrtc-server --auth.users bench=bench --turn.listen 127.0.0.1 --turn.port "$tport" \
      --signaling.listen 127.0.0.1 --signaling.port "$sport" --log_level warning "$@" > "/tmp/resume-bench-$name.log" 2>&1 &
  pids+=($!)
  wait_port "$sport"
}
# Rooms of 11: one peer that stays and sends, ten that drop.
load() { timeout 600 .build/release/signaling-load --connections $((rooms * 11)) --room-size 11 --resume-drop "$messages" "$@"; }

echo "== one instance: $sessions sessions drop and resume"
server single 18190 13590
load --port 18190 --server-pid "${pids[0]}"
cleanup; pids=()

echo "== two instances and nats-server: every session resumes on the other instance"
nats-server -a 127.0.0.1 -p 14390 > /tmp/resume-bench-nats.log 2>&1 &
pids+=($!)
wait_port 14390
cluster=(--cluster.nats nats://127.0.0.1:14390 --cluster.secret resume-bench-secret-0123456789)
server a 18191 13591 "${cluster[@]}" --cluster.instance_id a --turn.relay_port_min 40000 --turn.relay_port_max 44999
server b 18192 13592 "${cluster[@]}" --cluster.instance_id b --turn.relay_port_min 45000 --turn.relay_port_max 49999
for _ in $(seq 100); do
  [ "$(curl -s 127.0.0.1:18191/api/stats | python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"cluster\"][\"instances\"]))")" = 2 ] && break
  sleep 0.1
done
load --ports 18191,18192 --server-pid "${pids[1]}"
