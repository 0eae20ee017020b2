#!/usr/bin/env bash
# Feature-flag benchmarks (issue 5), on this machine, over loopback only:
#   1. OFREP bulk evaluation over HTTP: `backout flags serve` against Unleash
#      Edge (offline mode) with an equivalent flag set, the same load
#      generator (wrk) and the same request shape, side by side.
#   2. Kill-switch latency: `backout flag kill` through the management API
#      until SSE clients and an in-process provider evaluate the change.
# In-process evaluation is a criterion bench: `cargo bench -p backout-flags`.
#
# Unleash Edge is built from crates.io into target/bench-tools the first time
# (a long build). Settings: DURATION (15s), CONNECTIONS (64), THREADS (2),
# FLAGS (30, a third each static / rule / percentage), SKIP_KILL=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS="$ROOT/target/bench-tools"
WORK="$ROOT/target/bench-flags"
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
FLAGS=${FLAGS:-30}
BACKOUT_PORT=18016
EDGE_PORT=18063
mkdir -p "$WORK" "$TOOLS"

log() { printf '\n==> %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null; then
    log "installing wrk"
    apt-get install -y -qq wrk >/dev/null
fi
log "building backout (release)"
cargo build --release -q -p backout
BACKOUT="${CARGO_TARGET_DIR:-$ROOT/target}/release/backout"
if [ ! -x "$TOOLS/bin/unleash-edge" ]; then
    log "building Unleash Edge from crates.io (once; slow)"
    cargo install -q --locked unleash-edge --root "$TOOLS"
fi
EDGE="$TOOLS/bin/unleash-edge"

log "writing equivalent flag sets ($FLAGS flags)"
python3 - "$WORK" "$FLAGS" <<'EOF'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
flagd, unleash = {}, []
for i in range(n):
    name = "flag-%02d" % i
    kind = i % 3
    if kind == 0:  # on for everyone
        flagd[name] = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
        strategies = [{"name": "default", "parameters": {}, "constraints": []}]
    elif kind == 1:  # on for jp users on a Mac
        flagd[name] = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                       "targeting": {"if": [{"and": [{"==": [{"var": "country"}, "jp"]},
                                                      {"in": ["Mac OS", {"var": "userAgent"}]}]}, "on", "off"]}}
        strategies = [{"name": "default", "parameters": {}, "constraints": [
            {"contextName": "country", "operator": "IN", "values": ["jp"], "inverted": False, "caseInsensitive": False},
            {"contextName": "userAgent", "operator": "STR_CONTAINS", "values": ["Mac OS"], "inverted": False, "caseInsensitive": False}]}]
    else:  # 25% of users, sticky by user id
        flagd[name] = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                       "targeting": {"fractional": [["on", 25], ["off", 75]]}}
        strategies = [{"name": "flexibleRollout", "parameters": {"rollout": "25", "stickiness": "userId", "groupId": name}, "constraints": []}]
    unleash.append({"name": name, "type": "release", "enabled": True, "project": "default",
                    "stale": False, "strategies": strategies, "variants": []})
json.dump({"flags": flagd}, open(work + "/flags.json", "w"), indent=1)
json.dump({"version": 2, "features": unleash}, open(work + "/unleash-features.json", "w"), indent=1)
ctx = {"targetingKey": "user-4242", "country": "jp", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)"}
open(work + "/ofrep-body.json", "w").write(json.dumps({"context": ctx}))
open(work + "/edge-body.json", "w").write(json.dumps({"userId": ctx["targetingKey"],
    "properties": {"country": ctx["country"], "userAgent": ctx["userAgent"]}}))
EOF

# wrk script: POST a fixed JSON body with headers.
wrk_script() { # body-file header...
    local body="$1"; shift
    {
        printf 'wrk.method = "POST"\n'
        printf 'wrk.body = [[%s]]\n' "$(cat "$body")"
        printf 'wrk.headers["Content-Type"] = "application/json"\n'
        for h in "$@"; do printf 'wrk.headers["%s"] = "%s"\n' "${h%%:*}" "${h#*: }"; done
    } >"$WORK/wrk-$(basename "$body" .json).lua"
    echo "$WORK/wrk-$(basename "$body" .json).lua"
}

wait_http() { # url
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing answers at $1" >&2
    return 1
}

rps() { awk '/Requests\/sec/ {print $2}'; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

log "backout flags serve: OFREP bulk evaluation"
"$BACKOUT" flags serve -f "$WORK/flags.json" --listen "127.0.0.1:$BACKOUT_PORT" --token bench-token 2>"$WORK/backout.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$BACKOUT_PORT/readyz"
OFREP_URL="http://127.0.0.1:$BACKOUT_PORT/ofrep/v1/evaluate/flags"
curl -fsS -X POST "$OFREP_URL" -H 'Authorization: Bearer bench-token' -H 'Content-Type: application/json' -d @"$WORK/ofrep-body.json" >"$WORK/backout-sample.json"
script=$(wrk_script "$WORK/ofrep-body.json" "Authorization: Bearer bench-token")
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$OFREP_URL" | tee "$WORK/backout-wrk.txt" >&2
backout_rps=$(rps <"$WORK/backout-wrk.txt")
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

log "Unleash Edge (offline): frontend API evaluation of all flags"
EDGE_TOKEN='*:development.bench-token'
# As many workers as backout's runtime has threads (one per core).
"$EDGE" --port "$EDGE_PORT" --interface 127.0.0.1 --workers "$(nproc)" offline \
    --bootstrap-file "$WORK/unleash-features.json" \
    --client-tokens "$EDGE_TOKEN" --frontend-tokens "$EDGE_TOKEN" >"$WORK/edge.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$EDGE_PORT/internal-backstage/health"
EDGE_URL="http://127.0.0.1:$EDGE_PORT/api/frontend"
curl -fsS -X POST "$EDGE_URL" -H "Authorization: $EDGE_TOKEN" -H 'Content-Type: application/json' -d @"$WORK/edge-body.json" >"$WORK/edge-sample.json"
script=$(wrk_script "$WORK/edge-body.json" "Authorization: $EDGE_TOKEN")
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$EDGE_URL" | tee "$WORK/edge-wrk.txt" >&2
edge_rps=$(rps <"$WORK/edge-wrk.txt")
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

# Both must have evaluated the same flags to the same values.
python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
ours = {f["key"]: f.get("value") for f in json.load(open(work + "/backout-sample.json"))["flags"]}
theirs = {t["name"]: t["enabled"] for t in json.load(open(work + "/edge-sample.json"))["toggles"]}
on_ours = sorted(k for k, v in ours.items() if v is True)
on_theirs = sorted(theirs)
print("flags on for the benchmark user: backout %d, Unleash Edge %d" % (len(on_ours), len(on_theirs)), file=sys.stderr)
static_and_rules = [k for k in on_ours if int(k.split("-")[1]) % 3 != 2]
assert all(k in theirs for k in static_and_rules), "static and rule flags must agree"
EOF

printf '\nOFREP bulk evaluation (%s flags, wrk -t%s -c%s -d%s, loopback, same machine)\n' "$FLAGS" "$THREADS" "$CONNECTIONS" "$DURATION"
printf '  backout flags serve  %10.0f req/s\n' "$backout_rps"
printf '  Unleash Edge         %10.0f req/s\n' "$edge_rps"
python3 -c "print('  ratio                %10.2fx (goal >= 1.5x)' % ($backout_rps / $edge_rps))"

if [ "${SKIP_KILL:-0}" != 1 ]; then
    log "kill-switch latency"
    cargo run --release -q -p backout-openfeature --example kill_latency 50 20
fi
