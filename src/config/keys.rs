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
    /// The field the loader sets; private so the list stays the only way to name one.
    pub(super) field: Field,
}

impl KeyInfo {
    /// True for passwords and tokens, which are never printed or echoed in errors.
    pub fn is_secret(&self) -> bool {
        matches!(self.field, Field::OwiPass | Field::ApiToken)
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
        field,
    }
}

/// Every setting, in `Settings` field order.
pub(super) static KEYS: [KeyInfo; 38] = [
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
        "Bearer token for /api/v1/refresh (never printed); unset = that endpoint is refused.",
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
        "Time the receiver has to connect and send the first stream bytes, and longest silence of a running stream, 1s to 10m.",
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
        "XG2G_LOG_LEVEL",
        "log_level",
        "info",
        "Log level when RUST_LOG is unset: error, warn, info, debug or trace.",
        Field::LogLevel,
    ),
];
