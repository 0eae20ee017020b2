#!/usr/bin/env bash
# `backout check migrations` against squawk (the PostgreSQL migration
# linter) on one large generated migration set: wall time and peak memory
# of each over the same files, in alternating rounds, and the ratio.
#   bench/gates.sh [FILES] [ROUNDS]   (FILES migration files, default 2000;
#                                      ROUNDS alternating rounds, default 5)
# Each file is a realistic expand step of nine statements (a table, columns
# on tables that existed before, concurrent indexes, NOT VALID constraints,
# a guarded backfill, a function), and some carry what both tools report
# (an index built without CONCURRENTLY, a dropped column). squawk comes from npm (squawk-cli, the
# version below), installed under target/bench-gates; its native binary is
# timed, not the Node launcher. Both print JSON to /dev/null.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-2000}
ROUNDS=${2:-5}
SQUAWK_VERSION=2.66.0
WORK="$(pwd)/target/bench-gates"
mkdir -p "$WORK"

# BACKOUT_BIN=path times another build (a debug one, say) instead.
if [ -n "${BACKOUT_BIN:-}" ]; then
    BACKOUT=$BACKOUT_BIN
else
    cargo build --release -q -p backout
    BACKOUT="${CARGO_TARGET_DIR:-$(pwd)/target}/release/backout"
fi

SQUAWK="$WORK/npm/node_modules/@squawk-cli/linux-x64/bin/squawk"
if [ ! -x "$SQUAWK" ]; then
    npm install -q --no-audit --no-fund --prefix "$WORK/npm" "squawk-cli@$SQUAWK_VERSION" >/dev/null
fi
echo "backout: $("$BACKOUT" version | head -1)"
echo "squawk:  $("$SQUAWK" --version)"

DIR="$WORK/migrations-$FILES"
if [ ! -d "$DIR" ]; then
    python3 - "$DIR" "$FILES" <<'EOF'
import os, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
for i in range(n):
    s = [
        "SET lock_timeout = '2s';",
        f"CREATE TABLE IF NOT EXISTS t{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        f"name text NOT NULL, amount_cents bigint NOT NULL DEFAULT 0, note text, "
        f"created_at timestamptz NOT NULL DEFAULT now());",
        f"COMMENT ON COLUMN t{i}.note IS 'optional: customers need not leave one';",
    ]
    # Tables the set does not create existed before it: changing them is
    # what both tools are about.
    old = f"legacy{i % 100}"
    s += [
        f"ALTER TABLE {old} ADD COLUMN IF NOT EXISTS region{i} text NOT NULL DEFAULT 'eu';",
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {old}_r{i} ON {old} (region{i});",
        f"ALTER TABLE {old} ADD CONSTRAINT {old}_c{i} CHECK (id >= 0) NOT VALID;",
        f"ALTER TABLE {old} VALIDATE CONSTRAINT {old}_c{i};",
        f"UPDATE {old} SET region{i} = 'us' WHERE region{i} = 'eu' AND id < 1000;",
    ]
    s.append(
        f"CREATE OR REPLACE FUNCTION t{i}_total(bigint) RETURNS bigint LANGUAGE sql "
        f"AS $$ SELECT sum(amount_cents) FROM t{i} WHERE id = $1 $$;"
    )
    if i % 7 == 6:
        s.append(f"CREATE INDEX IF NOT EXISTS {old}_created{i} ON {old} (created_at);")
    if i % 10 == 9:
        s.append(f"ALTER TABLE {old} DROP COLUMN IF EXISTS note;")
    with open(os.path.join(out, f"{i:06d}_step.sql"), "w") as f:
        f.write("\n".join(s) + "\n")
EOF
fi
echo "migration set: $FILES files, $(cat "$DIR"/*.sql | wc -l) statements, $(du -sh "$DIR" | cut -f1)"

# One run: "wall_seconds cpu_seconds peak_kib" of the command, its output
# thrown away. Both tools exit non-zero when they find something, which
# they do here. CPU time (user + system) is the steadier figure on a shared
# machine: the wall time also counts waiting for other processes.
measure() {
    local t
    t=$(mktemp)
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >/dev/null 2>&1 || true
    # time(1) puts "Command exited with non-zero status N" first.
    tail -n 1 "$t" | awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}'
    rm -f "$t"
}

# What each one finds, once.
b_found=$("$BACKOUT" check migrations "$DIR" -o json | python3 -c \
    'import json,sys,collections; f=json.load(sys.stdin)["findings"]; print(len(f), dict(collections.Counter(x["rule"] for x in f)))' || true)
s_found=$("$SQUAWK" --reporter json "$DIR"/*.sql 2>/dev/null | python3 -c \
    'import json,sys,collections; f=json.load(sys.stdin); print(len(f), dict(collections.Counter(x.get("rule_name") for x in f)))' || true)
echo "backout finds: $b_found"
echo "squawk finds:  $s_found"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

bw=() bc=() bm=() sw=() sc=() sm=()
for r in $(seq "$ROUNDS"); do
    read -r w c m < <(measure "$BACKOUT" check migrations "$DIR" -o json)
    bw+=("$w") bc+=("$c") bm+=("$m")
    read -r w2 c2 m2 < <(measure "$SQUAWK" --reporter json "$DIR"/*.sql)
    sw+=("$w2") sc+=("$c2") sm+=("$m2")
    echo "round $r: backout ${w}s wall ${c}s cpu ${m} KiB, squawk ${w2}s wall ${c2}s cpu ${m2} KiB"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
BW=$(median "${bw[@]}") BC=$(median "${bc[@]}") BM=$(median "${bm[@]}")
SW=$(median "${sw[@]}") SC=$(median "${sc[@]}") SM=$(median "${sm[@]}")
echo "median: backout ${BW}s wall ${BC}s cpu ${BM} KiB peak; squawk ${SW}s wall ${SC}s cpu ${SM} KiB peak"
python3 -c "print(f'backout / squawk: wall {$BW/$SW:.2f}x, cpu {$BC/$SC:.2f}x, peak memory {$BM/$SM:.2f}x')"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
