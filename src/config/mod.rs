//! Settings: `XG2G_*` environment over an optional TOML file over defaults, validated.
//!
//! Rules: loading happens once per (re)load and either yields a fully valid [`Settings`]
//! or one [`ConfigError`] whose one-line message names the key as the user wrote it, the
//! value and what is allowed; secrets (`owi_pass`, `api_token`) are never echoed. The
//! file is read whole but capped at [`MAX_FILE_BYTES`]. The key list ([`keys()`]) is the
//! single source of names, defaults and help.

mod keys;
mod live;
mod value;

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub use keys::KeyInfo;
pub use live::{FileStamp, Live, LiveSettings};
pub use value::format_duration;

use crate::hw::spec::{EncoderSpec, parse_encoders};
use crate::limit::IpSet;
use crate::transcode::profile::{Profiles, parse_profiles};

use keys::{Field, KEYS};
use value::IntRange;

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
    /// `XG2G_RELAY_PORT` (17999): the receiver's stream-relay port.
    pub relay_port: u16,
    /// `XG2G_SMART_STREAM_DETECTION` (true): on a failed open, try the other port.
    pub smart_stream_detection: bool,
    /// `XG2G_MAX_STREAMS` (1..=64): distinct upstreams at most; `None` = the tuner count.
    pub max_streams: Option<usize>,
    /// `XG2G_STREAM_CLIENT_BUFFER` (2 MiB): how far a stream client may lag before it is dropped.
    pub stream_client_buffer: u64,
    /// `XG2G_STREAM_LINGER` (5s, 0s..=10m): an upstream stays open this long after its last client.
    pub stream_linger: Duration,
    /// `XG2G_STREAM_TIMEOUT` (10s): connect + first bytes of a stream, and longest silence.
    pub stream_timeout: Duration,
    /// `XG2G_PICON_CACHE_MAX_BYTES` (16 MiB): disk space for cached picons.
    pub picon_cache_max_bytes: u64,
    /// `XG2G_CIRCUIT_BREAKER_ENABLED` (true).
    pub circuit_breaker_enabled: bool,
    /// `XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD` (5, 1..=1000): consecutive failures that open it.
    pub circuit_breaker_failure_threshold: u32,
    /// `XG2G_CIRCUIT_BREAKER_TIMEOUT` (30s): open time before one probe is let through.
    pub circuit_breaker_timeout: Duration,
    /// `XG2G_OWI_CACHE_TTL` (5m, 0 = off): bouquet and service lists are reused this long.
    pub owi_cache_ttl: Duration,
    /// `XG2G_OWI_RATE_LIMIT` (10/s): receiver requests per second at most.
    pub owi_rate_limit: NonZeroU32,
    /// `XG2G_STREAM_TOKEN`: when set, files, streams and picons need `?token=`.
    pub stream_token: Option<String>,
    /// `XG2G_RATELIMIT_ENABLED` (true).
    pub ratelimit_enabled: bool,
    /// `XG2G_RATELIMIT_RPS` (10): per client and route class.
    pub ratelimit_rps: NonZeroU32,
    /// `XG2G_RATELIMIT_BURST` (20): per client and route class.
    pub ratelimit_burst: NonZeroU32,
    /// `XG2G_RATELIMIT_GLOBAL_RPS` (100): all clients together.
    pub ratelimit_global_rps: NonZeroU32,
    /// `XG2G_RATELIMIT_GLOBAL_BURST` (200): all clients together.
    pub ratelimit_global_burst: NonZeroU32,
    /// `XG2G_RATELIMIT_FILES_RPS`: `None` = `ratelimit_rps`.
    pub ratelimit_files_rps: Option<NonZeroU32>,
    /// `XG2G_RATELIMIT_FILES_BURST`: `None` = `ratelimit_burst`.
    pub ratelimit_files_burst: Option<NonZeroU32>,
    /// `XG2G_RATELIMIT_STREAM_RPS`: `None` = `ratelimit_rps`.
    pub ratelimit_stream_rps: Option<NonZeroU32>,
    /// `XG2G_RATELIMIT_STREAM_BURST`: `None` = `ratelimit_burst`.
    pub ratelimit_stream_burst: Option<NonZeroU32>,
    /// `XG2G_RATELIMIT_API_RPS`: `None` = `ratelimit_rps`.
    pub ratelimit_api_rps: Option<NonZeroU32>,
    /// `XG2G_RATELIMIT_API_BURST`: `None` = `ratelimit_burst`.
    pub ratelimit_api_burst: Option<NonZeroU32>,
    /// `XG2G_RATELIMIT_WHITELIST`: clients never limited.
    pub ratelimit_whitelist: IpSet,
    /// `XG2G_RATELIMIT_MAX_CLIENTS` (4096): clients tracked at most.
    pub ratelimit_max_clients: NonZeroUsize,
    /// `XG2G_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: IpSet,
    /// `XG2G_CONFIG_WATCH_INTERVAL` (5s, 0 = off): settings file change polling.
    pub config_watch_interval: Duration,
    /// `XG2G_HDHR_ENABLED` (true): HDHomeRun endpoints and discovery.
    pub hdhr_enabled: bool,
    /// `XG2G_HDHR_DEVICE_ID`: a valid HDHomeRun device id; `None` = kept in the data folder.
    pub hdhr_device_id: Option<u32>,
    /// `XG2G_HDHR_FRIENDLY_NAME` (`xg2g`).
    pub hdhr_friendly_name: String,
    /// `XG2G_HDHR_MODEL` (`HDTC-2US`).
    pub hdhr_model: String,
    /// `XG2G_HDHR_FIRMWARE` (`hdhomeruntc_atsc`).
    pub hdhr_firmware: String,
    /// `XG2G_HDHR_TUNER_COUNT` (1..=64): `None` = the stream tuner limit.
    pub hdhr_tuner_count: Option<u32>,
    /// `XG2G_HDHR_BASE_URL`: base URL for HDHomeRun clients, no trailing slash.
    pub hdhr_base_url: Option<String>,
    /// `XG2G_HDHR_DISCOVERY_PORT` (65001, 0 = off).
    pub hdhr_discovery_port: u16,
    /// `XG2G_SSDP_ENABLED` (true).
    pub ssdp_enabled: bool,
    /// `XG2G_SSDP_PORT` (1900).
    pub ssdp_port: u16,
    /// `XG2G_SSDP_LISTEN` (0.0.0.0): the SSDP socket's address.
    pub ssdp_listen: Ipv4Addr,
    /// `XG2G_SSDP_INTERFACE`: the multicast interface's address; `None` = the system's choice.
    pub ssdp_interface: Option<Ipv4Addr>,
    /// `XG2G_FFMPEG_PATH` (`ffmpeg`): the program transcodes run.
    pub ffmpeg_path: PathBuf,
    /// `XG2G_DEFAULT_PROFILE` (`copy`): the profile playlist links ask for; always a
    /// profile that exists (checked against `transcode_profiles`).
    pub default_profile: String,
    /// `XG2G_TRANSCODE_PROFILES`: user profiles, text that `parse_profiles` accepted.
    pub transcode_profiles: String,
    /// The built-ins overlaid with `transcode_profiles`, parsed once when loaded.
    profiles: Profiles,
    /// `XG2G_TRANSCODE_ENCODERS`: the encoders to use; `None` = probe at start.
    pub transcode_encoders: Option<Vec<EncoderSpec>>,
    /// `XG2G_GPU_QUEUE_SIZE` (100, 0..=10000): transcode requests waiting for a slot.
    pub gpu_queue_size: usize,
    /// `XG2G_GPU_QUEUE_WORKERS` (1..=64): sessions per hardware encoder; `None` = per backend.
    pub gpu_queue_workers: Option<u32>,
    /// `XG2G_TRANSCODE_CPU_SLOTS` (0..=64): software sessions; `None` = half the cores.
    pub transcode_cpu_slots: Option<u32>,
    /// `XG2G_GPU_QUEUE_MAX_WAIT` (30s, 1s..=10m).
    pub gpu_queue_max_wait: Duration,
    /// `XG2G_GPU_MAX_LOAD` (85, 1..=100): percent above which a device takes no new session.
    pub gpu_max_load: u32,
    /// `XG2G_GPU_LOAD_INTERVAL` (2s, 0 = off, ..=1m).
    pub gpu_load_interval: Duration,
    /// `XG2G_TRANSCODE_MAX_RESTARTS` (3, 0..=20).
    pub transcode_max_restarts: u32,
    /// `XG2G_HLS_MAX_SESSIONS` (4, 1..=64).
    pub hls_max_sessions: usize,
    /// `XG2G_HLS_IDLE_TIMEOUT` (30s, 5s..=1h).
    pub hls_idle_timeout: Duration,
    /// `XG2G_HLS_SEGMENT_SECONDS` (2, 1..=10).
    pub hls_segment_seconds: u32,
    /// `XG2G_HLS_LIST_SIZE` (6, 3..=30).
    pub hls_list_size: u32,
    /// `XG2G_LOG_LEVEL` (`info`): default log filter when `RUST_LOG` is unset.
    pub log_level: String,
}

impl EpgSource {
    /// The name users write: `bouquet` or `per-service`.
    pub fn as_str(self) -> &'static str {
        match self {
            EpgSource::Bouquet => "bouquet",
            EpgSource::PerService => "per-service",
        }
    }
}

/// Largest settings file read; a real one is a few KiB, so anything larger is the wrong
/// file and is refused rather than held in memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why settings could not be loaded. Every message is one line that names the key as the
/// user wrote it; secret values never appear.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A value is present but not allowed.
    #[error("{setting}: {problem}")]
    Invalid {
        /// The environment name of the setting, e.g. `XG2G_EPG_DAYS` (also for file keys).
        key: &'static str,
        /// The setting as written: `XG2G_EPG_DAYS="20"` or `epg_days = 20 in FILE`,
        /// with `****` for secrets and long values shortened.
        setting: String,
        /// What is allowed, e.g. `must be a whole number from 1 to 14`.
        problem: String,
    },
    /// No receiver address was given by environment or file.
    #[error("XG2G_OWI_BASE is required (e.g. http://192.168.1.10){}", or_in_file(.file.as_deref()))]
    MissingOwiBase {
        /// The settings file, if one was read (the message mentions it as an alternative).
        file: Option<PathBuf>,
    },
    /// The settings file has a key that is not a setting.
    #[error("unknown key {key:?} in {file}{}", did_you_mean(*.suggestion))]
    UnknownKey {
        /// The key as written (shortened if very long).
        key: String,
        /// The settings file.
        file: PathBuf,
        /// The closest real key, if one is close.
        suggestion: Option<&'static str>,
    },
    /// The settings file is not valid TOML.
    #[error("{file}{}: {message}", at_line(*.line))]
    Syntax {
        /// The settings file.
        file: PathBuf,
        /// 1-based line of the error, when the parser knows it.
        line: Option<usize>,
        /// The parser's one-line description.
        message: String,
    },
    /// The settings file could not be read.
    #[error("cannot read settings file {file}: {source}")]
    Read {
        /// The settings file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The settings file is larger than [`MAX_FILE_BYTES`].
    #[error("settings file {file} is larger than {MAX_FILE_BYTES} bytes; is it the right file?")]
    TooLarge {
        /// The settings file.
        file: PathBuf,
    },
    /// An `XG2G_*` environment variable holds bytes that are not UTF-8.
    #[error("{key} is not valid UTF-8")]
    NotUnicode {
        /// The environment variable.
        key: &'static str,
    },
}

fn or_in_file(file: Option<&Path>) -> String {
    file.map_or(String::new(), |f| {
        format!("; or set owi_base in {}", f.display())
    })
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or(String::new(), |s| format!(" (did you mean {s}?)"))
}

fn at_line(line: Option<usize>) -> String {
    line.map_or(String::new(), |l| format!(" line {l}"))
}

/// Test helper: settings from `pairs` as environment, with `XG2G_OWI_BASE` defaulting to
/// `http://box`; panics on invalid settings.
#[cfg(test)]
pub(crate) fn test_settings(pairs: &[(&str, &str)]) -> Settings {
    let env = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .or_else(|| (name == "XG2G_OWI_BASE").then(|| "http://box".to_string()))
    };
    Settings::load(None, &env).expect("test settings")
}

/// Every setting, in `Settings` field order: environment name, file key, default, help.
pub fn keys() -> &'static [KeyInfo] {
    &KEYS
}

// Ranges from the field docs, kept next to the parser that enforces them.
const STREAM_PORT: IntRange = IntRange { lo: 1, hi: 65535 };
const EPG_DAYS: IntRange = IntRange { lo: 1, hi: 14 };
const EPG_MAX_CONCURRENCY: IntRange = IntRange { lo: 1, hi: 16 };
const OWI_TIMEOUT_MS: IntRange = IntRange {
    lo: 100,
    hi: 600_000,
};
const OWI_RETRIES: IntRange = IntRange { lo: 0, hi: 10 };
const OWI_MAX_BODY_BYTES: IntRange = IntRange {
    lo: 64 << 10,
    hi: 4 << 30,
};
const HTTP_MAX_CONNECTIONS: IntRange = IntRange { lo: 1, hi: 65536 };
const HTTP_MAX_HEADER_BYTES: IntRange = IntRange {
    lo: 1024,
    hi: 65536,
};
const MAX_STREAMS: IntRange = IntRange { lo: 1, hi: 64 };
const UDP_PORT: IntRange = IntRange { lo: 0, hi: 65535 };
const STREAM_CLIENT_BUFFER: IntRange = IntRange {
    lo: 64 << 10,
    hi: 256 << 20,
};
const PICON_CACHE_MAX_BYTES: IntRange = IntRange {
    lo: 1 << 20,
    hi: 4 << 30,
};
const BREAKER_THRESHOLD: IntRange = IntRange { lo: 1, hi: 1000 };
const OWI_RATE_LIMIT: IntRange = IntRange { lo: 1, hi: 1000 };
const REQUEST_RATE: IntRange = IntRange {
    lo: 1,
    hi: 1_000_000,
};
const MAX_CLIENTS: IntRange = IntRange {
    lo: 16,
    hi: 1_000_000,
};
const OWI_CACHE_TTL: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(86_400));
const CONFIG_WATCH: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
const GPU_QUEUE_SIZE: IntRange = IntRange { lo: 0, hi: 10_000 };
const ENCODER_SLOTS: IntRange = IntRange { lo: 1, hi: 64 };
const CPU_SLOTS: IntRange = IntRange { lo: 0, hi: 64 };
const GPU_MAX_LOAD: IntRange = IntRange { lo: 1, hi: 100 };
const TRANSCODE_MAX_RESTARTS: IntRange = IntRange { lo: 0, hi: 20 };
const GPU_QUEUE_MAX_WAIT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));
const HLS_SEGMENT_SECONDS: IntRange = IntRange { lo: 1, hi: 10 };
const HLS_LIST_SIZE: IntRange = IntRange { lo: 3, hi: 30 };
const HLS_IDLE_TIMEOUT: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3600));
const GPU_LOAD_INTERVAL: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(60));
const STREAM_LINGER: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(600));
const STREAM_TIMEOUT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));
const REFRESH_INTERVAL: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 86_400));
const HTTP_TIMEOUT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

const OWI_BASE_ALLOWED: &str = "must be a URL like http://192.168.1.10";
const URL_ALLOWED: &str = "must be a URL like http://192.168.1.20:8080";
const TEXT_ALLOWED: &str = "must be text";
const LABEL_ALLOWED: &str = "must be 1 to 64 printable characters";
const DEVICE_ID_ALLOWED: &str = "must be 8 hex digits that pass the HDHomeRun checksum";
const IPV4_ALLOWED: &str = "must be an IPv4 address like 192.168.1.5";
const PATH_ALLOWED: &str = "must be a folder path";
const ENCODERS_ALLOWED: &str = "must be a comma list of backend[:path][=sessions]";
const PROGRAM_ALLOWED: &str = "must be a program name or path";
const PROFILE_NAME_ALLOWED: &str =
    "must be a profile name: copy, aac, h264 or one from XG2G_TRANSCODE_PROFILES";
const IP_SET_ALLOWED: &str = "must be a comma list of addresses or networks";
const BOUQUET_ALLOWED: &str = "must be a comma list or an array of bouquet names";

/// Longest value echoed in an error; beyond this the message would stop being one line
/// anyone reads.
const MAX_ECHO_CHARS: usize = 80;

impl Settings {
    /// The defaults from the field docs; `owi_base` is empty (it has no default).
    fn defaults() -> Settings {
        Settings {
            owi_base: String::new(),
            owi_user: None,
            owi_pass: None,
            bouquets: Vec::new(),
            stream_port: 8001,
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
            metrics_listen: None,
            epg_enabled: true,
            epg_days: 7,
            epg_source: EpgSource::Bouquet,
            epg_max_concurrency: 4,
            owi_timeout: Duration::from_millis(10_000),
            owi_retries: 2,
            owi_max_body_bytes: 256 << 20,
            x_tvg_url: None,
            picon_base: None,
            public_url: None,
            use_proxy_urls: true,
            refresh_interval: Duration::from_secs(6 * 3600),
            initial_refresh: true,
            api_token: None,
            http_max_connections: 256,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_write_timeout: Duration::from_secs(30),
            http_max_header_bytes: 8192,
            relay_port: 17999,
            smart_stream_detection: true,
            max_streams: None,
            stream_client_buffer: 2 << 20,
            stream_linger: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(10),
            picon_cache_max_bytes: 16 << 20,
            circuit_breaker_enabled: true,
            circuit_breaker_failure_threshold: 5,
            circuit_breaker_timeout: Duration::from_secs(30),
            owi_cache_ttl: Duration::from_secs(300),
            owi_rate_limit: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            stream_token: None,
            ratelimit_enabled: true,
            ratelimit_rps: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            ratelimit_burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            ratelimit_global_rps: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            ratelimit_global_burst: NonZeroU32::new(200).unwrap_or(NonZeroU32::MIN),
            ratelimit_files_rps: None,
            ratelimit_files_burst: None,
            ratelimit_stream_rps: None,
            ratelimit_stream_burst: None,
            ratelimit_api_rps: None,
            ratelimit_api_burst: None,
            ratelimit_whitelist: IpSet::default(),
            ratelimit_max_clients: NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            trusted_proxies: IpSet::default(),
            config_watch_interval: Duration::from_secs(5),
            hdhr_enabled: true,
            hdhr_device_id: None,
            hdhr_friendly_name: "xg2g".to_string(),
            hdhr_model: "HDTC-2US".to_string(),
            hdhr_firmware: "hdhomeruntc_atsc".to_string(),
            hdhr_tuner_count: None,
            hdhr_base_url: None,
            hdhr_discovery_port: 65001,
            ssdp_enabled: true,
            ssdp_port: 1900,
            ssdp_listen: Ipv4Addr::UNSPECIFIED,
            ssdp_interface: None,
            ffmpeg_path: PathBuf::from("ffmpeg"),
            default_profile: "copy".to_string(),
            transcode_profiles: String::new(),
            profiles: Profiles::default(),
            transcode_encoders: None,
            gpu_queue_size: 100,
            gpu_queue_workers: None,
            transcode_cpu_slots: None,
            gpu_queue_max_wait: Duration::from_secs(30),
            gpu_max_load: 85,
            gpu_load_interval: Duration::from_secs(2),
            transcode_max_restarts: 3,
            hls_max_sessions: 4,
            hls_idle_timeout: Duration::from_secs(30),
            hls_segment_seconds: 2,
            hls_list_size: 6,
            log_level: "info".to_string(),
        }
    }

    /// Loads settings: defaults, then the TOML `file` if given, then every `XG2G_*`
    /// variable that `env` returns non-empty. Returns fully validated settings or the
    /// first problem found; `XG2G_OWI_BASE` (or `owi_base`) must be set by one of them.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::defaults();
        // Remembered to name the right key if the two listeners collide.
        let mut metrics_setting = None;
        // Likewise for a default profile that names no profile.
        let mut profile_setting = None;
        if let Some(path) = file {
            let table = read_table(path)?;
            for (name, value) in &table {
                let info = KEYS
                    .iter()
                    .find(|k| k.file_key == name)
                    .ok_or_else(|| unknown_key(name, path))?;
                let at = At {
                    info,
                    raw: Raw::File(value, path),
                };
                if at.is_unset() {
                    continue;
                }
                at.apply(&mut settings)?;
                if info.field == Field::MetricsListen {
                    metrics_setting = Some(at.setting());
                }
                if info.field == Field::DefaultProfile {
                    profile_setting = Some(at.setting());
                }
            }
        }
        for info in KEYS.iter() {
            // The first name that holds a value wins: the current name, then aliases.
            let given = std::iter::once(info.env)
                .chain(info.aliases.iter().copied())
                .find_map(|name| {
                    env(name)
                        .filter(|text| !text.trim().is_empty())
                        .map(|text| (name, text))
                });
            let Some((name, text)) = given else {
                continue;
            };
            let at = At {
                info,
                raw: Raw::Env(name, &text),
            };
            at.apply(&mut settings)?;
            if info.field == Field::MetricsListen {
                metrics_setting = Some(at.setting());
            }
            if info.field == Field::DefaultProfile {
                profile_setting = Some(at.setting());
            }
        }
        if settings.profiles().get(&settings.default_profile).is_none() {
            return Err(ConfigError::Invalid {
                key: "XG2G_DEFAULT_PROFILE",
                setting: profile_setting.unwrap_or_else(|| {
                    format!("XG2G_DEFAULT_PROFILE=\"{}\"", settings.default_profile)
                }),
                problem: format!(
                    "names no profile; the profiles are {}",
                    settings.profiles().names().join(", ")
                ),
            });
        }
        if settings.owi_base.is_empty() {
            return Err(ConfigError::MissingOwiBase {
                file: file.map(Path::to_path_buf),
            });
        }
        if let (Some(metrics), Some(setting)) = (settings.metrics_listen, metrics_setting) {
            let main = settings.listen;
            let overlap = metrics.ip() == main.ip()
                || metrics.ip().is_unspecified()
                || main.ip().is_unspecified();
            if metrics.port() != 0 && metrics.port() == main.port() && overlap {
                return Err(ConfigError::Invalid {
                    key: "XG2G_METRICS_LISTEN",
                    setting,
                    problem: format!(
                        "must not use the port of XG2G_LISTEN ({main}); pick another port or leave it empty"
                    ),
                });
            }
        }
        Ok(settings)
    }

    /// [`Settings::load`] with the process environment; an `XG2G_*` variable that is not
    /// UTF-8 is an error naming it.
    pub fn from_process(file: Option<&Path>) -> Result<Settings, ConfigError> {
        for info in KEYS.iter() {
            for name in std::iter::once(info.env).chain(info.aliases.iter().copied()) {
                if let Some(value) = std::env::var_os(name) {
                    if value.to_str().is_none() {
                        return Err(ConfigError::NotUnicode { key: name });
                    }
                }
            }
        }
        Settings::load(file, &|name| std::env::var(name).ok())
    }

    /// The effective settings, one `XG2G_NAME=value` line per setting in field order.
    /// Secrets read `****` when set; anything unset reads `(unset)`; durations, sizes and
    /// bouquet lists are printed so they read back as the same value.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for info in KEYS.iter() {
            let _ = writeln!(out, "{}={}", info.env, self.value_text(info));
        }
        out
    }

    /// One setting's value as `describe` prints it.
    fn value_text(&self, info: &KeyInfo) -> String {
        const UNSET: &str = "(unset)";
        let opt = |v: &Option<String>| v.as_deref().map_or(UNSET.to_string(), one_line);
        let secret = |v: &Option<String>| if v.is_some() { "****" } else { UNSET }.to_string();
        match info.field {
            Field::OwiBase => one_line(&self.owi_base),
            Field::OwiUser => opt(&self.owi_user),
            Field::OwiPass => secret(&self.owi_pass),
            Field::Bouquet if self.bouquets.is_empty() => UNSET.to_string(),
            Field::Bouquet => one_line(&value::format_bouquets(&self.bouquets)),
            Field::StreamPort => self.stream_port.to_string(),
            Field::Data => one_line(&self.data_dir.to_string_lossy()),
            Field::Listen => self.listen.to_string(),
            Field::MetricsListen => self
                .metrics_listen
                .map_or(UNSET.to_string(), |a| a.to_string()),
            Field::EpgEnabled => self.epg_enabled.to_string(),
            Field::EpgDays => self.epg_days.to_string(),
            Field::EpgSource => self.epg_source.as_str().to_string(),
            Field::EpgMaxConcurrency => self.epg_max_concurrency.to_string(),
            Field::OwiTimeoutMs => self.owi_timeout.as_millis().to_string(),
            Field::OwiRetries => self.owi_retries.to_string(),
            Field::OwiMaxBodyBytes => value::format_bytes(self.owi_max_body_bytes),
            Field::XTvgUrl => opt(&self.x_tvg_url),
            Field::PiconBase => opt(&self.picon_base),
            Field::PublicUrl => opt(&self.public_url),
            Field::UseProxyUrls => self.use_proxy_urls.to_string(),
            Field::RefreshInterval => format_duration(self.refresh_interval),
            Field::InitialRefresh => self.initial_refresh.to_string(),
            Field::ApiToken => secret(&self.api_token),
            Field::HttpMaxConnections => self.http_max_connections.to_string(),
            Field::HttpHeaderTimeout => format_duration(self.http_header_timeout),
            Field::HttpIdleTimeout => format_duration(self.http_idle_timeout),
            Field::HttpWriteTimeout => format_duration(self.http_write_timeout),
            Field::HttpMaxHeaderBytes => self.http_max_header_bytes.to_string(),
            Field::RelayPort => self.relay_port.to_string(),
            Field::SmartStreamDetection => self.smart_stream_detection.to_string(),
            Field::MaxStreams => self
                .max_streams
                .map_or_else(|| UNSET.to_string(), |n| n.to_string()),
            Field::StreamClientBuffer => value::format_bytes(self.stream_client_buffer),
            Field::StreamLinger => format_duration(self.stream_linger),
            Field::StreamTimeout => format_duration(self.stream_timeout),
            Field::PiconCacheMaxBytes => value::format_bytes(self.picon_cache_max_bytes),
            Field::CircuitBreakerEnabled => self.circuit_breaker_enabled.to_string(),
            Field::CircuitBreakerFailureThreshold => {
                self.circuit_breaker_failure_threshold.to_string()
            }
            Field::CircuitBreakerTimeout => format_duration(self.circuit_breaker_timeout),
            Field::OwiCacheTtl => format_duration(self.owi_cache_ttl),
            Field::OwiRateLimit => self.owi_rate_limit.to_string(),
            Field::StreamToken => secret(&self.stream_token),
            Field::RatelimitEnabled => self.ratelimit_enabled.to_string(),
            Field::RatelimitRps => self.ratelimit_rps.to_string(),
            Field::RatelimitBurst => self.ratelimit_burst.to_string(),
            Field::RatelimitGlobalRps => self.ratelimit_global_rps.to_string(),
            Field::RatelimitGlobalBurst => self.ratelimit_global_burst.to_string(),
            Field::RatelimitFilesRps => opt_num(self.ratelimit_files_rps),
            Field::RatelimitFilesBurst => opt_num(self.ratelimit_files_burst),
            Field::RatelimitStreamRps => opt_num(self.ratelimit_stream_rps),
            Field::RatelimitStreamBurst => opt_num(self.ratelimit_stream_burst),
            Field::RatelimitApiRps => opt_num(self.ratelimit_api_rps),
            Field::RatelimitApiBurst => opt_num(self.ratelimit_api_burst),
            Field::RatelimitWhitelist => ip_set(&self.ratelimit_whitelist),
            Field::RatelimitMaxClients => self.ratelimit_max_clients.to_string(),
            Field::TrustedProxies => ip_set(&self.trusted_proxies),
            Field::ConfigWatchInterval => format_duration(self.config_watch_interval),
            Field::HdhrEnabled => self.hdhr_enabled.to_string(),
            Field::HdhrDeviceId => self
                .hdhr_device_id
                .map_or_else(|| UNSET.to_string(), |id| format!("{id:08X}")),
            Field::HdhrFriendlyName => one_line(&self.hdhr_friendly_name),
            Field::HdhrModel => one_line(&self.hdhr_model),
            Field::HdhrFirmware => one_line(&self.hdhr_firmware),
            Field::HdhrTunerCount => self
                .hdhr_tuner_count
                .map_or_else(|| UNSET.to_string(), |n| n.to_string()),
            Field::HdhrBaseUrl => opt(&self.hdhr_base_url),
            Field::HdhrDiscoveryPort => self.hdhr_discovery_port.to_string(),
            Field::SsdpEnabled => self.ssdp_enabled.to_string(),
            Field::SsdpPort => self.ssdp_port.to_string(),
            Field::SsdpListen => self.ssdp_listen.to_string(),
            Field::SsdpInterface => self
                .ssdp_interface
                .map_or_else(|| UNSET.to_string(), |a| a.to_string()),
            Field::FfmpegPath => one_line(&self.ffmpeg_path.to_string_lossy()),
            Field::DefaultProfile => self.default_profile.clone(),
            Field::TranscodeProfiles if self.transcode_profiles.is_empty() => UNSET.to_string(),
            Field::TranscodeProfiles => one_line(&self.transcode_profiles),
            Field::TranscodeEncoders => self.transcode_encoders.as_ref().map_or_else(
                || UNSET.to_string(),
                |specs| {
                    let items: Vec<String> = specs
                        .iter()
                        .map(|e| match e.capacity {
                            Some(n) => format!("{}={n}", e.id()),
                            None => e.id(),
                        })
                        .collect();
                    one_line(&items.join(","))
                },
            ),
            Field::GpuQueueSize => self.gpu_queue_size.to_string(),
            Field::GpuQueueWorkers => self
                .gpu_queue_workers
                .map_or_else(|| UNSET.to_string(), |n| n.to_string()),
            Field::TranscodeCpuSlots => self
                .transcode_cpu_slots
                .map_or_else(|| UNSET.to_string(), |n| n.to_string()),
            Field::GpuQueueMaxWait => format_duration(self.gpu_queue_max_wait),
            Field::GpuMaxLoad => self.gpu_max_load.to_string(),
            Field::GpuLoadInterval => format_duration(self.gpu_load_interval),
            Field::TranscodeMaxRestarts => self.transcode_max_restarts.to_string(),
            Field::HlsMaxSessions => self.hls_max_sessions.to_string(),
            Field::HlsIdleTimeout => format_duration(self.hls_idle_timeout),
            Field::HlsSegmentSeconds => self.hls_segment_seconds.to_string(),
            Field::HlsListSize => self.hls_list_size.to_string(),
            Field::LogLevel => self.log_level.clone(),
        }
    }

    /// Takes over from `running` every setting a reload cannot apply
    /// ([`KeyInfo::needs_restart`]), so the settings in force always describe what is
    /// really running; the new values wait for a restart.
    pub fn keep_restart_settings(&mut self, running: &Settings) {
        self.data_dir = running.data_dir.clone();
        self.listen = running.listen;
        self.metrics_listen = running.metrics_listen;
        self.picon_base = running.picon_base.clone();
        self.http_max_connections = running.http_max_connections;
        self.http_header_timeout = running.http_header_timeout;
        self.http_idle_timeout = running.http_idle_timeout;
        self.http_write_timeout = running.http_write_timeout;
        self.http_max_header_bytes = running.http_max_header_bytes;
        self.picon_cache_max_bytes = running.picon_cache_max_bytes;
        self.circuit_breaker_enabled = running.circuit_breaker_enabled;
        self.circuit_breaker_failure_threshold = running.circuit_breaker_failure_threshold;
        self.circuit_breaker_timeout = running.circuit_breaker_timeout;
        self.hdhr_enabled = running.hdhr_enabled;
        self.hdhr_device_id = running.hdhr_device_id;
        self.hdhr_discovery_port = running.hdhr_discovery_port;
        self.ssdp_enabled = running.ssdp_enabled;
        self.ssdp_port = running.ssdp_port;
        self.ssdp_listen = running.ssdp_listen;
        self.ssdp_interface = running.ssdp_interface;
        self.transcode_encoders = running.transcode_encoders.clone();
        self.gpu_queue_size = running.gpu_queue_size;
        self.gpu_queue_workers = running.gpu_queue_workers;
        self.transcode_cpu_slots = running.transcode_cpu_slots;
        self.gpu_queue_max_wait = running.gpu_queue_max_wait;
        self.gpu_load_interval = running.gpu_load_interval;
        self.log_level = running.log_level.clone();
    }

    /// The transcode profiles in force: the built-ins overlaid with
    /// `XG2G_TRANSCODE_PROFILES`, parsed once when the settings were loaded.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The keys whose values differ between `self` and `new` (secrets compared by
    /// value, never printed), in key order: what a reload changes.
    pub fn changed_keys(&self, new: &Settings) -> Vec<&'static KeyInfo> {
        KEYS.iter()
            .filter(|info| {
                let secret_differs = match info.field {
                    Field::OwiPass => self.owi_pass != new.owi_pass,
                    Field::ApiToken => self.api_token != new.api_token,
                    Field::StreamToken => self.stream_token != new.stream_token,
                    _ => false,
                };
                secret_differs || self.value_text(info) != new.value_text(info)
            })
            .collect()
    }
}

/// An optional number as `describe` prints it.
fn opt_num(n: Option<NonZeroU32>) -> String {
    n.map_or_else(|| "(unset)".to_string(), |n| n.to_string())
}

/// An address list as `describe` prints it.
fn ip_set(set: &IpSet) -> String {
    if set.is_empty() {
        "(unset)".to_string()
    } else {
        set.to_string()
    }
}

/// User text with control characters escaped, so it cannot break a line.
fn one_line(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars().flat_map(char::escape_default).collect()
    } else {
        s.to_string()
    }
}

/// Reads and parses the settings file, bounded by [`MAX_FILE_BYTES`].
fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let read_err = |source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_FILE_BYTES) {
        return Err(ConfigError::TooLarge {
            file: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
        ))
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            file: path.to_path_buf(),
            line: e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })
}

/// The error for a file key that is not a setting, with the closest real key if any.
fn unknown_key(name: &str, path: &Path) -> ConfigError {
    ConfigError::UnknownKey {
        key: name.chars().take(MAX_ECHO_CHARS).collect(),
        file: path.to_path_buf(),
        suggestion: suggest(name),
    }
}

/// The real file key a mistyped `name` most likely meant.
fn suggest(name: &str) -> Option<&'static str> {
    if name.chars().count() > 64 {
        return None;
    }
    let lower = name.to_ascii_lowercase().replace('-', "_");
    let norm = lower.strip_prefix("xg2g_").unwrap_or(&lower);
    // The struct's field names, which differ from the file keys.
    let aliases = [
        ("bouquets", "bouquet"),
        ("data_dir", "data"),
        ("owi_timeout", "owi_timeout_ms"),
    ];
    if let Some((_, key)) = aliases.iter().find(|(alias, _)| *alias == norm) {
        return Some(key);
    }
    KEYS.iter()
        .map(|k| (edit_distance(norm, k.file_key), k.file_key))
        .filter(|&(d, key)| d <= 2 && d < key.len() / 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, key)| key)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur.clear();
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let above = prev.get(j + 1).copied().unwrap_or(usize::MAX);
            let diag = prev.get(j).copied().unwrap_or(usize::MAX);
            let left = cur.last().copied().unwrap_or(usize::MAX);
            let cost = usize::from(ca != *cb);
            cur.push(
                above
                    .saturating_add(1)
                    .min(left.saturating_add(1))
                    .min(diag.saturating_add(cost)),
            );
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

/// A value as it arrived: environment text, or a TOML value from a file.
#[derive(Clone, Copy)]
enum Raw<'a> {
    /// The variable's name as read (the key's name or an alias) and its text.
    Env(&'static str, &'a str),
    File(&'a toml::Value, &'a Path),
}

/// One setting being applied: which key and what the user wrote.
struct At<'a> {
    info: &'static KeyInfo,
    raw: Raw<'a>,
}

impl<'a> At<'a> {
    /// Empty (or blank) text counts as not given, so `XG2G_X=` keeps the file or default.
    fn is_unset(&self) -> bool {
        match self.raw {
            Raw::Env(_, text) => text.trim().is_empty(),
            Raw::File(toml::Value::String(text), _) => text.trim().is_empty(),
            Raw::File(..) => false,
        }
    }

    /// The setting as written, for errors: `XG2G_EPG_DAYS="20"` or `epg_days = 20 in F`.
    fn setting(&self) -> String {
        let secret = self.info.is_secret();
        match self.raw {
            Raw::Env(name, text) => {
                let shown = if secret {
                    "****".to_string()
                } else {
                    format!("{:?}", shorten(text))
                };
                format!("{name}={shown}")
            }
            Raw::File(value, path) => {
                let shown = if secret {
                    "****".to_string()
                } else {
                    let mut s = String::new();
                    toml_repr(value, &mut s);
                    shorten(&s)
                };
                format!("{} = {shown} in {}", self.info.file_key, path.display())
            }
        }
    }

    fn fail(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.info.env,
            setting: self.setting(),
            problem: problem.into(),
        }
    }

    /// The error for a TOML value of the wrong type.
    fn wrong_type(&self, allowed: &str, want: &str) -> ConfigError {
        let got = match self.raw {
            Raw::File(toml::Value::String(_), _) => "a string",
            Raw::File(toml::Value::Integer(_), _) => "an integer",
            Raw::File(toml::Value::Float(_), _) => "a float",
            Raw::File(toml::Value::Boolean(_), _) => "a boolean",
            Raw::File(toml::Value::Datetime(_), _) => "a date",
            Raw::File(toml::Value::Array(_), _) => "an array",
            Raw::File(toml::Value::Table(_), _) => "a table",
            Raw::Env(..) => "text",
        };
        self.fail(format!("{allowed} (a TOML {want}, not {got})"))
    }

    /// The text exactly as given (for secrets and names, where spaces may matter).
    fn verbatim(&self, allowed: &str) -> Result<&'a str, ConfigError> {
        match self.raw {
            Raw::Env(_, text) => Ok(text),
            Raw::File(toml::Value::String(text), _) => Ok(text),
            Raw::File(..) => Err(self.wrong_type(allowed, "string")),
        }
    }

    /// The text with surrounding spaces removed.
    fn text(&self, allowed: &str) -> Result<&'a str, ConfigError> {
        self.verbatim(allowed).map(str::trim)
    }

    /// The text run through `parse`, whose problem becomes the error.
    fn parsed<T>(
        &self,
        allowed: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = self.text(allowed)?;
        parse(text).map_err(|problem| self.fail(problem))
    }

    /// A whole number within `range`: TOML integer, or decimal digits in the environment.
    fn uint(&self, range: IntRange) -> Result<u64, ConfigError> {
        let n = match self.raw {
            Raw::Env(_, text) => value::parse_uint(text.trim()),
            Raw::File(toml::Value::Integer(n), _) => u64::try_from(*n).ok(),
            Raw::File(..) => return Err(self.wrong_type(&range.allowed(), "integer")),
        };
        n.and_then(|n| range.check(n))
            .ok_or_else(|| self.fail(range.allowed()))
    }

    /// `uint` converted to the field's type (the range always fits it).
    fn uint_as<T: TryFrom<u64>>(&self, range: IntRange) -> Result<T, ConfigError> {
        T::try_from(self.uint(range)?).map_err(|_| self.fail(range.allowed()))
    }

    /// A byte count within `range`: an integer, or text with KiB/MiB/GiB.
    fn bytes(&self, range: IntRange) -> Result<u64, ConfigError> {
        let allowed = format!(
            "must be a size from {} to {} (bytes, or a whole number of KiB, MiB or GiB, e.g. 64MiB)",
            value::format_bytes(range.lo),
            value::format_bytes(range.hi)
        );
        let n = match self.raw {
            Raw::Env(_, text) => value::parse_bytes(text.trim()),
            Raw::File(toml::Value::String(text), _) => value::parse_bytes(text.trim()),
            Raw::File(toml::Value::Integer(n), _) => u64::try_from(*n).ok(),
            Raw::File(..) => return Err(self.wrong_type(&allowed, "integer")),
        };
        n.and_then(|n| range.check(n))
            .ok_or_else(|| self.fail(allowed))
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.raw {
            Raw::Env(_, text) => value::parse_bool(text.trim()).map_err(|p| self.fail(p)),
            Raw::File(toml::Value::Boolean(b), _) => Ok(*b),
            Raw::File(..) => Err(self.wrong_type("must be true or false", "boolean")),
        }
    }

    /// A duration between `lo` and `hi` inclusive, written with units.
    fn duration(&self, (lo, hi): (Duration, Duration)) -> Result<Duration, ConfigError> {
        let allowed = format!(
            "must be a duration from {} to {}, e.g. 30s, 10m, 6h or 1h30m",
            format_duration(lo),
            format_duration(hi)
        );
        if let Raw::File(toml::Value::Integer(n), _) = self.raw {
            return Err(self.fail(format!(
                "must be a duration in quotes; add a unit, e.g. \"{n}s\""
            )));
        }
        let d = self.parsed(&allowed, value::parse_duration)?;
        if d < lo || d > hi {
            return Err(self.fail(allowed));
        }
        Ok(d)
    }

    /// Bouquets: a comma list, or in the file also an array of names.
    fn bouquets(&self) -> Result<Vec<String>, ConfigError> {
        let Raw::File(toml::Value::Array(items), _) = self.raw else {
            return self.parsed(BOUQUET_ALLOWED, value::parse_bouquets);
        };
        let mut out = Vec::new();
        for item in items {
            let toml::Value::String(name) = item else {
                return Err(self.fail(format!(
                    "{BOUQUET_ALLOWED} (array items must be strings, not {})",
                    item.type_str()
                )));
            };
            let name = name.trim();
            if !name.is_empty() {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// A whole number within `range` (which excludes zero) as a `NonZeroU32`.
    fn nonzero(&self, range: IntRange) -> Result<NonZeroU32, ConfigError> {
        NonZeroU32::new(self.uint_as(range)?).ok_or_else(|| self.fail(range.allowed()))
    }

    /// An address list (`XG2G_RATELIMIT_WHITELIST`, `XG2G_TRUSTED_PROXIES`).
    fn ip_set(&self) -> Result<IpSet, ConfigError> {
        let text = self.text(IP_SET_ALLOWED)?;
        IpSet::parse(text).map_err(|e| self.fail(e.to_string()))
    }

    /// A name shown to users (tuner name, model): trimmed, 1 to 64 characters, no
    /// control characters.
    fn label(&self) -> Result<String, ConfigError> {
        let text = self.text(LABEL_ALLOWED)?;
        let count = text.chars().count();
        if !(1..=64).contains(&count) || text.chars().any(char::is_control) {
            return Err(self.fail(LABEL_ALLOWED));
        }
        Ok(text.to_string())
    }

    /// Optional text (user, password, token) taken verbatim.
    fn opt_text(&self) -> Result<Option<String>, ConfigError> {
        Ok(Some(self.verbatim(TEXT_ALLOWED)?.to_string()))
    }

    /// Parses the value and stores it in its field.
    fn apply(&self, s: &mut Settings) -> Result<(), ConfigError> {
        match self.info.field {
            Field::OwiBase => s.owi_base = self.parsed(OWI_BASE_ALLOWED, value::parse_owi_base)?,
            Field::OwiUser => s.owi_user = self.opt_text()?,
            Field::OwiPass => s.owi_pass = self.opt_text()?,
            Field::Bouquet => s.bouquets = self.bouquets()?,
            Field::StreamPort => s.stream_port = self.uint_as(STREAM_PORT)?,
            Field::Data => {
                let path = self.text(PATH_ALLOWED)?;
                if path.is_empty() {
                    return Err(self.fail("must be a non-empty folder path"));
                }
                s.data_dir = PathBuf::from(path);
            }
            Field::Listen => s.listen = self.parsed(value::LISTEN_ALLOWED, value::parse_listen)?,
            Field::MetricsListen => {
                s.metrics_listen = Some(self.parsed(value::LISTEN_ALLOWED, value::parse_listen)?)
            }
            Field::EpgEnabled => s.epg_enabled = self.boolean()?,
            Field::EpgDays => s.epg_days = self.uint_as(EPG_DAYS)?,
            Field::EpgSource => {
                s.epg_source = self.parsed(value::EPG_SOURCE_ALLOWED, value::parse_epg_source)?
            }
            Field::EpgMaxConcurrency => {
                s.epg_max_concurrency = self.uint_as(EPG_MAX_CONCURRENCY)?
            }
            Field::OwiTimeoutMs => {
                s.owi_timeout = Duration::from_millis(self.uint(OWI_TIMEOUT_MS)?);
            }
            Field::OwiRetries => s.owi_retries = self.uint_as(OWI_RETRIES)?,
            Field::OwiMaxBodyBytes => s.owi_max_body_bytes = self.bytes(OWI_MAX_BODY_BYTES)?,
            Field::XTvgUrl => s.x_tvg_url = Some(self.parsed(URL_ALLOWED, value::parse_http_url)?),
            Field::PiconBase => {
                s.picon_base = Some(self.parsed(URL_ALLOWED, value::parse_http_url)?)
            }
            Field::PublicUrl => {
                s.public_url = Some(self.parsed(URL_ALLOWED, value::parse_http_url)?)
            }
            Field::UseProxyUrls => s.use_proxy_urls = self.boolean()?,
            Field::RefreshInterval => s.refresh_interval = self.duration(REFRESH_INTERVAL)?,
            Field::InitialRefresh => s.initial_refresh = self.boolean()?,
            Field::ApiToken => s.api_token = self.opt_text()?,
            Field::HttpMaxConnections => {
                s.http_max_connections = self.uint_as(HTTP_MAX_CONNECTIONS)?
            }
            Field::HttpHeaderTimeout => s.http_header_timeout = self.duration(HTTP_TIMEOUT)?,
            Field::HttpIdleTimeout => s.http_idle_timeout = self.duration(HTTP_TIMEOUT)?,
            Field::HttpWriteTimeout => s.http_write_timeout = self.duration(HTTP_TIMEOUT)?,
            Field::HttpMaxHeaderBytes => {
                s.http_max_header_bytes = self.uint_as(HTTP_MAX_HEADER_BYTES)?
            }
            Field::RelayPort => s.relay_port = self.uint_as(STREAM_PORT)?,
            Field::SmartStreamDetection => s.smart_stream_detection = self.boolean()?,
            Field::MaxStreams => s.max_streams = Some(self.uint_as(MAX_STREAMS)?),
            Field::StreamClientBuffer => {
                s.stream_client_buffer = self.bytes(STREAM_CLIENT_BUFFER)?
            }
            Field::StreamLinger => s.stream_linger = self.duration(STREAM_LINGER)?,
            Field::StreamTimeout => s.stream_timeout = self.duration(STREAM_TIMEOUT)?,
            Field::PiconCacheMaxBytes => {
                s.picon_cache_max_bytes = self.bytes(PICON_CACHE_MAX_BYTES)?
            }
            Field::CircuitBreakerEnabled => s.circuit_breaker_enabled = self.boolean()?,
            Field::CircuitBreakerFailureThreshold => {
                s.circuit_breaker_failure_threshold = self.uint_as(BREAKER_THRESHOLD)?
            }
            Field::CircuitBreakerTimeout => {
                s.circuit_breaker_timeout = self.duration(HTTP_TIMEOUT)?
            }
            Field::OwiCacheTtl => s.owi_cache_ttl = self.duration(OWI_CACHE_TTL)?,
            Field::OwiRateLimit => s.owi_rate_limit = self.nonzero(OWI_RATE_LIMIT)?,
            Field::StreamToken => s.stream_token = self.opt_text()?,
            Field::RatelimitEnabled => s.ratelimit_enabled = self.boolean()?,
            Field::RatelimitRps => s.ratelimit_rps = self.nonzero(REQUEST_RATE)?,
            Field::RatelimitBurst => s.ratelimit_burst = self.nonzero(REQUEST_RATE)?,
            Field::RatelimitGlobalRps => s.ratelimit_global_rps = self.nonzero(REQUEST_RATE)?,
            Field::RatelimitGlobalBurst => s.ratelimit_global_burst = self.nonzero(REQUEST_RATE)?,
            Field::RatelimitFilesRps => s.ratelimit_files_rps = Some(self.nonzero(REQUEST_RATE)?),
            Field::RatelimitFilesBurst => {
                s.ratelimit_files_burst = Some(self.nonzero(REQUEST_RATE)?)
            }
            Field::RatelimitStreamRps => s.ratelimit_stream_rps = Some(self.nonzero(REQUEST_RATE)?),
            Field::RatelimitStreamBurst => {
                s.ratelimit_stream_burst = Some(self.nonzero(REQUEST_RATE)?)
            }
            Field::RatelimitApiRps => s.ratelimit_api_rps = Some(self.nonzero(REQUEST_RATE)?),
            Field::RatelimitApiBurst => s.ratelimit_api_burst = Some(self.nonzero(REQUEST_RATE)?),
            Field::RatelimitWhitelist => s.ratelimit_whitelist = self.ip_set()?,
            Field::RatelimitMaxClients => {
                let n: usize = self.uint_as(MAX_CLIENTS)?;
                s.ratelimit_max_clients =
                    NonZeroUsize::new(n).ok_or_else(|| self.fail(MAX_CLIENTS.allowed()))?;
            }
            Field::TrustedProxies => s.trusted_proxies = self.ip_set()?,
            Field::ConfigWatchInterval => s.config_watch_interval = self.duration(CONFIG_WATCH)?,
            Field::HdhrEnabled => s.hdhr_enabled = self.boolean()?,
            Field::HdhrDeviceId => {
                s.hdhr_device_id = Some(self.parsed(DEVICE_ID_ALLOWED, |t| {
                    crate::hdhr::discovery::parse_device_id(t).map_err(|e| e.to_string())
                })?)
            }
            Field::HdhrFriendlyName => s.hdhr_friendly_name = self.label()?,
            Field::HdhrModel => s.hdhr_model = self.label()?,
            Field::HdhrFirmware => s.hdhr_firmware = self.label()?,
            Field::HdhrTunerCount => s.hdhr_tuner_count = Some(self.uint_as(MAX_STREAMS)?),
            Field::HdhrBaseUrl => {
                s.hdhr_base_url = Some(self.parsed(URL_ALLOWED, value::parse_http_url)?)
            }
            Field::HdhrDiscoveryPort => s.hdhr_discovery_port = self.uint_as(UDP_PORT)?,
            Field::SsdpEnabled => s.ssdp_enabled = self.boolean()?,
            Field::SsdpPort => s.ssdp_port = self.uint_as(STREAM_PORT)?,
            Field::SsdpListen => s.ssdp_listen = self.parsed(IPV4_ALLOWED, value::parse_ipv4)?,
            Field::SsdpInterface => {
                s.ssdp_interface = Some(self.parsed(IPV4_ALLOWED, value::parse_ipv4)?)
            }
            Field::FfmpegPath => {
                let program = self.text(PROGRAM_ALLOWED)?;
                if program.is_empty() || program.chars().any(char::is_control) {
                    return Err(self.fail(PROGRAM_ALLOWED));
                }
                s.ffmpeg_path = PathBuf::from(program);
            }
            Field::DefaultProfile => {
                s.default_profile = self.parsed(PROFILE_NAME_ALLOWED, |t| {
                    let ok = !t.is_empty()
                        && t.len() <= crate::transcode::profile::MAX_NAME_LEN
                        && t.bytes()
                            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
                    if ok {
                        Ok(t.to_string())
                    } else {
                        Err(PROFILE_NAME_ALLOWED.to_string())
                    }
                })?
            }
            Field::TranscodeProfiles => {
                let text = self.text(TEXT_ALLOWED)?;
                let user = parse_profiles(text).map_err(|e| self.fail(e.to_string()))?;
                s.profiles = Profiles::new(user);
                s.transcode_profiles = text.to_string();
            }
            Field::TranscodeEncoders => {
                s.transcode_encoders = Some(self.parsed(ENCODERS_ALLOWED, parse_encoders)?)
            }
            Field::GpuQueueSize => s.gpu_queue_size = self.uint_as(GPU_QUEUE_SIZE)?,
            Field::GpuQueueWorkers => s.gpu_queue_workers = Some(self.uint_as(ENCODER_SLOTS)?),
            Field::TranscodeCpuSlots => s.transcode_cpu_slots = Some(self.uint_as(CPU_SLOTS)?),
            Field::GpuQueueMaxWait => s.gpu_queue_max_wait = self.duration(GPU_QUEUE_MAX_WAIT)?,
            Field::GpuMaxLoad => s.gpu_max_load = self.uint_as(GPU_MAX_LOAD)?,
            Field::GpuLoadInterval => s.gpu_load_interval = self.duration(GPU_LOAD_INTERVAL)?,
            Field::TranscodeMaxRestarts => {
                s.transcode_max_restarts = self.uint_as(TRANSCODE_MAX_RESTARTS)?
            }
            Field::HlsMaxSessions => s.hls_max_sessions = self.uint_as(ENCODER_SLOTS)?,
            Field::HlsIdleTimeout => s.hls_idle_timeout = self.duration(HLS_IDLE_TIMEOUT)?,
            Field::HlsSegmentSeconds => {
                s.hls_segment_seconds = self.uint_as(HLS_SEGMENT_SECONDS)?
            }
            Field::HlsListSize => s.hls_list_size = self.uint_as(HLS_LIST_SIZE)?,
            Field::LogLevel => {
                s.log_level = self.parsed(value::LOG_LEVEL_ALLOWED, value::parse_log_level)?
            }
        }
        Ok(())
    }
}

/// At most [`MAX_ECHO_CHARS`] characters of `s`, marked when cut.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ECHO_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A TOML value written roughly as in the file, for errors (strings quoted and escaped,
/// so the message stays one line).
fn toml_repr(value: &toml::Value, out: &mut String) {
    // Stop early: the result is cut to MAX_ECHO_CHARS anyway, and nested arrays could
    // otherwise make this walk large.
    if out.len() > MAX_ECHO_CHARS {
        return;
    }
    match value {
        toml::Value::String(s) => {
            let _ = write!(out, "{:?}", shorten(s));
        }
        toml::Value::Integer(n) => {
            let _ = write!(out, "{n}");
        }
        toml::Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        toml::Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        toml::Value::Datetime(d) => {
            let _ = write!(out, "{d}");
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                toml_repr(item, out);
                if out.len() > MAX_ECHO_CHARS {
                    break;
                }
            }
            out.push(']');
        }
        toml::Value::Table(_) => out.push_str("{...}"),
    }
}

#[cfg(test)]
mod tests;
