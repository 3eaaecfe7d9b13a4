#!/usr/bin/env bash
# Signaling load benchmark: builds release binaries, starts webrtc-server on loopback, then runs
# bench/signaling-load once per rate against the same server (10 000 connections in rooms of 10 by
# default). Figures go to BENCHMARKS.md. Usage: bash bench/signaling_bench.sh [connections] [rates...]
# Extra server flags come from SERVER_ARGS, e.g. SERVER_ARGS="--signaling.threads 1"; SERVER_BINARY runs
# another build of the server (an earlier commit's, for an A/B comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-10000}
shift || true
rates=("${@:-0 10000 20000 30000 50000}")
swift build -c release --product webrtc-server >/dev/null
swift build -c release --product signaling-load >/dev/null
port=18080
${SERVER_BINARY:-.build/release/webrtc-server} --auth.users bench=bench --turn.port 0 --signaling.listen 127.0.0.1 \
    --signaling.port $port --log_level warning ${SERVER_ARGS:-} &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
fds() { ls /proc/$server/fd | wc -l; }
idle_fds=$(fds)
for rate in ${rates[@]}; do
  # Each run starts on a server that has let go of the previous run's connections (at most 30 s), so
  # one run's teardown is never measured in the next.
  for _ in $(seq 300); do n=$(fds); [ $n -le $((idle_fds + 4)) ] && break; sleep 0.1; done
  [ $n -le $((idle_fds + 4)) ] || echo "warning: the server still holds $n descriptors (idle: $idle_fds)"
  echo "== $connections connections, rooms of 10, $rate directed messages/s for 10 s"
  timeout 600 .build/release/signaling-load --port $port --connections "$connections" --room-size 10 \
      --rate "$rate" --duration 10 --server-pid $server
done
