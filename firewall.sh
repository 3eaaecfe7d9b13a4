#!/usr/bin/env bash
# firewall.sh — iptables and ip6tables rules that let in what webrtc-server listens on, derived from the
# server's own configuration (the same file, WEBRTC_SERVER_* variables and flags the server reads):
# the signaling port (TCP), STUN/TURN (UDP and TCP, default 3478), TURN over TLS (TCP 5349, when a
# certificate is configured) and the relay port range (UDP, and TCP for RFC 6062 TCP relays when TURN
# serves TCP or TLS); also replies to the server's own outgoing traffic and the ICMP that belongs to its
# flows (conntrack ESTABLISHED,RELATED) and, for IPv6, neighbour discovery.
#
# The rules live in their own chain, WEBRTC-SERVER, jumped to from INPUT, so running the script again
# replaces them instead of adding more, and --remove takes exactly them away.
#
#   firewall.sh [--dry-run] [--remove] [--binary PATH] [SERVER OPTIONS...]
#
#   --dry-run      print the commands instead of running them
#   --remove       delete the jump and the chain (for both families)
#   --binary PATH  the webrtc-server binary (default: $WEBRTC_SERVER_BINARY, else webrtc-server on PATH,
#                  else .build/release/webrtc-server, else .build/debug/webrtc-server next to this script)
#   SERVER OPTIONS are passed to the server to read its ports, e.g. --config /etc/webrtc-server.yaml
set -euo pipefail

CHAIN=WEBRTC-SERVER
dry_run=0
remove=0
binary=${WEBRTC_SERVER_BINARY:-}
server_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --remove) remove=1 ;;
    --binary) binary=${2:?--binary needs a path}; shift ;;
    --binary=*) binary=${1#--binary=} ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) server_args+=("$1") ;;
  esac
  shift
done

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$binary" ]; then
  for candidate in "$(command -v webrtc-server || true)" "$here/.build/release/webrtc-server" "$here/.build/debug/webrtc-server"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then binary=$candidate; break; fi
  done
fi
if [ "$remove" -eq 0 ] && { [ -z "$binary" ] || [ ! -x "$binary" ]; }; then
  echo "firewall.sh: webrtc-server binary not found; build it (swift build -c release) or pass --binary PATH" >&2
  exit 2
fi

run() {
  if [ "$dry_run" -eq 1 ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

# Runs a test command quietly; in a dry run the state is not changed, so tests see the live rules.
has() { "$@" >/dev/null 2>&1; }

remove_family() {
  local tool=$1
  while has "$tool" -C INPUT -j "$CHAIN"; do
    run "$tool" -D INPUT -j "$CHAIN"
    [ "$dry_run" -eq 1 ] && break
  done
  if has "$tool" -n -L "$CHAIN"; then
    run "$tool" -F "$CHAIN"
    run "$tool" -X "$CHAIN"
  fi
}

apply_family() {
  local tool=$1 proto port purpose
  has "$tool" -n -L "$CHAIN" || run "$tool" -N "$CHAIN"
  run "$tool" -F "$CHAIN"
  # Besides its ports the server needs the answers to what it sends out (the webhook's HTTP responses
  # and DNS lookups) and the ICMP errors that belong to its flows (port unreachable, fragmentation
  # needed / packet too big) ...
  run "$tool" -A "$CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED \
    -m comment --comment "webrtc-server replies and related ICMP" -j ACCEPT
  # ... and, over IPv6, neighbour discovery, without which no IPv6 packet reaches it at all.
  if [ "$tool" = ip6tables ]; then
    for type in neighbour-solicitation neighbour-advertisement; do
      run "$tool" -A "$CHAIN" -p ipv6-icmp -m icmp6 --icmpv6-type "$type" \
        -m comment --comment "webrtc-server IPv6 $type" -j ACCEPT
    done
  fi
  while read -r proto port purpose; do
    [ -n "$proto" ] || continue
    run "$tool" -A "$CHAIN" -p "$proto" -m "$proto" --dport "$port" -m comment --comment "webrtc-server $purpose" -j ACCEPT
  done <<< "$ports"
  has "$tool" -C INPUT -j "$CHAIN" || run "$tool" -I INPUT -j "$CHAIN"
}

if [ "$remove" -eq 0 ]; then
  # The variable naming the binary is ours, not a server setting (WEBRTC_SERVER_* are its settings).
  ports=$(env -u WEBRTC_SERVER_BINARY "$binary" --print-ports "${server_args[@]}")
fi
for tool in iptables ip6tables; do
  if [ "$dry_run" -eq 0 ] && ! command -v "$tool" >/dev/null; then
    echo "firewall.sh: $tool not found (Debian package iptables)" >&2
    exit 2
  fi
  if [ "$remove" -eq 1 ]; then remove_family "$tool"; else apply_family "$tool"; fi
done
