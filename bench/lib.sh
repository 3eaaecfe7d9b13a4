# Shared by the bench scripts that start webrtc-server instances and a nats-server on loopback: every
# process started is stopped on exit, by its PID.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
# server LOGNAME SIGNALING_PORT TURN_PORT [flags...]: a release webrtc-server on loopback; its PID is appended to pids.
server() {
  local name=$1 sport=$2 tport=$3; shift 3
  .build/release/webrtc-server --auth.users bench=bench --turn.listen 127.0.0.1 --turn.port "$tport" \
      --signaling.listen 127.0.0.1 --signaling.port "$sport" --log_level warning "$@" > "/tmp/bench-$name.log" 2>&1 &
  pids+=($!)
  wait_port "$sport"
}
# nats NATS_PORT: a nats-server on loopback.
nats() {
  nats-server -a 127.0.0.1 -p "$1" > /tmp/bench-nats.log 2>&1 &
  pids+=($!)
  wait_port "$1"
}
# wait_cluster SIGNALING_PORT N: until that instance lists N instances in /api/stats (its own count).
wait_cluster() {
  for _ in $(seq 100); do
    [ "$(curl -s "127.0.0.1:$1/api/stats" | python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"cluster\"][\"instances\"]))")" = "$2" ] && return 0
    sleep 0.1
  done
  echo "the instances did not see each other"; exit 1
}
