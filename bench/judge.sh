#!/usr/bin/env bash
# The judge's benchmark: backout's judge against peers' rules and the oracle
# SPRT over every scenario family of the simulator.
#
#   bench/judge.sh [RUNS] [SEED]     (defaults: 1000 runs per family, seed 424242)
#
# The judge's constants were tuned on seed 1000; report on another seed so
# the figures come from scenarios nobody tuned against. Prints the table and
# the goals, and keeps a copy in target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000}
SEED=${2:-424242}
cargo build --release -q -p backout
mkdir -p target/bench
out=target/bench/judge-seed$SEED-runs$RUNS
start=$(date +%s)
./target/release/backout simulate --runs "$RUNS" --seed "$SEED" | tee "$out.txt"
echo
echo "wall time: $(( $(date +%s) - start )) s (runs=$RUNS per family, seed=$SEED); JSON with: backout simulate -o json"
