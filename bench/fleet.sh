#!/usr/bin/env bash
# Fleet benchmarks on loopback with real processes (release build):
#   route propagation: API call -> every one of PROXIES proxies serving the
#     new route, p50/p90/p99 over CHANGES route changes under load;
#   failover: two `backout up` on one PostgreSQL database, the leader
#     SIGKILLed -> the follower leading and accepting a change, five times,
#     with load through two proxies counting failed requests.
#   bench/fleet.sh [CHANGES] [PROXIES]   (defaults 200 and 10)
# PostgreSQL is a throwaway server (scripts/test-postgres.sh), stopped and
# deleted at the end; without Debian's postgresql package only propagation
# is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGES=${1:-200}
PROXIES=${2:-10}
cargo build --release -q -p backout
BIN="${CARGO_TARGET_DIR:-$(pwd)/target}/release/backout"
python3 bench/fleet.py propagation "$BIN" "$CHANGES" "$PROXIES"
source scripts/test-postgres.sh
if find_pg_bin >/dev/null; then
    trap stop_test_postgres EXIT
    start_test_postgres
    DB=bench_failover_$$
    "$BACKOUT_TEST_PG_BIN/psql" -q "$BACKOUT_TEST_POSTGRES" -c "CREATE DATABASE $DB" 2>/dev/null \
        || psql -q "$BACKOUT_TEST_POSTGRES" -c "CREATE DATABASE $DB"
    python3 bench/fleet.py failover "$BIN" "${BACKOUT_TEST_POSTGRES%/*}/$DB"
else
    echo "PostgreSQL not installed (Debian: postgresql): failover not measured"
fi
