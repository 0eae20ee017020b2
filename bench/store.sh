#!/usr/bin/env bash
# Event log throughput on this machine's disk (not CI), SQLite and
# PostgreSQL side by side: appends per second with every commit durable
# (SQLite: WAL, synchronous=FULL; PostgreSQL: synchronous_commit=on,
# fsync=on), for single events, batches of 10 and 100, retried commands and
# several threads, p50/p99 per append, read speed, and the ratios.
#   bench/store.sh [N] [ROUNDS]   (N single-event appends per case and round,
#                                  default 1000; ROUNDS alternating rounds, default 3)
# Both databases live under target/bench-store, on the same file system as
# the checkout: a tmpfs would skip the fsyncs that the figures are about.
# PostgreSQL is a throwaway server (scripts/test-postgres.sh) with its data
# there too, stopped and deleted at the end; without Debian's postgresql
# package only SQLite is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
ROUNDS=${2:-3}
WORK="$(pwd)/target/bench-store"
mkdir -p "$WORK"
chmod 755 "$WORK"
cargo build --release -q -p backout-store --example store_bench
BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/release/examples/store_bench"
echo "file system: $(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1}')"
source scripts/test-postgres.sh
URL=""
if find_pg_bin >/dev/null; then
    trap stop_test_postgres EXIT
    TMPDIR="$WORK" start_test_postgres
    URL=$BACKOUT_TEST_POSTGRES
else
    echo "PostgreSQL not installed (Debian: postgresql): measuring SQLite only"
fi
"$BIN" "$WORK" "$N" "$ROUNDS" $URL
