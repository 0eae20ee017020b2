#!/usr/bin/env bash
# Event log throughput on this machine's disk (not CI): appends per second
# with every commit fsync'd (WAL, synchronous=FULL), for single events,
# batches, retried commands and several threads, and read speed.
#   bench/store.sh [N]   (N single-event appends per case, default 2000)
# The database goes under target/bench-store on the same file system as the
# checkout: a tmpfs would skip the fsyncs that the figures are about.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
WORK="$(pwd)/target/bench-store"
mkdir -p "$WORK"
cargo build --release -q -p backout-store --example store_bench
BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/release/examples/store_bench"
echo "file system: $(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1}')"
"$BIN" "$WORK" "$N"
