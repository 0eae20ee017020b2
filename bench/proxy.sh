#!/usr/bin/env bash
# The traffic switch against nginx, side by side on this machine.
#
# Both proxies split 90/10 between the same two upstreams (nginx serving a
# fixed 200), with 2 workers each, driven by the same wrk with the same
# settings, in alternating rounds. Prints requests/s, p99 and the ratio,
# then resident memory idle and with 10k open connections.
#
# Usage: bench/proxy.sh [seconds-per-round] [rounds]
# Environment: CARGO_TARGET_DIR (where to build), BACKOUT_BIN (measure this
# binary instead of building), CONNS (wrk connections, 64), OPEN (idle
# connections for the memory figure, 10000), SETTLE (seconds before the
# second memory reading, 10).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-64}
WORK=$(mktemp -d /tmp/backout-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/nginx-proxy.pid" ] && kill "$(cat "$WORK/nginx-proxy.pid")" 2>/dev/null || true
    [ -f "$WORK/nginx-up.pid" ] && kill "$(cat "$WORK/nginx-up.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx
need wrk wrk
ulimit -n "$(ulimit -Hn)"

# BACKOUT_BIN measures a given binary instead (a before/after comparison).
if [ -n "${BACKOUT_BIN:-}" ]; then
    BACKOUT=$BACKOUT_BIN
else
    cargo build --release -q -p backout
    BACKOUT=${CARGO_TARGET_DIR:-target}/release/backout
fi

UP1=19101 UP2=19102 NGINX=19180 BACKOUT_PORT=19181 ADMIN=19190

# Upstreams: one nginx, one worker, two ports, a fixed answer.
cat >"$WORK/up.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-up.pid;
error_log $WORK/up-error.log;
events { worker_connections 16000; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$UP1 reuseport; location / { return 200 "v1\n"; } }
    server { listen 127.0.0.1:$UP2 reuseport; location / { return 200 "v2\n"; } }
}
CONF
nginx -c "$WORK/up.conf" -p "$WORK"

# nginx as the switch: weighted 90/10, keep-alive to upstreams.
cat >"$WORK/proxy.conf" <<CONF
worker_processes 2;
worker_rlimit_nofile 20000;
pid $WORK/nginx-proxy.pid;
error_log $WORK/proxy-error.log;
events { worker_connections 16000; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream split {
        server 127.0.0.1:$UP1 weight=9;
        server 127.0.0.1:$UP2 weight=1;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$NGINX reuseport;
        location / {
            proxy_pass http://split;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
nginx -c "$WORK/proxy.conf" -p "$WORK"

TOKIO_WORKER_THREADS=2 $BACKOUT proxy --listen 127.0.0.1:$BACKOUT_PORT --admin 127.0.0.1:$ADMIN \
    --stable http://127.0.0.1:$UP1 --canary http://127.0.0.1:$UP2 --canary-weight 10 >/dev/null 2>"$WORK/backout.log" &
BACKOUT_PID=$!
PIDS+=("$BACKOUT_PID")
sleep 1
curl -sf "http://127.0.0.1:$BACKOUT_PORT/" >/dev/null
curl -sf "http://127.0.0.1:$NGINX/" >/dev/null

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
nginx_rss_kib() {
    # master + workers
    local master total=0
    master=$(cat "$WORK/nginx-proxy.pid")
    for p in $master $(pgrep -P "$master"); do total=$((total + $(rss_kib "$p"))); done
    echo $total
}
IDLE_BACKOUT=$(rss_kib "$BACKOUT_PID")
IDLE_NGINX=$(nginx_rss_kib)

run_wrk() { # url -> "rps p99_ms"
    wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$1" | awk '
        /Requests\/sec/ {rps=$2}
        /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
        END {print rps, p99}'
}

echo "wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS alternating rounds; upstream: nginx fixed 200"
printf "%-6s %-10s %12s %10s\n" round proxy "req/s" "p99 ms"
best_b=0; best_n=0; p99_b=0; p99_n=0
declare -a RB RN PB PN
for r in $(seq 1 "$ROUNDS"); do
    read -r rn pn < <(run_wrk "http://127.0.0.1:$NGINX/")
    printf "%-6s %-10s %12s %10s\n" "$r" nginx "$rn" "$pn"
    read -r rb pb < <(run_wrk "http://127.0.0.1:$BACKOUT_PORT/")
    printf "%-6s %-10s %12s %10s\n" "$r" backout "$rb" "$pb"
    RB+=("$rb"); RN+=("$rn"); PB+=("$pb"); PN+=("$pn")
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
MB=$(median "${RB[@]}"); MN=$(median "${RN[@]}")
PBM=$(median "${PB[@]}"); PNM=$(median "${PN[@]}")
echo
echo "median req/s: backout $MB, nginx $MN, ratio $(awk -v a="$MB" -v b="$MN" 'BEGIN {printf "%.2f", a/b}')x"
echo "median p99:   backout ${PBM} ms, nginx ${PNM} ms"

# Split check: the admin API's own counts.
curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^backout_requests_total/ {print "  " $0}'

# Memory with 10k idle keep-alive connections open.
N=${OPEN:-10000}
python3 bench/conns.py 127.0.0.1 $BACKOUT_PORT "$N" >"$WORK/conns-b.out" &
CB=$!; PIDS+=("$CB")
python3 bench/conns.py 127.0.0.1 $NGINX "$N" >"$WORK/conns-n.out" &
CN=$!; PIDS+=("$CN")
for _ in $(seq 1 120); do
    if grep -q open "$WORK/conns-b.out" 2>/dev/null && grep -q open "$WORK/conns-n.out" 2>/dev/null; then break; fi
    sleep 0.5
done
cat "$WORK/conns-b.out" "$WORK/conns-n.out" | sed 's/^/  /'
OPEN_BACKOUT=$(rss_kib "$BACKOUT_PID")
OPEN_NGINX=$(nginx_rss_kib)
# Again once the connections have been idle a few seconds: backout parks a
# keep-alive connection idle for a quarter of a second, and the allocator
# hands the freed pages back over the following seconds.
SETTLE=${SETTLE:-10}
sleep "$SETTLE"
SETTLED_BACKOUT=$(rss_kib "$BACKOUT_PID")
SETTLED_NGINX=$(nginx_rss_kib)
echo
echo "RSS idle:              backout $((IDLE_BACKOUT / 1024)) MiB, nginx $((IDLE_NGINX / 1024)) MiB (master + 2 workers)"
echo "RSS with $N conns:  backout $((OPEN_BACKOUT / 1024)) MiB, nginx $((OPEN_NGINX / 1024)) MiB (as the last one got its answer)"
echo "  and ${SETTLE} s later:     backout $((SETTLED_BACKOUT / 1024)) MiB, nginx $((SETTLED_NGINX / 1024)) MiB"
