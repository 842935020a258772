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
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
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
    ) -> Result<StreamService, String> {
        let tuning = Live::new(Arc::new(Tuning::new(settings, None, &metrics)?));
        let inner = Arc::new_cyclic(|me| Inner {
            lineup,
            metrics,
            ex,
            tuning,
            hubs: Mutex::new(HashMap::new()),
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

    /// Attaches a client to the channel's upstream, opening it first if needed; returns
    /// once the upstream has delivered MPEG-TS (so the answer can still be an error).
    pub async fn open(&self, channel: &Channel) -> Result<Opened, StreamError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Relaxed) {
            return Err(StreamError::ShuttingDown);
        }
        let id = inner.next_client.fetch_add(1, Ordering::Relaxed);
        let (hub, abort) = inner.attach(channel, id)?;
        inner.metrics.stream_clients.inc();
        let events: Arc<dyn HubEvents> = self.inner.clone();
        // From here on, dropping the client (error or not) detaches it.
        let body = ClientStream::new(Arc::clone(&hub), id, events);
        hub.wait_open(id).await?;
        Ok(Opened {
            body,
            abort: Abort(Box::pin(hub::aborted(abort))),
        })
    }

    /// Ends every upstream (and so every client); new opens are refused.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let hubs: Vec<Arc<Hub>> = self.inner.hubs().values().cloned().collect();
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
            let phase = match st.phase {
                Phase::Opening => "opening",
                Phase::Running if st.stopping => "closing",
                Phase::Running if st.clients() == 0 => "lingering",
                Phase::Running => "streaming",
                Phase::Failed(_) | Phase::Ended => "closing",
            };
            upstreams.push(json!({
                "ref": hub.sref,
                "state": phase,
                "clients": st.clients(),
                "port": st.port.map(PortKind::as_str),
                "bytes_in": st.bytes_in(),
                "seconds": hub.created.elapsed().as_secs(),
            }));
        }
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
            "breakers": breakers,
        })
    }
}

impl Inner {
    fn hubs(&self) -> MutexGuard<'_, HashMap<String, Arc<Hub>>> {
        self.hubs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `hub` out of the registry (unless a newer hub of its channel replaced it).
    fn forget(&self, hub: &Arc<Hub>) {
        let mut hubs = self.hubs();
        if hubs.get(&hub.key).is_some_and(|h| Arc::ptr_eq(h, hub)) {
            hubs.remove(&hub.key);
        }
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
        self.metrics.stream_clients.dec();
    }

    fn hub_idle(&self, hub: &Arc<Hub>, generation: u64) {
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
        if linger.is_zero() {
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
