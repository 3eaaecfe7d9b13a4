#!/usr/bin/env bash
# Builds the libFuzzer target (fuzz/Sources/TurnFuzz) with -sanitize=fuzzer,address and runs it.
# Usage: bash fuzz/run.sh [RUNS] [extra libFuzzer flags...]   (default 10 000 000 executions)
# Seeds: fuzz/seeds (committed); the growing corpus goes to fuzz/corpus (not committed). A crash leaves
# crash-* in fuzz/ and the run fails: turn it into a unit test (Tests/StunTurnTests/FuzzRegressionTests.swift).
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
swift build -c release --scratch-path ../.build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
    -Xswiftc -parse-as-library --product TurnFuzz
mkdir -p corpus
# -detect_leaks=0: LeakSanitizer after every input whose mallocs and frees differ flags one-time caches
# (NIO, Foundation) and cuts the rate 10x; memory growth is watched instead (peak_rss_mb, -rss_limit_mb).
../.build-fuzz/release/TurnFuzz corpus seeds -runs="$runs" -max_len=1500 -detect_leaks=0 -print_final_stats=1 "$@"
