//! Settings: `XG2G_*` environment over an optional TOML file over defaults, validated.
//!
//! STUB: the loader is being written; the struct below is the contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where EPG events are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpgSource {
    /// One `/api/epgbouquet` call per bouquet (default; few requests).
    Bouquet,
    /// One `/api/epgservice` call per channel, `epg_max_concurrency` at a time.
    PerService,
}

/// The effective, validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `XG2G_OWI_BASE`: receiver web interface, `http://host[:port][/prefix]`, no trailing slash.
    pub owi_base: String,
    /// `XG2G_OWI_USER`: HTTP Basic user for the receiver.
    pub owi_user: Option<String>,
    /// `XG2G_OWI_PASS`: HTTP Basic password (masked when printed).
    pub owi_pass: Option<String>,
    /// `XG2G_BOUQUET`: bouquet names (case-insensitive) or refs; empty = all.
    pub bouquets: Vec<String>,
    /// `XG2G_STREAM_PORT`: receiver streaming port (8001).
    pub stream_port: u16,
    /// `XG2G_DATA`: folder for playlist and guide (`./data`).
    pub data_dir: PathBuf,
    /// `XG2G_LISTEN`: main HTTP listener (`:8080` = all interfaces).
    pub listen: SocketAddr,
    /// `XG2G_METRICS_LISTEN`: separate metrics listener; `None` = on the main one.
    pub metrics_listen: Option<SocketAddr>,
    /// `XG2G_EPG_ENABLED` (true).
    pub epg_enabled: bool,
    /// `XG2G_EPG_DAYS` (7, 1..=14).
    pub epg_days: u32,
    /// `XG2G_EPG_SOURCE` (`bouquet` | `per-service`).
    pub epg_source: EpgSource,
    /// `XG2G_EPG_MAX_CONCURRENCY` (4, 1..=16): parallel per-service EPG requests.
    pub epg_max_concurrency: usize,
    /// `XG2G_OWI_TIMEOUT_MS` (10000, 100..=600000): per receiver request.
    pub owi_timeout: Duration,
    /// `XG2G_OWI_RETRIES` (2, 0..=10): extra attempts after a failed request.
    pub owi_retries: u32,
    /// `XG2G_OWI_MAX_BODY_BYTES` (256 MiB): cap on one receiver answer (decoded).
    pub owi_max_body_bytes: u64,
    /// `XG2G_X_TVG_URL`: guide URL written into the playlist header; default = our own.
    pub x_tvg_url: Option<String>,
    /// `XG2G_PICON_BASE`: base URL for logos; default = `<owi_base>/picon`.
    pub picon_base: Option<String>,
    /// `XG2G_PUBLIC_URL`: how clients reach this daemon (`http://host:port`), no trailing slash.
    pub public_url: Option<String>,
    /// `XG2G_USE_PROXY_URLS` (true): playlist points at `/stream/<ref>` here, else at the receiver.
    pub use_proxy_urls: bool,
    /// `XG2G_REFRESH_INTERVAL` (6h, at least 1m).
    pub refresh_interval: Duration,
    /// `XG2G_INITIAL_REFRESH` (true): refresh at start.
    pub initial_refresh: bool,
    /// `XG2G_API_TOKEN`: Bearer token for `/api/v1/refresh`; unset = endpoint refused.
    pub api_token: Option<String>,
    /// `XG2G_HTTP_MAX_CONNECTIONS` (256): open client connections at most.
    pub http_max_connections: usize,
    /// `XG2G_HTTP_HEADER_TIMEOUT` (10s): time to send a whole request head.
    pub http_header_timeout: Duration,
    /// `XG2G_HTTP_IDLE_TIMEOUT` (60s): keep-alive idle time between requests.
    pub http_idle_timeout: Duration,
    /// `XG2G_HTTP_WRITE_TIMEOUT` (30s): a client that accepts no bytes this long is dropped.
    pub http_write_timeout: Duration,
    /// `XG2G_HTTP_MAX_HEADER_BYTES` (8192): request head size limit.
    pub http_max_header_bytes: usize,
    /// `XG2G_LOG_LEVEL` (`info`): default log filter when `RUST_LOG` is unset.
    pub log_level: String,
}
