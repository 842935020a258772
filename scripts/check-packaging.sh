#!/usr/bin/env bash
# scripts/check-packaging.sh [ARM64_BINARY]: checks the install files (systemd unit,
# OpenWrt recipe and init script, Enigma2 init script and .ipk) with the real tools:
#   1. systemd-analyze verify of systemd/xg2g.service (and the env file's names)
#   2. systemd-analyze security --offline: exposure at most 4.0
#   3. shellcheck of the init scripts (as sh) and build-ipk.sh
#   4. the OpenWrt init script under dash and busybox ash with stub uci, procd and
#      functions.sh: the exact XG2G_* environment from UCI, disabled, reload; its key
#      list against the README; the recipe's version against Cargo.toml
#   5. an aarch64 .ipk from ARM64_BINARY (cross/build.sh aarch64 writes it to
#      target/cross/aarch64-unknown-linux-gnu/release/xg2g), unpacked and inspected;
#      without the argument, from a stub aarch64 ELF file
#   6. sd_notify: the host daemon (target/debug/xg2g, when built) sends READY=1,
#      WATCHDOG=1 every WatchdogSec/2 and STOPPING=1 to a $NOTIFY_SOCKET (python3)
#   7. the Enigma2 init script driving that daemon: start, status, reload, stop, under dash
#      with dpkg's start-stop-daemon and under busybox ash with busybox's
# Installs systemd, shellcheck, binutils, dash, python3 and busybox when missing (Debian,
# as scripts/test.sh does).
# Ends with one line: packaging: N passed, M failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v ar >/dev/null || need+=(binutils)
command -v dash >/dev/null || need+=(dash)
command -v python3 >/dev/null || need+=(python3-minimal)
# The boxes' shell and start-stop-daemon are busybox's.
command -v busybox >/dev/null || need+=(busybox)
scripts/apt-install.sh check-packaging "${need[@]}"

binary="${1:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
failures=()

# check NAME FUNCTION: runs FUNCTION (its output indented), counts and reports it.
check() {
    local name="$1" out rc=0
    out="$("$2" 2>&1)" || rc=$?
    if [ -n "$out" ]; then
        printf '%s\n' "$out" | sed 's/^/    /'
    fi
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "ok: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAILED: $name"
    fi
}

# The file keys of the README's settings table, one per line.
readme_keys() {
    sed -n '/^| environment | file key |/,/^$/p' README.md | awk -F'|' 'NR > 2 && NF > 3 {
        gsub(/[ `]/, "", $2); gsub(/[ `]/, "", $3); print $3 " " $2 }' |
        while read -r key env; do
            # The table promises env = XG2G_ + the upper-cased key; the init script relies on it.
            [ "$env" = "XG2G_${key^^}" ] || echo "README: $env is not XG2G_${key^^}" >&2
            echo "$key"
        done
}

# --- 1. systemd-analyze verify -------------------------------------------------------

systemd_verify() {
    # verify insists that ExecStart's program exists; a copy of the unit points at a real
    # executable (the host build when there is one) and is otherwise identical.
    local exe="$repo/target/debug/xg2g"
    [ -x "$exe" ] || exe=/bin/true
    mkdir -p "$work/unit"
    sed "s#^ExecStart=/usr/local/bin/xg2g #ExecStart=$exe #" systemd/xg2g.service >"$work/unit/xg2g.service"
    grep -q "^ExecStart=$exe serve$" "$work/unit/xg2g.service" || {
        echo "systemd/xg2g.service: no 'ExecStart=/usr/local/bin/xg2g serve' line"
        return 1
    }
    local out
    out="$(systemd-analyze verify "$work/unit/xg2g.service" 2>&1)" || {
        echo "$out"
        return 1
    }
    # verify is silent when the unit is clean; a warning is a failure here too.
    if [ -n "$out" ]; then
        echo "$out"
        return 1
    fi
    echo "systemd-analyze verify: clean (ExecStart checked against $exe)"
    # Every name in the example env file must be a real setting (commented ones too).
    local keys bad=0 name
    keys="$(readme_keys)"
    while read -r name; do
        name="${name#XG2G_}"
        grep -qx "${name,,}" <<<"$keys" || {
            echo "systemd/xg2g.env: XG2G_$name is not a setting in the README"
            bad=1
        }
    done < <(sed -n 's/^#* *\(XG2G_[A-Z0-9_]*\)=.*/\1/p' systemd/xg2g.env)
    return "$bad"
}

# --- 2. systemd-analyze security -----------------------------------------------------

systemd_security() {
    local out score
    out="$(systemd-analyze security --offline=true systemd/xg2g.service 2>&1)" || true
    score="$(sed -n 's/.*Overall exposure level for xg2g.service: \([0-9.]*\).*/\1/p' <<<"$out")"
    if [ -z "$score" ]; then
        echo "$out" | tail -n 20
        echo "no overall exposure level in the output"
        return 1
    fi
    echo "systemd-analyze security: exposure $score (at most 4.0)"
    awk -v s="$score" 'BEGIN { exit !(s <= 4.0) }' || {
        echo "$out" | grep '✗'
        return 1
    }
}

# --- 3. shellcheck -------------------------------------------------------------------

# check runs these functions where errexit does not apply: each one returns its own
# verdict.
shell_lint() {
    # The init scripts run on the box's /bin/sh (busybox ash, dash): plain POSIX sh.
    shellcheck -s sh openwrt/files/xg2g.init deploy/enigma2/xg2g.init &&
        shellcheck deploy/enigma2/build-ipk.sh scripts/check-packaging.sh &&
        # Sourced files: syntax only.
        sh -n deploy/enigma2/xg2g.default || return 1
    echo "shellcheck: openwrt/files/xg2g.init deploy/enigma2/xg2g.init (sh), build-ipk.sh, check-packaging.sh; sh -n xg2g.default"
}

# --- 4. OpenWrt: UCI -> environment --------------------------------------------------

# The stubs stand for what rc.common gives the script: /lib/functions.sh's config_load
# (which evaluates `uci export`, whose output is UCI file syntax and valid sh) and
# config_get/config_get_bool, the procd_* helpers (they log their calls), and rc.common's
# own start (logged). The uci stub exports $UCI_DIR/<name>.
write_openwrt_stubs() {
    local s="$work/owrt"
    mkdir -p "$s/bin" "$s/etc"
    cat >"$s/bin/uci" <<'EOF'
#!/bin/sh
[ "$1" = export ] && exec cat "$UCI_DIR/$2"
echo "uci stub: $*" >&2
exit 1
EOF
    chmod +x "$s/bin/uci"
    cat >"$s/functions.sh" <<'EOF'
config_load() { _cfg="$(uci export "$1")" || return 1; eval "$_cfg"; }
package() { :; }
config() { CONFIG_SECTION="$2"; }
option() { eval "CONFIG_${CONFIG_SECTION}_$1=\$2"; }
list() { :; }
config_get() { eval "$1=\${CONFIG_$2_$3:-\$4}"; }
config_get_bool() {
	config_get _b "$2" "$3"
	case "$_b" in
	1 | on | true | yes | enabled) eval "$1=1" ;;
	0 | off | false | no | disabled) eval "$1=0" ;;
	*) eval "$1=\$4" ;;
	esac
}
procd_open_instance() { echo open >>"$LOG"; }
procd_set_param() { echo "set $*" >>"$LOG"; }
procd_append_param() { _p="$1"; shift; for _a; do echo "append $_p $_a" >>"$LOG"; done; }
procd_close_instance() { echo close >>"$LOG"; }
procd_send_signal() { echo "signal $*" >>"$LOG"; }
procd_add_reload_trigger() { echo "trigger $*" >>"$LOG"; }
start() { echo start >>"$LOG"; }
chown() { echo "chown $*" >>"$LOG"; }
env_of_main() { config_load xg2g; xg2g_env main echo; }
EOF
    # run.sh FUNCTION...: loads the init script like rc.common does, then runs FUNCTION.
    cat >"$s/run.sh" <<'EOF'
. "$STUBS/functions.sh"
. "$INIT"
"$@"
EOF
}

# The shells the init scripts are run with: dash with the host's tools, and, when
# busybox is here, busybox ash with busybox's applets first in PATH (what OpenWrt and
# most Enigma2 images have). Sets SHELLS to "name" words; use_shell NAME sets BOX_SH
# (the command) and BOX_PATH.
SHELLS="dash"
if command -v busybox >/dev/null; then
    SHELLS="dash busybox"
    mkdir -p "$work/bb"
    for applet in start-stop-daemon readlink sleep cat md5sum tr mkdir rm echo; do
        ln -s "$(command -v busybox)" "$work/bb/$applet"
    done
fi
use_shell() {
    case "$1" in
    dash)
        BOX_SH=(dash)
        BOX_PATH="$PATH"
        ;;
    busybox)
        BOX_SH=(busybox sh)
        BOX_PATH="$work/bb:$PATH"
        ;;
    esac
}

# owrt CONFIG_FILE FUNCTION...: runs FUNCTION of the init script under $BOX_SH on that
# UCI file; the procd log is $work/owrt/log.
owrt() {
    local cfg="$1"
    shift
    cp "$cfg" "$work/owrt/etc/xg2g"
    env PATH="$work/owrt/bin:$BOX_PATH" STUBS="$work/owrt" INIT="$repo/openwrt/files/xg2g.init" \
        UCI_DIR="$work/owrt/etc" LOG="$work/owrt/log" XG2G_STAMP="$work/owrt/stamp" \
        "${BOX_SH[@]}" "$work/owrt/run.sh" "$@"
}

# expect WHAT EXPECTED_FILE ACTUAL_FILE
expect() {
    if ! diff -u "$2" "$3" >"$work/diff"; then
        echo "$1: not as expected (- expected, + got):"
        cat "$work/diff"
        return 1
    fi
}

openwrt_init() {
    write_openwrt_stubs
    local data="$work/owrt/data" bad=0

    # The key list equals the README's, in order.
    readme_keys >"$work/keys.readme"
    # shellcheck disable=SC2016 # dash expands it
    dash -c '. "$1"; for k in $XG2G_KEYS; do echo "$k"; done' sh openwrt/files/xg2g.init >"$work/keys.init"
    expect "openwrt/files/xg2g.init XG2G_KEYS vs README" "$work/keys.readme" "$work/keys.init" || bad=1
    # The recipe's version is Cargo.toml's.
    local cargo_version mk_version
    cargo_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
    mk_version="$(sed -n 's/^PKG_VERSION:=//p' openwrt/Makefile)"
    [ "$cargo_version" = "$mk_version" ] || {
        echo "openwrt/Makefile PKG_VERSION $mk_version, Cargo.toml $cargo_version"
        bad=1
    }
    local shell
    for shell in $SHELLS; do
        use_shell "$shell"
        rm -rf "$data" "$work/owrt/stamp"
        openwrt_scenarios || {
            echo "(under $shell)"
            bad=1
        }
    done
    [ "$bad" = 0 ] && echo "openwrt init: $(wc -l <"$work/keys.init") keys as in README; environment, procd instance, disabled, default data, reload and trigger as expected ($SHELLS)"
    return "$bad"
}

openwrt_scenarios() {
    local log="$work/owrt/log" data="$work/owrt/data" bad=0
    # The shipped config is disabled: no instance, a hint, and the stamp records it.
    : >"$log"
    owrt openwrt/files/xg2g.config start_service 2>"$work/err"
    grep -q open "$log" && {
        echo "the shipped config (enabled '0') started an instance"
        bad=1
    }
    grep -q 'uci set xg2g.main.enabled=1' "$work/err" || {
        echo "no hint on how to enable"
        bad=1
    }
    [ -s "$work/owrt/stamp" ] || {
        echo "no settings stamp written"
        bad=1
    }

    # Values verbatim (quotes, $, backquote, commas, double spaces), empties and unknown
    # options skipped, README order.
    cat >"$work/uci.on" <<EOF
config xg2g 'main'
	option enabled '1'
	option owi_base 'http://10.0.0.2:81/owif'
	option bouquet 'Favourites (TV),"Österreich, Schweiz"'
	option public_url ''
	option listen '[::]:8080'
	option stream_token 'it'\''s \$HOME \`id\` ;'
	option foo_bar 'not a setting'
	option epg_days '3'
	option hdhr_friendly_name 'Wohnzimmer  TV'
	option data '$data'
EOF
    cat >"$work/env.expected" <<EOF
XG2G_OWI_BASE=http://10.0.0.2:81/owif
XG2G_BOUQUET=Favourites (TV),"Österreich, Schweiz"
XG2G_DATA=$data
XG2G_LISTEN=[::]:8080
XG2G_EPG_DAYS=3
XG2G_STREAM_TOKEN=it's \$HOME \`id\` ;
XG2G_HDHR_FRIENDLY_NAME=Wohnzimmer  TV
EOF
    : >"$log"
    owrt "$work/uci.on" start_service
    sed -n 's/^append env //p' "$log" >"$work/env.got"
    expect "UCI -> environment" "$work/env.expected" "$work/env.got" || bad=1
    if grep -q "HOME" "$work/owrt/stamp"; then
        echo "the settings stamp holds the settings (tokens) in clear"
        bad=1
    fi
    grep -v '^append env ' "$log" >"$work/procd.got"
    cat >"$work/procd.expected" <<EOF
chown xg2g:xg2g $data
open
set command /usr/bin/xg2g serve
set user xg2g
set respawn 3600 5 5
set stdout 1
set stderr 1
set term_timeout 10
close
EOF
    expect "procd instance" "$work/procd.expected" "$work/procd.got" || bad=1
    [ -d "$data" ] || {
        echo "the data folder $data was not created"
        bad=1
    }

    # No data option: the daemon gets /var/lib/xg2g, not its relative ./data.
    grep -v "option data" "$work/uci.on" >"$work/uci.nodata"
    owrt "$work/uci.nodata" env_of_main | tail -n 1 >"$work/data.got"
    echo "XG2G_DATA=/var/lib/xg2g" >"$work/data.expected"
    expect "default data folder" "$work/data.expected" "$work/data.got" || bad=1

    # Reload: same settings -> SIGHUP; changed settings or enabled -> start (procd then
    # restarts the instance with the new environment).
    : >"$log"
    owrt "$work/uci.on" reload_service
    sed 's/option epg_days .*/option epg_days '\''4'\''/' "$work/uci.on" >"$work/uci.changed"
    owrt "$work/uci.changed" reload_service
    sed 's/option enabled .1./option enabled '\''0'\''/' "$work/uci.on" >"$work/uci.off"
    owrt "$work/uci.off" reload_service
    printf '%s\n' "signal xg2g * HUP" start start >"$work/reload.expected"
    expect "reload" "$work/reload.expected" "$log" || bad=1

    : >"$log"
    owrt "$work/uci.on" service_triggers
    echo "trigger xg2g" >"$work/trigger.expected"
    expect "service_triggers" "$work/trigger.expected" "$log" || bad=1
    return "$bad"
}

# --- 5. Enigma2 .ipk -----------------------------------------------------------------

enigma2_ipk() {
    local bin="$binary" what bad=0
    if [ -n "$bin" ]; then
        what="$bin"
        [ -f "$bin" ] || {
            echo "no binary at $bin"
            return 1
        }
    else
        # Just an ELF header that says aarch64 (e_machine 183): enough to test the packing.
        bin="$work/stub-xg2g"
        printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\267\000' >"$bin"
        what="a stub aarch64 ELF file (no binary given)"
    fi
    local out="$work/ipk" x="$work/ipk/x"
    deploy/enigma2/build-ipk.sh aarch64 "$bin" "$out" || return 1
    local version ipk
    version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
    ipk="$out/xg2g_${version}_aarch64.ipk"
    [ -f "$ipk" ] || {
        echo "no $ipk"
        return 1
    }
    mkdir -p "$x/control" "$x/data"
    [ "$(ar t "$ipk" | tr '\n' ' ')" = "debian-binary control.tar.gz data.tar.gz " ] || {
        echo "ar members: $(ar t "$ipk" | tr '\n' ' ') (want debian-binary control.tar.gz data.tar.gz)"
        bad=1
    }
    (cd "$x" && ar x "$ipk")
    [ "$(cat "$x/debian-binary")" = "2.0" ] || {
        echo "debian-binary is not 2.0"
        bad=1
    }
    tar -C "$x/control" -xzf "$x/control.tar.gz"
    tar -C "$x/data" -xzf "$x/data.tar.gz"

    local field
    for field in Package:xg2g "Version:$version" Architecture:aarch64 Maintainer: Description: Recommends:ffmpeg; do
        grep -q "^${field%%:*}: ${field#*:}" "$x/control/control" || {
            echo "control: no '${field%%:*}: ${field#*:}' line"
            bad=1
        }
    done
    # Continuation lines start with a space; every other line is a Field: value.
    grep -vqE '^([A-Z][A-Za-z-]*: .+| .+)$' "$x/control/control" && {
        echo "control: malformed lines:"
        grep -vE '^([A-Z][A-Za-z-]*: .+| .+)$' "$x/control/control"
        bad=1
    }
    grep -qx /etc/default/xg2g "$x/control/conffiles" || {
        echo "conffiles lacks /etc/default/xg2g"
        bad=1
    }
    local f
    for f in postinst prerm; do
        if ! [ -x "$x/control/$f" ] || ! sh -n "$x/control/$f"; then
            echo "control/$f missing, not executable or not valid sh"
            bad=1
        fi
    done
    grep -q 'update-rc.d xg2g defaults' "$x/control/postinst" || bad=1
    grep -q '/etc/init.d/xg2g stop' "$x/control/prerm" || bad=1

    # Exactly these files with these modes, owned by root.
    tar -tvzf "$x/data.tar.gz" | awk '$1 !~ /^d/ { print $1, $2, $6 }' | sort >"$work/data.got"
    printf '%s\n' "-rw-r--r-- 0/0 ./etc/default/xg2g" "-rwxr-xr-x 0/0 ./etc/init.d/xg2g" \
        "-rwxr-xr-x 0/0 ./usr/bin/xg2g" >"$work/data.expected"
    expect "data.tar.gz files" "$work/data.expected" "$work/data.got" || bad=1
    cmp -s "$bin" "$x/data/usr/bin/xg2g" || {
        echo "usr/bin/xg2g differs from $bin"
        bad=1
    }
    cmp -s deploy/enigma2/xg2g.init "$x/data/etc/init.d/xg2g" || bad=1
    grep -qx 'XG2G_OWI_BASE=http://127.0.0.1' "$x/data/etc/default/xg2g" || {
        echo "etc/default/xg2g does not set XG2G_OWI_BASE=http://127.0.0.1"
        bad=1
    }
    # Reproducible: a second build is the same bytes.
    mkdir -p "$work/ipk2"
    deploy/enigma2/build-ipk.sh aarch64 "$bin" "$work/ipk2" >/dev/null
    cmp -s "$ipk" "$work/ipk2/$(basename "$ipk")" || {
        echo "a second build differs: not reproducible"
        bad=1
    }
    [ "$bad" = 0 ] && echo "ipk: $(basename "$ipk") from $what: ar members, control, conffiles, scripts, files and modes as expected; reproducible"
    return "$bad"
}

# --- 6. sd_notify from the real daemon -----------------------------------------------

# The notify socket systemd would create, as a small python3 listener that writes each
# datagram as a line and ends at STOPPING=1 (or after 30 s).
# Run it in the background: exec makes $! the listener itself.
notify_listener() {
    exec python3 - "$1" "$2" <<'EOF'
import socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
sock.settimeout(1)
end = time.monotonic() + 30
with open(sys.argv[2], "w", buffering=1) as out:
    while time.monotonic() < end:
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            continue
        out.write(msg + "\n")
        if msg == "STOPPING=1":
            break
EOF
}

sd_notify() {
    local exe="$repo/target/debug/xg2g" sock="$work/notify" got="$work/notify.log" n=0
    [ -x "$exe" ] || {
        echo "skipped: no $exe (cargo build)"
        return 0
    }
    : >"$got"
    notify_listener "$sock" "$got" >/dev/null 2>&1 &
    local listener=$!
    while [ ! -S "$sock" ] && [ $n -lt 50 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    # A receiver nobody answers at, no refresh, no UDP services, no encoder probing: only
    # start-up, the watchdog and shutdown are exercised. WatchdogSec=1 s: pings every 0.5 s.
    env -i PATH="$PATH" NOTIFY_SOCKET="$sock" WATCHDOG_USEC=1000000 \
        XG2G_OWI_BASE=http://127.0.0.1:9 XG2G_LISTEN=127.0.0.1:0 XG2G_DATA="$work/notify-data" \
        XG2G_INITIAL_REFRESH=false XG2G_HDHR_ENABLED=false XG2G_TRANSCODE_ENCODERS=software=1 \
        XG2G_LOG_LEVEL=warn "$exe" serve 2>"$work/daemon.err" &
    local daemon=$!
    n=0
    while ! grep -qx READY=1 "$got" && [ $n -lt 100 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    sleep 1.3
    kill -TERM "$daemon"
    local rc=0
    wait "$daemon" || rc=$?
    # Everything the daemon sent is queued by now; the listener gets 2 s to read it.
    n=0
    while kill -0 "$listener" 2>/dev/null && [ $n -lt 20 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    local ready pings stopping
    ready="$(grep -c '^READY=1$' "$got" || true)"
    pings="$(grep -c '^WATCHDOG=1$' "$got" || true)"
    stopping="$(grep -c '^STOPPING=1$' "$got" || true)"
    echo "sd_notify: READY=1 x$ready, WATCHDOG=1 x$pings in ~1.3 s, STOPPING=1 x$stopping, exit $rc"
    if [ "$ready" != 1 ] || [ "$pings" -lt 2 ] || [ "$stopping" != 1 ] || [ "$rc" != 0 ]; then
        echo "expected READY=1 once, WATCHDOG=1 at least twice, STOPPING=1 once, exit 0; daemon said:"
        tail -n 5 "$work/daemon.err"
        return 1
    fi
    # STOPPING comes last.
    [ "$(tail -n 1 "$got")" = STOPPING=1 ] || {
        echo "STOPPING=1 was not the last message"
        return 1
    }
}

# --- 7. Enigma2 init script on this host ---------------------------------------------

# The script with its three paths pointed at the host build and a temp folder, driven
# through start/status/reload/stop with dpkg's start-stop-daemon, with and without a log
# file; a stale pid file naming another program must be neither reported nor killed.
enigma2_init() {
    local exe="$repo/target/debug/xg2g" d="$work/e2" bad=0
    [ -x "$exe" ] || {
        echo "skipped: no $exe (cargo build)"
        return 0
    }
    command -v start-stop-daemon >/dev/null || {
        echo "skipped: no start-stop-daemon"
        return 0
    }
    mkdir -p "$d"
    sed -e "s#^DAEMON=/usr/bin/xg2g#DAEMON=$exe#" -e "s#^PIDFILE=.*#PIDFILE=$d/xg2g.pid#" \
        -e "s#^DEFAULTS=.*#DEFAULTS=$d/default#" deploy/enigma2/xg2g.init >"$d/init"
    printf '%s\n' "status 3 xg2g is not running" "start 0 xg2g started" \
        "start 0 xg2g is already running" "status 0 xg2g is running" \
        "reload 0 xg2g reloaded" "status 0 xg2g is running" "stop 0 xg2g stopped" \
        "status 3 xg2g is not running" >"$d/expected"
    local shell logfile run rc out
    for shell in $SHELLS; do
        use_shell "$shell"
        for logfile in "$d/log" ""; do
            printf '%s\n' XG2G_OWI_BASE=http://127.0.0.1:9 XG2G_LISTEN=127.0.0.1:0 \
                "XG2G_DATA=$d/data" XG2G_HDHR_ENABLED=false XG2G_INITIAL_REFRESH=false \
                XG2G_TRANSCODE_ENCODERS=software=1 XG2G_LOG_LEVEL=info \
                "XG2G_LOGFILE=$logfile" >"$d/default"
            : >"$d/got"
            for run in status start start status reload status stop status; do
                rc=0
                out="$(PATH="$BOX_PATH" "${BOX_SH[@]}" "$d/init" "$run" 2>&1)" || rc=$?
                echo "$run $rc ${out%% (pid*}" >>"$d/got"
            done
            expect "init script under $shell (log file '$logfile')" "$d/expected" "$d/got" || bad=1
            if [ -n "$logfile" ]; then
                if ! grep -q 'event=sighup action=reload' "$logfile" ||
                    ! grep -q 'event=shutdown' "$logfile"; then
                    echo "the log file lacks the reload and shutdown lines"
                    bad=1
                fi
            fi
        done
        # A stale pid file naming a live process that is not xg2g (this shell).
        echo $$ >"$d/xg2g.pid"
        rc=0
        out="$(PATH="$BOX_PATH" "${BOX_SH[@]}" "$d/init" status 2>&1)" || rc=$?
        [ "$rc" = 1 ] || {
            echo "$shell: status with a stale pid file: exit $rc ($out), expected 1"
            bad=1
        }
        PATH="$BOX_PATH" "${BOX_SH[@]}" "$d/init" stop >/dev/null 2>&1 || bad=1
    done
    [ "$bad" = 0 ] && echo "enigma2 init: start, status, reload, stop as expected with and without a log file ($SHELLS, each with its start-stop-daemon); a stale pid file is left alone"
    return "$bad"
}

start=$SECONDS
check "systemd-analyze verify systemd/xg2g.service" systemd_verify
check "systemd-analyze security (exposure <= 4.0)" systemd_security
check "shellcheck init scripts and build-ipk.sh" shell_lint
check "OpenWrt init: UCI -> XG2G_* environment" openwrt_init
check "Enigma2 .ipk (aarch64)" enigma2_ipk
check "sd_notify: READY, WATCHDOG, STOPPING from the daemon" sd_notify
check "Enigma2 init script: start, status, reload, stop" enigma2_init

echo "packaging: $passed passed, $failed failed ($((SECONDS - start)) s)${failures:+: ${failures[*]}}"
[ "$failed" -eq 0 ]
