#!/usr/bin/env bash
# Runs every test: Swift unit/server tests, then interop tests that drive the real binary with
# clients nobody here wrote. Installs what they need on a fresh Debian machine first.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# coturn's client tools (turnutils_uclient, turnutils_peer, turnutils_stunclient; its server is not used),
# headless Chromium with its WebDriver for the example client, and nginx for the shipped proxy snippet.
missing=()
command -v turnutils_uclient >/dev/null && command -v turnutils_peer >/dev/null || missing+=(coturn)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v iptables >/dev/null || missing+=(iptables)  # firewall.sh's test, inside its own network namespace
command -v ip >/dev/null || missing+=(iproute2)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)  # runs dist/'s snippet in front of the server
command -v nats-server >/dev/null || missing+=(nats-server)  # the cluster's messaging, for the NATS client and cluster tests
# A coturn PostgreSQL user database for auth.postgresql (the tests run their own server on a unix socket).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && command -v psql >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
# Debian's coturn package may start its own turnserver on 3478; the tests need that port.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then as_root systemctl stop coturn; fi
# Likewise Debian's nginx may start on port 80, its nats-server on 4222 and its postgresql on 5432; the tests
# run their own on free ports or sockets.
for unit in nginx nats-server postgresql; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then as_root systemctl stop "$unit"; fi
done

# Python test clients (pytest, selenium, websockets, aiortc; Pillow reads the dashboard screenshot) in a project-local venv, refreshed when
# requirements.txt changes.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv 2>/dev/null || {
    as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    rm -rf .venv && python3 -m venv .venv
  }
fi
if ! cmp -s Tests/interop/requirements.txt .venv/installed-requirements.txt; then
  .venv/bin/pip install -q --disable-pip-version-check -r Tests/interop/requirements.txt
  cp Tests/interop/requirements.txt .venv/installed-requirements.txt
fi

echo "== swift test"
# The suites use Swift Testing (skip the empty XCTest pass). One test at a time: the test clients'
# blocking socket reads occupy Swift's cooperative threads (two on a 2-core box), and suites run in
# parallel then stall the async WebSocket clients of the signaling tests past their deadlines (~10 s
# serial against ~5 s parallel).
swift test --disable-xctest --no-parallel

echo "== build the fuzz targets (compile only, so that they keep up with the code; fuzz/run.sh runs them)"
swift build --package-path fuzz --scratch-path .build-fuzz --target TurnFuzz --target SignalingFuzz \
    -Xswiftc -enable-testing -Xswiftc -parse-as-library

echo "== build webrtc-server"
swift build --product webrtc-server
export WEBRTC_SERVER_BINARY="$PWD/.build/debug/webrtc-server"

echo "== build examples/embedded (an app that depends on the WebRTCServerKit library; its own scratch folder)"
swift build --package-path examples/embedded --scratch-path .build-embedded
export EMBEDDED_EXAMPLE_BINARY="$PWD/.build-embedded/debug/embedded-app"

echo "== interop tests"
.venv/bin/pytest -v Tests/interop
