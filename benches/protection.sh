#!/bin/sh
# Benchmark: what the rate limiter and the token check cost on a cheap endpoint.
# Requests/s of GET /playlist.m3u (5 channels) with limiter + stream token on, against
# the same daemon build with both off, from one client and from 64 clients named by
# X-Forwarded-For through a trusted proxy. Rounds alternate the two daemons so machine
# noise hits both alike; reports medians and the ratio (target >= 0.90).
# Usage: sh benches/protection.sh [seconds-per-run] [rounds]
set -eu
secs=${1:-5}
rounds=${2:-3}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
cargo build --release --quiet
bin=target/release/xg2g
work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM

"$bin" sim --channels 5 --days 1 >"$work/sim.out" 2>/dev/null &
pids="$pids $!"
for _ in $(seq 100); do grep -q "^sim api=" "$work/sim.out" && break; sleep 0.1; done
api=$(sed -n 's/^sim api=\([^ ]*\).*/\1/p' "$work/sim.out")

# start NAME PORT ENV...: a daemon on 127.0.0.1:PORT with its own data folder.
start() {
    name=$1 port=$2; shift 2
    mkdir -p "$work/$name"
    env -i PATH="$PATH" XG2G_OWI_BASE="$api" XG2G_DATA="$work/$name" \
        XG2G_LISTEN="127.0.0.1:$port" XG2G_API_TOKEN=bench RUST_LOG=warn "$@" \
        "$bin" serve 2>"$work/$name.log" &
    pids="$pids $!"
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    curl -sf -X POST -H "Authorization: Bearer bench" \
        "http://127.0.0.1:$port/api/v1/refresh?wait=true" >/dev/null
}
# Limits high enough that nothing is refused: this measures the cost of deciding.
start open 18931 XG2G_RATELIMIT_ENABLED=false
start guarded 18932 XG2G_STREAM_TOKEN=bench-token XG2G_TRUSTED_PROXIES=127.0.0.1 \
    XG2G_RATELIMIT_RPS=1000000 XG2G_RATELIMIT_BURST=1000000 \
    XG2G_RATELIMIT_GLOBAL_RPS=1000000 XG2G_RATELIMIT_GLOBAL_BURST=1000000

cat >"$work/xff.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Forwarded-For"] = "10.0.0." .. (n % 64 + 1)
  return wrk.format(nil, wrk.path)
end
LUA

# rps PORT PATH [lua]: requests/s of one wrk run (2 threads, 32 connections).
rps() {
    if [ -n "${3:-}" ]; then script="-s $3"; else script=""; fi
    # shellcheck disable=SC2086
    wrk -t2 -c32 -d"${secs}s" $script "http://127.0.0.1:$1$2" |
        awk '/^Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

for mode in one 64; do
    lua=""; [ "$mode" = 64 ] && lua="$work/xff.lua"
    : >"$work/open.$mode"; : >"$work/guarded.$mode"
    for _ in $(seq "$rounds"); do
        rps 18931 /playlist.m3u "$lua" >>"$work/open.$mode"
        rps 18932 "/playlist.m3u?token=bench-token" "$lua" >>"$work/guarded.$mode"
    done
    open=$(median <"$work/open.$mode")
    guarded=$(median <"$work/guarded.$mode")
    ratio=$(awk -v g="$guarded" -v o="$open" 'BEGIN {printf "%.3f", g / o}')
    echo "clients=$mode unlimited_rps=$open limited_rps=$guarded ratio=$ratio (target >= 0.90)"
done
