#!/usr/bin/env bash
# Checks the monitoring stack in deploy/monitoring against the daemon:
#   scripts/check-monitoring.sh target/debug/xg2g
# 1. promtool check config (prometheus.yml and the rule file it names),
# 2. promtool check rules, 3. promtool test rules (alert unit tests),
# 4. every dashboard query parses as PromQL,
# 5. every xg2g_* metric the alert rules and the dashboards use is exported by the real
#    daemon (`xg2g demo` on a free loopback port, after a transcoded stream and a
#    snapshot so the labelled and histogram families have samples).
# Installs promtool and curl when missing (Debian, as root, like scripts/test.sh).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PATH/TO/xg2g" >&2
    exit 2
fi
bin=$(realpath "$1")
[ -x "$bin" ] || { echo "check-monitoring: $1 is not an executable" >&2; exit 2; }
cd "$(dirname "$0")/.."

mon=deploy/monitoring
rules=$mon/prometheus/alert-rules.yml
dashboards=("$mon"/grafana/dashboards/*.json)

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
scripts/apt-install.sh check-monitoring "${need[@]}"

work=$(mktemp -d)
demo_pid=
cleanup() {
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
# check [-v] NAME COMMAND...: runs one check, shows its output when it fails (or, with
# -v, always).
check() {
    local verbose=
    if [ "$1" = -v ]; then verbose=1; shift; fi
    local name=$1
    shift
    if "$@" >"$work/out" 2>&1; then
        echo "ok   $name"
        [ -z "$verbose" ] || sed 's/^/     /' "$work/out"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        sed 's/^/     /' "$work/out"
        failed=$((failed + 1))
    fi
}

# The "expr" strings of the dashboards, JSON-unescaped, one per line.
dashboard_exprs() {
    grep -ohE '"expr": *"([^"\\]|\\.)*"' "${dashboards[@]}" \
        | sed -E 's/^"expr": *"//; s/"$//; s/\\"/"/g; s/\\\\/\\/g'
}

# Check 4: each query, with Grafana's variables filled in, becomes a recording rule
# that promtool must accept.
dashboard_queries_parse() {
    local n=0
    {
        echo "groups:"
        echo "  - name: dashboards"
        echo "    rules:"
        while IFS= read -r expr; do
            expr=${expr//\$__rate_interval/1m}
            expr=${expr//\$instance/.*}
            n=$((n + 1))
            echo "      - record: dashboard_query_$n"
            echo "        expr: '${expr//\'/\'\'}'"
        done < <(dashboard_exprs)
    } >"$work/dashboard-rules.yml"
    [ "$n" -gt 0 ] || { echo "no expr found in ${dashboards[*]}"; return 1; }
    echo "$n queries"
    promtool check rules "$work/dashboard-rules.yml"
}

# A loopback port nobody listens on now.
free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# Starts the demo with extra VAR=value settings; sets base and demo_pid. Retries on another port if it dies at once
# (a port taken between the probe and the bind).
start_demo() {
    local port
    local -a settings=("$@")
    for _ in 1 2 3; do
        port=$(free_port)
        mkdir -p "$work/data"
        env XG2G_LISTEN="127.0.0.1:$port" XG2G_DATA="$work/data" XG2G_SSDP_ENABLED=false \
            RUST_LOG=warn "${settings[@]}" "$bin" demo >"$work/demo.log" 2>&1 &
        demo_pid=$!
        base=http://127.0.0.1:$port
        for _ in $(seq 300); do
            if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then
                return 0
            fi
            kill -0 "$demo_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -TERM "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
        demo_pid=
    done
    echo "the demo did not become ready; its log:"
    cat "$work/demo.log"
    return 1
}

# Check 5: every xg2g_* name used by alerts and dashboards is exported.
# prometheus-client writes a labelled family only once it has a sample, so the demo runs
# with small limits and the requests below make the events happen: a picon, a wrong
# token, a rate-limited request, a reload, a transcode holding the only CPU slot and the
# only tuner while a snapshot finds the queue (size 0) full and another channel finds no
# tuner, a malformed discovery datagram, and a refresh against a failing receiver.
metrics_exported() {
    local udp_port
    udp_port=$(free_port)
    start_demo XG2G_API_TOKEN=check-monitoring XG2G_MAX_STREAMS=1 \
        XG2G_TRANSCODE_CPU_SLOTS=1 XG2G_GPU_QUEUE_SIZE=0 XG2G_GPU_QUEUE_MAX_WAIT=1s \
        XG2G_RATELIMIT_API_RPS=1 XG2G_RATELIMIT_API_BURST=1 \
        XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD=1 XG2G_OWI_RETRIES=0 \
        XG2G_HDHR_DISCOVERY_PORT="$udp_port" || return 1
    local url ref other logo sim api=(-s -o /dev/null -X POST)
    curl -sf -o "$work/playlist.m3u" "$base/playlist.m3u" || { echo "no playlist"; return 1; }
    grep '^http' "$work/playlist.m3u" | tr -d '\r' >"$work/urls"
    url=$(sed -n 1p "$work/urls")
    other=$(sed -n 2p "$work/urls")
    if [ -z "$url" ] || [ -z "$other" ]; then
        echo "fewer than two stream URLs in the playlist"
        return 1
    fi
    ref=${url##*/stream/}
    ref=${ref%%\?*}
    logo=$(grep -m1 -oE 'tvg-logo="[^"]*"' "$work/playlist.m3u" | sed -E 's/^tvg-logo="//; s/"$//')
    [ -z "$logo" ] || curl -s -o /dev/null "$logo" || true
    curl "${api[@]}" -H 'Authorization: Bearer wrong' "$base/api/v1/refresh" || true
    curl "${api[@]}" -H 'Authorization: Bearer wrong' "$base/api/v1/refresh" || true
    sleep 1.1
    curl "${api[@]}" -H 'Authorization: Bearer check-monitoring' "$base/api/v1/config/reload" || true
    printf 'xg2g' >"/dev/udp/127.0.0.1/$udp_port" 2>/dev/null || true
    curl -s --max-time 5 -o /dev/null "$base/stream/$ref?profile=aac" &
    local viewer=$!
    sleep 3
    curl -s --max-time 20 -o /dev/null "$base/snapshot/$ref.jpg" || true
    curl -s --max-time 5 -o /dev/null "$other" || true
    wait "$viewer" || true
    # The receiver answers 500: the refresh fails and opens the receiver breaker.
    sim=$(grep -m1 -oE 'simulated receiver at http://[0-9.:]+' "$work/demo.log" | sed 's/.* at //')
    if [ -n "$sim" ]; then
        curl "${api[@]}" "$sim/sim/fault?mode=http500" || true
        sleep 1.1
        curl "${api[@]}" --max-time 20 -H 'Authorization: Bearer check-monitoring' \
            "$base/api/v1/refresh?wait=true" || true
    fi
    curl -sf "$base/metrics" >"$work/metrics.txt" || { echo "scraping $base/metrics failed"; return 1; }

    # Exported: "# TYPE" names (counters are described as name_total), the series a
    # histogram adds, and every sample name.
    {
        awk '$1 == "#" && $2 == "TYPE" {
                print $3
                if ($4 == "histogram") { print $3 "_bucket"; print $3 "_sum"; print $3 "_count" }
            }' "$work/metrics.txt"
        grep -oE '^xg2g_[a-z0-9_]+' "$work/metrics.txt"
    } | sort -u >"$work/exported"

    {
        grep -oE '\bxg2g_[a-z0-9_]+' "$rules" || true
        dashboard_exprs | grep -oE '\bxg2g_[a-z0-9_]+' || true
    } | sort -u >"$work/used"

    # Families in the scrape, by name without the counter suffix.
    awk '$1 == "#" && $2 == "TYPE" { n = $3; if ($4 == "counter") sub(/_total$/, "", n); print n }' \
        "$work/metrics.txt" | sort -u >"$work/families"

    # A name not exported is wrong if its family is in the scrape (a wrong suffix or
    # type, e.g. _total on a gauge). A family no event made here (e.g. GPU load without
    # a GPU) must at least be registered in src/metrics.rs under that name.
    local metric family missing=() unprovoked=()
    while IFS= read -r metric; do
        grep -qx "$metric" "$work/exported" && continue
        family=$metric
        for suffix in _total _bucket _sum _count; do family=${family%"$suffix"}; done
        if ! grep -qx "$family" "$work/families" \
            && grep -qE "^\s*(registry\.register\()?\"${family#xg2g_}\"," src/metrics.rs; then
            unprovoked+=("$metric")
        else
            missing+=("$metric")
        fi
    done <"$work/used"
    echo "$(wc -l <"$work/used") metric names used, $(wc -l <"$work/exported") exported in this run"
    [ ${#unprovoked[@]} -eq 0 ] \
        || echo "registered in src/metrics.rs but without a sample in this run: ${unprovoked[*]}"
    if [ ${#missing[@]} -gt 0 ]; then
        echo "used in $rules or the dashboards but not exported by the daemon:"
        printf '  %s\n' "${missing[@]}"
        return 1
    fi
}

check "promtool check config $mon/prometheus/prometheus.yml" \
    promtool check config "$mon/prometheus/prometheus.yml"
check "promtool check rules $rules" promtool check rules "$rules"
check "promtool test rules $mon/prometheus/alert-rules.test.yml" \
    promtool test rules "$mon/prometheus/alert-rules.test.yml"
check "dashboard queries parse (${#dashboards[@]} dashboards)" dashboard_queries_parse
check -v "alert and dashboard metrics are exported by $1" metrics_exported
if [ "$failed" -gt 0 ] || [ "$passed" -lt 5 ]; then
    echo "monitoring: $passed passed, $failed failed"
    exit 1
fi
echo "monitoring: $passed passed, $failed failed"
