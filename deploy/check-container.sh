#!/usr/bin/env bash
# Builds deploy/Dockerfile for real and checks the image by running it: on a Debian 12
# machine as root, without Docker Hub. Installs what is missing (docker.io, debootstrap,
# curl, docker-compose, iproute2), starts dockerd if none answers (and stops it again at
# the end), makes the two base images the Dockerfile names when they are not there
# (debian:bookworm-slim from a debootstrap, rust:1.85-bookworm as that image plus
# Debian's Rust 1.85), builds the image twice (default and VA_DRIVERS=) and runs it
# against the simulated receiver (`xg2g sim`, run from the image itself, so the host
# needs no Rust). One PASS/FAIL line per check; exit 1 if any failed.
#
#   deploy/check-container.sh
#
# Environment: XG2G_DOCKER_WORK (work folder, default /tmp/xg2g-docker),
# XG2G_CHECK_REBUILD_BASE=1 (remake the base images even if present),
# XG2G_BUILD_NETWORK=host (docker build --network, when dockerd runs without a bridge),
# DOCKER (client; default Debian's /usr/bin/docker, which does BuildKit builds without the
# buildx plugin).
set -euo pipefail

START=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd -P)
WORK=${XG2G_DOCKER_WORK:-/tmp/xg2g-docker}
RUN_DIR="$WORK/run"
IMAGE=xg2g:check
IMAGE_NOVA=xg2g:check-nova
NAME=xg2g-check
SIM=xg2g-check-sim
BRIDGED=xg2g-check-bridge
VOLUME=xg2g-check-data
RUST_DEB=1.85.0+dfsg3-1~deb12u3
export DOCKER_BUILDKIT=1

PASSES=0
FAILS=0
STARTED_DOCKERD=""
BG_PIDS=()

say() { printf '%s\n' "check-container: $*"; }
pass() { PASSES=$((PASSES + 1)); printf 'PASS %s\n' "$*"; }
fail() { FAILS=$((FAILS + 1)); printf 'FAIL %s\n' "$*"; }
check() { # check "description" command...: PASS or FAIL by the command's status
	local what="$1"
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
	local rc=$?
	set +e
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	if [ -n "${DOCKER:-}" ] && "$DOCKER" info >/dev/null 2>&1; then
		"$DOCKER" rm -fv "$NAME" "$SIM" "$BRIDGED" >/dev/null 2>&1
		"$DOCKER" volume rm -f "$VOLUME" >/dev/null 2>&1
	fi
	if [ -n "$STARTED_DOCKERD" ]; then
		say "stopping the dockerd this script started (pid $STARTED_DOCKERD)"
		kill "$STARTED_DOCKERD" 2>/dev/null
		for _ in $(seq 60); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.5; done
	fi
	say "$PASSES passed, $FAILS failed, $(($(date +%s) - START)) s in all"
	if [ "$rc" -eq 0 ] && [ "$FAILS" -gt 0 ]; then rc=1; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || { echo "check-container: run as root" >&2; exit 2; }
mkdir -p "$WORK"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
chmod 755 "$WORK" "$RUN_DIR"

# ---- tools -------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /usr/bin/docker ] || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
command -v ss >/dev/null || missing+=(iproute2)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi
"$REPO/scripts/apt-install.sh" check-container.sh "${missing[@]}"
DOCKER=${DOCKER:-/usr/bin/docker}

# ---- dockerd -----------------------------------------------------------------------
if ! "$DOCKER" info >/dev/null 2>&1; then
	say "no Docker daemon answers: starting dockerd (log $WORK/dockerd.log)"
	dockerd >"$WORK/dockerd.log" 2>&1 &
	STARTED_DOCKERD=$!
	for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
	"$DOCKER" info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; echo "check-container: dockerd did not come up" >&2; exit 1; }
fi
say "Docker $("$DOCKER" version -f '{{.Server.Version}}'), storage $("$DOCKER" info -f '{{.Driver}}')"

# ---- base images -------------------------------------------------------------------
have_image() { [ -z "${XG2G_CHECK_REBUILD_BASE:-}" ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if ! have_image debian:bookworm-slim; then
	t=$(now)
	say "making debian:bookworm-slim from a debootstrap (minbase) of bookworm"
	R="$WORK/rootfs"
	rm -rf "$R"
	debootstrap --variant=minbase bookworm "$R" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
		{ tail -20 "$WORK/debootstrap.log"; exit 1; }
	# What the official slim image has: no docs/man/locales, apt cleaning up after itself,
	# the updates and security suites.
	cat >"$R/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/lintian/overrides/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
		path-exclude /usr/share/man/*
	EOF
	clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
	printf 'DPkg::Post-Invoke { "%s"; };\nAPT::Update::Post-Invoke { "%s"; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
		"$clean" "$clean" >"$R/etc/apt/apt.conf.d/docker-clean"
	echo 'Acquire::Languages "none";' >"$R/etc/apt/apt.conf.d/docker-no-languages"
	echo 'Acquire::GzipIndexes "true";' >"$R/etc/apt/apt.conf.d/docker-gzip-indexes"
	echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$R/etc/apt/apt.conf.d/docker-autoremove-suggests"
	rm -f "$R/etc/apt/sources.list"
	cat >"$R/etc/apt/sources.list.d/debian.sources" <<-'EOF'
		Types: deb
		URIs: http://deb.debian.org/debian
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: http://deb.debian.org/debian-security
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	find "$R/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/groff/* "$R"/usr/share/lintian/overrides/*
	find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
	rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* "$R"/var/log/apt/* "$R"/tmp/*
	: >"$R/etc/resolv.conf"
	tar --numeric-owner -C "$R" -c . | "$DOCKER" import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'LABEL org.xg2g.local-standin=debootstrap' \
		--change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
	rm -rf "$R"
	say "debian:bookworm-slim made in $(since "$t") s"
fi

if ! have_image rust:1.85-bookworm; then
	t=$(now)
	say "making rust:1.85-bookworm: debian:bookworm-slim + Debian's rustc-web/cargo-web $RUST_DEB"
	D="$WORK/rust"
	rm -rf "$D"
	mkdir -p "$D/extra-ca"
	# The host's extra CAs (e.g. a TLS-intercepting egress proxy), so cargo in the build
	# stage reaches crates.io the way the host does; none on a plain machine.
	cp /usr/local/share/ca-certificates/*.crt "$D/extra-ca/" 2>/dev/null || true
	cat >"$D/Dockerfile" <<-EOF
		FROM debian:bookworm-slim
		RUN apt-get update \\
		 && apt-get install -y --no-install-recommends rustc-web=$RUST_DEB cargo-web=$RUST_DEB \\
		        libstd-rust-web-dev=$RUST_DEB libstd-rust-web-1.85=$RUST_DEB \\
		        gcc libc6-dev pkg-config ca-certificates \\
		 && rm -rf /var/lib/apt/lists/* \\
		 && mkdir -p /usr/local/cargo/bin /usr/local/rustup \\
		 && ln -s /usr/bin/cargo /usr/bin/rustc /usr/bin/rustdoc /usr/local/cargo/bin/
		COPY extra-ca/ /usr/local/share/ca-certificates/
		RUN update-ca-certificates
		# As in the official image: cargo in /usr/local/cargo/bin, on PATH.
		ENV RUSTUP_HOME=/usr/local/rustup \\
		    CARGO_HOME=/usr/local/cargo \\
		    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
		    RUST_VERSION=1.85.0
		LABEL org.xg2g.local-standin=debian-rustc-web
		RUN cargo --version && rustc --version
	EOF
	"$DOCKER" build -q ${XG2G_BUILD_NETWORK:+--network "$XG2G_BUILD_NETWORK"} -t rust:1.85-bookworm "$D" >"$WORK/rust-build.log" 2>&1 ||
		{ tail -30 "$WORK/rust-build.log"; exit 1; }
	say "rust:1.85-bookworm made in $(since "$t") s"
fi
check "rust:1.85-bookworm has cargo on PATH ($("$DOCKER" run --rm rust:1.85-bookworm cargo --version 2>&1))" \
	"$DOCKER" run --rm rust:1.85-bookworm sh -c 'command -v cargo >/dev/null && cargo --version >/dev/null'

# ---- build -------------------------------------------------------------------------
build() { # build TAG LOG [ARGS...]
	local tag="$1" log="$2"
	shift 2
	(cd "$REPO" && "$DOCKER" build --progress=plain ${XG2G_BUILD_NETWORK:+--network "$XG2G_BUILD_NETWORK"} \
		-f deploy/Dockerfile -t "$tag" "$@" .) >"$log" 2>&1
}
mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1000000 }'; }

t=$(now)
if build "$IMAGE" "$WORK/build.log"; then
	pass "docker build -f deploy/Dockerfile (cargo build --release --locked --features vaapi) in $(since "$t") s"
else
	tail -30 "$WORK/build.log"
	fail "docker build -f deploy/Dockerfile (log $WORK/build.log)"
	exit 1
fi
check "the Dockerfile's cargo build uses --locked" grep -q 'cargo build --release --locked' "$REPO/deploy/Dockerfile"
# What the build context holds after the repository's .dockerignore: a probe Dockerfile
# outside the repository, built with the repository as its context, copies the whole
# context and lists it. target/, .git and the rest must not be there.
P="$WORK/ctx-probe"
rm -rf "$P"
mkdir -p "$P"
cat >"$P/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
COPY . /ctx
RUN cd /ctx && echo "ctx-top: $(ls -A | tr '\n' ' ')" && echo "ctx-kb: $(du -sk . | cut -f1)"
EOF
(cd "$REPO" && "$DOCKER" build --no-cache --progress=plain -f "$P/Dockerfile" -t xg2g-check-ctx .) >"$WORK/ctx-probe.log" 2>&1 || true
"$DOCKER" rmi xg2g-check-ctx >/dev/null 2>&1 || true
# (output lines are "#N SECONDS text"; the echoed RUN command line is not)
ctx_top=$(sed -nE 's/^#[0-9]+ [0-9.]+ ctx-top: (.*[^ ]) *$/\1/p' "$WORK/ctx-probe.log" | head -1 || true)
ctx_kb=$(sed -nE 's/^#[0-9]+ [0-9.]+ ctx-kb: ([0-9]+).*/\1/p' "$WORK/ctx-probe.log" | head -1 || true)
check "build context after .dockerignore: '$ctx_top', ${ctx_kb:-?} KiB" \
	test "$ctx_top" = "Cargo.lock Cargo.toml benches src"
# The legacy builder (docker-compose v1 builds with it) must be filtered too.
legacy_ctx=$( (cd "$REPO" && DOCKER_BUILDKIT=0 "$DOCKER" build -f "$P/Dockerfile" -t xg2g-check-ctx . 2>&1) |
	tr '\r' '\n' | sed -n 's/^Sending build context to Docker daemon *//p' | tail -1 | tr -d ' ' || true)
"$DOCKER" rmi xg2g-check-ctx >/dev/null 2>&1 || true
check "legacy builder: build context sent is $legacy_ctx (at most a few MB)" \
	grep -Eqx '[0-9.]+(B|kB|MB)' <<<"$legacy_ctx"
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
check "image size $(mb "$size")" test "$size" -lt 800000000
check "image user is 10001:10001" test "$("$DOCKER" image inspect -f '{{.Config.User}}' "$IMAGE")" = 10001:10001
check "container runs as uid 10001" test "$("$DOCKER" run --rm --entrypoint id "$IMAGE" -u)" = 10001
check "xg2g --version runs in the image ($("$DOCKER" run --rm "$IMAGE" --version 2>&1))" \
	sh -c "'$DOCKER' run --rm '$IMAGE' --version >/dev/null"
# shellcheck disable=SC2016 # expanded by the container's shell
check "every library of the binary resolves (libva, libva-drm)" \
	"$DOCKER" run --rm --entrypoint sh "$IMAGE" -c 'l=$(ldd /usr/local/bin/xg2g) && ! echo "$l" | grep -q "not found" && echo "$l" | grep -q libva-drm'
check "VAAPI drivers present (iHD, radeonsi)" "$DOCKER" run --rm --entrypoint sh "$IMAGE" -c \
	'test -e /usr/lib/x86_64-linux-gnu/dri/iHD_drv_video.so && test -e /usr/lib/x86_64-linux-gnu/dri/radeonsi_drv_video.so'

t=$(now)
if build "$IMAGE_NOVA" "$WORK/build-nova.log" --build-arg VA_DRIVERS=; then
	pass "docker build --build-arg VA_DRIVERS= in $(since "$t") s, image $(mb "$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE_NOVA")")"
	check "VA_DRIVERS= image has no VAAPI driver" "$DOCKER" run --rm --entrypoint sh "$IMAGE_NOVA" -c \
		'! ls /usr/lib/*/dri/*_drv_video.so >/dev/null 2>&1'
else
	tail -30 "$WORK/build-nova.log"
	fail "docker build --build-arg VA_DRIVERS= (log $WORK/build-nova.log)"
fi

# ---- run against the simulated receiver --------------------------------------------
free_port() { # the first port from $1 on that nothing listens on (TCP)
	local p="$1"
	while [ -n "$(ss -Htln "sport = :$p")" ]; do p=$((p + 1)); done
	echo "$p"
}
# The simulated receiver listens on the bridge's gateway address when there is a
# bridge, so both the host-network and the bridged container reach it; else loopback.
GW=$(ip -4 -o addr show docker0 2>/dev/null | awk '{ sub("/.*", "", $4); print $4; exit }' || true)
SIM_HOST=${GW:-127.0.0.1}
P_API=$(free_port 18781)
P_STREAM=$(free_port $((P_API + 1)))
P_RELAY=$(free_port $((P_STREAM + 1)))
P_HTTP=$(free_port $((P_RELAY + 1)))
U="http://127.0.0.1:$P_HTTP"
"$DOCKER" rm -fv "$NAME" "$SIM" "$BRIDGED" >/dev/null 2>&1 || true
"$DOCKER" volume rm -f "$VOLUME" >/dev/null 2>&1 || true

"$DOCKER" run -d --name "$SIM" --network host --entrypoint /usr/local/bin/xg2g "$IMAGE" \
	sim --listen "$SIM_HOST:$P_API" --stream-listen "$SIM_HOST:$P_STREAM" --relay-listen "$SIM_HOST:$P_RELAY" >/dev/null
for _ in $(seq 40); do curl -fs -o /dev/null --max-time 2 "http://$SIM_HOST:$P_API/api/about" && break; sleep 0.25; done
check "simulated receiver (xg2g sim from the image) answers on $SIM_HOST:$P_API" \
	curl -fs -o /dev/null --max-time 5 "http://$SIM_HOST:$P_API/api/about"

# SSDP and HDHomeRun UDP discovery off: with host networking they would announce on
# the host's LAN and could disturb other tests on this machine. Everything else default.
daemon_env=(-e "XG2G_OWI_BASE=http://$SIM_HOST:$P_API" -e "XG2G_STREAM_PORT=$P_STREAM"
	-e "XG2G_RELAY_PORT=$P_RELAY" -e XG2G_SSDP_ENABLED=false -e XG2G_HDHR_DISCOVERY_PORT=0)
t0=$(now)
"$DOCKER" run -d --name "$NAME" --network host -v "$VOLUME:/data" "${daemon_env[@]}" \
	-e "XG2G_LISTEN=127.0.0.1:$P_HTTP" "$IMAGE" >/dev/null

health=starting
for _ in $(seq 240); do
	health=$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$NAME" 2>/dev/null || echo gone)
	[ "$health" = starting ] || break
	sleep 0.5
done
check "HEALTHCHECK turns healthy (image's 30 s interval): $health after $(since "$t0") s" test "$health" = healthy
for _ in $(seq 60); do curl -fs -o /dev/null --max-time 2 "$U/readyz" && break; sleep 0.5; done

http_ok() { # http_ok PATH OUTFILE: 200 and a body
	[ "$(curl -s --max-time 20 -o "$2" -w '%{http_code}' "$U$1")" = 200 ] && [ -s "$2" ]
}
check "/readyz 200" http_ok /readyz "$RUN_DIR/readyz"
if http_ok /playlist.m3u "$RUN_DIR/playlist.m3u" && head -1 "$RUN_DIR/playlist.m3u" | grep -q '^#EXTM3U'; then
	pass "/playlist.m3u: $(grep -c '^#EXTINF' "$RUN_DIR/playlist.m3u") channels"
else
	fail "/playlist.m3u"
fi
if http_ok /xmltv.xml "$RUN_DIR/xmltv.xml" && grep -q '<tv' "$RUN_DIR/xmltv.xml" && grep -q '<programme' "$RUN_DIR/xmltv.xml"; then
	pass "/xmltv.xml: $(grep -c '<programme' "$RUN_DIR/xmltv.xml") programmes, $(mb "$(stat -c %s "$RUN_DIR/xmltv.xml")")"
else
	fail "/xmltv.xml"
fi
check "/xmltv.xml.gz is gzip" sh -c "curl -fs --max-time 20 '$U/xmltv.xml.gz' | gzip -t"
if http_ok /metrics "$RUN_DIR/metrics" && grep -q '^xg2g_refresh_duration_seconds_count [1-9]' "$RUN_DIR/metrics"; then
	pass "/metrics: $(grep -c '^xg2g_' "$RUN_DIR/metrics") xg2g_ samples, one refresh counted"
else
	fail "/metrics"
fi

ffprobe_streams() { # the codecs of a captured MPEG-TS, by the image's ffprobe
	"$DOCKER" run --rm --network none -v "$RUN_DIR:/w:ro" --entrypoint ffprobe "$IMAGE" \
		-v error -show_entries stream=codec_type,codec_name -of csv=p=0 "/w/$1" 2>/dev/null | sed '/^$/d' | sort -u | tr '\n' ' ' | sed 's/ $//'
}
REF=$(grep -m1 '/stream/' "$RUN_DIR/playlist.m3u" | sed 's#.*/stream/##' | tr -d '\r' || true)
curl -s --max-time 5 -o "$RUN_DIR/copy.ts" "$U/stream/$REF" || true
codecs=$(ffprobe_streams copy.ts || true)
check "/stream/<ref> (copy): $(stat -c %s "$RUN_DIR/copy.ts") bytes, $codecs" test -n "$codecs"
curl -s --max-time 8 -o "$RUN_DIR/aac.ts" "$U/stream/$REF?profile=aac" || true
codecs=$(ffprobe_streams aac.ts || true)
case "$codecs" in
*aac,audio* | *audio,aac*) pass "/stream/<ref>?profile=aac through the image's ffmpeg: $(stat -c %s "$RUN_DIR/aac.ts") bytes, $codecs" ;;
*) fail "/stream/<ref>?profile=aac: codecs '$codecs'" ;;
esac

check "/data holds playlist, guide and device id" "$DOCKER" exec "$NAME" sh -c \
	'test -s /data/playlist.m3u && test -s /data/xmltv.xml && test -s /data/hdhr-device-id'
# shellcheck disable=SC2016 # expanded by the container's shell
check "everything in /data belongs to uid 10001" "$DOCKER" exec "$NAME" sh -c \
	'test -z "$(find /data ! -user 10001)"'
sleep 7 # the transcode's linger (XG2G_STREAM_LINGER 5 s), then ffmpeg is killed and reaped
check "no zombie processes in the container after the transcode ended" "$DOCKER" exec "$NAME" sh -c \
	'! grep -qs "^State:[[:space:]]*Z" /proc/[0-9]*/status'

# docker stop with a viewer attached: the daemon ends the stream and exits 0 on SIGTERM.
curl -s --max-time 60 -o /dev/null "$U/stream/$REF" &
BG_PIDS+=($!)
sleep 2
t=$(now)
"$DOCKER" stop "$NAME" >/dev/null
stop_s=$(since "$t")
code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$NAME")
check "docker stop with a stream open: exit code $code in $stop_s s" \
	awk -v c="$code" -v s="$stop_s" 'BEGIN { exit !(c == 0 && s < 9) }'
check "the log shows the shutdown" sh -c "'$DOCKER' logs '$NAME' 2>&1 | grep -q 'event=shutdown'"
errors=$("$DOCKER" logs "$NAME" 2>&1 | grep -c '^\[ERROR' || true)
check "no ERROR lines in the daemon's log ($errors)" test "$errors" -eq 0

id1=$("$DOCKER" run --rm -v "$VOLUME:/data" --entrypoint cat "$IMAGE" /data/hdhr-device-id || true)
"$DOCKER" start "$NAME" >/dev/null
for _ in $(seq 40); do curl -fs -o /dev/null --max-time 2 "$U/readyz" && break; sleep 0.5; done
check "restart on the same volume: ready, same device id $id1" sh -c \
	"curl -fs -o /dev/null --max-time 5 '$U/readyz' && test \"\$('$DOCKER' exec '$NAME' cat /data/hdhr-device-id)\" = '$id1'"
"$DOCKER" rm -fv "$NAME" >/dev/null

# Docker's bridge with a published port, as docker-compose.yml runs it (the image's
# XG2G_LISTEN 0.0.0.0:8080). Health polled every 2 s here to save time.
if [ -n "$GW" ]; then
	P_PUB=$(free_port $((P_HTTP + 1)))
	"$DOCKER" run -d --name "$BRIDGED" -p "127.0.0.1:$P_PUB:8080" --health-interval 2s --health-start-period 2s \
		"${daemon_env[@]}" -e "XG2G_PUBLIC_URL=http://127.0.0.1:$P_PUB" "$IMAGE" >/dev/null
	for _ in $(seq 60); do curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$P_PUB/readyz" && break; sleep 0.5; done
	for _ in $(seq 30); do [ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$BRIDGED")" = healthy ] && break; sleep 0.5; done
	check "bridge network, -p $P_PUB:8080: playlist with links to XG2G_PUBLIC_URL" sh -c \
		"curl -fs --max-time 10 'http://127.0.0.1:$P_PUB/playlist.m3u' | grep -q '^http://127.0.0.1:$P_PUB/stream/'"
	check "bridge network: healthy" test "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$BRIDGED")" = healthy
	t=$(now)
	"$DOCKER" stop "$BRIDGED" >/dev/null
	check "bridge network: docker stop exit code $("$DOCKER" inspect -f '{{.State.ExitCode}}' "$BRIDGED") in $(since "$t") s" \
		test "$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$BRIDGED")" = 0
	# A daemon bound to one non-loopback address (host networking): the health check
	# must connect there, not to 127.0.0.1.
	"$DOCKER" rm -fv "$BRIDGED" >/dev/null
	P_ONE=$(free_port $((P_HTTP + 2)))
	"$DOCKER" run -d --name "$BRIDGED" --network host --health-interval 2s --health-start-period 2s \
		"${daemon_env[@]}" -e "XG2G_LISTEN=$GW:$P_ONE" "$IMAGE" >/dev/null
	for _ in $(seq 60); do [ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$BRIDGED")" = healthy ] && break; sleep 0.5; done
	check "XG2G_LISTEN=$GW:$P_ONE (one non-loopback address): healthy" \
		test "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$BRIDGED")" = healthy
	"$DOCKER" rm -fv "$BRIDGED" >/dev/null
else
	say "SKIP bridge-network check: dockerd has no bridge network"
fi

# ---- compose -----------------------------------------------------------------------
compose_config() { (cd "$REPO/deploy" && "$@" >/dev/null); }
check "docker-compose.yml valid (docker-compose $(docker-compose version --short 2>/dev/null))" \
	compose_config docker-compose -f docker-compose.yml config -q
check "docker-compose.yml + docker-compose.monitoring.yml valid (docker-compose)" \
	compose_config docker-compose -f docker-compose.yml -f docker-compose.monitoring.yml config -q
if "$DOCKER" compose version >/dev/null 2>&1; then
	check "docker-compose.yml + monitoring valid (docker compose v2)" \
		compose_config "$DOCKER" compose -f docker-compose.yml -f docker-compose.monitoring.yml config -q
else
	say "SKIP docker compose v2: the compose plugin is not installed (Debian 12 has only docker-compose v1)"
fi
