//! The stream proxy: one upstream per channel, fanned out to many clients.
//!
//! Rules: a client names a channel by its service reference; only refs of the current
//! lineup (or, before the first refresh, refs that pass the service-reference grammar)
//! are streamed, and only from the configured receiver's two stream ports, so the proxy
//! can never be pointed elsewhere. At most `max_streams` channels stream at once
//! (default: the receiver's tuner count): a channel that lingers without clients does
//! not count and is closed the moment a new channel needs its tuner. The first client of
//! a channel opens the upstream on the core executor; later ones attach to it.

mod hub;
mod open;
mod ring;
mod transcoded;

pub use hub::ClientStream;
pub use open::PortKind;
pub use ring::{PACKET, looks_like_ts};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_io::Timer;
use serde_json::json;
use smol::Executor;

use crate::config::{Live, Settings};
use crate::http::{Abort, ErrorCode};
use crate::limit::BreakerConfig;
use crate::lineup::LineupStore;
use crate::metrics::Metrics;
use crate::receiver::http_client::{Origin, basic_auth};
use crate::receiver::{MAX_REF_LEN, canonical_ref, is_valid_service_ref};
use crate::transcode::profile::Profile;
use crate::transcode::queue::{Priority, Rejected};
use crate::transcode::{TranscodeError, Transcoder};
use hub::{Hub, HubEvents, Phase};
use open::Ports;

/// Tuners assumed until the receiver has said how many it has.
pub const DEFAULT_TUNERS: usize = 4;

/// Why a stream could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The path does not hold a service reference.
    #[error("not a valid service reference")]
    InvalidRef,
    /// A valid ref that is not in the lineup.
    #[error("no such channel in the lineup")]
    UnknownChannel,
    /// Every tuner is busy.
    #[error("all {limit} tuners are busy")]
    TunerLimit {
        /// The limit in force.
        limit: usize,
    },
    /// The receiver did not deliver MPEG-TS on any port tried.
    #[error("stream open failed ({reason}): {detail}")]
    OpenFailed {
        /// Metric label of the last attempt's failure.
        reason: &'static str,
        /// What happened.
        detail: String,
    },
    /// Every port to try has an open breaker.
    #[error("receiver stream ports unavailable (circuit breaker open)")]
    Unavailable {
        /// When the first breaker lets a probe through.
        retry_after: Duration,
    },
    /// The daemon is stopping.
    #[error("shutting down")]
    ShuttingDown,
    /// No encoder slot: the queue is full, the wait too long, or no device fits.
    #[error("no encoder slot: {0}")]
    NoEncoder(Rejected),
    /// ffmpeg failed to start or to deliver.
    #[error("transcode failed: {0}")]
    TranscodeFailed(String),
}

impl From<TranscodeError> for StreamError {
    fn from(e: TranscodeError) -> StreamError {
        match e {
            TranscodeError::Rejected(r) => StreamError::NoEncoder(r),
            other => StreamError::TranscodeFailed(other.to_string()),
        }
    }
}

impl StreamError {
    /// The HTTP error code answering this.
    pub fn code(&self) -> ErrorCode {
        match self {
            StreamError::InvalidRef => ErrorCode::InvalidRef,
            StreamError::UnknownChannel => ErrorCode::UnknownChannel,
            StreamError::TunerLimit { .. } => ErrorCode::TunerLimit,
            StreamError::OpenFailed { .. } => ErrorCode::StreamOpenFailed,
            StreamError::Unavailable { .. } | StreamError::ShuttingDown => {
                ErrorCode::ReceiverUnavailable
            }
            StreamError::NoEncoder(Rejected::Full) => ErrorCode::EncoderQueueFull,
            StreamError::NoEncoder(Rejected::Timeout) => ErrorCode::EncoderQueueTimeout,
            StreamError::NoEncoder(Rejected::NoDevice) => ErrorCode::NoEncoder,
            StreamError::TranscodeFailed(_) => ErrorCode::TranscodeFailed,
        }
    }
}

/// A channel a client may stream: what to send upstream and which port it defaults to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Canonical ref (the hub key).
    pub key: String,
    /// The ref as the receiver listed it.
    pub sref: String,
    /// Whitelisted for the stream relay.
    pub relay: bool,
}

/// An open stream for one client: the body to send and the signal that cuts it off.
pub struct Opened {
    /// The MPEG-TS bytes from the client's join point on.
    pub body: ClientStream,
    /// Completes when the client fell too far behind.
    pub abort: Abort,
}

/// The proxy; one per daemon, shared by the routes.
pub struct StreamService {
    inner: Arc<Inner>,
}

struct Inner {
    lineup: Arc<LineupStore>,
    metrics: Arc<Metrics>,
    ex: Arc<Executor<'static>>,
    tuning: Arc<Live<Tuning>>,
    /// One hub per channel, fed by the receiver: these hold tuners.
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    /// One hub per (channel, profile), fed by ffmpeg reading the channel's hub; keyed
    /// `<channel key>?<profile>`. They hold encoder slots, not tuners.
    transcodes: Mutex<HashMap<String, Arc<Hub>>>,
    transcoder: Arc<Transcoder>,
    next_client: AtomicU64,
    shutting_down: AtomicBool,
    /// Handed to hubs and clients for their events (a `Weak` to avoid a cycle).
    me: Weak<Inner>,
}

/// The settings-derived part of the proxy, replaced whole on reload; an upstream keeps
/// the snapshot it was opened with.
struct Tuning {
    ports: Arc<Ports>,
    /// What `ports` was built from: an unchanged reload keeps the ports, their breakers
    /// and what detection learned.
    port_settings: PortSettings,
    max_streams: Option<usize>,
    client_buffer: usize,
    linger: Duration,
}

/// The settings the receiver ports are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortSettings {
    base: String,
    user: Option<String>,
    pass: Option<String>,
    direct: u16,
    relay: u16,
    timeout: Duration,
    smart: bool,
    breaker: BreakerConfig,
}

impl PortSettings {
    fn of(s: &Settings) -> PortSettings {
        PortSettings {
            base: s.owi_base.clone(),
            user: s.owi_user.clone(),
            pass: s.owi_pass.clone(),
            direct: s.stream_port,
            relay: s.relay_port,
            timeout: s.stream_timeout,
            smart: s.smart_stream_detection,
            breaker: BreakerConfig::from_settings(s),
        }
    }

    fn build(&self, metrics: &Arc<Metrics>) -> Result<Ports, String> {
        let base = Origin::parse(&self.base)?;
        let authorization = self
            .user
            .as_deref()
            .map(|u| basic_auth(u, self.pass.as_deref().unwrap_or_default()));
        Ok(Ports::new(
            &base,
            self.direct,
            self.relay,
            authorization,
            self.timeout,
            self.smart,
            self.breaker,
            metrics,
        ))
    }
}

impl Tuning {
    /// The tuning for `settings`, reusing `previous`'s ports when their settings match.
    fn new(
        settings: &Settings,
        previous: Option<&Tuning>,
        metrics: &Arc<Metrics>,
    ) -> Result<Tuning, String> {
        let port_settings = PortSettings::of(settings);
        let ports = match previous {
            Some(p) if p.port_settings == port_settings => Arc::clone(&p.ports),
            _ => Arc::new(port_settings.build(metrics)?),
        };
        Ok(Tuning {
            ports,
            port_settings,
            max_streams: settings.max_streams,
            client_buffer: usize::try_from(settings.stream_client_buffer).unwrap_or(2 << 20),
            linger: settings.stream_linger,
        })
    }
}

impl StreamService {
    /// The proxy for the receiver in `settings`.
    pub fn new(
        settings: &Settings,
        lineup: Arc<LineupStore>,
        metrics: Arc<Metrics>,
        ex: Arc<Executor<'static>>,
        transcoder: Arc<Transcoder>,
    ) -> Result<StreamService, String> {
        let tuning = Live::new(Arc::new(Tuning::new(settings, None, &metrics)?));
        let inner = Arc::new_cyclic(|me| Inner {
            lineup,
            metrics,
            ex,
            tuning,
            hubs: Mutex::new(HashMap::new()),
            transcodes: Mutex::new(HashMap::new()),
            transcoder,
            next_client: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            me: me.clone(),
        });
        Ok(StreamService { inner })
    }

    /// Takes over reloaded settings: later opens use the new ports, limit, buffer and
    /// linger; running upstreams and their clients are left alone. Settings that do
    /// not parse (they were validated, so this is not expected) keep the old tuning.
    pub fn reconfigure(&self, settings: &Settings) {
        let inner = &self.inner;
        let current = inner.tuning.get();
        match Tuning::new(settings, Some(&current), &inner.metrics) {
            Ok(tuning) => {
                inner.tuning.replace(Arc::new(tuning));
            }
            Err(e) => log::error!("event=stream_reconfigure_failed error=\"{e}\""),
        }
    }

    /// Checks the path tail of `/stream/<tail>` (percent-encoded) and finds the channel.
    pub fn resolve(&self, tail: &str) -> Result<Channel, StreamError> {
        // Three bytes per character at most when every one is escaped.
        if tail.len() > 3 * MAX_REF_LEN || tail.contains('/') {
            return Err(StreamError::InvalidRef);
        }
        let sref = crate::http::percent_decode(tail);
        if !is_valid_service_ref(&sref) {
            return Err(StreamError::InvalidRef);
        }
        let lineup = self.inner.lineup.get();
        if lineup.is_empty() {
            // Before the first refresh: the grammar is all we can check.
            return Ok(Channel {
                key: canonical_ref(&sref),
                sref,
                relay: false,
            });
        }
        let found = lineup.find(&sref).ok_or(StreamError::UnknownChannel)?;
        Ok(Channel {
            key: canonical_ref(&found.sref),
            sref: found.sref.clone(),
            relay: found.relay,
        })
    }

    /// The lineup streams are checked against (the last good refresh).
    pub fn lineup(&self) -> Arc<crate::lineup::Lineup> {
        self.inner.lineup.get()
    }

    /// The channels that may stream at once now.
    pub fn tuner_limit(&self) -> usize {
        self.inner.tuner_limit()
    }

    /// Attaches a client to the channel's stream in `profile`, opening the upstream (and
    /// for a transcode the ffmpeg session) first if needed; returns once it delivers
    /// MPEG-TS, so the answer can still be an error.
    pub async fn open(&self, channel: &Channel, profile: &Profile) -> Result<Opened, StreamError> {
        let mode = if profile.is_passthrough() {
            "copy"
        } else {
            "transcode"
        };
        let viewer = Client::Viewer(self.inner.metrics.transcode.mode(mode));
        self.inner.open_as(channel, profile, viewer).await
    }

    /// The channel in `profile` for an internal reader (the HLS segmenter): like
    /// [`StreamService::open`], but not counted as a stream client.
    pub async fn open_feed(
        &self,
        channel: &Channel,
        profile: &Profile,
    ) -> Result<Opened, StreamError> {
        self.inner.open_as(channel, profile, Client::Feed).await
    }

    /// An HLS segmenter reading `input` into `dir`.
    pub async fn segmenter(
        &self,
        input: crate::transcode::Input,
        dir: std::path::PathBuf,
        segment_seconds: u32,
        list_size: u32,
    ) -> Result<crate::transcode::Session, StreamError> {
        Ok(self
            .inner
            .transcoder
            .segmenter(input, dir, segment_seconds, list_size)
            .await?)
    }

    /// One JPEG frame of the channel (a preview: the lowest queue priority).
    pub async fn snapshot(&self, channel: &Channel) -> Result<Vec<u8>, StreamError> {
        let inner = &self.inner;
        if !inner.transcoder.slot_free(None) {
            inner.evict_lingering_transcode();
        }
        let input = inner.open_channel(channel, Client::Feed).await?;
        Ok(inner.transcoder.snapshot(Box::new(input.body)).await?)
    }

    /// Waits until every ffmpeg child is reaped (after [`StreamService::shutdown`]), at
    /// most `limit`; returns how many are left.
    pub async fn wait_children(&self, limit: Duration) -> usize {
        self.inner.transcoder.wait_children(limit).await
    }

    /// The encoders and their queue, for `/api/v1/encoders`.
    pub fn encoders(&self) -> serde_json::Value {
        self.inner.transcoder.status()
    }

    /// Ends every upstream (and so every client); new opens are refused.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let mut hubs: Vec<Arc<Hub>> = self.inner.transcodes().values().cloned().collect();
        hubs.extend(self.inner.hubs().values().cloned());
        for hub in hubs {
            hub.stop();
        }
    }

    /// Upstreams, clients, limit and breakers as JSON for `/api/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let inner = &self.inner;
        let hubs: Vec<Arc<Hub>> = inner.hubs().values().cloned().collect();
        let mut upstreams = Vec::new();
        let mut clients = 0;
        for hub in &hubs {
            let st = hub.lock();
            clients += st.clients();
            upstreams.push(json!({
                "ref": hub.sref,
                "state": phase_name(&st),
                "clients": st.clients(),
                "port": st.port.map(PortKind::as_str),
                "bytes_in": st.bytes_in(),
                "seconds": hub.created.elapsed().as_secs(),
            }));
        }
        let transcodes: Vec<serde_json::Value> = inner
            .transcodes()
            .values()
            .map(|hub| {
                let st = hub.lock();
                let profile = hub.key.split_once('?').map_or("", |(_, p)| p);
                json!({
                    "ref": hub.sref,
                    "profile": profile,
                    "state": phase_name(&st),
                    "clients": st.clients(),
                    "bytes_out": st.bytes_in(),
                    "seconds": hub.created.elapsed().as_secs(),
                })
            })
            .collect();
        let tuning = inner.tuning.get();
        let breakers: Vec<serde_json::Value> = tuning
            .ports
            .breakers()
            .iter()
            .map(|b| {
                json!({
                    "name": b.name(),
                    "state": b.state().as_str(),
                    "consecutive_failures": b.consecutive_failures(),
                })
            })
            .collect();
        json!({
            "limit": inner.limit_of(&tuning),
            "limit_source": match (tuning.max_streams, inner.lineup.get().tuners) {
                (Some(_), _) => "XG2G_MAX_STREAMS",
                (None, Some(_)) => "receiver",
                (None, None) => "default",
            },
            "active": inner.active_count(&inner.hubs()),
            "clients": clients,
            "upstreams": upstreams,
            "transcodes": transcodes,
            "breakers": breakers,
        })
    }
}

/// What a hub's state is called in `/api/v1/status`.
fn phase_name(st: &hub::HubState) -> &'static str {
    match st.phase {
        Phase::Opening => "opening",
        Phase::Running if st.stopping => "closing",
        Phase::Running if st.clients() == 0 => "lingering",
        Phase::Running => "streaming",
        Phase::Failed(_) | Phase::Ended => "closing",
    }
}

/// Who reads a hub: a viewer (counted as a stream client, in its mode's gauge), or
/// the feed of an ffmpeg session (counted nowhere: its viewers are).
#[derive(Clone)]
enum Client {
    Viewer(prometheus_client::metrics::gauge::Gauge),
    Feed,
}

/// A hub's events for one client, as its kind of client counts them.
struct ClientEvents {
    inner: Arc<Inner>,
    client: Client,
}

impl HubEvents for ClientEvents {
    fn client_dropped_slow(&self) {
        self.inner.client_dropped_slow();
    }

    fn bytes_out(&self, n: usize) {
        if matches!(self.client, Client::Viewer(_)) {
            self.inner.bytes_out(n);
        }
    }

    fn hub_idle(&self, hub: &Arc<Hub>, generation: u64) {
        self.inner.hub_idle(hub, generation);
    }

    fn client_left(&self) {
        if let Client::Viewer(gauge) = &self.client {
            gauge.dec();
            self.inner.metrics.stream_clients.dec();
        }
    }
}

impl Inner {
    fn hubs(&self) -> MutexGuard<'_, HashMap<String, Arc<Hub>>> {
        self.hubs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn transcodes(&self) -> MutexGuard<'_, HashMap<String, Arc<Hub>>> {
        self.transcodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `hub` out of its registry (unless a newer hub of its key replaced it).
    fn forget(&self, hub: &Arc<Hub>) {
        for mut hubs in [self.hubs(), self.transcodes()] {
            if hubs.get(&hub.key).is_some_and(|h| Arc::ptr_eq(h, hub)) {
                hubs.remove(&hub.key);
            }
        }
    }

    /// Whether `hub` is a transcode (in the transcode registry), not a channel upstream.
    fn is_transcode(&self, hub: &Arc<Hub>) -> bool {
        self.transcodes()
            .get(&hub.key)
            .is_some_and(|h| Arc::ptr_eq(h, hub))
    }

    /// Stops the transcode that has lingered without viewers the longest, so its encoder
    /// slot goes to a request that would otherwise wait (as a lingering channel gives
    /// its tuner to a new channel).
    fn evict_lingering_transcode(&self) {
        let victim = self
            .transcodes()
            .values()
            .filter_map(|h| {
                let st = h.lock();
                let idle = !st.stopping && st.clients() == 0 && matches!(st.phase, Phase::Running);
                idle.then(|| (Arc::clone(h), st.idle_since.unwrap_or(h.created)))
            })
            .min_by_key(|(_, since)| *since);
        if let Some((hub, _)) = victim {
            log::info!("event=transcode_linger_evicted key=\"{}\"", hub.key);
            self.forget(&hub);
            hub.stop();
        }
    }

    /// The client's stream once `hub` delivers (dropping it detaches the client).
    async fn client_of(
        self: &Arc<Self>,
        hub: Arc<Hub>,
        id: u64,
        abort: smol::channel::Receiver<()>,
        client: Client,
    ) -> Result<Opened, StreamError> {
        if let Client::Viewer(gauge) = &client {
            gauge.inc();
            self.metrics.stream_clients.inc();
        }
        let events: Arc<dyn HubEvents> = Arc::new(ClientEvents {
            inner: Arc::clone(self),
            client,
        });
        // From here on, dropping the client (error or not) detaches it.
        let body = ClientStream::new(Arc::clone(&hub), id, events);
        hub.wait_open(id).await?;
        Ok(Opened {
            body,
            abort: Abort(Box::pin(hub::aborted(abort))),
        })
    }

    /// Attaches `client` to the channel in `profile`: its receiver upstream, or its
    /// transcode of that upstream.
    async fn open_as(
        &self,
        channel: &Channel,
        profile: &Profile,
        client: Client,
    ) -> Result<Opened, StreamError> {
        if profile.is_passthrough() {
            self.open_channel(channel, client).await
        } else {
            self.open_transcode(channel, profile, client).await
        }
    }

    /// Attaches `client` to the channel's receiver upstream, opening it if needed;
    /// refused once the daemon is stopping.
    async fn open_channel(&self, channel: &Channel, client: Client) -> Result<Opened, StreamError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(StreamError::ShuttingDown);
        }
        let me = self.me.upgrade().ok_or(StreamError::ShuttingDown)?;
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let (hub, abort) = self.attach(channel, id)?;
        me.client_of(hub, id, abort, client).await
    }

    /// Attaches `client` to the channel's transcode in `profile`, starting it if needed:
    /// the session reads the channel's upstream and waits for an encoder slot, at
    /// priority active when the channel is already being watched, else normal.
    async fn open_transcode(
        &self,
        channel: &Channel,
        profile: &Profile,
        client: Client,
    ) -> Result<Opened, StreamError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(StreamError::ShuttingDown);
        }
        let me = self.me.upgrade().ok_or(StreamError::ShuttingDown)?;
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let key = format!("{}?{}", channel.key, profile.name);
        let (hub, abort) = {
            let mut transcodes = self.transcodes();
            let existing = transcodes
                .get(&key)
                .and_then(|h| Some((Arc::clone(h), h.attach(id)?)));
            match existing {
                Some((hub, (abort, _))) => (hub, abort),
                None => {
                    let capacity = self.tuning.get().client_buffer;
                    let hub = Hub::new(key.clone(), channel.sref.clone(), channel.relay, capacity);
                    let Some((abort, _)) = hub.attach(id) else {
                        return Err(StreamError::ShuttingDown);
                    };
                    transcodes.insert(key, Arc::clone(&hub));
                    drop(transcodes);
                    if !self.transcoder.slot_free(Some(profile)) {
                        self.evict_lingering_transcode();
                    }
                    let watched = self
                        .hubs()
                        .get(&channel.key)
                        .is_some_and(|h| h.lock().clients() > 0);
                    let priority = if watched {
                        Priority::Active
                    } else {
                        Priority::Normal
                    };
                    self.start_transcode(
                        Arc::clone(&hub),
                        channel.clone(),
                        profile.clone(),
                        priority,
                    );
                    (hub, abort)
                }
            }
        };
        me.client_of(hub, id, abort, client).await
    }

    fn tuner_limit(&self) -> usize {
        self.limit_of(&self.tuning.get())
    }

    /// The tuner limit under `tuning`: the setting, else the receiver's tuner count.
    fn limit_of(&self, tuning: &Tuning) -> usize {
        tuning.max_streams.unwrap_or_else(|| {
            self.lineup
                .get()
                .tuners
                .and_then(|t| usize::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_TUNERS)
        })
    }

    /// Upstreams holding a tuner for clients: opening, or running with clients.
    fn active_count(&self, hubs: &HashMap<String, Arc<Hub>>) -> usize {
        hubs.values()
            .filter(|h| {
                let st = h.lock();
                !st.stopping
                    && (matches!(st.phase, Phase::Opening)
                        || (matches!(st.phase, Phase::Running) && st.clients() > 0))
            })
            .count()
    }

    /// Attaches client `id` to the channel's hub, creating (and starting) it if needed.
    fn attach(
        &self,
        channel: &Channel,
        id: u64,
    ) -> Result<(Arc<Hub>, smol::channel::Receiver<()>), StreamError> {
        let mut hubs = self.hubs();
        if let Some(hub) = hubs.get(&channel.key) {
            if let Some((abort, _)) = hub.attach(id) {
                return Ok((Arc::clone(hub), abort));
            }
        }
        // One tuning snapshot for the whole attach: limit, buffer and ports agree.
        let tuning = self.tuning.get();
        let limit = self.limit_of(&tuning);
        let active = self.active_count(&hubs);
        if active >= limit {
            self.metrics.count_open_failure("tuner_limit");
            log::warn!(
                "event=stream_refused ref=\"{}\" reason=tuner_limit limit={limit}",
                channel.sref
            );
            return Err(StreamError::TunerLimit { limit });
        }
        // Lingering upstreams hold tuners too: free the longest-idle one if needed.
        let lingering: Vec<(Arc<Hub>, std::time::Instant)> = hubs
            .values()
            .filter_map(|h| {
                let st = h.lock();
                let idle = !st.stopping && st.clients() == 0 && matches!(st.phase, Phase::Running);
                idle.then(|| (Arc::clone(h), st.idle_since.unwrap_or(h.created)))
            })
            .collect();
        if active + lingering.len() >= limit {
            if let Some((hub, _)) = lingering.iter().min_by_key(|(_, since)| *since) {
                log::info!(
                    "event=stream_linger_evicted ref=\"{}\" for=\"{}\"",
                    hub.sref,
                    channel.sref
                );
                hub.stop();
                hubs.remove(&hub.key);
            }
        }
        let hub = Hub::new(
            channel.key.clone(),
            channel.sref.clone(),
            channel.relay,
            tuning.client_buffer,
        );
        let Some((abort, _)) = hub.attach(id) else {
            return Err(StreamError::ShuttingDown);
        };
        hubs.insert(channel.key.clone(), Arc::clone(&hub));
        drop(hubs);
        self.start(Arc::clone(&hub), Arc::clone(&tuning.ports));
        Ok((hub, abort))
    }

    /// Runs the hub's upstream on the executor and removes it from the registry after.
    fn start(&self, hub: Arc<Hub>, ports: Arc<Ports>) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        self.metrics.stream_upstreams.inc();
        log::info!("event=stream_upstream_open ref=\"{}\"", hub.sref);
        self.ex
            .spawn(async move {
                let open = ports.open(&hub.key, &hub.sref, hub.relay, &me.metrics);
                let ended = hub.run(open, &*me).await;
                me.forget(&hub);
                me.metrics.stream_upstreams.dec();
                let st = hub.lock();
                log::info!(
                    "event=stream_upstream_closed ref=\"{}\" reason={ended} bytes_in={} seconds={:.1}",
                    hub.sref,
                    st.bytes_in(),
                    hub.created.elapsed().as_secs_f64()
                );
            })
            .detach();
    }

    /// Runs a transcode hub: its feed from the channel's hub, its encoder slot and
    /// ffmpeg session, then the session's output into the hub's ring.
    fn start_transcode(
        &self,
        hub: Arc<Hub>,
        channel: Channel,
        profile: Profile,
        priority: Priority,
    ) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        log::info!(
            "event=transcode_hub_open ref=\"{}\" profile={} priority={}",
            hub.sref,
            profile.name,
            priority.as_str()
        );
        self.ex
            .spawn(async move {
                let open = transcoded::open(&me, &channel, &profile, priority);
                let ended = hub.run(open, &*me).await;
                me.forget(&hub);
                let st = hub.lock();
                log::info!(
                    "event=transcode_hub_closed ref=\"{}\" profile={} reason={ended} bytes={} seconds={:.1}",
                    hub.sref,
                    profile.name,
                    st.bytes_in(),
                    hub.created.elapsed().as_secs_f64()
                );
            })
            .detach();
    }
}

impl HubEvents for Inner {
    fn client_dropped_slow(&self) {
        self.metrics.stream_clients_dropped_slow.inc();
        log::warn!("event=stream_client_dropped reason=slow");
    }

    fn bytes_out(&self, n: usize) {
        self.metrics.stream_bytes_out.inc_by(n as u64);
    }

    fn client_left(&self) {
        // Clients are counted by their `ClientEvents`, which know what kind they are.
    }

    fn hub_idle(&self, hub: &Arc<Hub>, generation: u64) {
        // A transcode still waiting for its slot has nothing to linger for: leave the
        // queue at once.
        let waiting = self.is_transcode(hub) && matches!(hub.lock().phase, Phase::Opening);
        let stop_if_idle = {
            let hub = Arc::clone(hub);
            let me = self.me.clone();
            move || {
                let still_idle = {
                    let st = hub.lock();
                    st.clients() == 0 && st.generation == generation && !st.stopping
                };
                if still_idle {
                    if let Some(me) = me.upgrade() {
                        me.forget(&hub);
                    }
                    hub.stop();
                }
            }
        };
        let linger = self.tuning.get().linger;
        if linger.is_zero() || waiting {
            stop_if_idle();
            return;
        }
        self.ex
            .spawn(async move {
                Timer::after(linger).await;
                stop_if_idle();
            })
            .detach();
    }
}
