#!/usr/bin/env bash
# Cluster benchmark: the same signaling load against one instance, then against two instances joined by
# a real nats-server with every directed message crossing instances (signaling-load --ports A,B --cross),
# in one run. Reports delivered messages/s, latency and the CPU per delivered message of each process
# (both instances and nats-server) next to the single instance's. Figures go to BENCHMARKS.md.
# Usage: bash bench/cluster_bench.sh [connections] [rate] [seconds]   (defaults: 10000 20000 10)
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-10000}
rate=${2:-20000}
seconds=${3:-10}
command -v nats-server >/dev/null || { echo "nats-server is not installed (Debian package nats-server)"; exit 1; }
swift build -c release --product webrtc-server >/dev/null
swift build -c release --product signaling-load >/dev/null
source bench/lib.sh
load() { timeout 900 .build/release/signaling-load --connections "$connections" --room-size 10 --rate "$rate" --duration "$seconds" "$@"; }

echo "== one instance: $connections connections, rooms of 10, $rate directed messages/s for $seconds s"
server single 18090 13490
load --port 18090 --server-pid "${pids[0]}"
cleanup; pids=()

echo "== two instances and nats-server: every message crosses instances"
nats 14290
nats=${pids[0]}
cluster=(--cluster.nats nats://127.0.0.1:14290 --cluster.secret cluster-bench-secret-0123456789)
server a 18091 13491 "${cluster[@]}" --cluster.instance_id a --turn.relay_port_min 40000 --turn.relay_port_max 44999
server b 18092 13492 "${cluster[@]}" --cluster.instance_id b --turn.relay_port_min 45000 --turn.relay_port_max 49999
# Each instance must know the other before the load logs in (then every roster is whole).
wait_cluster 18091 2
load --ports 18091,18092 --cross --server-pid "${pids[1]}" --server-pid "${pids[2]}" --server-pid "$nats"
