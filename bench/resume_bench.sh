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
source bench/lib.sh
load() { timeout 600 .build/release/signaling-load --connections $((rooms * 11)) --room-size 11 --resume-drop "$messages" "$@"; }

echo "== one instance: $sessions sessions drop and resume"
server single 18190 13590
load --port 18190 --server-pid "${pids[0]}"
cleanup; pids=()

echo "== two instances and nats-server: every session resumes on the other instance"
nats 14390
cluster=(--cluster.nats nats://127.0.0.1:14390 --cluster.secret resume-bench-secret-0123456789)
server a 18191 13591 "${cluster[@]}" --cluster.instance_id a --turn.relay_port_min 40000 --turn.relay_port_max 44999
server b 18192 13592 "${cluster[@]}" --cluster.instance_id b --turn.relay_port_min 45000 --turn.relay_port_max 49999
wait_cluster 18191 2
load --ports 18191,18192 --server-pid "${pids[1]}"
