#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh Debian machine,
# then runs formatting and lint checks, every test, the ARM smoke builds, the packaging
# checks, the systemd unit under a real systemd and the container image.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v xmllint >/dev/null || need+=(libxml2-utils)
command -v tv_validate_file >/dev/null || need+=(xmltv-util)
command -v promtool >/dev/null || need+=(prometheus)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v gzip >/dev/null || need+=(gzip)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v hdhomerun_config >/dev/null || need+=(hdhomerun-config)
# The encoder-probe features: libva-sys finds libva through pkg-config (and links it),
# v4l2r's bindgen loads libclang at build time.
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists libva-drm 2>/dev/null || need+=(libva-dev)
ldconfig -p | grep 'libclang-[0-9.]*\.so' >/dev/null || need+=(libclang1-14)
scripts/apt-install.sh test.sh "${need[@]}"

echo "== format and lint"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
shellcheck scripts/*.sh cross/*.sh benches/*.sh .ci/run deploy/*.sh deploy/enigma2/*.sh deploy/enigma2/xg2g.init openwrt/files/xg2g.init

echo "== tests"
cargo test --locked
scripts/check-monitoring.sh target/debug/xg2g

echo "== encoder probes: lint and test with features vaapi,v4l2 (host only)"
cargo clippy --all-targets --locked --features vaapi,v4l2 -- -D warnings
cargo test --locked --features vaapi,v4l2 --lib hw::

echo "== aarch64 and armv7 builds and smoke tests (Rust 1.85, qemu: version, check-config, the demo serving)"
cross/build.sh all --smoke
scripts/check-packaging.sh target/cross/aarch64-unknown-linux-gnu/release/xg2g

echo "== systemd unit under a real systemd (container)"
scripts/check-systemd-live.sh target/debug/xg2g

echo "== container image built and run (local base images, docker.io)"
deploy/check-container.sh
