//! OpenWebIF client: bouquets, services and EPG of an Enigma2 receiver, over our own
//! small HTTP/1.1 client on the smol core.
//!
//! Rules: every request is bounded in time (the configured timeout covers connecting
//! and each wait for bytes) and in size (the decoded answer may not exceed
//! `max_body_bytes`: that is an error, never a truncation). Bodies are parsed on a
//! blocking thread while the socket is still being read, so an EPG answer of any size
//! is handled in constant memory and no executor thread ever parses JSON. Connect
//! errors, timeouts and 5xx answers are retried `retries` times with exponential
//! backoff (250 ms doubling, at most 5 s); every attempt is reported to the observer.
//! All text comes out cleaned (see `text.rs`).
//!
//! Protecting the receiver (a set-top box, easily overwhelmed):
//! - Every attempt, retries included, passes the shared [`Gate`]: a token of its pacing
//!   bucket (`max_requests_per_second`, the same burst), then its circuit breaker.
//!   An open breaker fails the request at once with [`Error::CircuitOpen`]: nothing is
//!   sent, nothing retried. Exactly the transient failures (see [`Error::is_transient`])
//!   count against the breaker; any answer the box gave, a 4xx or bad JSON included,
//!   counts as a success.
//! - Bouquet lists and bouquet contents (`getservices`) are cached for `cache_ttl`, keyed
//!   by request path, at most [`MAX_CACHED`] bouquet contents; only successful parses are
//!   stored, hits take no token and send nothing. EPG, about and the whitelist are never
//!   cached. [`Receiver::clear_cache`] forces fresh answers.

mod body;
mod cache;
mod error;
mod gate;
pub mod http_client;
mod json;
mod model;
mod sref;
mod text;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::Error;
pub use gate::Gate;
pub use model::{About, Bouquet, Channel, Event};
pub use sref::{
    EntryKind, MAX_REF_LEN, canonical_ref, entry_kind, is_valid_service_ref, picon_name,
    take_ref_fields,
};
pub use text::{clean_description, clean_name, decode_entities};

use body::{BodyRead, Charset};
use cache::TtlCache;
use http_client::{Framing, Origin};
use json::Entry;

/// First pause between attempts; doubled after each failed one.
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How deep nested sub-bouquets are expanded below the bouquet asked for.
pub const MAX_NESTING: usize = 4;
/// Largest EPG window in minutes we ask for; some OpenWebIF versions treat larger
/// values as invalid.
const MAX_WINDOW_MINUTES: i64 = 99_999;
/// Most bouquet contents (`getservices` answers) kept in the cache; a receiver has a
/// few dozen bouquets, so this only bites when something is badly wrong.
pub const MAX_CACHED: usize = 512;
/// Bouquet-list answers kept: there is one path, `/api/bouquets`.
const MAX_CACHED_BOUQUET_LISTS: usize = 1;

/// How to reach the receiver and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Web interface base URL, `http://host[:port][/prefix]`.
    pub base: String,
    /// HTTP Basic user; no `Authorization` header is sent when `None`.
    pub user: Option<String>,
    /// HTTP Basic password (empty when `None` but a user is set).
    pub pass: Option<String>,
    /// Bound on connecting and on every wait for the next bytes of an answer.
    pub timeout: Duration,
    /// Extra attempts after a connect error, timeout or 5xx answer.
    pub retries: u32,
    /// Largest decoded answer accepted, in bytes.
    pub max_body_bytes: u64,
    /// Request attempts per second at most (retries included), with a burst of as many.
    pub max_requests_per_second: NonZeroU32,
    /// How long bouquet lists and bouquet contents are reused; zero turns caching off.
    pub cache_ttl: Duration,
}

impl ReceiverConfig {
    /// The receiver part of the daemon's settings (`XG2G_OWI_*`).
    pub fn from_settings(s: &crate::config::Settings) -> ReceiverConfig {
        ReceiverConfig {
            base: s.owi_base.clone(),
            user: s.owi_user.clone(),
            pass: s.owi_pass.clone(),
            timeout: s.owi_timeout,
            retries: s.owi_retries,
            max_body_bytes: s.owi_max_body_bytes,
            max_requests_per_second: s.owi_rate_limit,
            cache_ttl: s.owi_cache_ttl,
        }
    }
}

/// One finished attempt of a receiver request, for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutcome {
    /// `bouquets`, `services`, `epgbouquet`, `epgservice`, `about` or `whitelist`.
    pub endpoint: &'static str,
    /// `ok`, or the failure's [`Error::kind`] (`timeout`, `connect`, `http_4xx`,
    /// `http_5xx`, `malformed`, `too_large`, `io`, or `circuit_open` when the breaker
    /// kept the attempt from being sent).
    pub result: &'static str,
    /// Wall time of the attempt, from connecting to the end of parsing (the pacing wait
    /// not included); 0 for `circuit_open`.
    pub seconds: f64,
}

/// What the client reports to its observer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation<'a> {
    /// One attempt finished (or was refused by the breaker).
    Request(&'a RequestOutcome),
    /// A cacheable request was looked up in the cache (only while caching is on).
    Cache {
        /// `bouquets` or `services`.
        endpoint: &'static str,
        /// Served from the cache (no request made).
        hit: bool,
    },
}

/// What a bouquet holds once nested bouquets are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouquetContent {
    /// Playable channels in bouquet order, each with `group` = the bouquet's name.
    pub channels: Vec<Channel>,
    /// Bouquet refs whose `epgbouquet` answers together cover `channels`: the bouquet
    /// itself first, then every expanded sub-bouquet (OpenWebIF reports a bouquet's EPG
    /// only for services listed directly in it).
    pub epg_refs: Vec<String>,
}

/// Reports every request attempt and cache lookup (e.g. into metrics); called on an
/// executor thread, so it must be quick.
pub type Observer = Arc<dyn Fn(&Observation<'_>) + Send + Sync>;

/// The OpenWebIF client. Cheap to clone (one `Arc`); clones share settings, observer,
/// pacing, breaker and cache.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Origin,
    authorization: Option<String>,
    timeout: Duration,
    retries: u32,
    max_body: u64,
    observe: Observer,
    /// Owned by the caller: it outlives a client rebuilt on reload.
    gate: Arc<Gate>,
    /// Shared (`Arc`) so a hit holds the lock only for a reference-count bump and the
    /// bouquet walker reads entries in place instead of copying whole lists.
    bouquets: TtlCache<Arc<Vec<Bouquet>>>,
    services: TtlCache<Arc<Vec<Entry>>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("Receiver")
            .field("origin", &self.inner.origin)
            .field("auth", &self.inner.authorization.is_some())
            .field("timeout", &self.inner.timeout)
            .field("retries", &self.inner.retries)
            .field("max_body", &self.inner.max_body)
            .field("gate", &self.inner.gate)
            .finish_non_exhaustive()
    }
}

/// Where an EPG sink is between attempts: events already handed out make a retry
/// unsafe (they would be handed out twice).
struct EpgSink<F> {
    on_event: F,
    delivered: u64,
}

impl Receiver {
    /// Checks the settings (base URL, non-zero timeout and size cap) and builds the
    /// client with an empty cache; no request is made. Every attempt goes through
    /// `gate`, which the caller keeps (status, reloads, picon fetches); its rate is
    /// the caller's to set, `max_requests_per_second` is not read here.
    pub fn new(cfg: ReceiverConfig, observe: Observer, gate: Arc<Gate>) -> Result<Receiver, Error> {
        let origin = Origin::parse(&cfg.base).map_err(Error::Config)?;
        if cfg.timeout.is_zero() {
            return Err(Error::Config("timeout must be above zero".into()));
        }
        if cfg.max_body_bytes == 0 {
            return Err(Error::Config("max_body_bytes must be above zero".into()));
        }
        let authorization = cfg
            .user
            .as_deref()
            .map(|user| http_client::basic_auth(user, cfg.pass.as_deref().unwrap_or_default()));
        Ok(Receiver {
            inner: Arc::new(Inner {
                origin,
                authorization,
                timeout: cfg.timeout,
                retries: cfg.retries,
                max_body: cfg.max_body_bytes,
                observe,
                gate,
                bouquets: TtlCache::new(cfg.cache_ttl, MAX_CACHED_BOUQUET_LISTS),
                services: TtlCache::new(cfg.cache_ttl, MAX_CACHED),
            }),
        })
    }

    /// Forgets every cached answer, so the next calls ask the receiver (a forced
    /// refresh after the user edited bouquets). Answers already on their way when this
    /// is called are not cached.
    pub fn clear_cache(&self) {
        self.inner.bouquets.clear();
        self.inner.services.clear();
    }

    /// Where requests go (host, port, prefix), e.g. to derive the streaming origin.
    pub fn origin(&self) -> &Origin {
        &self.inner.origin
    }

    /// `/api/about`: model and tuner count.
    pub async fn about(&self) -> Result<About, Error> {
        self.fetch("about", "/api/about".into(), |_: &mut (), r| {
            json::parse_about(r)
        })
        .await
    }

    /// `/api/bouquets`: the TV bouquets, names cleaned; from the cache while fresh.
    pub async fn bouquets(&self) -> Result<Vec<Bouquet>, Error> {
        let list = self
            .fetch_cached(
                &self.inner.bouquets,
                "bouquets",
                "/api/bouquets".into(),
                |_: &mut (), r| json::parse_bouquets(r),
            )
            .await?;
        Ok(Arc::unwrap_or_clone(list))
    }

    /// Channels of a bouquet in order: markers and spacers skipped, nested sub-bouquets
    /// expanded (at most [`MAX_NESTING`] levels deep, each at most once, so cycles end),
    /// alternatives kept as one channel; `group` = the bouquet's name. A channel without
    /// a name is named by its ref. Bouquet contents come from the cache while fresh.
    pub async fn channels(&self, bouquet: &Bouquet) -> Result<Vec<Channel>, Error> {
        Ok(self.bouquet_content(bouquet).await?.channels)
    }

    /// [`Receiver::channels`] plus the bouquet refs whose EPG covers them.
    pub async fn bouquet_content(&self, bouquet: &Bouquet) -> Result<BouquetContent, Error> {
        let mut channels = Vec::new();
        let mut epg_refs = vec![bouquet.sref.clone()];
        let mut seen = HashSet::from([canonical_ref(&bouquet.sref)]);
        // (entries, index of the next one, nesting depth); entries are read in place
        // because they may be shared with the cache.
        let mut stack = vec![(self.entries(&bouquet.sref).await?, 0usize, 0usize)];
        while let Some((entries, next, depth)) = stack.last_mut() {
            let depth = *depth;
            let Some(entry) = entries.get(*next) else {
                stack.pop();
                continue;
            };
            *next += 1;
            match entry_kind(&entry.sref) {
                EntryKind::Skip => {}
                EntryKind::Service | EntryKind::Alternatives => {
                    let name = if entry.name.is_empty() {
                        &entry.sref
                    } else {
                        &entry.name
                    };
                    channels.push(Channel {
                        sref: entry.sref.clone(),
                        name: name.clone(),
                        group: bouquet.name.clone(),
                    });
                }
                EntryKind::SubBouquet => {
                    if depth >= MAX_NESTING {
                        log::warn!(
                            "event=bouquet_too_deep bouquet={:?} skipped={:?}",
                            bouquet.name,
                            entry.sref
                        );
                        continue;
                    }
                    if !seen.insert(canonical_ref(&entry.sref)) {
                        log::debug!(
                            "event=bouquet_repeated bouquet={:?} skipped={:?}",
                            bouquet.name,
                            entry.sref
                        );
                        continue;
                    }
                    let sref = entry.sref.clone();
                    let nested = self.entries(&sref).await?;
                    epg_refs.push(sref);
                    stack.push((nested, 0, depth + 1));
                }
            }
        }
        Ok(BouquetContent { channels, epg_refs })
    }

    /// `/api/getservices` for one bouquet: its raw entries in order, from the cache
    /// while fresh.
    async fn entries(&self, bouquet_ref: &str) -> Result<Arc<Vec<Entry>>, Error> {
        let path = format!(
            "/api/getservices?sRef={}",
            crate::http::percent_encode(bouquet_ref)
        );
        self.fetch_cached(&self.inner.services, "services", path, |_: &mut (), r| {
            json::parse_services(r)
        })
        .await
    }

    /// `/api/epgbouquet`: streams the events of the services listed directly in
    /// `bouquet_ref` that overlap `from..to` (Unix seconds) to `on_event`, which runs on
    /// a blocking thread, one event at a time as they are parsed; returns `on_event`
    /// when the answer is complete. Events are cleaned and validated (see
    /// [`Event`]); alternatives groups report under the group's ref. Not retried once an
    /// event has been handed out, so no event is ever seen twice.
    pub async fn epg_bouquet<F>(
        &self,
        bouquet_ref: &str,
        from: i64,
        to: i64,
        on_event: F,
    ) -> Result<F, Error>
    where
        F: FnMut(Event) + Send + 'static,
    {
        let path = format!(
            "/api/epgbouquet?bRef={}&time={from}&endTime={}",
            crate::http::percent_encode(bouquet_ref),
            window_minutes(from, to)
        );
        let sink = EpgSink {
            on_event,
            delivered: 0,
        };
        let (sink, result) = self
            .fetch_with(
                "epgbouquet",
                path,
                sink,
                |sink, r| {
                    json::stream_events(r, None, &mut |event| {
                        sink.delivered += 1;
                        (sink.on_event)(event);
                    })
                },
                |sink| sink.delivered == 0,
            )
            .await;
        result.map(|_| sink.on_event)
    }

    /// `/api/epgservice`: the events of one service overlapping `from..to` (Unix
    /// seconds), cleaned and validated; events without an `sref` get `sref`. Bounded by
    /// the answer size cap.
    pub async fn epg_service(&self, sref: &str, from: i64, to: i64) -> Result<Vec<Event>, Error> {
        let path = format!(
            "/api/epgservice?sRef={}&time={from}&endTime={}",
            crate::http::percent_encode(sref),
            window_minutes(from, to)
        );
        let state = (sref.to_owned(), Vec::new());
        let (state, result) = self
            .fetch_with(
                "epgservice",
                path,
                state,
                |(sref, events), r| {
                    // A retried attempt starts over.
                    events.clear();
                    json::stream_events(r, Some(sref.as_str()), &mut |event| events.push(event))
                },
                |_| true,
            )
            .await;
        result.map(|_| state.1)
    }

    /// The receiver's `/etc/enigma2/whitelist_streamrelay`: canonical refs of channels that
    /// must be streamed through the stream relay. A box without the file (404) has none.
    pub async fn stream_relay_whitelist(&self) -> Result<Vec<String>, Error> {
        let path = "/file?file=%2Fetc%2Fenigma2%2Fwhitelist_streamrelay".to_string();
        match self
            .fetch("whitelist", path, |_: &mut (), r| ref_lines(r))
            .await
        {
            Err(Error::Status { status: 404, .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// [`Receiver::fetch`] through `cache`: a fresh entry is returned without a request
    /// (and without a token); a successful parse is stored. Lookups are reported.
    async fn fetch_cached<T: Send + Sync + 'static>(
        &self,
        cache: &TtlCache<Arc<T>>,
        endpoint: &'static str,
        path: String,
        parse: fn(&mut (), BodyRead) -> serde_json::Result<T>,
    ) -> Result<Arc<T>, Error> {
        if !cache.is_enabled() {
            return self.fetch(endpoint, path, parse).await.map(Arc::new);
        }
        // Taken before the request: a clear_cache() while it runs keeps its answer out.
        let since = cache.generation();
        let hit = cache.get(&path);
        (self.inner.observe)(&Observation::Cache {
            endpoint,
            hit: hit.is_some(),
        });
        if let Some(value) = hit {
            return Ok(value);
        }
        let value = Arc::new(self.fetch(endpoint, path.clone(), parse).await?);
        cache.insert(path, Arc::clone(&value), since);
        Ok(value)
    }

    /// [`Receiver::fetch_with`] for answers parsed whole.
    async fn fetch<T: Send + 'static>(
        &self,
        endpoint: &'static str,
        path: String,
        parse: fn(&mut (), BodyRead) -> serde_json::Result<T>,
    ) -> Result<T, Error> {
        self.fetch_with(endpoint, path, (), parse, |_| true).await.1
    }

    /// GETs `path` and parses the answer with `parse` and `state` on a blocking thread,
    /// retrying transient failures while `may_retry(&state)` allows; every attempt is
    /// paced, goes through the breaker and is reported. Returns the state with the last
    /// attempt's result.
    async fn fetch_with<S, T>(
        &self,
        endpoint: &'static str,
        path: String,
        mut state: S,
        parse: fn(&mut S, BodyRead) -> serde_json::Result<T>,
        may_retry: fn(&S) -> bool,
    ) -> (S, Result<T, Error>)
    where
        S: Send + 'static,
        T: Send + 'static,
    {
        let mut backoff = BACKOFF_START;
        let mut attempt = 0u32;
        loop {
            let permit = match self.inner.gate.enter(|| self.request_line(&path)).await {
                Ok(permit) => permit,
                Err(e) => {
                    log::debug!("event=receiver_circuit_open endpoint={endpoint} error=\"{e}\"");
                    (self.inner.observe)(&Observation::Request(&RequestOutcome {
                        endpoint,
                        result: e.kind(),
                        seconds: 0.0,
                    }));
                    return (state, Err(e));
                }
            };
            let started = Instant::now();
            let (back, result) = self.attempt(&path, state, parse).await;
            state = back;
            match &result {
                Err(e) if e.is_transient() => permit.failure(),
                // The box answered (even if with a 4xx or garbage): it is alive.
                _ => permit.success(),
            }
            (self.inner.observe)(&Observation::Request(&RequestOutcome {
                endpoint,
                result: result.as_ref().map_or_else(Error::kind, |_| "ok"),
                seconds: started.elapsed().as_secs_f64(),
            }));
            match result {
                Err(e) if e.is_transient() && attempt < self.inner.retries && may_retry(&state) => {
                    attempt += 1;
                    log::debug!(
                        "event=receiver_retry endpoint={endpoint} attempt={attempt} wait_ms={} error=\"{e}\"",
                        backoff.as_millis()
                    );
                    async_io::Timer::after(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                other => return (state, other),
            }
        }
    }

    /// One request: connect, check the status, stream the body into the parser.
    async fn attempt<S, T>(
        &self,
        path: &str,
        state: S,
        parse: fn(&mut S, BodyRead) -> serde_json::Result<T>,
    ) -> (S, Result<T, Error>)
    where
        S: Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let req = self.request_line(path);
        let response = match http_client::get(
            &inner.origin,
            path,
            inner.authorization.as_deref(),
            inner.timeout,
        )
        .await
        {
            Ok(response) => response,
            Err(e) => return (state, Err(e)),
        };
        let status = response.head.status;
        if !(200..300).contains(&status) {
            return (state, Err(Error::Status { req, status }));
        }
        if let Ok(Framing::Length(n)) = response.head.framing() {
            if n > inner.max_body {
                let limit = inner.max_body;
                return (state, Err(Error::TooLarge { req, limit }));
            }
        }
        let encoding = response.head.content_encoding();
        let charset = Charset::from_label(response.head.charset().as_deref());
        body::parse_body(
            response.body,
            encoding,
            charset,
            inner.max_body,
            req,
            state,
            parse,
        )
        .await
    }

    /// `GET <prefix><path>`: how errors name a request.
    fn request_line(&self, path: &str) -> String {
        format!("GET {}{}", self.inner.origin.prefix(), path)
    }
}

/// Most refs read from a whitelist file; a real one lists a few dozen.
const MAX_WHITELIST_REFS: usize = 10_000;

/// One service ref per line (blank lines and `#` comments skipped), canonical form.
fn ref_lines(r: BodyRead) -> serde_json::Result<Vec<String>> {
    use std::io::BufRead as _;
    let mut refs = Vec::new();
    for line in r.split(b'\n') {
        let line = line.map_err(serde_json::Error::io)?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || entry_kind(line) == EntryKind::Skip {
            continue;
        }
        if refs.len() < MAX_WHITELIST_REFS {
            refs.push(canonical_ref(line));
        }
    }
    Ok(refs)
}

/// OpenWebIF passes `endTime` to Enigma2's EPG cache as a window length in *minutes*
/// from `time` (not as an end timestamp); round up so `to` is covered.
fn window_minutes(from: i64, to: i64) -> i64 {
    let seconds = to.saturating_sub(from).max(1);
    let minutes = seconds / 60 + i64::from(seconds % 60 != 0);
    minutes.clamp(1, MAX_WINDOW_MINUTES)
}
