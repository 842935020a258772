#!/usr/bin/env bash
# deploy/enigma2/build-ipk.sh ARCH BINARY OUTDIR: packs an xg2g binary with the Enigma2
# init script and defaults into an .ipk for opkg (OpenPLi, OpenATV and other OE images).
#
# An .ipk here is what OE's opkg-build makes and every opkg reads: an `ar` archive of
# debian-binary ("2.0\n"), control.tar.gz and data.tar.gz, in that order. Only tar, gzip
# and ar (binutils) are used; the archive is reproducible (fixed owners, order, times).
#
# ARCH is opkg's architecture name, the one `opkg print-architecture` lists on the box:
#   aarch64  64-bit ARM boxes; for cross/build.sh aarch64 binaries
#   armv7    shorthand for cortexa15hf-neon-vfpv4, the arch of most 32-bit ARM 4K boxes
#            (Vu+ 4K, Zgemma H7, Octagon SF8008 ...); for cross/build.sh armv7 binaries
#   any other name is used as given (e.g. cortexa7hf-neon-vfpv4, cortexa9hf-neon).
# The binaries from cross/build.sh are glibc builds: the box's glibc must be at least the
# version printed below (opkg cannot check that).
set -euo pipefail

usage() {
    echo "usage: deploy/enigma2/build-ipk.sh ARCH BINARY OUTDIR" >&2
    exit 2
}
[[ $# -eq 3 ]] || usage
arch="$1"
binary="$2"
outdir="$3"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

die() {
    echo "build-ipk: FAILED: $*" >&2
    exit 1
}

for tool in tar gzip ar; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install binutils for ar)"
done
[[ -f "$binary" ]] || die "no binary at $binary"

case "$arch" in
armv7) arch=cortexa15hf-neon-vfpv4 ;;
*[!a-z0-9_-]* | "") die "architecture $arch: only a-z, 0-9, _ and - are allowed" ;;
esac

# ELF e_machine (2 bytes at offset 18, little-endian on these targets): refuse a binary
# for another CPU than the package claims.
machine="$(od -An -tu2 -j18 -N2 "$binary" | tr -d ' ')"
case "$arch:$machine" in
aarch64:183 | arm64:183) ;;
aarch64:* | arm64:*) die "$binary is not an aarch64 ELF binary (e_machine $machine)" ;;
cortexa* | arm* | *:40) [[ "$machine" == 40 ]] || die "$binary is not a 32-bit ARM ELF binary (e_machine $machine)" ;;
*) ;;
esac

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
[[ -n "$version" ]] || die "no version in $repo/Cargo.toml"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
data="$work/data"
ctrl="$work/control"
mkdir -p "$data/usr/bin" "$data/etc/init.d" "$data/etc/default" "$ctrl"

install -m 0755 "$binary" "$data/usr/bin/xg2g"
install -m 0755 "$here/xg2g.init" "$data/etc/init.d/xg2g"
install -m 0644 "$here/xg2g.default" "$data/etc/default/xg2g"

cat >"$ctrl/control" <<CONTROL
Package: xg2g
Version: $version
Architecture: $arch
Maintainer: xg2g developers
Section: extra
Priority: optional
License: MIT
Recommends: ffmpeg
Description: Enigma2 receiver as IPTV playlist, XMLTV guide and stream proxy
 xg2g reads this box through OpenWebIF and serves an M3U playlist, an XMLTV
 guide, an HDHomeRun-style tuner (Plex, Jellyfin, Emby) and shared MPEG-TS
 streams on port 8080. Settings: /etc/default/xg2g. ffmpeg is only needed
 for transcoding.
CONTROL

# Kept on upgrade when edited, like any conffile.
echo /etc/default/xg2g >"$ctrl/conffiles"

# $D is set when the package goes into an image being built: no service to touch then.
cat >"$ctrl/postinst" <<'SCRIPT'
#!/bin/sh
[ -n "$D" ] && exit 0
update-rc.d xg2g defaults 95 5 >/dev/null 2>&1 || echo "xg2g: update-rc.d failed; start it with /etc/init.d/xg2g start" >&2
# restart: a fresh install starts it, an upgrade replaces the running old binary.
/etc/init.d/xg2g restart
exit 0
SCRIPT

cat >"$ctrl/prerm" <<'SCRIPT'
#!/bin/sh
[ -n "$D" ] && exit 0
/etc/init.d/xg2g stop
# An upgrade keeps the boot links; the new postinst restarts the service.
[ "$1" = upgrade ] || update-rc.d -f xg2g remove >/dev/null 2>&1
exit 0
SCRIPT
chmod 0755 "$ctrl/postinst" "$ctrl/prerm"
chmod 0644 "$ctrl/control" "$ctrl/conffiles"

# Reproducible: the commit time (or 0), root owners, sorted names, no gzip timestamp.
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}"
pack() {
    tar -C "$1" --format=ustar --numeric-owner --owner=0 --group=0 --sort=name \
        --mtime="@$epoch" -cf - . | gzip -9n >"$2"
}
pack "$ctrl" "$work/control.tar.gz"
pack "$data" "$work/data.tar.gz"
printf '2.0\n' >"$work/debian-binary"

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
ipk="$outdir/xg2g_${version}_${arch}.ipk"
rm -f "$ipk"
(cd "$work" && ar rcD "$ipk.tmp" debian-binary control.tar.gz data.tar.gz) 2>/dev/null ||
    (cd "$work" && ar rc "$ipk.tmp" debian-binary control.tar.gz data.tar.gz)
mv "$ipk.tmp" "$ipk"

# The newest glibc symbol version the binary asks for, when binutils' readelf is here.
glibc=""
if command -v readelf >/dev/null; then
    glibc="$(readelf -V --wide "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' |
        sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -n 1)" || true
fi
echo "build-ipk: $ipk ($(stat -c %s "$ipk") bytes, $arch, version $version${glibc:+, needs glibc >= $glibc})"
