#!/usr/bin/env bash
# cross/build.sh: release builds of xg2g for ARM Linux (glibc) with Debian's rustc 1.85.
#
# Rules: installs only what is missing (it checks files and commands before touching apt);
# builds with RUSTC=/usr/bin/rustc (Debian's rustc-web, the project's MSRV) and --locked, so a
# passing run also proves Cargo.lock resolves for 1.85; uses its own --target-dir and only
# environment variables, never a .cargo/config.toml, so host builds are unaffected.
# See cross/README.md and shared/CROSS.md.
set -Eeuo pipefail

usage() {
    cat <<'EOF'
usage: cross/build.sh [aarch64|armv7|all] [--smoke]

  aarch64   build aarch64-unknown-linux-gnu (default)
  armv7     build armv7-unknown-linux-gnueabihf
  all       build both
  --smoke   also run the ARM binary under qemu-user: --version, check-config, and the
            demo serving its playlist (with its idle RSS under qemu)

Writes target/cross/dist/xg2g-<version>-<triple>.tar.gz (stripped binary, README,
systemd files) and SHA256SUMS over every archive there.

Environment: CROSS_RUST_DEB_VERSION overrides the pinned Debian rustc-web version.
EOF
}

# The one Debian rustc for which Debian also ships ARM standard libraries; the host
# compiler and the ARM libraries must be exactly the same build.
RUST_DEB_VERSION="${CROSS_RUST_DEB_VERSION:-1.85.0+dfsg3-1~deb12u3}"
RUST_VERSION="${RUST_DEB_VERSION%%+*}"
RUST_MM="${RUST_VERSION%.*}"
RUSTC_BIN=/usr/bin/rustc
# V4L2 M2M encoders (Raspberry Pi, ARM boxes) are probed with ioctls; it needs no library
# on the box. vaapi links libva, which an ARM box rarely has, so it stays off.
FEATURES=v4l2

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
TARGET_DIR="$REPO/target/cross"

say() { printf 'cross: %s\n' "$*" >&2; }

# Every exit path ends with one line saying what happened; this is the failure form.
die() {
    printf 'cross: FAILED: %s\n' "$*" >&2
    exit 1
}
trap 'die "unexpected error (exit $?) at cross/build.sh line $LINENO: $BASH_COMMAND"' ERR

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- arguments ---------------------------------------------------------------

SMOKE=0
WHICH=aarch64
for arg in "$@"; do
    case "$arg" in
    aarch64 | armv7 | all) WHICH="$arg" ;;
    --smoke) SMOKE=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        printf 'cross: FAILED: unknown argument %q\n' "$arg" >&2
        exit 2
        ;;
    esac
done
case "$WHICH" in
all) TARGETS=(aarch64 armv7) ;;
*) TARGETS=("$WHICH") ;;
esac

# Sets the T_* globals describing one target name.
target_info() {
    case "$1" in
    aarch64)
        T_TRIPLE=aarch64-unknown-linux-gnu
        T_DEBARCH=arm64
        T_GNU=aarch64-linux-gnu
        T_QEMU=qemu-aarch64
        ;;
    armv7)
        T_TRIPLE=armv7-unknown-linux-gnueabihf
        T_DEBARCH=armhf
        T_GNU=arm-linux-gnueabihf
        T_QEMU=qemu-arm
        ;;
    *) die "unknown target $1" ;;
    esac
}

# --- what is missing ---------------------------------------------------------

SUDO=()
as_root() { "${SUDO[@]}" "$@"; }

rustc_ok() {
    [[ -x "$RUSTC_BIN" ]] && [[ "$("$RUSTC_BIN" --version 2>/dev/null)" == "rustc $RUST_VERSION "* ]]
}

# Compiling a tiny crate against std's metadata is the exact test: it fails both when the
# ARM libraries are absent and when they come from a different rustc build.
std_ok() {
    rustc_ok || return 1
    local out="$WORK/probe-$1"
    mkdir -p "$out"
    printf 'pub fn probe() -> String { String::new() }\n' >"$out/probe.rs"
    "$RUSTC_BIN" --edition 2021 --target "$1" --crate-type rlib --emit metadata \
        --out-dir "$out" "$out/probe.rs" >/dev/null 2>&1
}

# Cargo must understand edition 2024 and lockfile v4, i.e. be 1.85 or newer.
cargo_ok() {
    local v
    command -v cargo >/dev/null 2>&1 || return 1
    v="$(cargo --version 2>/dev/null)" || return 1
    [[ "$v" =~ ^cargo\ 1\.([0-9]+)\. ]] || return 1
    ((BASH_REMATCH[1] >= 85))
}

HOST_PKGS=()
STD_TARGETS=()

if ! rustc_ok; then
    HOST_PKGS+=("rustc-web=$RUST_DEB_VERSION" "libstd-rust-web-dev=$RUST_DEB_VERSION")
fi
if ! command -v cargo >/dev/null 2>&1; then
    HOST_PKGS+=("cargo-web=$RUST_DEB_VERSION")
elif ! cargo_ok; then
    die "$(command -v cargo) is $(cargo --version 2>/dev/null || echo 'unusable'); need cargo 1.85 or newer (rustup, or Debian's cargo-web=$RUST_DEB_VERSION instead of cargo)"
fi
# v4l2r's build script runs bindgen, which loads libclang.
ldconfig -p | grep -q 'libclang-[0-9.]*\.so' || HOST_PKGS+=(libclang1-14)
# A fresh system has no CA bundle; cargo needs it to fetch crates.
if [[ ! -s /etc/ssl/certs/ca-certificates.crt ]]; then
    HOST_PKGS+=(ca-certificates)
fi
for t in "${TARGETS[@]}"; do
    target_info "$t"
    command -v "$T_GNU-gcc" >/dev/null 2>&1 || HOST_PKGS+=("gcc-$T_GNU")
    command -v "$T_GNU-strip" >/dev/null 2>&1 || HOST_PKGS+=("binutils-$T_GNU")
    # The linker needs the target's C runtime; qemu -L needs its dynamic loader.
    [[ -e "/usr/$T_GNU/lib/libc.so" ]] || HOST_PKGS+=("libc6-dev-$T_DEBARCH-cross")
    # The v4l2 feature's bindings are generated from the target's kernel headers.
    [[ -e "/usr/$T_GNU/include/linux/videodev2.h" ]] || HOST_PKGS+=("linux-libc-dev-$T_DEBARCH-cross")
    if ((SMOKE)); then
        command -v "$T_QEMU" >/dev/null 2>&1 || HOST_PKGS+=(qemu-user)
        command -v curl >/dev/null 2>&1 || HOST_PKGS+=(curl)
    fi
    std_ok "$T_TRIPLE" || STD_TARGETS+=("$t")
done
if ((${#HOST_PKGS[@]})); then
    # qemu-user is added once per target; dedupe so apt sees each name once.
    mapfile -t HOST_PKGS < <(printf '%s\n' "${HOST_PKGS[@]}" | sort -u)
fi

# --- install -----------------------------------------------------------------

if ((${#HOST_PKGS[@]} + ${#STD_TARGETS[@]})); then
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; cannot install: ${HOST_PKGS[*]} ${STD_TARGETS[*]/%/ std}"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive

    # Foreign architectures are only needed to download the ARM std packages.
    if ((${#STD_TARGETS[@]})); then
        foreign="$(dpkg --print-foreign-architectures)"
        for t in "${STD_TARGETS[@]}"; do
            target_info "$t"
            if ! grep -qx "$T_DEBARCH" <<<"$foreign"; then
                say "dpkg --add-architecture $T_DEBARCH"
                as_root dpkg --add-architecture "$T_DEBARCH"
            fi
        done
    fi

    say "apt-get update"
    # A foreign index of a mirror that is mid-sync makes update exit 100 even though the
    # packages we need are fine; the availability check below is what decides.
    if ! as_root apt-get update -qq; then
        say "apt-get update reported errors; checking the needed packages directly"
    fi

    need=("${HOST_PKGS[@]}")
    for t in "${STD_TARGETS[@]}"; do
        target_info "$t"
        need+=("libstd-rust-web-dev:$T_DEBARCH=$RUST_DEB_VERSION"
            "libstd-rust-web-$RUST_MM:$T_DEBARCH=$RUST_DEB_VERSION")
    done
    for p in "${need[@]}"; do
        apt-cache show "$p" >/dev/null 2>&1 ||
            die "package $p is not in the apt indexes (did apt-get update fail, or has the archive dropped this version?)"
    done

    if ((${#HOST_PKGS[@]})); then
        say "apt-get install ${HOST_PKGS[*]}"
        as_root apt-get install -y -qq --no-install-recommends "${HOST_PKGS[@]}" >/dev/null ||
            die "apt-get install ${HOST_PKGS[*]} failed"
    fi
    rustc_ok || die "$RUSTC_BIN is not rustc $RUST_VERSION after installing rustc-web=$RUST_DEB_VERSION"
    cargo_ok || die "no usable cargo (1.85 or newer) after installation"

    if ((${#STD_TARGETS[@]})); then
        # A multi-arch install of these packages would drag in conflicting ARM
        # dependencies; unpacking only their files is all rustc needs.
        debs="$WORK/debs"
        mkdir -p "$debs"
        # apt downloads as the _apt user when it can write the folder (no warning).
        chmod 755 "$WORK"
        chown _apt "$debs" 2>/dev/null || true
        dl=()
        for t in "${STD_TARGETS[@]}"; do
            target_info "$t"
            dl+=("libstd-rust-web-dev:$T_DEBARCH=$RUST_DEB_VERSION"
                "libstd-rust-web-$RUST_MM:$T_DEBARCH=$RUST_DEB_VERSION")
        done
        say "apt-get download ${dl[*]}"
        (cd "$debs" && apt-get download -qq "${dl[@]}") || die "apt-get download ${dl[*]} failed"
        for f in "$debs"/*.deb; do
            as_root dpkg -x "$f" / || die "dpkg -x $f / failed"
        done
        for t in "${STD_TARGETS[@]}"; do
            target_info "$t"
            std_ok "$T_TRIPLE" || die "rustc $RUST_VERSION still cannot use the $T_TRIPLE standard library after unpacking it"
        done
    fi
fi

# --- build, size, smoke ------------------------------------------------------

PKG_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)"
[[ -n "$PKG_VERSION" ]] || die "no version = \"...\" line in $REPO/Cargo.toml"

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

# Runs the ARM binary under qemu with a clean environment in an empty folder, so the
# caller's XG2G_* variables and files cannot change the outcome. Sets RUN_RC, RUN_OUT,
# RUN_ERR.
run_arm() {
    local bin="$1" envs=() dir="$WORK/run"
    shift
    while [[ $# -gt 0 && "$1" == *=* ]]; do
        envs+=("$1")
        shift
    done
    rm -rf "$dir"
    mkdir -p "$dir"
    RUN_RC=0
    (cd "$dir" && timeout 60 env -i PATH=/usr/bin:/bin HOME="$dir" "${envs[@]}" \
        "$T_QEMU" -L "/usr/$T_GNU" "$bin" "$@" >"$WORK/out" 2>"$WORK/err") || RUN_RC=$?
    RUN_OUT="$(head -c 2000 "$WORK/out")"
    RUN_ERR="$(head -c 2000 "$WORK/err")"
}

first_line() { printf '%s' "$1" | head -n 1; }

# How a run ended, for messages: timeout(1) reports a hang as 124.
ended() {
    if ((RUN_RC == 124)); then
        printf 'timed out after 60 s'
    else
        printf 'exited %s' "$RUN_RC"
    fi
}

# Runs the three checks on target $1's binary $2; prints each result and leaves the failures
# joined in SMOKE_FAILS (empty when all passed).
smoke() {
    local bin="$2" fails=()
    run_arm "$bin" --version
    if ((RUN_RC == 0)) && [[ "$RUN_OUT" == "xg2g $PKG_VERSION (features: $FEATURES)" ]]; then
        say "$1: smoke ok: xg2g --version -> $(first_line "$RUN_OUT")"
    else
        fails+=("'xg2g --version' $(ended) and printed '$(first_line "$RUN_OUT")', expected exit 0 and 'xg2g $PKG_VERSION (features: $FEATURES)'")
    fi

    run_arm "$bin" XG2G_OWI_BASE=http://127.0.0.1 check-config
    if ((RUN_RC == 0)); then
        say "$1: smoke ok: XG2G_OWI_BASE=http://127.0.0.1 xg2g check-config -> exit 0"
    else
        fails+=("'XG2G_OWI_BASE=http://127.0.0.1 xg2g check-config' $(ended), expected 0 ($(first_line "$RUN_ERR"))")
    fi

    # With a valid base set, exit 2 can only come from the bad EPG_DAYS.
    run_arm "$bin" XG2G_OWI_BASE=http://127.0.0.1 XG2G_EPG_DAYS=99 check-config
    if ((RUN_RC == 2)); then
        say "$1: smoke ok: XG2G_EPG_DAYS=99 xg2g check-config -> exit 2: $(first_line "$RUN_ERR")"
    else
        fails+=("'XG2G_EPG_DAYS=99 xg2g check-config' $(ended), expected 2")
    fi
    demo_smoke "$1" "$bin"
    [[ -z "$DEMO_FAIL" ]] || fails+=("$DEMO_FAIL")
    SMOKE_FAILS=""
    if ((${#fails[@]})); then
        local f
        for f in "${fails[@]}"; do
            say "$1: smoke FAILED: $f"
        done
        SMOKE_FAILS="$(printf '%s; ' "${fails[@]}")"
        SMOKE_FAILS="${SMOKE_FAILS%; }"
    fi
}

# The demo (simulated receiver + daemon in one process) under qemu: it must serve its
# playlist within 90 s, then stay up for a few seconds; its idle RSS is reported (qemu's
# own memory included: the guest's cannot be told apart). Sets DEMO_FAIL on failure.
demo_smoke() {
    local bin="$2" dir="$WORK/demo" port pid code="" waited=0 rss channels
    DEMO_FAIL=""
    rm -rf "$dir"
    mkdir -p "$dir"
    port=$((20000 + RANDOM % 20000))
    (cd "$dir" && exec env -i PATH=/usr/bin:/bin HOME="$dir" TMPDIR="$dir" \
        XG2G_LISTEN="127.0.0.1:$port" XG2G_SSDP_ENABLED=false XG2G_HDHR_DISCOVERY_PORT=0 \
        "$T_QEMU" -L "/usr/$T_GNU" "$bin" demo >"$WORK/demo.out" 2>"$WORK/demo.err") &
    pid=$!
    while ((waited < 180)); do
        code="$(curl -s -o "$dir/playlist.m3u" -w '%{http_code}' \
            "http://127.0.0.1:$port/playlist.m3u" 2>/dev/null || true)"
        [[ "$code" == 200 ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
        waited=$((waited + 1))
    done
    channels="$(grep -c '^#EXTINF' "$dir/playlist.m3u" 2>/dev/null || true)"
    if [[ "$code" == 200 ]] && ((channels > 0)); then
        sleep 3
        if kill -0 "$pid" 2>/dev/null; then
            rss="$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
            say "$1: smoke ok: xg2g demo served a playlist of $channels channels after $((waited / 2)) s; idle RSS under qemu ${rss} MiB"
        else
            DEMO_FAIL="'xg2g demo' died after serving its playlist: $(tail -n 3 "$WORK/demo.err" | tr '\n' ' ')"
        fi
    else
        DEMO_FAIL="'xg2g demo' served no playlist within 90 s (last status ${code:-none}): $(tail -n 3 "$WORK/demo.err" | tr '\n' ' ')"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The release archive of one target: the stripped binary, the README, the service files
# and the example settings, under xg2g-<version>-<triple>/, reproducible (fixed owner,
# order and time). Sets ARCHIVE to its path.
DIST="$TARGET_DIR/dist"
archive() {
    local stripped="$2" name="xg2g-$PKG_VERSION-$T_TRIPLE" dir
    dir="$WORK/dist/$name"
    rm -rf "$dir"
    mkdir -p "$dir/systemd" "$DIST"
    install -m 0755 "$stripped" "$dir/xg2g"
    install -m 0644 "$REPO/README.md" "$dir/README.md"
    install -m 0644 "$REPO/systemd/xg2g.service" "$REPO/systemd/xg2g.env" "$dir/systemd/"
    ARCHIVE="$DIST/$name.tar.gz"
    tar -C "$WORK/dist" --sort=name --owner=0 --group=0 --numeric-owner \
        --mtime='2026-01-01 00:00Z' -cf - "$name" | gzip -n -9 >"$ARCHIVE" ||
        die "$1: cannot write $ARCHIVE"
    say "$1: release archive $ARCHIVE ($(stat -c %s "$ARCHIVE") bytes)"
}

SUMMARY=()
FAILED=()
for t in "${TARGETS[@]}"; do
    target_info "$t"
    triple_env="$(tr 'a-z-' 'A-Z_' <<<"$T_TRIPLE")"
    say "$t: cargo build --release --locked --features $FEATURES --target $T_TRIPLE (rustc $RUST_VERSION)"
    # bindgen passes --target to clang from cargo's TARGET and clang finds the rest of the
    # cross headers itself; the one header v4l2r names by path must be the target's too.
    # Its layout assertions make a struct laid out for the wrong target a compile error.
    (cd "$REPO" && env RUSTC="$RUSTC_BIN" \
        "CARGO_TARGET_${triple_env}_LINKER=$T_GNU-gcc" \
        "CC_${T_TRIPLE//-/_}=$T_GNU-gcc" \
        "AR_${T_TRIPLE//-/_}=$T_GNU-ar" \
        "V4L2R_VIDEODEV2_H_PATH=/usr/$T_GNU/include/linux" \
        cargo build --release --locked --features "$FEATURES" --target "$T_TRIPLE" \
        --target-dir "$TARGET_DIR") ||
        die "$t: cargo build --release --features $FEATURES --target $T_TRIPLE failed (see the errors above)"

    bin="$TARGET_DIR/$T_TRIPLE/release/xg2g"
    [[ -f "$bin" ]] || die "$t: build succeeded but $bin is missing"
    built="$(stat -c %s "$bin")"
    # The release profile strips; stripping a copy shows whether anything is left over.
    "$T_GNU-strip" -o "$WORK/xg2g-$t" "$bin" || die "$t: $T_GNU-strip failed"
    stripped="$(stat -c %s "$WORK/xg2g-$t")"
    say "$t: $bin: $built bytes ($(mib "$built") MiB) as built, $stripped bytes ($(mib "$stripped") MiB) after $T_GNU-strip"

    status="ok"
    if ((SMOKE)); then
        smoke "$t" "$bin"
        if [[ -n "$SMOKE_FAILS" ]]; then
            FAILED+=("$t smoke: $SMOKE_FAILS")
        else
            status="ok (smoke passed)"
        fi
    fi
    archive "$t" "$WORK/xg2g-$t"
    SUMMARY+=("$t $status, $stripped bytes stripped ($(mib "$stripped") MiB), $ARCHIVE")
done
# One checksum file for every archive there, checked at once (a broken archive fails).
(cd "$DIST" && sha256sum -- xg2g-*.tar.gz >SHA256SUMS && sha256sum --quiet -c SHA256SUMS) ||
    die "checksums of $DIST do not verify"
say "release archives and SHA256SUMS in $DIST"

say "took ${SECONDS} s"
trap - ERR
if ((${#FAILED[@]})); then
    printf 'cross: FAILED: %s\n' "$(printf '%s | ' "${FAILED[@]}" | sed 's/ | $//')" >&2
    exit 1
fi
printf 'cross: %s\n' "$(printf '%s; ' "${SUMMARY[@]}" | sed 's/; $//')"
