//! The metrics registry and the metric families, served as Prometheus text.
//!
//! Rules: every name starts with `xg2g_`, uses base units and `_total` for counters;
//! the output must pass `promtool check metrics` (prometheus-client writes OpenMetrics,
//! which Debian's promtool rejects for counters, so `encode` rewrites those lines).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::ServerStats;

/// Labels of receiver request outcomes and receiver cache lookups.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// `bouquets`, `services`, `epgbouquet`, `epgservice`, `about`, `whitelist`.
    pub endpoint: String,
    /// Requests: `ok` or an error kind (`timeout`, `connect`, `http_5xx`,
    /// `circuit_open`, …). Cache lookups: `hit` or `miss`.
    pub result: String,
}

/// Labels of HTTP requests we served.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route name (not the raw path: bounded cardinality).
    pub route: String,
    /// Status code.
    pub status: String,
}

/// Label of refresh outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// Label naming a thing: a breaker, a port kind, a failure reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// The name (bounded set of values).
    pub name: String,
}

/// Label of stream open failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `connect`, `timeout`, `http_status`, `not_ts`, `empty`, `breaker_open`, `tuner_limit`, ...
    pub reason: String,
}

/// Label of the receiver port a stream came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabel {
    /// `direct` (XG2G_STREAM_PORT) or `relay` (XG2G_RELAY_PORT).
    pub port: String,
}

/// Labels of rate-limited requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// Route class: `files`, `stream`, `api`.
    pub class: String,
    /// `client` (the client's own bucket) or `global` (all clients together).
    pub scope: String,
}

/// Label holding the version.
/// Labels of a discovery datagram: which protocol (`ssdp`, `hdhomerun`) and what became
/// of it (`answered`, `ignored`, `malformed`, `send_failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscoveryLabels {
    /// `ssdp` or `hdhomerun`.
    pub protocol: String,
    /// What became of the datagram.
    pub result: String,
}

/// Label naming an encoder device (`software`, `vaapi:/dev/dri/renderD128`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabel {
    /// The device id as `/api/v1/encoders` lists it.
    pub device: String,
}

/// Label of a transcode queue priority.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabel {
    /// `preview`, `normal` or `active`.
    pub priority: String,
}

/// Label of an encoder backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    /// `software`, `vaapi` or `v4l2m2m`.
    pub backend: String,
}

/// Labels of transcode errors: the backend and the error class from ffmpeg's stderr.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TranscodeErrorLabels {
    /// `software`, `vaapi` or `v4l2m2m`.
    pub backend: String,
    /// A `transcode::ffmpeg_log::KINDS` class, or `spawn`, `exit`, `stall`, `no_output`.
    pub kind: String,
}

/// Label of a stream's delivery mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    /// `copy` (the plain proxy), `transcode` or `hls`.
    pub mode: String,
}

/// The transcoding families (`xg2g_gpu_*`, `xg2g_transcode_*`, streams by mode).
pub struct TranscodeMetrics {
    /// `xg2g_gpu_utilization_percent{device}`: load read from sysfs/debugfs.
    pub utilization: Family<DeviceLabel, Gauge<f64, AtomicU64>>,
    /// `xg2g_gpu_queue_size{priority}`: requests waiting for an encoder slot.
    pub queue_size: Family<PriorityLabel, Gauge>,
    /// `xg2g_gpu_queue_wait_seconds{priority}`: time from request to slot.
    pub queue_wait: Family<PriorityLabel, Histogram, fn() -> Histogram>,
    /// `xg2g_gpu_queue_rejections_total{reason}`: `full`, `timeout`, `no_device`.
    pub queue_rejections: Family<ReasonLabel, Counter>,
    /// `xg2g_gpu_active_workers`: encoder slots held now.
    pub active_workers: Gauge,
    /// `xg2g_transcode_sessions_total{backend}`: ffmpeg children started.
    pub sessions: Family<BackendLabel, Counter>,
    /// `xg2g_transcode_errors_total{backend,kind}`.
    pub errors: Family<TranscodeErrorLabels, Counter>,
    /// `xg2g_transcode_restarts_total{backend}`: crashed children restarted.
    pub restarts: Family<BackendLabel, Counter>,
    /// `xg2g_active_streams_by_mode{mode}`: stream clients now, by mode.
    pub streams_by_mode: Family<ModeLabel, Gauge>,
}

impl TranscodeMetrics {
    fn new(registry: &mut Registry) -> TranscodeMetrics {
        fn wait_histogram() -> Histogram {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
        }
        let m = TranscodeMetrics {
            utilization: Family::default(),
            queue_size: Family::default(),
            queue_wait: Family::new_with_constructor(wait_histogram),
            queue_rejections: Family::default(),
            active_workers: Gauge::default(),
            sessions: Family::default(),
            errors: Family::default(),
            restarts: Family::default(),
            streams_by_mode: Family::default(),
        };
        registry.register(
            "gpu_utilization_percent",
            "Encoder device load in percent, read from sysfs/debugfs",
            m.utilization.clone(),
        );
        registry.register(
            "gpu_queue_size",
            "Transcode requests waiting for an encoder slot, by priority",
            m.queue_size.clone(),
        );
        registry.register(
            "gpu_queue_wait_seconds",
            "Time transcode requests waited for an encoder slot, by priority",
            m.queue_wait.clone(),
        );
        registry.register(
            "gpu_queue_rejections",
            "Transcode requests refused without a slot, by reason",
            m.queue_rejections.clone(),
        );
        registry.register(
            "gpu_active_workers",
            "Encoder slots held by transcode sessions now",
            m.active_workers.clone(),
        );
        registry.register(
            "transcode_sessions",
            "ffmpeg transcode children started, by backend",
            m.sessions.clone(),
        );
        registry.register(
            "transcode_errors",
            "Transcode failures by backend and kind",
            m.errors.clone(),
        );
        registry.register(
            "transcode_restarts",
            "Crashed ffmpeg children restarted, by backend",
            m.restarts.clone(),
        );
        registry.register(
            "active_streams_by_mode",
            "Stream clients connected now, by mode (copy, transcode, hls)",
            m.streams_by_mode.clone(),
        );
        for mode in ["copy", "transcode", "hls"] {
            m.mode(mode).set(0);
        }
        m
    }

    /// Counts one transcode error of `kind` on `backend`.
    pub fn count_error(&self, backend: &str, kind: &str) {
        self.errors
            .get_or_create(&TranscodeErrorLabels {
                backend: backend.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The client gauge of `mode`.
    pub fn mode(&self, mode: &str) -> Gauge {
        self.streams_by_mode
            .get_or_create(&ModeLabel {
                mode: mode.to_string(),
            })
            .clone()
    }
}

/// Something to refresh right before a scrape is encoded (e.g. queue lengths).
type ScrapeHook = Box<dyn Fn() + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// All metric families of the daemon. Cheap handles: clone the fields you need.
pub struct Metrics {
    registry: Registry,
    /// Refresh wall time.
    pub refresh_duration: Histogram,
    /// Refreshes by result.
    pub refreshes: Family<ResultLabel, Counter>,
    /// Unix time of the last successful refresh.
    pub last_success: Gauge<f64, AtomicU64>,
    /// Channels in the current playlist.
    pub channels: Gauge,
    /// Programmes in the current guide.
    pub programmes: Gauge,
    /// Receiver requests by endpoint and result.
    pub receiver_requests: Family<ReceiverLabels, Counter>,
    /// Receiver request duration.
    pub receiver_duration: Histogram,
    /// Receiver cache lookups by endpoint and result (`hit`, `miss`).
    pub receiver_cache: Family<ReceiverLabels, Counter>,
    /// HTTP requests served by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Upstream stream connections open now (lingering ones included).
    pub stream_upstreams: Gauge,
    /// Stream clients connected now.
    pub stream_clients: Gauge,
    /// Stream bytes handed to clients.
    pub stream_bytes_out: Counter,
    /// Stream clients disconnected because they fell behind their buffer.
    pub stream_clients_dropped_slow: Counter,
    /// Time from asking the receiver for a stream to its first bytes.
    pub stream_open_seconds: Histogram,
    /// Upstreams opened, by receiver port.
    pub stream_opens: Family<PortLabel, Counter>,
    /// Failed stream opens (per port attempt), by reason.
    pub stream_open_failures: Family<ReasonLabel, Counter>,
    /// Circuit breaker state: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<NameLabel, Gauge>,
    /// Circuit breaker state changes.
    pub breaker_transitions: Family<NameLabel, Counter>,
    /// Picon requests by result (`hit`, `miss`, `not_found`, `error`, `invalid`).
    pub picon_requests: Family<ResultLabel, Counter>,
    /// Requests refused by the rate limiter, by route class and scope.
    pub rate_limited: Family<RateLimitLabels, Counter>,
    /// Clients the rate limiter tracks now (set by its janitor).
    pub rate_limit_clients: Gauge,
    /// Requests refused for a missing or wrong token, by reason.
    pub auth_failures: Family<ReasonLabel, Counter>,
    /// Settings reloads by result (`ok`, `error`).
    pub config_reloads: Family<ResultLabel, Counter>,
    /// `xg2g_discovery_datagrams_total{protocol,result}`.
    pub discovery_datagrams: Family<DiscoveryLabels, Counter>,
    /// Transcoding: encoder queue, devices, sessions.
    pub transcode: TranscodeMetrics,
    /// Resident memory of this process, sampled at scrape time.
    rss: Gauge,
    /// Run before every scrape.
    scrape_hooks: std::sync::Mutex<Vec<ScrapeHook>>,
}

impl Metrics {
    /// Builds the registry; `server` are the main listener's counters.
    pub fn new(server: &ServerStats) -> Metrics {
        let mut registry = Registry::with_prefix("xg2g");
        let refresh_duration = Histogram::new([
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]);
        let refreshes = Family::<ResultLabel, Counter>::default();
        let last_success = Gauge::<f64, AtomicU64>::default();
        let channels = Gauge::default();
        let programmes = Gauge::default();
        let receiver_requests = Family::<ReceiverLabels, Counter>::default();
        let receiver_duration =
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let receiver_cache = Family::<ReceiverLabels, Counter>::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let rss = Gauge::default();
        let stream_upstreams = Gauge::default();
        let stream_clients = Gauge::default();
        let stream_bytes_out = Counter::default();
        let stream_clients_dropped_slow = Counter::default();
        let stream_open_seconds = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let stream_opens = Family::<PortLabel, Counter>::default();
        let stream_open_failures = Family::<ReasonLabel, Counter>::default();
        let breaker_state = Family::<NameLabel, Gauge>::default();
        let breaker_transitions = Family::<NameLabel, Counter>::default();
        let picon_requests = Family::<ResultLabel, Counter>::default();
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);

        registry.register(
            "refresh_duration_seconds",
            "Wall time of guide refreshes",
            refresh_duration.clone(),
        );
        registry.register("refreshes", "Guide refreshes by result", refreshes.clone());
        registry.register(
            "last_refresh_success_timestamp_seconds",
            "Unix time of the last successful refresh",
            last_success.clone(),
        );
        registry.register("channels", "Channels in the playlist", channels.clone());
        registry.register("programmes", "Programmes in the guide", programmes.clone());
        registry.register(
            "receiver_requests",
            "Receiver (OpenWebIF) requests by endpoint and result",
            receiver_requests.clone(),
        );
        registry.register(
            "receiver_request_duration_seconds",
            "Receiver request duration",
            receiver_duration.clone(),
        );
        registry.register(
            "receiver_cache_requests",
            "Receiver answer cache lookups by endpoint and result (hit or miss)",
            receiver_cache.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_connections_accepted",
            "Client connections accepted",
            server.accepted.clone(),
        );
        registry.register(
            "http_connections_rejected",
            "Client connections refused because the connection cap was reached",
            server.rejected.clone(),
        );
        registry.register(
            "http_accept_errors",
            "Failed accept() calls (e.g. out of file descriptors)",
            server.accept_errors.clone(),
        );
        registry.register(
            "http_timeouts",
            "Client connections closed by a header, idle or write timeout",
            server.timeouts.clone(),
        );
        registry.register(
            "http_connections_open",
            "Client connections open now",
            server.open.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the daemon",
            rss.clone(),
        );
        registry.register(
            "stream_upstreams",
            "Upstream stream connections to the receiver open now",
            stream_upstreams.clone(),
        );
        registry.register(
            "stream_clients",
            "Stream clients connected now",
            stream_clients.clone(),
        );
        registry.register(
            "stream_bytes_out",
            "Stream bytes handed to clients",
            stream_bytes_out.clone(),
        );
        registry.register(
            "stream_clients_dropped_slow",
            "Stream clients disconnected because they fell behind their buffer",
            stream_clients_dropped_slow.clone(),
        );
        registry.register(
            "stream_open_seconds",
            "Time from asking the receiver for a stream to its first bytes",
            stream_open_seconds.clone(),
        );
        registry.register(
            "stream_opens",
            "Upstreams opened, by receiver port (direct or relay)",
            stream_opens.clone(),
        );
        registry.register(
            "stream_open_failures",
            "Failed stream open attempts, by reason",
            stream_open_failures.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            breaker_state.clone(),
        );
        registry.register(
            "circuit_breaker_transitions",
            "Circuit breaker state changes",
            breaker_transitions.clone(),
        );
        registry.register(
            "picon_requests",
            "Picon requests by result",
            picon_requests.clone(),
        );
        let rate_limited = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "http_rate_limited",
            "Requests refused by the rate limiter, by route class and scope",
            rate_limited.clone(),
        );
        let rate_limit_clients = Gauge::default();
        registry.register(
            "rate_limit_tracked_clients",
            "Clients the rate limiter tracks",
            rate_limit_clients.clone(),
        );
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused for a missing or wrong token",
            auth_failures.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Settings reloads by result",
            config_reloads.clone(),
        );
        let discovery_datagrams = Family::<DiscoveryLabels, Counter>::default();
        registry.register(
            "discovery_datagrams",
            "SSDP and HDHomeRun discovery datagrams received, by protocol and result",
            discovery_datagrams.clone(),
        );
        let transcode = TranscodeMetrics::new(&mut registry);
        registry.register("build_info", "Version of the running daemon", build_info);
        Metrics {
            registry,
            refresh_duration,
            refreshes,
            last_success,
            channels,
            programmes,
            receiver_requests,
            receiver_duration,
            receiver_cache,
            http_requests,
            stream_upstreams,
            stream_clients,
            stream_bytes_out,
            stream_clients_dropped_slow,
            stream_open_seconds,
            stream_opens,
            stream_open_failures,
            breaker_state,
            breaker_transitions,
            picon_requests,
            rate_limited,
            rate_limit_clients,
            auth_failures,
            config_reloads,
            discovery_datagrams,
            transcode,
            rss,
            scrape_hooks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs `hook` right before every scrape (for values cheaper to read than to track).
    pub fn on_scrape(&self, hook: ScrapeHook) {
        self.scrape_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Counts one HTTP request.
    pub fn count_http(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// A breaker named `name` whose state and transitions feed
    /// `xg2g_circuit_breaker_state` / `_transitions_total`.
    pub fn observed_breaker(
        self: &Arc<Self>,
        name: &str,
        config: crate::limit::BreakerConfig,
    ) -> crate::limit::Breaker {
        let label = NameLabel {
            name: name.to_string(),
        };
        self.breaker_state.get_or_create(&label).set(0);
        let metrics = Arc::clone(self);
        crate::limit::Breaker::new(name, config).with_observer(Arc::new(
            move |t: &crate::limit::Transition<'_>| {
                let label = NameLabel {
                    name: t.name.to_string(),
                };
                metrics
                    .breaker_state
                    .get_or_create(&label)
                    .set(t.to.gauge_value());
                metrics.breaker_transitions.get_or_create(&label).inc();
            },
        ))
    }

    /// Counts a failed stream open attempt.
    pub fn count_open_failure(&self, reason: &str) {
        self.stream_open_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition (format 0.0.4), accepted by `promtool check metrics`.
    pub fn encode(&self) -> String {
        for hook in self
            .scrape_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            hook();
        }
        if let Some(bytes) = resident_memory_bytes() {
            self.rss.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut open_metrics = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.registry)
            .is_err()
        {
            return String::new();
        }
        to_prometheus_text(&open_metrics)
    }
}

/// Rewrites OpenMetrics counter descriptors (`# TYPE x counter` with samples `x_total`)
/// to the Prometheus text form (`# TYPE x_total counter`), and drops `# EOF`.
fn to_prometheus_text(open_metrics: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name);
            }
        }
    }
    let mut out = String::with_capacity(open_metrics.len() + counters.len() * 16);
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Resident set size from `/proc/self/status` (Linux; no page-size guess); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_described_under_their_sample_name() {
        let m = Metrics::new(&ServerStats::default());
        m.count_http("playlist", 200);
        let text = m.encode();
        assert!(text.contains("# TYPE xg2g_http_requests_total counter"));
        assert!(text.contains("# HELP xg2g_http_requests_total "));
        assert!(text.contains("xg2g_http_requests_total{route=\"playlist\",status=\"200\"} 1"));
        assert!(!text.contains("# EOF"));
        assert!(text.contains("xg2g_build_info{version="));
        m.receiver_cache
            .get_or_create(&ReceiverLabels {
                endpoint: "bouquets".into(),
                result: "hit".into(),
            })
            .inc();
        let text = m.encode();
        assert!(text.contains("# TYPE xg2g_receiver_cache_requests_total counter"));
        assert!(
            text.contains(
                "xg2g_receiver_cache_requests_total{endpoint=\"bouquets\",result=\"hit\"} 1"
            ),
            "{text}"
        );
    }
}
