//! The refresh job: pulls bouquets, channels and EPG from the receiver and writes the
//! playlist and guide through `guide`.
//!
//! Rules: one refresh at a time; triggers while one runs coalesce into at most one more;
//! a failed refresh leaves the last good files untouched and says why in the status,
//! the log and the metrics; the EPG streams from the receiver to the spool file without
//! ever being held whole in memory.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_io::Timer;
use smol::Executor;
use smol::channel::{Receiver as ChannelRx, Sender, TrySendError};
use smol::future::FutureExt;

use crate::audit::{self, AuditKind};
use crate::config::{EpgSource, LiveSettings, Settings};
use crate::guide::{ChannelEntry, GuideWriter};
use crate::http::percent_encode;
use crate::limit::BreakerConfig;
use crate::lineup::{Lineup, LineupChannel, LineupStore};
use crate::metrics::{Metrics, ReceiverLabels, ResultLabel};
use crate::receiver::{self, Bouquet, Channel, Event, Gate, Observation, Receiver, ReceiverConfig};

/// Why a refresh failed (the old files are still being served).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// A receiver request failed.
    #[error("receiver: {0}")]
    Receiver(#[from] receiver::Error),
    /// A configured bouquet is not on the receiver.
    #[error("bouquet {wanted:?} not found on the receiver (it has: {available})")]
    UnknownBouquet {
        /// The configured name or ref.
        wanted: String,
        /// What the receiver offers.
        available: String,
    },
    /// The selected bouquets hold no channels: refuse to replace a good playlist with an empty one.
    #[error("the selected bouquets contain no channels")]
    NoChannels,
    /// Writing the files failed.
    #[error("writing files: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking worker went away (it panicked or was cancelled).
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// What the last refreshes did; a snapshot is served as `/api/v1/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RefreshStatus {
    /// A refresh is running now.
    pub running: bool,
    /// Refreshes finished since start (ok or not).
    pub completed: u64,
    /// Unix time the last refresh started.
    pub last_attempt: Option<i64>,
    /// Unix time the last successful refresh finished.
    pub last_success: Option<i64>,
    /// `ok` or `error` for the last finished refresh.
    pub last_result: Option<&'static str>,
    /// Why the last refresh failed (cleared by a success).
    pub last_error: Option<String>,
    /// Wall time of the last finished refresh.
    pub last_duration_seconds: Option<f64>,
    /// Channels in the served playlist.
    pub channels: usize,
    /// Programmes in the served guide.
    pub programmes: u64,
    /// Whether the last refresh reached the receiver.
    pub receiver_reachable: Option<bool>,
    /// Receiver model from `/api/about`.
    pub receiver_model: Option<String>,
    /// Tuner count from `/api/about`.
    pub receiver_tuners: Option<u32>,
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A refresh will start (now, or right after the running one).
    Queued,
    /// One was already waiting: this trigger coalesced into it.
    Coalesced,
}

/// Runs refreshes on schedule and on demand; shared by the router and `main`.
pub struct Refresher {
    settings: Arc<LiveSettings>,
    /// The client and what it was built from; rebuilt when a reload changes that.
    client: Mutex<(ReceiverConfig, Receiver)>,
    observe: receiver::Observer,
    gate: Arc<Gate>,
    lineup: Arc<LineupStore>,
    metrics: Arc<Metrics>,
    ex: Arc<Executor<'static>>,
    status: Mutex<RefreshStatus>,
    trigger_tx: Sender<()>,
    trigger_rx: ChannelRx<()>,
}

impl Refresher {
    /// Builds the refresher and its receiver client.
    pub fn new(
        settings: Arc<LiveSettings>,
        lineup: Arc<LineupStore>,
        metrics: Arc<Metrics>,
        ex: Arc<Executor<'static>>,
    ) -> Result<Arc<Refresher>, receiver::Error> {
        let observe_metrics = metrics.clone();
        let observe: receiver::Observer = Arc::new(move |o: &Observation<'_>| match *o {
            Observation::Request(o) => {
                observe_metrics
                    .receiver_requests
                    .get_or_create(&ReceiverLabels {
                        endpoint: o.endpoint.to_string(),
                        result: o.result.to_string(),
                    })
                    .inc();
                // A request the breaker kept back took no time at the receiver.
                if o.result != "circuit_open" {
                    observe_metrics.receiver_duration.observe(o.seconds);
                }
            }
            Observation::Cache { endpoint, hit } => {
                observe_metrics
                    .receiver_cache
                    .get_or_create(&ReceiverLabels {
                        endpoint: endpoint.to_string(),
                        result: if hit { "hit" } else { "miss" }.to_string(),
                    })
                    .inc();
            }
        });
        let current = settings.get();
        // Owned here, outside the client, so it survives a client rebuilt on reload.
        let breaker =
            Arc::new(metrics.observed_breaker("receiver", BreakerConfig::from_settings(&current)));
        let config = ReceiverConfig::from_settings(&current);
        let gate = Arc::new(Gate::new(breaker, config.max_requests_per_second));
        let receiver = Receiver::new(config.clone(), observe.clone(), gate.clone())?;
        let (trigger_tx, trigger_rx) = smol::channel::bounded(1);
        Ok(Arc::new(Refresher {
            settings,
            client: Mutex::new((config, receiver)),
            observe,
            gate,
            lineup,
            metrics,
            ex,
            status: Mutex::new(RefreshStatus::default()),
            trigger_tx,
            trigger_rx,
        }))
    }

    /// Asks for a refresh; never blocks, coalesces with one already waiting.
    pub fn trigger(&self) -> Triggered {
        match self.trigger_tx.try_send(()) {
            Ok(()) => Triggered::Queued,
            Err(TrySendError::Full(())) | Err(TrySendError::Closed(())) => Triggered::Coalesced,
        }
    }

    /// Takes over reloaded settings: a new receiver client (with an empty cache) when
    /// its settings changed, the gate's new rate; the breaker and a running refresh are
    /// left alone. The next refresh reads everything else from the settings store.
    pub fn reconfigure(&self, settings: &Settings) {
        let config = ReceiverConfig::from_settings(settings);
        self.gate.set_rate(config.max_requests_per_second);
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if client.0 == config {
            return;
        }
        match Receiver::new(config.clone(), self.observe.clone(), self.gate.clone()) {
            Ok(receiver) => *client = (config, receiver),
            Err(e) => log::error!("event=receiver_reconfigure_failed error=\"{e}\""),
        }
    }

    /// The receiver client now (cheap to clone).
    fn receiver(&self) -> Receiver {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Forgets cached receiver lists, so the next refresh sees edited bouquets at once.
    pub fn clear_cache(&self) {
        self.receiver().clear_cache();
    }

    /// The pacing and breaker every request to the receiver passes (picon fetches; the
    /// status page shows its breaker).
    pub fn receiver_gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// A snapshot of the status.
    pub fn status(&self) -> RefreshStatus {
        self.lock_status().clone()
    }

    fn lock_status(&self) -> MutexGuard<'_, RefreshStatus> {
        // A panic while holding the lock cannot leave the status inconsistent in a way
        // that matters (plain fields), so keep serving it.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs forever: a refresh at start (if configured), then every interval and on
    /// every trigger.
    pub async fn run(self: Arc<Self>) {
        if self.settings.get().initial_refresh {
            self.trigger();
        }
        loop {
            let tick = async {
                Timer::after(self.settings.get().refresh_interval).await;
            };
            let triggered = async {
                let _ = self.trigger_rx.recv().await;
            };
            tick.or(triggered).await;
            // A trigger that arrived during the wait is consumed by this run.
            let _ = self.trigger_rx.try_recv();
            self.refresh_once().await;
        }
    }

    /// Runs one refresh and records its outcome.
    pub async fn refresh_once(&self) {
        let started = Instant::now();
        {
            let mut st = self.lock_status();
            st.running = true;
            st.last_attempt = Some(unix_now());
        }
        log::info!("event=refresh_start");
        audit_refresh(AuditKind::RefreshStart, "ok", serde_json::Value::Null);
        let result = self.refresh().await;
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(summary) => audit_refresh(
                AuditKind::RefreshSuccess,
                "ok",
                serde_json::json!({
                    "channels": summary.channels,
                    "programmes": summary.programmes,
                    "seconds": seconds,
                }),
            ),
            Err(e) => audit_refresh(
                AuditKind::RefreshError,
                "error",
                serde_json::json!({ "error": e.to_string(), "seconds": seconds }),
            ),
        }
        self.metrics.refresh_duration.observe(seconds);
        let mut st = self.lock_status();
        st.running = false;
        st.completed += 1;
        st.last_duration_seconds = Some(seconds);
        match result {
            Ok(summary) => {
                log::info!(
                    "event=refresh_ok channels={} programmes={} seconds={seconds:.2}",
                    summary.channels,
                    summary.programmes
                );
                st.last_result = Some("ok");
                st.last_error = None;
                st.last_success = Some(unix_now());
                st.channels = summary.channels;
                st.programmes = summary.programmes;
                st.receiver_reachable = Some(true);
                if let Some(about) = summary.about {
                    st.receiver_model = Some(about.model);
                    st.receiver_tuners = Some(about.tuners);
                }
                self.metrics.last_success.set(unix_now() as f64);
                self.metrics.channels.set(summary.channels as i64);
                self.metrics.programmes.set(summary.programmes as i64);
                self.count_result("ok");
            }
            Err(e) => {
                log::error!("event=refresh_failed seconds={seconds:.2} error=\"{e}\"");
                st.last_result = Some("error");
                st.last_error = Some(e.to_string());
                if matches!(e, RefreshError::Receiver(_)) {
                    st.receiver_reachable = Some(false);
                }
                self.count_result("error");
            }
        }
    }

    fn count_result(&self, result: &str) {
        self.metrics
            .refreshes
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    async fn refresh(&self) -> Result<Summary, RefreshError> {
        // One snapshot of settings and client for the whole run.
        let s = &*self.settings.get();
        let rx = &self.receiver();
        let about = match rx.about().await {
            Ok(about) => Some(about),
            Err(e) => {
                // Some images answer /api/about oddly; the bouquets decide reachability.
                log::warn!("event=about_failed error=\"{e}\"");
                None
            }
        };
        let all = rx.bouquets().await?;
        let selected = select_bouquets(&all, &s.bouquets)?;

        let mut channels: Vec<Channel> = Vec::new();
        let mut epg_refs: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for bouquet in &selected {
            let content = rx.bouquet_content(bouquet).await?;
            for channel in content.channels {
                let key = receiver::canonical_ref(&channel.sref);
                if index.contains_key(&key) {
                    continue; // listed in an earlier bouquet: first one wins
                }
                index.insert(key, channels.len());
                channels.push(channel);
            }
            for r in content.epg_refs {
                if !epg_refs.contains(&r) {
                    epg_refs.push(r);
                }
            }
        }
        if channels.is_empty() {
            return Err(RefreshError::NoChannels);
        }

        let relay = self.relay_whitelist(rx).await;
        let public = public_base(s);
        let links = links(s, &public);
        let entries: Vec<ChannelEntry> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| entry(i, c, &links))
            .collect();
        let guide_url = s
            .x_tvg_url
            .clone()
            .unwrap_or_else(|| format!("{public}/xmltv.xml{}", links.token_query));

        let mut programmes = 0;
        if s.epg_enabled {
            let now = unix_now();
            let to = now + i64::from(s.epg_days) * 86_400;
            let writer = GuideWriter::create(&s.data_dir, &entries, now, to)?;
            let sink: SharedSink = Arc::new(Mutex::new(EventSink {
                writer,
                index,
                last: None,
                claimed: vec![None; entries.len()],
                source: 0,
                error: None,
            }));
            match s.epg_source {
                EpgSource::Bouquet => epg_by_bouquet(rx, &sink, &epg_refs, now, to).await?,
                EpgSource::PerService => {
                    let workers = s.epg_max_concurrency;
                    self.epg_by_service(rx, workers, &sink, &channels, now, to)
                        .await?
                }
            }
            let sink = Arc::try_unwrap(sink)
                .map_err(|_| RefreshError::Internal("EPG reader still running"))?
                .into_inner()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(e) = sink.error {
                return Err(e.into());
            }
            let writer = sink.writer;
            let stats = smol::unblock(move || writer.finish()).await?;
            programmes = stats.programmes;
        }
        let tuners = about
            .as_ref()
            .map(|a| a.tuners)
            .filter(|t| *t > 0)
            .or(self.lineup.get().tuners);
        let mut lineup = Lineup::new(
            tuners,
            channels
                .iter()
                .zip(&entries)
                .map(|(c, e)| LineupChannel {
                    number: e.number,
                    name: c.name.clone(),
                    sref: c.sref.clone(),
                    relay: false,
                })
                .collect(),
        );
        lineup.mark_relay(&relay);
        let dir: PathBuf = s.data_dir.clone();
        let channel_count = entries.len();
        let lineup = smol::unblock(move || {
            crate::guide::write_playlist(&dir, &guide_url, &entries)?;
            lineup.save(&dir)?;
            Ok::<_, std::io::Error>(lineup)
        })
        .await?;
        self.lineup.set(lineup);
        Ok(Summary {
            channels: channel_count,
            programmes,
            about,
        })
    }

    /// Canonical refs of the receiver's stream-relay whitelist. When the receiver cannot
    /// say, the last lineup's flags stand (a transient error must not move channels).
    async fn relay_whitelist(&self, rx: &Receiver) -> HashSet<String> {
        match rx.stream_relay_whitelist().await {
            Ok(refs) => refs.into_iter().collect(),
            Err(e) => {
                log::warn!("event=relay_whitelist_failed error=\"{e}\"");
                self.lineup
                    .get()
                    .channels
                    .iter()
                    .filter(|c| c.relay)
                    .map(|c| receiver::canonical_ref(&c.sref))
                    .collect()
            }
        }
    }

    async fn epg_by_service(
        &self,
        client: &Receiver,
        concurrency: usize,
        sink: &SharedSink,
        channels: &[Channel],
        from: i64,
        to: i64,
    ) -> Result<(), RefreshError> {
        // Fetchers run on the executor; one blocking thread writes what they fetched.
        let (tx, rx) = smol::channel::bounded::<(usize, Vec<Event>)>(4);
        let writer_sink = sink.clone();
        let writer_task = smol::unblock(move || {
            while let Ok((i, events)) = rx.recv_blocking() {
                let mut sink = lock(&writer_sink);
                sink.source = i;
                for event in events {
                    sink_event(&mut sink, event);
                }
            }
        });
        let next = Arc::new(AtomicUsize::new(0));
        let srefs: Arc<Vec<String>> = Arc::new(channels.iter().map(|c| c.sref.clone()).collect());
        let mut workers = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (next, srefs, tx, receiver) =
                (next.clone(), srefs.clone(), tx.clone(), client.clone());
            workers.push(self.ex.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sref) = srefs.get(i) else {
                        return Ok(());
                    };
                    let events = receiver.epg_service(sref, from, to).await?;
                    if tx.send((i, events)).await.is_err() {
                        return Err(RefreshError::Internal("guide writer stopped"));
                    }
                }
            }));
        }
        drop(tx);
        let mut first_error = None;
        for w in workers {
            if let Err(e) = w.await {
                // Stop the other fetchers early: they see the index run out.
                next.store(usize::MAX / 2, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
        writer_task.await;
        first_error.map_or(Ok(()), Err)
    }
}

/// Where this refresh's playlist points streams and logos (worked out once, not
/// per channel).
fn links(s: &Settings, public: &str) -> Links {
    // The picon cache can only fetch plain-HTTP bases (the rule `PiconCache::new`
    // applies); others are linked as they are.
    let proxied_picons = crate::picon::PiconConfig::from_settings(s).base_is_fetchable();
    let token_query = token_query(s);
    let (stream, stream_query) = if s.use_proxy_urls {
        // Profile names are `[a-z0-9_-]`: nothing to escape.
        let query = match (s.default_profile.as_str(), token_query.strip_prefix('?')) {
            ("copy", _) => token_query.clone(),
            (profile, None) => format!("?profile={profile}"),
            (profile, Some(token)) => format!("?profile={profile}&{token}"),
        };
        (format!("{public}/stream"), query)
    } else {
        let direct = format!("http://{}:{}", host_of(&s.owi_base), s.stream_port);
        (direct, String::new())
    };
    let (picon, picon_query) = if s.use_proxy_urls && proxied_picons {
        (format!("{public}/picon"), token_query.clone())
    } else {
        let base = s
            .picon_base
            .clone()
            .unwrap_or_else(|| format!("{}/picon", s.owi_base));
        (base, String::new())
    };
    Links {
        stream,
        stream_query,
        picon,
        picon_query,
        token_query,
    }
}

/// `?token=…` for links to us when `XG2G_STREAM_TOKEN` is set, else empty: IPTV apps
/// and tuner clients cannot send headers, so our own links carry the stream token.
pub(crate) fn token_query(s: &Settings) -> String {
    s.stream_token
        .as_deref()
        .map_or_else(String::new, |t| format!("?token={}", percent_encode(t)))
}

/// How clients reach us: `XG2G_PUBLIC_URL`, else the listen address, with the address
/// of the interface that routes to the receiver standing in for a wildcard address.
pub(crate) fn public_base(s: &Settings) -> String {
    if let Some(url) = &s.public_url {
        return url.clone();
    }
    let ip = if s.listen.ip().is_unspecified() {
        local_ip_towards(&s.owi_base).unwrap_or(s.listen.ip())
    } else {
        s.listen.ip()
    };
    http_base(ip, s.listen.port())
}

/// `http://<ip>:<port>`, with brackets around an IPv6 address.
pub(crate) fn http_base(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
    }
}

/// Streams every bouquet's EPG into the sink, one bouquet at a time.
async fn epg_by_bouquet(
    rx: &Receiver,
    sink: &SharedSink,
    refs: &[String],
    from: i64,
    to: i64,
) -> Result<(), RefreshError> {
    for (i, bref) in refs.iter().enumerate() {
        lock(sink).source = i;
        let sink = sink.clone();
        // The returned callback holds only an Arc clone of the sink.
        let _callback = rx
            .epg_bouquet(bref, from, to, move |event| {
                sink_event(&mut lock(&sink), event)
            })
            .await?;
    }
    Ok(())
}

/// One refresh audit line; refreshes are the refresher's own doing (schedule or trigger).
fn audit_refresh(kind: AuditKind, result: &str, details: serde_json::Value) {
    audit::record(&audit::AuditEvent {
        kind,
        actor: audit::Actor::System("refresher"),
        resource: "refresh",
        result,
        request_id: None,
        details,
    });
}

/// Base URLs of the playlist's stream and logo links, without a trailing slash.
struct Links {
    stream: String,
    /// `?token=…` for links to us when `XG2G_STREAM_TOKEN` is set, else empty.
    stream_query: String,
    picon: String,
    picon_query: String,
    /// `?token=…` for our own guide link, else empty.
    token_query: String,
}

/// The playlist entry of the `i`-th channel.
fn entry(i: usize, c: &Channel, links: &Links) -> ChannelEntry {
    ChannelEntry {
        id: crate::guide::tvg_id(&c.name, &c.sref),
        number: u32::try_from(i + 1).unwrap_or(u32::MAX),
        name: c.name.clone(),
        group: c.group.clone(),
        logo: Some(format!(
            "{}/{}.png{}",
            links.picon,
            receiver::picon_name(&c.sref),
            links.picon_query
        )),
        stream_url: format!(
            "{}/{}{}",
            links.stream,
            percent_encode(&c.sref),
            links.stream_query
        ),
    }
}

/// What a successful refresh produced.
struct Summary {
    channels: usize,
    programmes: u64,
    about: Option<receiver::About>,
}

/// Owns the guide writer while events stream in on a blocking thread.
struct EventSink {
    writer: GuideWriter,
    /// Canonical ref → channel index.
    index: HashMap<String, usize>,
    /// The last event's ref and its channel: events come grouped by service, so this
    /// spares a canonical-ref allocation and a map lookup for almost every event.
    last: Option<(String, Option<usize>)>,
    /// Which EPG source (bouquet or service index) a channel's events come from: a
    /// channel listed in two fetched bouquets would otherwise get every event twice.
    claimed: Vec<Option<usize>>,
    /// The source being read now.
    source: usize,
    error: Option<std::io::Error>,
}

type SharedSink = Arc<Mutex<EventSink>>;

fn lock(sink: &SharedSink) -> MutexGuard<'_, EventSink> {
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

fn sink_event(sink: &mut EventSink, event: Event) {
    if sink.error.is_some() {
        return;
    }
    let cached = match &sink.last {
        Some((sref, channel)) if *sref == event.sref => Some(*channel),
        _ => None,
    };
    let channel = cached.unwrap_or_else(|| {
        let channel = sink
            .index
            .get(&receiver::canonical_ref(&event.sref))
            .copied();
        sink.last = Some((event.sref.clone(), channel));
        channel
    });
    let Some(channel) = channel else {
        return; // not a channel we list (e.g. filtered out, or a marker)
    };
    let Some(claim) = sink.claimed.get_mut(channel) else {
        return;
    };
    match claim {
        Some(owner) if *owner != sink.source => return,
        Some(_) => {}
        None => *claim = Some(sink.source),
    }
    if let Err(e) = sink.writer.add(channel, &event) {
        sink.error = Some(e);
    }
}

/// Picks the configured bouquets (names case-insensitively, or refs) in configured order.
fn select_bouquets(all: &[Bouquet], wanted: &[String]) -> Result<Vec<Bouquet>, RefreshError> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out: Vec<Bouquet> = Vec::new();
    for w in wanted {
        let lw = w.to_lowercase();
        let found = all
            .iter()
            .find(|b| b.sref == *w)
            .or_else(|| all.iter().find(|b| b.name.to_lowercase() == lw));
        match found {
            Some(b) if !out.contains(b) => out.push(b.clone()),
            Some(_) => {}
            None => {
                let available: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
                return Err(RefreshError::UnknownBouquet {
                    wanted: w.clone(),
                    available: available.join(", "),
                });
            }
        }
    }
    Ok(out)
}

/// The host part of `http://host[:port][/prefix]` (brackets kept for IPv6).
fn host_of(base: &str) -> &str {
    let rest = base.strip_prefix("http://").unwrap_or(base);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map(|(h, _)| &authority[..h.len() + 1])
            .unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The local address the OS would use to reach the receiver (no packet is sent).
fn local_ip_towards(owi_base: &str) -> Option<IpAddr> {
    let host = host_of(owi_base)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let target: SocketAddr = (host, 80).to_socket_addrs().ok()?.next()?;
    local_ip_for(target)
}

/// The local address the system would send from to reach `target` (a UDP socket is
/// connected, nothing is sent); `None` when there is no route.
pub(crate) fn local_ip_for(target: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Waits until the number of finished refreshes exceeds `completed`, at most `limit`.
pub async fn wait_for_completion(refresher: &Refresher, completed: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if refresher.status().completed > completed {
            return true;
        }
        Timer::after(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: &str, sref: &str) -> Bouquet {
        Bouquet {
            sref: sref.into(),
            name: name.into(),
        }
    }

    #[test]
    fn bouquets_match_by_name_case_insensitively_or_ref() {
        let all = vec![b("Favourites (TV)", "r1"), b("Österreich, Schweiz", "r2")];
        let got = select_bouquets(&all, &["österreich, schweiz".into(), "r1".into()]).unwrap();
        assert_eq!(got, vec![all[1].clone(), all[0].clone()]);
        assert_eq!(select_bouquets(&all, &[]).unwrap(), all);
        let err = select_bouquets(&all, &["Sport".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"Sport\" not found"), "{err}");
    }

    #[test]
    fn host_is_taken_from_the_base_url() {
        assert_eq!(host_of("http://192.168.1.10"), "192.168.1.10");
        assert_eq!(host_of("http://box:81/owif"), "box");
        assert_eq!(host_of("http://[::1]:80"), "[::1]");
    }
}
