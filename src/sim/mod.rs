//! A simulated Enigma2 receiver (OpenWebIF JSON, picons, MPEG-TS) for the demo and tests.
//!
//! Rules: everything it serves is a deterministic function of `SimConfig` and the request
//! time; it is hostile the way real boxes are (escaped and control-laden names, nested
//! bouquets, Latin-1 bodies, gzip, faults switchable at run time) but never buffers a
//! big answer: EPG and endless bodies are generated while they are sent, a few KiB at a
//! time. The `/sim/...` control endpoints are never affected by faults. The API and the
//! streaming port (8001) serve requests handed to them by the project's HTTP server
//! (`crate::http`); the stream-relay port (17999) has its own small accept loop because
//! the real one answers with bare-`\n` heads that our server never writes.

mod api;
mod clip;
mod epg;
mod json;
mod layout;
mod png;
mod relay;
mod stream;

pub use stream::{PACKET, is_valid_clip, load_clip};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_io::Async;
use serde::Serialize;
use smol::Executor;

use crate::http::{Body, Handler, Request, Response, ServerStats, ShutdownSignal, percent_decode};
use json::{Gen, GenBody, Style, TextGen, Wire};
use layout::{Layout, clean_name};

/// Bytes of a generated body kept by the `malformed` fault before it is cut off.
const MALFORMED_CUT: usize = 3000;

/// Packets sent before the `stall` fault stops a stream (three chunks of 7).
const STALL_AFTER_PACKETS: u64 = 3 * 7;

/// Stream time sent before the `eof` fault ends a stream.
const EOF_AFTER: Duration = Duration::from_secs(1);

/// Tuners reported by `/api/about` at most.
const MAX_TUNERS: u32 = 8;

/// What a real 8001 port writes into the body when it cannot tune.
const TUNE_FAILED: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\n";

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A fault name that is not one of the known modes.
    #[error(
        "unknown fault mode {0:?} (expected none, slow, http500, malformed, endless, stall or eof)"
    )]
    UnknownFault(String),
    /// Making or reading the MPEG-TS clip failed (the embedded clip is used instead).
    #[error("simulator clip: {0}")]
    Clip(String),
}

/// A misbehaviour the simulator can be switched into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Every API answer is delayed by `SimConfig::slow_delay` (an async timer).
    Slow,
    /// Every API answer is `500 Internal Server Error`.
    Http500,
    /// API answers are status 200 with truncated, invalid JSON.
    Malformed,
    /// Bouquet, service and EPG bodies never end (valid-looking JSON forever).
    Endless,
    /// Streams send their head and a few packets, then nothing, without closing.
    Stall,
    /// Streams send about one second of packets, then end the body (close).
    Eof,
}

const FAULTS: [Fault; 7] = [
    Fault::None,
    Fault::Slow,
    Fault::Http500,
    Fault::Malformed,
    Fault::Endless,
    Fault::Stall,
    Fault::Eof,
];

impl Fault {
    /// The mode's name as accepted by `FromStr` (`none`, `slow`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Slow => "slow",
            Fault::Http500 => "http500",
            Fault::Malformed => "malformed",
            Fault::Endless => "endless",
            Fault::Stall => "stall",
            Fault::Eof => "eof",
        }
    }

    fn index(self) -> u8 {
        FAULTS.iter().position(|f| *f == self).unwrap_or(0) as u8
    }

    fn from_index(i: u8) -> Fault {
        FAULTS.get(usize::from(i)).copied().unwrap_or(Fault::None)
    }
}

impl FromStr for Fault {
    type Err = Error;

    /// Parses `none|slow|http500|malformed|endless|stall|eof` (case-insensitive, trimmed).
    fn from_str(s: &str) -> Result<Fault, Error> {
        let t = s.trim();
        FAULTS
            .iter()
            .copied()
            .find(|f| f.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| Error::UnknownFault(s.to_string()))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the simulated receiver looks and behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Playable channels in total (distinct refs, the alternatives group counted once);
    /// clamped to 1..=50000. Default 40.
    pub channels: usize,
    /// EPG days per channel. Default 7.
    pub days: u32,
    /// EPG events per day and channel (clamped to 1..=1440). Default 24.
    pub events_per_day: u32,
    /// Send ISO-8859-1 bodies (`charset=ISO-8859-1`, `?` for what Latin-1 cannot carry)
    /// like older boxes. Default false.
    pub latin1: bool,
    /// Escape non-ASCII as `\uXXXX` in JSON strings like Python's `json.dumps` does;
    /// ignored with `latin1` (those boxes send raw bytes). Default false (raw UTF-8).
    pub ascii_json: bool,
    /// The fault at start (switchable at run time). Default none.
    pub fault: Fault,
    /// Varies SIDs and EPG content. Default 0.
    pub seed: u64,
    /// Delay of every API answer under the `slow` fault. Default 3 s.
    pub slow_delay: Duration,
    /// A fixed clock (Unix seconds) instead of the system time, for reproducible tests.
    pub now: Option<i64>,
    /// Credentials the stream-relay port demands (HTTP Basic, sent up front); `None`
    /// serves without. Default none.
    pub relay_auth: Option<(String, String)>,
    /// Stream pacing in bit/s on both streaming ports: `None` = the clip's own rate,
    /// `Some(0)` = unpaced (as fast as the socket takes it), `Some(n)` = n bit/s.
    /// Default none.
    pub stream_bitrate: Option<u64>,
    /// Tuners listed by `/api/about`, clamped to 1..=8. Default 4.
    pub tuners: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            channels: 40,
            days: 7,
            events_per_day: 24,
            latin1: false,
            ascii_json: false,
            fault: Fault::None,
            seed: 0,
            slow_delay: Duration::from_secs(3),
            now: None,
            relay_auth: None,
            stream_bitrate: None,
            tuners: 4,
        }
    }
}

/// Endpoints counted in the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    About,
    Bouquets,
    GetServices,
    EpgBouquet,
    EpgService,
    Picon,
    File,
    Stream,
    Control,
    Other,
}

const ENDPOINTS: [(Endpoint, &str); 10] = [
    (Endpoint::About, "about"),
    (Endpoint::Bouquets, "bouquets"),
    (Endpoint::GetServices, "getservices"),
    (Endpoint::EpgBouquet, "epgbouquet"),
    (Endpoint::EpgService, "epgservice"),
    (Endpoint::Picon, "picon"),
    (Endpoint::File, "file"),
    (Endpoint::Stream, "stream"),
    (Endpoint::Control, "sim"),
    (Endpoint::Other, "other"),
];

impl Endpoint {
    fn of_api_path(path: &str) -> Endpoint {
        match path {
            "/api/about" => Endpoint::About,
            "/api/bouquets" => Endpoint::Bouquets,
            "/api/getservices" => Endpoint::GetServices,
            "/api/epgbouquet" => Endpoint::EpgBouquet,
            "/api/epgservice" => Endpoint::EpgService,
            "/file" => Endpoint::File,
            p if p.starts_with("/picon/") => Endpoint::Picon,
            p if p.starts_with("/sim/") => Endpoint::Control,
            _ => Endpoint::Other,
        }
    }

    fn index(self) -> usize {
        ENDPOINTS.iter().position(|(e, _)| *e == self).unwrap_or(0)
    }
}

/// Shared counters; EPG bodies and streams update them while they are sent.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: [AtomicU64; ENDPOINTS.len()],
    pub(crate) epg_events_served: AtomicU64,
    pub(crate) epg_events_valid: AtomicU64,
    pub(crate) streams_active: AtomicU64,
    pub(crate) streams_total: AtomicU64,
    pub(crate) relay_streams_active: AtomicU64,
    pub(crate) relay_streams_total: AtomicU64,
    pub(crate) relay_connections: AtomicU64,
    /// Handed to the HTTP server of the streaming port, which counts what it accepts.
    stream_server: ServerStats,
}

impl Counters {
    fn count(&self, e: Endpoint) {
        if let Some(c) = self.requests.get(e.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The (active, total) stream counters of a port.
    pub(crate) fn streams(&self, port: stream::Port) -> (&AtomicU64, &AtomicU64) {
        match port {
            stream::Port::Stream => (&self.streams_active, &self.streams_total),
            stream::Port::Relay => (&self.relay_streams_active, &self.relay_streams_total),
        }
    }
}

/// A snapshot of the simulator's counters (also served as `GET /sim/stats`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Requests per endpoint (`about`, `bouquets`, `getservices`, `epgbouquet`,
    /// `epgservice`, `picon`, `file`, `stream`, `sim`, `other`), zeros included.
    pub requests: BTreeMap<String, u64>,
    /// EPG events generated into answers (all of them, also those without a title).
    pub epg_events_served: u64,
    /// Of those, events with a title that is non-empty once cleaned (what a client keeps).
    pub epg_events_valid: u64,
    /// Playable channels (the length of `expected()`).
    pub channels: usize,
    /// Streams currently open on the streaming port (8001).
    pub streams_active: u64,
    /// Streams opened on the streaming port since start (known refs only).
    pub streams_total: u64,
    /// Connections accepted on the streaming port, failed tunes and bad requests
    /// included; counted only when the port is served with `Simulator::stream_server_stats`.
    pub stream_connections_total: u64,
    /// Streams currently open on the stream-relay port.
    pub relay_streams_active: u64,
    /// Streams opened on the stream-relay port since start (whitelisted refs only).
    pub relay_streams_total: u64,
    /// Connections accepted on the stream-relay port, refused ones included.
    pub relay_connections_total: u64,
    /// The current fault mode.
    pub fault: String,
}

/// One channel as a correct client should list it (see `Simulator::expected`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExpectedChannel {
    /// The service reference to stream (the group's own ref for alternatives).
    pub sref: String,
    /// The clean name: entities decoded once, Enigma2 controls handled, single line.
    pub name: String,
    /// The clean name of the top-level bouquet it is first listed in.
    pub group: String,
    /// Events of this channel a client keeps (those with a title), for a window that
    /// covers the whole generated schedule: what its guide must show.
    pub kept_events: u64,
    /// Listed in the receiver's stream-relay whitelist: streams from the relay port.
    pub relay: bool,
}

struct Inner {
    cfg: SimConfig,
    layout: Arc<Layout>,
    counters: Arc<Counters>,
    fault: AtomicU8,
    clip: Arc<clip::Clip>,
    pace: stream::Pace,
    /// The rate the `eof` fault's one second is measured in.
    bitrate: u64,
}

/// The simulated receiver: cheap to clone and share (state behind `Arc` and atomics).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("channels", &self.inner.layout.playable.len())
            .field("fault", &self.fault())
            .finish()
    }
}

impl Simulator {
    /// A simulator streaming the small clip embedded in the binary.
    pub fn new(cfg: SimConfig) -> Simulator {
        Simulator::with_clip(cfg, stream::FALLBACK.to_vec())
    }

    /// A simulator streaming `clip` (e.g. from `load_clip`); an invalid clip is replaced
    /// by the embedded one.
    pub fn with_clip(cfg: SimConfig, clip: Vec<u8>) -> Simulator {
        let clip = if is_valid_clip(&clip) {
            clip
        } else {
            log::warn!("sim clip=embedded reason=\"given clip is not whole MPEG-TS packets\"");
            stream::FALLBACK.to_vec()
        };
        let clip_rate = stream::clip_bitrate(&clip);
        let (pace, bitrate) = match cfg.stream_bitrate {
            None => (stream::Pace::Bitrate(clip_rate), clip_rate),
            Some(0) => (stream::Pace::Unpaced, clip_rate),
            Some(n) => (stream::Pace::Bitrate(n), n),
        };
        let layout = Arc::new(Layout::build(cfg.channels, cfg.seed));
        let fault = AtomicU8::new(cfg.fault.index());
        Simulator {
            inner: Arc::new(Inner {
                cfg,
                layout,
                counters: Arc::new(Counters::default()),
                fault,
                clip: Arc::new(clip::Clip::new(clip)),
                pace,
                bitrate,
            }),
        }
    }

    /// The OpenWebIF API handler (`/api/...`, `/picon/...`, `/file`, `/sim/...`).
    pub fn api_handler(&self) -> ApiHandler {
        ApiHandler {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The streaming-port handler (`GET /<sref>` → endless paced MPEG-TS).
    pub fn stream_handler(&self) -> StreamHandler {
        StreamHandler {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The server statistics to pass to `crate::http::serve` for the streaming port:
    /// its `accepted` counter is what `Stats::stream_connections_total` reports.
    pub fn stream_server_stats(&self) -> ServerStats {
        self.inner.counters.stream_server.clone()
    }

    /// Serves the stream-relay port on `listener` until `shutdown` fires, then stops
    /// accepting and cuts open connections. Each connection runs on `ex`; at most
    /// 256 are open at once (more are closed unanswered); request heads are bounded
    /// to 8 KiB and 10 s. See the `relay` module for what it answers.
    pub async fn serve_relay(
        &self,
        listener: Async<TcpListener>,
        ex: Arc<Executor<'static>>,
        shutdown: ShutdownSignal,
    ) {
        relay::serve(Arc::clone(&self.inner), listener, ex, shutdown).await
    }

    /// The current fault mode.
    pub fn fault(&self) -> Fault {
        self.inner.fault()
    }

    /// Switches the fault mode; requests already being answered keep theirs.
    pub fn set_fault(&self, fault: Fault) {
        self.inner.fault.store(fault.index(), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The playlist a correct client builds: bouquets in order, channels in order, nested
    /// sub-bouquets expanded in place, each ref once (first listing wins).
    pub fn expected(&self) -> Vec<ExpectedChannel> {
        self.inner.expected()
    }

    /// Number of playable channels (equals the configured count after clamping).
    pub fn channel_count(&self) -> usize {
        self.inner.layout.playable.len()
    }
}

/// Serves the OpenWebIF API of the simulator; see `Simulator::api_handler`.
pub struct ApiHandler {
    inner: Arc<Inner>,
}

/// Serves the streaming port of the simulator; see `Simulator::stream_handler`.
pub struct StreamHandler {
    inner: Arc<Inner>,
}

impl Handler for ApiHandler {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(self.inner.api(req))
    }
}

impl Handler for StreamHandler {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move { self.inner.stream(&req) })
    }
}

/// A JSON answer: known text, or a generator for big/endless ones.
enum Payload {
    Text(String),
    Gen(Box<dyn Gen>),
}

fn text_response(status: u16, ctype: &str, body: &str) -> Response {
    Response::bytes(status, ctype, body.as_bytes().to_vec())
}

fn html_error(status: u16, what: &str) -> Response {
    let body = format!(
        "<html><head><title>{status} - {what}</title></head><body><h1>{what}</h1></body></html>"
    );
    text_response(status, "text/html", &body)
}

fn json_ok<T: Serialize>(v: &T) -> Response {
    Response::bytes(
        200,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// True when the client accepts gzip (a `gzip` token without `q=0`).
fn accepts_gzip(req: &Request) -> bool {
    req.header("Accept-Encoding").is_some_and(|v| {
        v.split(',').any(|tok| {
            let mut parts = tok.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

impl Inner {
    fn fault(&self) -> Fault {
        Fault::from_index(self.fault.load(Ordering::Relaxed))
    }

    fn style(&self) -> Style {
        Style {
            ascii: self.cfg.ascii_json && !self.cfg.latin1,
        }
    }

    fn now(&self) -> i64 {
        self.cfg.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
    }

    fn shape(&self) -> epg::Shape {
        epg::Shape {
            days: self.cfg.days,
            per_day: self.cfg.events_per_day,
            seed: self.cfg.seed,
            style: self.style(),
        }
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: ENDPOINTS
                .iter()
                .map(|(e, name)| {
                    let n = c
                        .requests
                        .get(e.index())
                        .map_or(0, |a| a.load(Ordering::Relaxed));
                    (name.to_string(), n)
                })
                .collect(),
            epg_events_served: c.epg_events_served.load(Ordering::Relaxed),
            epg_events_valid: c.epg_events_valid.load(Ordering::Relaxed),
            channels: self.layout.playable.len(),
            streams_active: c.streams_active.load(Ordering::Relaxed),
            streams_total: c.streams_total.load(Ordering::Relaxed),
            stream_connections_total: c.stream_server.accepted.get(),
            relay_streams_active: c.relay_streams_active.load(Ordering::Relaxed),
            relay_streams_total: c.relay_streams_total.load(Ordering::Relaxed),
            relay_connections_total: c.relay_connections.load(Ordering::Relaxed),
            fault: self.fault().as_str().to_string(),
        }
    }

    fn expected(&self) -> Vec<ExpectedChannel> {
        let l = &self.layout;
        let shape_count =
            u64::from(self.cfg.days) * u64::from(self.cfg.events_per_day.clamp(1, 1440));
        l.playable
            .iter()
            .filter_map(|p| {
                let s = l.services.get(p.service)?;
                let b = l.bouquets.get(p.bouquet)?;
                Some(ExpectedChannel {
                    sref: s.sref.clone(),
                    name: clean_name(&s.name, self.cfg.latin1),
                    group: clean_name(&b.name, self.cfg.latin1),
                    kept_events: epg::kept_events(self.cfg.seed, p.service as u64, shape_count),
                    relay: l.relay.contains(&p.service),
                })
            })
            .collect()
    }

    async fn api(&self, req: Request) -> Response {
        let ep = Endpoint::of_api_path(&req.path);
        self.counters.count(ep);
        if ep == Endpoint::Control {
            return self.control(&req);
        }
        let fault = self.fault();
        if fault == Fault::Slow {
            async_io::Timer::after(self.cfg.slow_delay).await;
        }
        if fault == Fault::Http500 {
            return html_error(500, "Internal Server Error");
        }
        let malformed = fault == Fault::Malformed;
        let endless = fault == Fault::Endless;
        let style = self.style();
        let l = &self.layout;
        let payload = match ep {
            Endpoint::About => Payload::Text(api::about(l, self.now(), self.tuners())),
            Endpoint::Bouquets => {
                let radio = req.query_param("stype").is_some_and(|t| t == "radio");
                let items = api::bouquet_items(l, radio, style);
                if endless {
                    let g = api::EndlessList::new(api::EndlessKind::Bouquets, &items, style);
                    Payload::Gen(Box::new(g))
                } else {
                    Payload::Text(api::bouquets_doc(&items))
                }
            }
            Endpoint::GetServices => {
                let sref = req.query_param("sRef").unwrap_or_default();
                let (items, pos) = api::service_items(l, &sref, style).unwrap_or_default();
                if endless {
                    let g = api::EndlessList::new(api::EndlessKind::Services, &items, style);
                    Payload::Gen(Box::new(g))
                } else {
                    Payload::Text(api::services_doc(&items, pos))
                }
            }
            Endpoint::EpgBouquet => {
                match req.query_param("bRef").and_then(|r| l.bouquet_by_ref(&r)) {
                    Some(bi) => self.epg(&req, l.direct_services(bi), false, endless),
                    None if endless => self.epg(&req, Vec::new(), false, true),
                    None => Payload::Text("{\"events\": [], \"result\": false}".to_string()),
                }
            }
            Endpoint::EpgService => {
                let sref = req.query_param("sRef").unwrap_or_default();
                match l.service_by_ref(&sref) {
                    Some(s) => self.epg(&req, vec![s], true, endless),
                    None if endless => self.epg(&req, Vec::new(), true, true),
                    None => Payload::Text(epg::placeholder(&sref, style)),
                }
            }
            Endpoint::Picon => return self.picon(&req.path, malformed),
            Endpoint::File => return self.file(&req),
            Endpoint::Stream | Endpoint::Control | Endpoint::Other => {
                return html_error(404, "No such resource");
            }
        };
        self.json(&req, payload, malformed)
    }

    /// The EPG payload for these services (`endless` with none: all playable ones).
    fn epg(
        &self,
        req: &Request,
        mut services: Vec<usize>,
        detailed: bool,
        endless: bool,
    ) -> Payload {
        if endless && services.is_empty() {
            services = self.layout.playable.iter().map(|p| p.service).collect();
        }
        let now = self.now();
        let param = |k: &str| {
            req.query_param(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        // Like Enigma2: `time` <= 0 means now; `endTime` is a span in MINUTES from
        // `time` (OpenWebIF hands it to the EPG cache as such), <= 0 means no limit.
        let from = param("time").filter(|t| *t > 0).unwrap_or(now);
        let until = param("endTime")
            .filter(|m| *m > 0)
            .map(|m| from.saturating_add(m.saturating_mul(60)));
        let window = epg::Window { now, from, until };
        Payload::Gen(Box::new(epg::EpgGen::new(
            Arc::clone(&self.layout),
            Arc::clone(&self.counters),
            services,
            self.shape(),
            window,
            detailed,
            endless,
        )))
    }

    /// Sends a JSON payload in the configured charset, gzipped when accepted, cut short
    /// under the `malformed` fault.
    fn json(&self, req: &Request, payload: Payload, malformed: bool) -> Response {
        let latin1 = self.cfg.latin1;
        let gzip = accepts_gzip(req);
        let ctype = if latin1 {
            "application/json; charset=ISO-8859-1"
        } else {
            "application/json; charset=utf-8"
        };
        let mut wire = Wire {
            latin1,
            gzip,
            limit: None,
        };
        let source: Box<dyn Gen> = match payload {
            Payload::Text(text) => {
                let mut bytes = Vec::with_capacity(text.len());
                json::encode(&text, latin1, &mut bytes);
                if malformed {
                    bytes.truncate(bytes.len() / 2);
                }
                if !gzip {
                    return Response::bytes(200, ctype, bytes);
                }
                wire.limit = Some(bytes.len());
                Box::new(TextGen(text))
            }
            Payload::Gen(g) => {
                if malformed {
                    wire.limit = Some(MALFORMED_CUT);
                }
                g
            }
        };
        let mut resp = Response::empty(200)
            .with_header("Content-Type", ctype)
            .with_body(Body::Stream(Box::pin(GenBody::new(source, wire))));
        if gzip {
            resp = resp.with_header("Content-Encoding", "gzip");
        }
        resp
    }

    fn picon(&self, path: &str, malformed: bool) -> Response {
        let name = path
            .strip_prefix("/picon/")
            .and_then(|p| p.strip_suffix(".png"))
            .map(percent_decode)
            .unwrap_or_default();
        match self.layout.service_by_picon(&name) {
            Some(s) => {
                let rgb = (epg::mix(self.cfg.seed ^ s as u64) & 0xFF_FFFF) as u32;
                let mut png = png::picon(rgb);
                if malformed {
                    png.truncate(png.len() / 2);
                }
                Response::bytes(200, "image/png", png)
            }
            None => html_error(404, "No such resource"),
        }
    }

    fn file(&self, req: &Request) -> Response {
        if req.query_param("file").as_deref() != Some("/etc/enigma2/whitelist_streamrelay") {
            return html_error(404, "File not found");
        }
        let mut body = String::new();
        for s in &self.layout.relay {
            if let Some(s) = self.layout.services.get(*s) {
                body.push_str(&s.sref);
                body.push('\n');
            }
        }
        text_response(200, "text/plain", &body)
    }

    /// `/sim/...`: fault switch, counters, expected playlist; never affected by faults.
    fn control(&self, req: &Request) -> Response {
        match req.path.as_str() {
            "/sim/fault" if req.method == "POST" => {
                let mode = req.query_param("mode").unwrap_or_default();
                match mode.parse::<Fault>() {
                    Ok(f) => {
                        self.fault.store(f.index(), Ordering::Relaxed);
                        log::info!("sim fault={f}");
                        json_ok(&serde_json::json!({ "fault": f.as_str() }))
                    }
                    Err(e) => text_response(400, "text/plain", &format!("{e}\n")),
                }
            }
            "/sim/fault" => text_response(405, "text/plain", "use POST /sim/fault?mode=...\n"),
            "/sim/stats" => json_ok(&self.stats()),
            "/sim/expected" => json_ok(&serde_json::json!({ "channels": self.expected() })),
            _ => html_error(404, "No such resource"),
        }
    }

    /// The streaming port: a known ref gets the paced clip, anything else the failed-tune
    /// text; both as a close-delimited `video/mpeg` body like a real 8001 port.
    fn stream(&self, req: &Request) -> Response {
        self.counters.count(Endpoint::Stream);
        let sref = percent_decode(req.path.strip_prefix('/').unwrap_or(&req.path));
        let body: Pin<Box<dyn smol::io::AsyncRead + Send>> = match self.layout.service_by_ref(&sref)
        {
            Some(_) => Box::pin(self.ts_body(stream::Port::Stream)),
            None => Box::pin(smol::io::Cursor::new(TUNE_FAILED)),
        };
        let mut resp = Response::empty(200)
            .with_header("Content-Type", "video/mpeg")
            .with_body(Body::Stream(body));
        resp.close = true;
        resp
    }

    /// A stream body for `port`, counted there while it lives, shaped by the current
    /// fault and the configured pacing.
    fn ts_body(&self, port: stream::Port) -> stream::TsBody {
        let limit = match self.fault() {
            Fault::Stall => Some((
                stream::packets_bytes(STALL_AFTER_PACKETS),
                stream::Ending::Stall,
            )),
            Fault::Eof => Some((
                stream::packets_bytes(stream::packets_in(self.bitrate, EOF_AFTER)),
                stream::Ending::Eof,
            )),
            _ => None,
        };
        let active = stream::Active::new(Arc::clone(&self.counters), port);
        stream::TsBody::new(Arc::clone(&self.clip), self.pace, limit, active)
    }

    fn tuners(&self) -> u32 {
        self.cfg.tuners.clamp(1, MAX_TUNERS)
    }
}

#[cfg(test)]
mod tests;
