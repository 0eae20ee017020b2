#!/usr/bin/env bash
# The judge's benchmark: backout's judge against peers' rules and the oracle
# SPRT over every scenario family of the simulator.
#
#   bench/judge.sh [RUNS] [SEED]     (defaults: 1000 runs per family, seed 424242)
#
# The judge's constants were tuned on seeds 1000-1005; report on others so
# the figures come from scenarios nobody tuned against (every seed draws
# independent runs, neighbouring seeds included). Prints the table and the
# goals, and keeps a text and a JSON copy in $CARGO_TARGET_DIR/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000}
SEED=${2:-424242}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p backout
mkdir -p "$target/bench"
out=$target/bench/judge-seed$SEED-runs$RUNS
start=$(date +%s)
"$target/release/backout" simulate --runs "$RUNS" --seed "$SEED" --json-file "$out.json" | tee "$out.txt"
echo
echo "wall time: $(( $(date +%s) - start )) s (runs=$RUNS per family, seed=$SEED); JSON in $out.json"
