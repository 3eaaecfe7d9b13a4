#!/bin/bash
# Counts the server's syscalls (perf tracepoints) under a short paced turnutils_uclient load, for
# webrtc-server or coturn's turnserver, on loopback only. Counts, not times: what each server asks of
# the kernel per relayed packet (relayed = 2 x 20 clients x N messages).
# Usage: bench/turn_syscalls.sh ours|coturn [N messages per client, default 2000]
# Needs: perf (Debian linux-perf) with tracepoints, coturn's tools, a release build.
set -euo pipefail
which=$1; N=${2:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
PORT=34780; TLS=35349; PEER=34790
turnutils_peer -L 127.0.0.1 -p $PEER >/dev/null 2>&1 & PP=$!
if [ "$which" = ours ]; then
  "$ROOT/.build/release/webrtc-server" --turn.listen 127.0.0.1 --turn.port $PORT --turn.relay_port_min 50000 \
    --turn.relay_port_max 59999 --auth.users bench=bench-password --realm bench.realm --turn.tls_port $TLS \
    --turn.tls_cert "$DIR/cert.pem" --turn.tls_key "$DIR/key.pem" --signaling.enabled false \
    --turn.allow_peers 127.0.0.1 --log_level warning >/dev/null 2>&1 & SP=$!
else
  turnserver -n --listening-ip 127.0.0.1 --listening-port $PORT --relay-ip 127.0.0.1 --tls-listening-port $TLS \
    --cert "$DIR/cert.pem" --pkey "$DIR/key.pem" --min-port 50000 --max-port 59999 --lt-cred-mech \
    --user bench:bench-password --realm bench.realm --allow-loopback-peers --no-dtls --no-cli --no-stdout-log \
    --log-file /dev/null --simple-log --no-software-attribute >/dev/null 2>&1 & SP=$!
fi
# Ready when the server answers a STUN Binding on its port (bounded: 100 tries).
for _ in $(seq 100); do timeout 1 turnutils_stunclient -p $PORT 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
E=task-clock
for s in epoll_wait recvmmsg recvmsg recvfrom sendmsg sendmmsg sendto futex timerfd_settime; do E="$E,syscalls:sys_enter_$s"; done
perf stat -e "$E" -p $SP -o "$DIR/perf.txt" & ST=$!
sleep 0.5
turnutils_uclient -m 20 -n "$N" -l 120 -z 2 -c -u bench -w bench-password -e 127.0.0.1 -r $PEER -p $PORT 127.0.0.1 \
  | grep -E "Total lost" | tail -1
kill -INT $ST; wait $ST || true
kill $SP $PP; wait 2>/dev/null || true
grep -E "syscalls|task-clock" "$DIR/perf.txt"
