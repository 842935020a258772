//! The one list of settings: environment name, file key, default and help for each.
//!
//! Rules: the order is the order of [`super::Settings`]' fields (and of `describe()`);
//! the loader, the unknown-key check and the README table all read this list, so a
//! setting exists exactly when it is listed here.

/// One setting as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The environment variable, e.g. `XG2G_EPG_DAYS` (the Go xg2g's name).
    pub env: &'static str,
    /// The TOML file key: `env` without `XG2G_`, lower case, e.g. `epg_days`.
    pub file_key: &'static str,
    /// The default as a user would write it; empty when the setting is unset by default.
    pub default: &'static str,
    /// One sentence for the README table: what it does and what values are allowed.
    pub help: &'static str,
    /// Other environment names read when `env` is unset (the Go xg2g's older spellings).
    pub aliases: &'static [&'static str],
    /// The field the loader sets; private so the list stays the only way to name one.
    pub(super) field: Field,
}

impl KeyInfo {
    /// True for passwords and tokens, which are never printed or echoed in errors.
    pub fn is_secret(&self) -> bool {
        matches!(
            self.field,
            Field::OwiPass | Field::ApiToken | Field::StreamToken
        )
    }

    /// True for settings that shape the written playlist and guide: a reload that
    /// changes one starts a refresh so the files follow.
    pub fn changes_output(&self) -> bool {
        matches!(
            self.field,
            Field::OwiBase
                | Field::OwiUser
                | Field::OwiPass
                | Field::Bouquet
                | Field::StreamPort
                | Field::EpgEnabled
                | Field::EpgDays
                | Field::EpgSource
                | Field::XTvgUrl
                | Field::PublicUrl
                | Field::UseProxyUrls
                | Field::StreamToken
                | Field::RelayPort
                | Field::DefaultProfile
        )
    }

    /// True for settings a running daemon cannot take over on reload: listeners and
    /// their limits, the data folder, the picon cache, breakers and the log filter are
    /// built once at start.
    pub fn needs_restart(&self) -> bool {
        matches!(
            self.field,
            Field::Data
                | Field::Listen
                | Field::MetricsListen
                | Field::PiconBase
                | Field::HttpMaxConnections
                | Field::HttpHeaderTimeout
                | Field::HttpIdleTimeout
                | Field::HttpWriteTimeout
                | Field::HttpMaxHeaderBytes
                | Field::PiconCacheMaxBytes
                | Field::CircuitBreakerEnabled
                | Field::CircuitBreakerFailureThreshold
                | Field::CircuitBreakerTimeout
                | Field::HdhrEnabled
                | Field::HdhrDeviceId
                | Field::HdhrDiscoveryPort
                | Field::SsdpEnabled
                | Field::SsdpPort
                | Field::SsdpListen
                | Field::SsdpInterface
                | Field::TranscodeEncoders
                | Field::GpuQueueSize
                | Field::GpuQueueWorkers
                | Field::TranscodeCpuSlots
                | Field::GpuQueueMaxWait
                | Field::GpuLoadInterval
                | Field::LogLevel
        )
    }
}

/// Which `Settings` field a key sets (one variant per key, in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    OwiBase,
    OwiUser,
    OwiPass,
    Bouquet,
    StreamPort,
    Data,
    Listen,
    MetricsListen,
    EpgEnabled,
    EpgDays,
    EpgSource,
    EpgMaxConcurrency,
    OwiTimeoutMs,
    OwiRetries,
    OwiMaxBodyBytes,
    XTvgUrl,
    PiconBase,
    PublicUrl,
    UseProxyUrls,
    RefreshInterval,
    InitialRefresh,
    ApiToken,
    HttpMaxConnections,
    HttpHeaderTimeout,
    HttpIdleTimeout,
    HttpWriteTimeout,
    HttpMaxHeaderBytes,
    RelayPort,
    SmartStreamDetection,
    MaxStreams,
    StreamClientBuffer,
    StreamLinger,
    StreamTimeout,
    PiconCacheMaxBytes,
    CircuitBreakerEnabled,
    CircuitBreakerFailureThreshold,
    CircuitBreakerTimeout,
    OwiCacheTtl,
    OwiRateLimit,
    StreamToken,
    RatelimitEnabled,
    RatelimitRps,
    RatelimitBurst,
    RatelimitGlobalRps,
    RatelimitGlobalBurst,
    RatelimitFilesRps,
    RatelimitFilesBurst,
    RatelimitStreamRps,
    RatelimitStreamBurst,
    RatelimitApiRps,
    RatelimitApiBurst,
    RatelimitWhitelist,
    RatelimitMaxClients,
    TrustedProxies,
    ConfigWatchInterval,
    HdhrEnabled,
    HdhrDeviceId,
    HdhrFriendlyName,
    HdhrModel,
    HdhrFirmware,
    HdhrTunerCount,
    HdhrBaseUrl,
    HdhrDiscoveryPort,
    SsdpEnabled,
    SsdpPort,
    SsdpListen,
    SsdpInterface,
    FfmpegPath,
    DefaultProfile,
    TranscodeProfiles,
    TranscodeEncoders,
    GpuQueueSize,
    GpuQueueWorkers,
    TranscodeCpuSlots,
    GpuQueueMaxWait,
    GpuMaxLoad,
    GpuLoadInterval,
    TranscodeMaxRestarts,
    HlsMaxSessions,
    HlsIdleTimeout,
    HlsSegmentSeconds,
    HlsListSize,
    LogLevel,
}

/// Shorthand for the table below.
const fn key(
    env: &'static str,
    file_key: &'static str,
    default: &'static str,
    help: &'static str,
    field: Field,
) -> KeyInfo {
    KeyInfo {
        env,
        file_key,
        default,
        help,
        aliases: &[],
        field,
    }
}

impl KeyInfo {
    /// The same key, also read from the older environment names `aliases`.
    const fn also(self, aliases: &'static [&'static str]) -> KeyInfo {
        KeyInfo { aliases, ..self }
    }
}

/// Every setting, in `Settings` field order.
pub(super) static KEYS: [KeyInfo; 83] = [
    key(
        "XG2G_OWI_BASE",
        "owi_base",
        "",
        "Required. The receiver's web interface, http://host[:port][/prefix] (plain HTTP only).",
        Field::OwiBase,
    ),
    key(
        "XG2G_OWI_USER",
        "owi_user",
        "",
        "HTTP Basic user for the receiver's web interface.",
        Field::OwiUser,
    ),
    key(
        "XG2G_OWI_PASS",
        "owi_pass",
        "",
        "HTTP Basic password for the receiver (never printed).",
        Field::OwiPass,
    ),
    key(
        "XG2G_BOUQUET",
        "bouquet",
        "",
        "Bouquet names (any case) or refs, comma-separated; quote a name that contains a comma (\"A, B\"); in the file also an array; empty = all bouquets.",
        Field::Bouquet,
    ),
    key(
        "XG2G_STREAM_PORT",
        "stream_port",
        "8001",
        "The receiver's streaming port, 1 to 65535.",
        Field::StreamPort,
    ),
    key(
        "XG2G_DATA",
        "data",
        "./data",
        "Folder where playlist and guide are written.",
        Field::Data,
    ),
    key(
        "XG2G_LISTEN",
        "listen",
        ":8080",
        "HTTP listen address: :8080 (all IPv4 interfaces), 127.0.0.1:8080, [::]:8080 or localhost:8080.",
        Field::Listen,
    ),
    key(
        "XG2G_METRICS_LISTEN",
        "metrics_listen",
        "",
        "Separate listen address for /metrics, same forms as XG2G_LISTEN; empty = on the main listener.",
        Field::MetricsListen,
    ),
    key(
        "XG2G_EPG_ENABLED",
        "epg_enabled",
        "true",
        "Fetch the EPG and write the XMLTV guide (true/false).",
        Field::EpgEnabled,
    ),
    key(
        "XG2G_EPG_DAYS",
        "epg_days",
        "7",
        "Days of EPG to fetch, 1 to 14.",
        Field::EpgDays,
    ),
    key(
        "XG2G_EPG_SOURCE",
        "epg_source",
        "bouquet",
        "bouquet (one request per bouquet) or per-service (one request per channel).",
        Field::EpgSource,
    ),
    key(
        "XG2G_EPG_MAX_CONCURRENCY",
        "epg_max_concurrency",
        "4",
        "Parallel per-service EPG requests, 1 to 16.",
        Field::EpgMaxConcurrency,
    ),
    key(
        "XG2G_OWI_TIMEOUT_MS",
        "owi_timeout_ms",
        "10000",
        "Timeout of one receiver request in milliseconds, 100 to 600000.",
        Field::OwiTimeoutMs,
    ),
    key(
        "XG2G_OWI_RETRIES",
        "owi_retries",
        "2",
        "Extra attempts after a failed receiver request, 0 to 10.",
        Field::OwiRetries,
    ),
    key(
        "XG2G_OWI_MAX_BODY_BYTES",
        "owi_max_body_bytes",
        "256MiB",
        "Largest receiver answer accepted (decoded), 64KiB to 4GiB; bytes or KiB/MiB/GiB.",
        Field::OwiMaxBodyBytes,
    ),
    key(
        "XG2G_X_TVG_URL",
        "x_tvg_url",
        "",
        "Guide URL written into the playlist header; empty = this daemon's own guide.",
        Field::XTvgUrl,
    ),
    key(
        "XG2G_PICON_BASE",
        "picon_base",
        "",
        "Where channel logos are fetched from (this daemon caches them and serves /picon/<name>.png); empty = <owi_base>/picon.",
        Field::PiconBase,
    ),
    key(
        "XG2G_PUBLIC_URL",
        "public_url",
        "",
        "How clients reach this daemon, http(s)://host:port; used in playlist and guide links.",
        Field::PublicUrl,
    ),
    key(
        "XG2G_USE_PROXY_URLS",
        "use_proxy_urls",
        "true",
        "Playlist points at /stream/<ref> on this daemon (true) or straight at the receiver (false).",
        Field::UseProxyUrls,
    ),
    key(
        "XG2G_REFRESH_INTERVAL",
        "refresh_interval",
        "6h",
        "Time between refreshes, 1m to 7d (e.g. 30m, 6h, 1h30m, 1d).",
        Field::RefreshInterval,
    ),
    key(
        "XG2G_INITIAL_REFRESH",
        "initial_refresh",
        "true",
        "Refresh once at start (true/false).",
        Field::InitialRefresh,
    ),
    key(
        "XG2G_API_TOKEN",
        "api_token",
        "",
        "Token for /api/v1/refresh and /api/v1/config/reload, as Authorization: Bearer or X-API-Token (never printed); unset = those endpoints are refused.",
        Field::ApiToken,
    ),
    key(
        "XG2G_HTTP_MAX_CONNECTIONS",
        "http_max_connections",
        "256",
        "Open client connections at most, 1 to 65536; at the cap the longest-idle one is closed to make room.",
        Field::HttpMaxConnections,
    ),
    key(
        "XG2G_HTTP_HEADER_TIMEOUT",
        "http_header_timeout",
        "10s",
        "Time a client has to send a whole request head, 1s to 1h.",
        Field::HttpHeaderTimeout,
    ),
    key(
        "XG2G_HTTP_IDLE_TIMEOUT",
        "http_idle_timeout",
        "60s",
        "Keep-alive idle time between requests, 1s to 1h.",
        Field::HttpIdleTimeout,
    ),
    key(
        "XG2G_HTTP_WRITE_TIMEOUT",
        "http_write_timeout",
        "30s",
        "A client that accepts no bytes this long is dropped, 1s to 1h.",
        Field::HttpWriteTimeout,
    ),
    key(
        "XG2G_HTTP_MAX_HEADER_BYTES",
        "http_max_header_bytes",
        "8192",
        "Request head size limit in bytes, 1024 to 65536.",
        Field::HttpMaxHeaderBytes,
    ),
    key(
        "XG2G_RELAY_PORT",
        "relay_port",
        "17999",
        "The receiver's stream-relay port for channels in its whitelist_streamrelay, 1 to 65535.",
        Field::RelayPort,
    ),
    key(
        "XG2G_SMART_STREAM_DETECTION",
        "smart_stream_detection",
        "true",
        "When opening a stream fails on one receiver port, try the other and remember what worked (true/false).",
        Field::SmartStreamDetection,
    ),
    key(
        "XG2G_MAX_STREAMS",
        "max_streams",
        "",
        "Distinct channels streamed at once, 1 to 64; unset = the receiver's tuner count (4 until it answers).",
        Field::MaxStreams,
    ),
    key(
        "XG2G_STREAM_CLIENT_BUFFER",
        "stream_client_buffer",
        "2MiB",
        "How far a stream client may fall behind before it is dropped, 64KiB to 256MiB (one buffer per channel, shared by its clients).",
        Field::StreamClientBuffer,
    ),
    key(
        "XG2G_STREAM_LINGER",
        "stream_linger",
        "5s",
        "How long a channel stays tuned after its last client left, 0s to 10m.",
        Field::StreamLinger,
    ),
    key(
        "XG2G_STREAM_TIMEOUT",
        "stream_timeout",
        "10s",
        "Time the receiver has to connect and send the first stream bytes, longest silence of a running stream, and longest a lone client may hold its upstream unread, 1s to 10m.",
        Field::StreamTimeout,
    ),
    key(
        "XG2G_PICON_CACHE_MAX_BYTES",
        "picon_cache_max_bytes",
        "16MiB",
        "Disk space for cached channel logos under XG2G_DATA/picons, 1MiB to 4GiB; the least recently used go first.",
        Field::PiconCacheMaxBytes,
    ),
    key(
        "XG2G_CIRCUIT_BREAKER_ENABLED",
        "circuit_breaker_enabled",
        "true",
        "Stop contacting a receiver port after repeated failures, until a probe succeeds (true/false).",
        Field::CircuitBreakerEnabled,
    ),
    key(
        "XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD",
        "circuit_breaker_failure_threshold",
        "5",
        "Consecutive failures that open a breaker, 1 to 1000.",
        Field::CircuitBreakerFailureThreshold,
    ),
    key(
        "XG2G_CIRCUIT_BREAKER_TIMEOUT",
        "circuit_breaker_timeout",
        "30s",
        "How long an open breaker refuses before it lets one probe through, 1s to 1h.",
        Field::CircuitBreakerTimeout,
    ),
    key(
        "XG2G_OWI_CACHE_TTL",
        "owi_cache_ttl",
        "5m",
        "How long the receiver's bouquet and channel lists are reused, 0s (off) to 1d; the EPG is never cached.",
        Field::OwiCacheTtl,
    ),
    key(
        "XG2G_OWI_RATE_LIMIT",
        "owi_rate_limit",
        "10",
        "Receiver requests per second at most (a refresh waits rather than flood the box), 1 to 1000.",
        Field::OwiRateLimit,
    ),
    key(
        "XG2G_STREAM_TOKEN",
        "stream_token",
        "",
        "When set, playlist, guide, stream and picon URLs need ?token=<this>; the playlist writes it into its links (never printed).",
        Field::StreamToken,
    ),
    key(
        "XG2G_RATELIMIT_ENABLED",
        "ratelimit_enabled",
        "true",
        "Limit HTTP requests per client and overall (true/false); also read as XG2G_RATE_LIMIT_ENABLED.",
        Field::RatelimitEnabled,
    )
    .also(&["XG2G_RATE_LIMIT_ENABLED"]),
    key(
        "XG2G_RATELIMIT_RPS",
        "ratelimit_rps",
        "10",
        "Requests per second per client and route class, 1 to 1000000; also read as XG2G_RATE_LIMIT_PER_IP_RATE.",
        Field::RatelimitRps,
    )
    .also(&["XG2G_RATE_LIMIT_PER_IP_RATE"]),
    key(
        "XG2G_RATELIMIT_BURST",
        "ratelimit_burst",
        "20",
        "Requests per client and route class allowed at once before the rate applies, 1 to 1000000.",
        Field::RatelimitBurst,
    ),
    key(
        "XG2G_RATELIMIT_GLOBAL_RPS",
        "ratelimit_global_rps",
        "100",
        "Requests per second from all clients together, 1 to 1000000; also read as XG2G_RATE_LIMIT_GLOBAL_RATE.",
        Field::RatelimitGlobalRps,
    )
    .also(&["XG2G_RATE_LIMIT_GLOBAL_RATE"]),
    key(
        "XG2G_RATELIMIT_GLOBAL_BURST",
        "ratelimit_global_burst",
        "200",
        "Requests from all clients together allowed at once, 1 to 1000000.",
        Field::RatelimitGlobalBurst,
    ),
    key(
        "XG2G_RATELIMIT_FILES_RPS",
        "ratelimit_files_rps",
        "",
        "Per-client rate for playlist, guide and picons, 1 to 1000000; unset = XG2G_RATELIMIT_RPS.",
        Field::RatelimitFilesRps,
    ),
    key(
        "XG2G_RATELIMIT_FILES_BURST",
        "ratelimit_files_burst",
        "",
        "Per-client burst for playlist, guide and picons; unset = XG2G_RATELIMIT_BURST.",
        Field::RatelimitFilesBurst,
    ),
    key(
        "XG2G_RATELIMIT_STREAM_RPS",
        "ratelimit_stream_rps",
        "",
        "Per-client rate for opening streams, 1 to 1000000; unset = XG2G_RATELIMIT_RPS.",
        Field::RatelimitStreamRps,
    ),
    key(
        "XG2G_RATELIMIT_STREAM_BURST",
        "ratelimit_stream_burst",
        "",
        "Per-client burst for opening streams; unset = XG2G_RATELIMIT_BURST.",
        Field::RatelimitStreamBurst,
    ),
    key(
        "XG2G_RATELIMIT_API_RPS",
        "ratelimit_api_rps",
        "",
        "Per-client rate for /api/*, 1 to 1000000; unset = XG2G_RATELIMIT_RPS.",
        Field::RatelimitApiRps,
    ),
    key(
        "XG2G_RATELIMIT_API_BURST",
        "ratelimit_api_burst",
        "",
        "Per-client burst for /api/*; unset = XG2G_RATELIMIT_BURST.",
        Field::RatelimitApiBurst,
    ),
    key(
        "XG2G_RATELIMIT_WHITELIST",
        "ratelimit_whitelist",
        "",
        "Clients never limited: addresses or networks, comma-separated (192.168.1.5, 10.0.0.0/8, fd00::/8).",
        Field::RatelimitWhitelist,
    ),
    key(
        "XG2G_RATELIMIT_MAX_CLIENTS",
        "ratelimit_max_clients",
        "4096",
        "Clients tracked at most, 16 to 1000000; beyond that new clients share one budget, so memory stays bounded.",
        Field::RatelimitMaxClients,
    ),
    key(
        "XG2G_TRUSTED_PROXIES",
        "trusted_proxies",
        "",
        "Reverse proxies whose X-Forwarded-For names the client: addresses or networks, comma-separated; empty = the header is ignored.",
        Field::TrustedProxies,
    ),
    key(
        "XG2G_CONFIG_WATCH_INTERVAL",
        "config_watch_interval",
        "5s",
        "How often the settings file (--config) is checked; a change is reloaded. 0s (off) to 1h.",
        Field::ConfigWatchInterval,
    ),
    key(
        "XG2G_HDHR_ENABLED",
        "hdhr_enabled",
        "true",
        "HDHomeRun emulation for Plex, Jellyfin, Emby and Channels: /discover.json, /lineup.json, /device.xml, SSDP and UDP discovery (true/false).",
        Field::HdhrEnabled,
    ),
    key(
        "XG2G_HDHR_DEVICE_ID",
        "hdhr_device_id",
        "",
        "The tuner's DeviceID: 8 hex digits passing the HDHomeRun checksum; unset = one made once and kept in XG2G_DATA/hdhr-device-id.",
        Field::HdhrDeviceId,
    ),
    key(
        "XG2G_HDHR_FRIENDLY_NAME",
        "hdhr_friendly_name",
        "xg2g",
        "The tuner's name in Plex and Jellyfin, 1 to 64 characters.",
        Field::HdhrFriendlyName,
    ),
    key(
        "XG2G_HDHR_MODEL",
        "hdhr_model",
        "HDTC-2US",
        "The ModelNumber reported, 1 to 64 characters.",
        Field::HdhrModel,
    )
    .also(&["XG2G_HDHR_MODEL_NUMBER"]),
    key(
        "XG2G_HDHR_FIRMWARE",
        "hdhr_firmware",
        "hdhomeruntc_atsc",
        "The FirmwareName reported, 1 to 64 characters.",
        Field::HdhrFirmware,
    ),
    key(
        "XG2G_HDHR_TUNER_COUNT",
        "hdhr_tuner_count",
        "",
        "TunerCount reported, 1 to 64; unset = the stream tuner limit (XG2G_MAX_STREAMS or the receiver's tuners).",
        Field::HdhrTunerCount,
    ),
    key(
        "XG2G_HDHR_BASE_URL",
        "hdhr_base_url",
        "",
        "Base URL HDHomeRun clients are given; unset = XG2G_PUBLIC_URL, else the address the request came to.",
        Field::HdhrBaseUrl,
    ),
    key(
        "XG2G_HDHR_DISCOVERY_PORT",
        "hdhr_discovery_port",
        "65001",
        "UDP port of the SiliconDust discovery protocol, 0 (off) to 65535; in use = logged, not fatal.",
        Field::HdhrDiscoveryPort,
    ),
    key(
        "XG2G_SSDP_ENABLED",
        "ssdp_enabled",
        "true",
        "Announce the tuner by SSDP (UPnP) and answer M-SEARCH (true/false).",
        Field::SsdpEnabled,
    ),
    key(
        "XG2G_SSDP_PORT",
        "ssdp_port",
        "1900",
        "SSDP UDP port, 1 to 65535; in use = logged, not fatal.",
        Field::SsdpPort,
    ),
    key(
        "XG2G_SSDP_LISTEN",
        "ssdp_listen",
        "0.0.0.0",
        "IPv4 address the SSDP socket binds to (0.0.0.0 receives multicast on every interface).",
        Field::SsdpListen,
    ),
    key(
        "XG2G_SSDP_INTERFACE",
        "ssdp_interface",
        "",
        "IPv4 address of the interface that joins 239.255.255.250 and sends NOTIFY; unset = the system's default multicast interface.",
        Field::SsdpInterface,
    ),
    key(
        "XG2G_FFMPEG_PATH",
        "ffmpeg_path",
        "ffmpeg",
        "The ffmpeg program transcodes run (a name looked up in PATH, or a path).",
        Field::FfmpegPath,
    )
    .also(&["XG2G_FFMPEG_BIN"]),
    key(
        "XG2G_DEFAULT_PROFILE",
        "default_profile",
        "copy",
        "The transcode profile the playlist's stream links ask for: copy (no transcode), aac, h264, or a name from XG2G_TRANSCODE_PROFILES.",
        Field::DefaultProfile,
    ),
    key(
        "XG2G_TRANSCODE_PROFILES",
        "transcode_profiles",
        "",
        "User profiles, e.g. mobile:video=h264,height=480,bitrate=1200k;radio:audio=aac (see Transcoding); a name of a built-in replaces it, except copy.",
        Field::TranscodeProfiles,
    ),
    key(
        "XG2G_TRANSCODE_ENCODERS",
        "transcode_encoders",
        "",
        "Encoders to use instead of probing, e.g. vaapi:/dev/dri/renderD128=4,v4l2m2m:/dev/video11=1,software=2 (backend[:path][=sessions]); unset = probe /dev at start.",
        Field::TranscodeEncoders,
    ),
    key(
        "XG2G_GPU_QUEUE_SIZE",
        "gpu_queue_size",
        "100",
        "Transcode requests that may wait for an encoder slot, 0 to 10000; beyond that 503 E024.",
        Field::GpuQueueSize,
    ),
    key(
        "XG2G_GPU_QUEUE_WORKERS",
        "gpu_queue_workers",
        "",
        "Concurrent sessions of each hardware encoder, 1 to 64; unset = 4 per VAAPI GPU, 1 per V4L2 M2M encoder.",
        Field::GpuQueueWorkers,
    ),
    key(
        "XG2G_TRANSCODE_CPU_SLOTS",
        "transcode_cpu_slots",
        "",
        "Concurrent software (CPU) transcodes, 0 (none) to 64; unset = half the CPU cores, at least 1.",
        Field::TranscodeCpuSlots,
    ),
    key(
        "XG2G_GPU_QUEUE_MAX_WAIT",
        "gpu_queue_max_wait",
        "30s",
        "Longest a transcode request waits for an encoder slot, 1s to 10m; then 503 E025.",
        Field::GpuQueueMaxWait,
    ),
    key(
        "XG2G_GPU_MAX_LOAD",
        "gpu_max_load",
        "85",
        "Load percent (from sysfs) above which a hardware encoder takes no new sessions, 1 to 100.",
        Field::GpuMaxLoad,
    ),
    key(
        "XG2G_GPU_LOAD_INTERVAL",
        "gpu_load_interval",
        "2s",
        "How often encoder load is read from sysfs/debugfs, 0s (off) to 1m.",
        Field::GpuLoadInterval,
    ),
    key(
        "XG2G_TRANSCODE_MAX_RESTARTS",
        "transcode_max_restarts",
        "3",
        "Times a crashed ffmpeg of a watched stream is restarted before its clients are ended, 0 to 20.",
        Field::TranscodeMaxRestarts,
    ),
    key(
        "XG2G_HLS_MAX_SESSIONS",
        "hls_max_sessions",
        "4",
        "HLS sessions (channel and profile) at once, 1 to 64; beyond that 503 E028.",
        Field::HlsMaxSessions,
    ),
    key(
        "XG2G_HLS_IDLE_TIMEOUT",
        "hls_idle_timeout",
        "30s",
        "An HLS session nobody fetched anything of for this long ends and its folder is removed, 5s to 1h.",
        Field::HlsIdleTimeout,
    ),
    key(
        "XG2G_HLS_SEGMENT_SECONDS",
        "hls_segment_seconds",
        "2",
        "Target HLS segment length in seconds, 1 to 10 (segments start at keyframes, so they can be longer).",
        Field::HlsSegmentSeconds,
    ),
    key(
        "XG2G_HLS_LIST_SIZE",
        "hls_list_size",
        "6",
        "Segments in an HLS playlist, 3 to 30; one more is kept on disk, older ones are deleted.",
        Field::HlsListSize,
    ),
    key(
        "XG2G_LOG_LEVEL",
        "log_level",
        "info",
        "Log level when RUST_LOG is unset: error, warn, info, debug or trace.",
        Field::LogLevel,
    ),
];
