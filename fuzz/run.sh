#!/usr/bin/env bash
# Builds a libFuzzer target with -sanitize=fuzzer,address and runs it.
# Usage: bash fuzz/run.sh [RUNS] [extra libFuzzer flags...]   (default 10 000 000 executions)
#   TARGET=TurnFuzz (default): STUN/ChannelData decoder and TURN request handler (fuzz/Sources/TurnFuzz);
#   TARGET=SignalingFuzz: the signaling WebSocket's frames, session and JSON envelope.
# Seeds: fuzz/seeds (TurnFuzz), fuzz/seeds-signaling (committed); the corpus grows in fuzz/corpus
# (committed after the 10 M run) and fuzz/corpus-signaling (not committed). A crash leaves crash-* in fuzz/ and the run fails:
# turn it into a unit test (Tests/StunTurnTests/FuzzRegressionTests.swift, Tests/SignalingTests).
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
target=${TARGET:-TurnFuzz}
case "$target" in
  TurnFuzz) corpus=corpus; seeds=seeds ;;
  SignalingFuzz) corpus=corpus-signaling; seeds=seeds-signaling ;;
  *) echo "unknown TARGET $target (TurnFuzz or SignalingFuzz)" >&2; exit 2 ;;
esac
shift || true
swift build -c release --scratch-path ../.build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
    -Xswiftc -parse-as-library --product "$target"
mkdir -p "$corpus"
# -detect_leaks=0: LeakSanitizer after every input whose mallocs and frees differ flags one-time caches
# (NIO, Foundation) and cuts the rate 10x; memory growth is watched instead (peak_rss_mb, -rss_limit_mb).
../.build-fuzz/release/"$target" "$corpus" "$seeds" -runs="$runs" -max_len=1500 -detect_leaks=0 -print_final_stats=1 "$@"
