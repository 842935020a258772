//! Channel logos: fetched from the receiver once, kept in a bounded on-disk cache.
//!
//! Rules: a request names a picon by the strict grammar in `name.rs`, so nothing else
//! ever reaches the file system or the receiver; a cached picon is served from disk
//! without asking the receiver; a missing one is fetched at most once at a time per name
//! (later requests wait for that fetch) and at most [`MAX_FETCHES`] at once overall; an
//! answer is kept only when it is a PNG of at most [`MAX_PICON_BYTES`], written
//! atomically; a 404 (or a non-PNG answer) is remembered for [`NEGATIVE_TTL`] in a map
//! of at most [`NEGATIVE_MAX`] names; the folder holds at most `max_bytes` of picons, the
//! least recently used going first. When the picons come from the receiver itself, every
//! fetch passes the receiver's [`Gate`] (the pacing and circuit breaker its OpenWebIF
//! calls pass): connect errors, timeouts and 5xx count as failures, an open breaker
//! fails the fetch (502) without sending anything. All file I/O of a request runs on the
//! blocking pool (`smol::unblock`); only [`PiconCache::new`] does blocking I/O, once at
//! start.

mod name;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_io::Timer;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;
use smol::lock::Semaphore;

use crate::http::routes::serve_file;
use crate::http::{ErrorCode, Request, Response};
use crate::receiver::Gate;
use crate::receiver::http_client::{self, Framing, Origin};

/// Largest picon accepted from the receiver, in bytes (before and after gzip); a larger
/// answer is not a channel logo.
pub const MAX_PICON_BYTES: u64 = 256 * 1024;
/// Fetches from the receiver running at once, over all names.
pub const MAX_FETCHES: usize = 4;
/// How long a picon the receiver does not have is answered 404 without asking again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(600);
/// Names remembered as missing at most; the oldest is forgotten first.
pub const NEGATIVE_MAX: usize = 4096;
/// `Cache-Control` of a served picon: logos change rarely, clients may keep them a day.
const CACHE_CONTROL: &str = "public, max-age=86400";
/// `Cache-Control` of a 404: as long as we remember it ourselves.
const NOT_FOUND_CACHE_CONTROL: &str = "public, max-age=600";
/// The whole fetch (connect, head, body) may take this many times the receiver timeout,
/// which on its own only bounds each wait.
const FETCH_DEADLINE_FACTOR: u32 = 3;
/// Rounds of look-up, wait or fetch, and serve a request makes before giving up: more
/// than one only when a file vanishes between look-up and open.
const MAX_ROUNDS: usize = 5;
/// Read size for the receiver's answer.
const READ_CHUNK: usize = 16 * 1024;
/// The eight bytes every PNG starts with.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// The last chunk of every complete PNG: length 0, `IEND`, its CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// What can go wrong in this module. Display is one line naming the picon or path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The picon base URL cannot be used by our plain-HTTP client (https, a query, ...).
    #[error("picon base {base:?} cannot be used: {reason}")]
    Base {
        /// The base URL as configured (credentials removed).
        base: String,
        /// What the URL parser said.
        reason: String,
    },
    /// Creating, reading, writing or removing something in the cache folder failed.
    #[error("picon cache {}: {cause}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What the system said.
        cause: io::Error,
    },
    /// The receiver could not be reached or broke off (connect, timeout, bad framing).
    #[error("picon {name}: {cause}")]
    Fetch {
        /// The picon name.
        name: String,
        /// The client's error, naming the request.
        cause: crate::receiver::Error,
    },
    /// The whole fetch took longer than its deadline.
    #[error("picon {name}: fetch took longer than {after:?}")]
    Deadline {
        /// The picon name.
        name: String,
        /// The deadline.
        after: Duration,
    },
    /// The receiver answered with a status that says nothing about the picon (5xx, 401, ...).
    #[error("picon {name}: receiver answered HTTP {status}")]
    Status {
        /// The picon name.
        name: String,
        /// The HTTP status.
        status: u16,
    },
    /// The receiver has no such picon (404 or 410).
    #[error("picon {name}: receiver has none (HTTP {status})")]
    Missing {
        /// The picon name.
        name: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not a picon: too large, not a PNG, or undecodable.
    #[error("picon {name}: not a PNG picon ({reason})")]
    NotPng {
        /// The picon name.
        name: String,
        /// Why, e.g. `larger than 262144 bytes`.
        reason: String,
    },
    /// The answer starts like a PNG but ends early (a broken transfer, not a missing logo).
    #[error("picon {name}: PNG is truncated (no IEND chunk at the end)")]
    Truncated {
        /// The picon name.
        name: String,
    },
}

impl Error {
    /// True when the receiver has no usable picon (answered 404 and remembered), false
    /// when fetching failed (answered 502 and retried next time).
    fn is_missing(&self) -> bool {
        matches!(self, Error::Missing { .. } | Error::NotPng { .. })
    }

    /// True when the receiver did not answer usefully (connect error, timeout, 5xx): what
    /// the receiver's circuit breaker counts, as it does for OpenWebIF calls.
    fn is_receiver_failure(&self) -> bool {
        match self {
            Error::Fetch { cause, .. } => cause.is_transient(),
            Error::Deadline { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Where picons come from and how much disk they may use. Its `Debug` output never
/// shows the `authorization` value.
#[derive(Clone, PartialEq, Eq)]
pub struct PiconConfig {
    /// The cache folder, `<data_dir>/picons`.
    pub dir: PathBuf,
    /// Bytes of picons kept at most (`XG2G_PICON_CACHE_MAX_BYTES`).
    pub max_bytes: u64,
    /// Base URL, `picon_base` or `<owi_base>/picon`, no trailing slash, no credentials.
    pub base: String,
    /// The `Authorization` header value sent with every fetch, if any.
    pub authorization: Option<String>,
    /// Bound on connecting and on every wait for bytes of a fetch.
    pub timeout: Duration,
    /// The base is the receiver itself (the default base, or `picon_base` on the
    /// receiver's host and port): fetches then pass the receiver's gate.
    pub from_receiver: bool,
}

impl std::fmt::Debug for PiconConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiconConfig")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("base", &self.base)
            .field("auth", &self.authorization.is_some())
            .field("timeout", &self.timeout)
            .field("from_receiver", &self.from_receiver)
            .finish()
    }
}

impl PiconConfig {
    /// True when the base URL is one this cache can fetch from (plain HTTP, no query);
    /// otherwise `PiconCache::new` refuses it and logos must point at the base itself.
    pub fn base_is_fetchable(&self) -> bool {
        Origin::parse(&self.base).is_ok()
    }

    /// The picon part of the daemon's settings. The receiver's credentials
    /// (`XG2G_OWI_USER`/`PASS`) are sent only to the receiver itself: with the default base
    /// or a `picon_base` on the same host and port. Credentials written into `picon_base`
    /// (`http://user:pass@host/...`) are moved into `authorization` and out of `base`.
    pub fn from_settings(s: &crate::config::Settings) -> PiconConfig {
        let receiver_auth = s
            .owi_user
            .as_deref()
            .map(|user| http_client::basic_auth(user, s.owi_pass.as_deref().unwrap_or_default()));
        let (base, authorization, from_receiver) = match s.picon_base.as_deref() {
            None => (
                format!("{}/picon", s.owi_base.trim_end_matches('/')),
                receiver_auth,
                true,
            ),
            Some(configured) => {
                let (base, userinfo) = split_userinfo(configured.trim_end_matches('/'));
                let from_receiver = same_authority(&base, &s.owi_base);
                let authorization = match userinfo {
                    Some((user, pass)) => Some(http_client::basic_auth(&user, &pass)),
                    None if from_receiver => receiver_auth,
                    None => None,
                };
                (base, authorization, from_receiver)
            }
        };
        PiconConfig {
            dir: s.data_dir.join("picons"),
            max_bytes: s.picon_cache_max_bytes,
            base,
            authorization,
            timeout: s.owi_timeout,
            from_receiver,
        }
    }
}

/// Splits `scheme://user:pass@host/...` into the URL without credentials and the
/// percent-decoded user and password.
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let (scheme, rest) = url.split_at_checked(scheme_end).unwrap_or((url, ""));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at_checked(authority_end).unwrap_or((rest, ""));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    // In userinfo `+` is a plus, not a space as percent_decode assumes for queries.
    let decode = |s: &str| crate::http::percent_decode(&s.replace('+', "%2B"));
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (
        format!("{scheme}{host}{path}"),
        Some((decode(user), decode(pass))),
    )
}

/// True when both URLs name the same host and port (letter case of the host ignored).
fn same_authority(a: &str, b: &str) -> bool {
    match (Origin::parse(a), Origin::parse(b)) {
        (Ok(a), Ok(b)) => a.host().eq_ignore_ascii_case(b.host()) && a.port() == b.port(),
        _ => false,
    }
}

/// Counters and size of the cache, for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PiconStats {
    /// Requests answered from disk without a fetch of their own (also 304s and requests
    /// that waited for another request's fetch).
    pub hits: u64,
    /// Fetches from the receiver started.
    pub misses: u64,
    /// Fetches that failed (answered 502, not remembered).
    pub fetch_errors: u64,
    /// Requests answered 404, fetched or remembered.
    pub not_found: u64,
    /// Bytes of picons in the cache folder now.
    pub bytes: u64,
    /// Picon files in the cache folder now.
    pub files: u64,
}

/// The bounded picon cache. `Send + Sync`; share it as `Arc<PiconCache>`.
pub struct PiconCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Largest picon kept: [`MAX_PICON_BYTES`], or less when the whole budget is smaller.
    max_picon: u64,
    origin: Origin,
    authorization: Option<String>,
    timeout: Duration,
    fetch_slots: Semaphore,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    fetch_errors: AtomicU64,
    not_found: AtomicU64,
    /// Told every counted outcome (`hit`, `miss`, `error`, `not_found`): the metrics hook.
    observe: Option<Observer>,
    /// The receiver's pacing and breaker, when the picons come from the receiver.
    gate: Option<Arc<Gate>>,
}

/// Receives the outcome labels the cache counts.
pub type Observer = Arc<dyn Fn(&'static str) + Send + Sync>;

impl std::fmt::Debug for PiconCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("PiconCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("origin", &self.origin)
            .field("auth", &self.authorization.is_some())
            .finish()
    }
}

/// What the cache knows, behind one lock that is never held across an await.
#[derive(Default)]
struct State {
    /// Picons on disk: name → size and last use (a tick of `clock`).
    files: HashMap<String, Cached>,
    /// The same names by last use, oldest first.
    lru: BTreeMap<u64, String>,
    /// Sum of the sizes in `files`.
    bytes: u64,
    /// Last use ticks; grows by one per use, so ticks are unique.
    clock: u64,
    /// Names the receiver has no picon for, with when we learnt it.
    missing: HashMap<String, Instant>,
    /// Fetches under way, by name.
    flights: HashMap<String, Arc<Flight>>,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    size: u64,
    used: u64,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Marks `name` used now; false when it is not cached.
    fn touch(&mut self, name: &str) -> bool {
        let tick = self.tick();
        let Some(entry) = self.files.get_mut(name) else {
            return false;
        };
        self.lru.remove(&entry.used);
        entry.used = tick;
        self.lru.insert(tick, name.to_owned());
        true
    }

    /// Records `name` with `size` bytes as just used, replacing an older record.
    fn insert(&mut self, name: &str, size: u64) {
        self.forget(name);
        let used = self.tick();
        self.files.insert(name.to_owned(), Cached { size, used });
        self.lru.insert(used, name.to_owned());
        self.bytes = self.bytes.saturating_add(size);
    }

    /// Drops the record of `name` (the file is the caller's business).
    fn forget(&mut self, name: &str) {
        if let Some(old) = self.files.remove(name) {
            self.lru.remove(&old.used);
            self.bytes = self.bytes.saturating_sub(old.size);
        }
    }

    /// Drops least recently used records until the rest fits in `max_bytes`, sparing
    /// `keep`; returns the dropped names, whose files the caller removes.
    fn evict(&mut self, max_bytes: u64, keep: Option<&str>) -> Vec<String> {
        let mut victims = Vec::new();
        while self.bytes > max_bytes {
            let Some(oldest) = self.lru.values().find(|n| Some(n.as_str()) != keep) else {
                break;
            };
            let oldest = oldest.clone();
            self.forget(&oldest);
            victims.push(oldest);
        }
        victims
    }

    /// True when `name` was found missing less than [`NEGATIVE_TTL`] ago.
    fn is_missing(&mut self, name: &str, now: Instant) -> bool {
        match self.missing.get(name) {
            Some(at) if now.saturating_duration_since(*at) < NEGATIVE_TTL => true,
            Some(_) => {
                self.missing.remove(name);
                false
            }
            None => false,
        }
    }

    /// Remembers `name` as missing, keeping at most [`NEGATIVE_MAX`] names: expired ones
    /// go first, then the oldest.
    fn remember_missing(&mut self, name: &str, now: Instant) {
        if self.missing.len() >= NEGATIVE_MAX && !self.missing.contains_key(name) {
            self.missing
                .retain(|_, at| now.saturating_duration_since(*at) < NEGATIVE_TTL);
            while self.missing.len() >= NEGATIVE_MAX {
                let oldest = self
                    .missing
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(n, _)| n.clone());
                match oldest {
                    Some(n) => self.missing.remove(&n),
                    None => break,
                };
            }
        }
        self.missing.insert(name.to_owned(), now);
    }
}

/// One fetch under way: waiters block on `done` (closed when the fetcher finishes or is
/// cancelled) and then read `outcome` (still `None` when it was cancelled).
struct Flight {
    done: Receiver<()>,
    outcome: Mutex<Option<Outcome>>,
}

/// How a fetch ended, as the waiting requests need it.
#[derive(Clone)]
enum Outcome {
    /// The picon is on disk.
    Stored,
    /// The picon was fetched but could not be written: serve these bytes.
    Unstored(Arc<[u8]>),
    /// The receiver has no picon (404).
    Missing,
    /// The fetch failed (502).
    Failed,
}

/// Held by the request that fetches: when dropped (finished or cancelled) the flight
/// leaves the map and its waiters wake up.
struct FlightGuard<'a> {
    cache: &'a PiconCache,
    name: String,
    flight: Arc<Flight>,
    // Dropped after `drop` below has run, which is what wakes the waiters.
    _done: Sender<()>,
}

impl FlightGuard<'_> {
    fn finish(self, outcome: Outcome) {
        *lock(&self.flight.outcome) = Some(outcome);
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.cache.state();
        if st
            .flights
            .get(&self.name)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            st.flights.remove(&self.name);
        }
    }
}

/// What a request does after looking at the state.
enum Step {
    Hit(PathBuf),
    Missing,
    Wait(Arc<Flight>),
    Fetch(Sender<()>, Arc<Flight>),
}

/// A fetched body that passed the checks, or why it did not.
enum Stored {
    /// Written to disk: its size.
    Written(u64),
    /// Valid but could not be written (disk full, ...): the bytes and the error.
    Unwritten(Vec<u8>, Error),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent-enough data: go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PiconCache {
    /// Creates the folder if needed, removes leftover temp files, and measures what is
    /// cached: every `<name>.png` with a canonical name is recorded with its size, its
    /// modification time standing for its last use; other files are left alone and not
    /// counted. If the picons exceed `max_bytes` (a lowered setting), the oldest are
    /// deleted now. Fails when the base URL is unusable (https, a query, ...) or the
    /// folder cannot be created or read. Blocking: call it at start, not on an executor.
    pub fn new(cfg: PiconConfig) -> Result<PiconCache, Error> {
        let origin = Origin::parse(&cfg.base).map_err(|reason| Error::Base {
            base: cfg.base.clone(),
            reason,
        })?;
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| Error::Io { path, cause }
        };
        fs::create_dir_all(&cfg.dir).map_err(io_error(&cfg.dir))?;
        crate::guide::remove_stale_temp_files(&cfg.dir);
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        for entry in fs::read_dir(&cfg.dir).map_err(io_error(&cfg.dir))? {
            let entry = entry.map_err(io_error(&cfg.dir))?;
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".png")) else {
                continue;
            };
            if name::parse(stem).as_deref() != Some(stem) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, stem.to_owned(), meta.len()));
        }
        found.sort();
        let mut state = State::default();
        for (_, name, size) in found {
            state.insert(&name, size);
        }
        let victims = state.evict(cfg.max_bytes, None);
        for name in &victims {
            remove_picon(&cfg.dir, name);
        }
        log::info!(
            "event=picon_cache_ready dir={} files={} bytes={} evicted={}",
            cfg.dir.display(),
            state.files.len(),
            state.bytes,
            victims.len()
        );
        Ok(PiconCache {
            max_picon: MAX_PICON_BYTES.min(cfg.max_bytes),
            dir: cfg.dir,
            max_bytes: cfg.max_bytes,
            origin,
            authorization: cfg.authorization,
            timeout: cfg.timeout,
            fetch_slots: Semaphore::new(MAX_FETCHES),
            state: Mutex::new(state),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            observe: None,
            gate: None,
        })
    }

    /// The canonical picon name for a path tail like `1_0_19_283D_3FB_1_C00000_0_0_0.png`
    /// (`.png` optional, hex in any case) or a percent-encoded service reference
    /// (`1%3A0%3A19%3A...%3A0%3A`), converted with [`crate::receiver::picon_name`].
    /// `None` for anything else: the name must be ten fields, the first two decimal, the
    /// rest hex, each 1..=8 characters, so it never holds `/`, `..`, `@` or `%`, and a
    /// tail longer than 160 bytes is refused before decoding.
    pub fn parse_name(tail: &str) -> Option<String> {
        name::parse(tail)
    }

    /// The full answer for `GET|HEAD /picon/<tail>`: 200 `image/png` from disk (ETag,
    /// Last-Modified, `Cache-Control: public, max-age=86400`), 304 when the client's copy
    /// is current, 400 `InvalidRef` for a bad name (no fetch), 404 `PiconNotFound` when
    /// the receiver has none or answered something that is not a PNG picon (remembered
    /// for 10 minutes), 502 `PiconFetchFailed` when the receiver could not be asked
    /// (connect, timeout, 5xx, a truncated PNG; not remembered), 405 for other methods,
    /// 500 `Internal` when the cache folder cannot be read or keeps losing the file.
    pub async fn respond(&self, req: &Request, tail: &str) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return ErrorCode::MethodNotAllowed
                .response()
                .with_header("Allow", "GET, HEAD");
        }
        let Some(name) = name::parse(tail) else {
            return ErrorCode::InvalidRef.response();
        };
        // Whether this request fetched the picon itself (then serving it is no hit).
        let mut fetched = false;
        for _ in 0..MAX_ROUNDS {
            match self.step(&name) {
                Step::Hit(path) => {
                    if let Some(resp) = self.serve(req, path).await {
                        if !fetched {
                            self.count(&self.hits, "hit");
                        }
                        return resp;
                    }
                    // Deleted behind our back: forget it and fetch it again.
                    log::info!("event=picon_vanished name={name}");
                    self.state().forget(&name);
                }
                Step::Missing => return self.not_found(),
                Step::Wait(flight) => {
                    // Err means the fetcher is done (or gone): either way, look again.
                    let _ = flight.done.recv().await;
                    let outcome = lock(&flight.outcome).clone();
                    match outcome {
                        Some(Outcome::Stored) | None => {}
                        Some(Outcome::Unstored(bytes)) => {
                            self.count(&self.hits, "hit");
                            return png_from_memory(&bytes);
                        }
                        Some(Outcome::Missing) => return self.not_found(),
                        Some(Outcome::Failed) => return ErrorCode::PiconFetchFailed.response(),
                    }
                }
                Step::Fetch(done, flight) => {
                    let guard = FlightGuard {
                        cache: self,
                        name: name.clone(),
                        flight,
                        _done: done,
                    };
                    match self.fetch_and_store(guard).await {
                        Some(resp) => return resp,
                        None => fetched = true,
                    }
                }
            }
        }
        log::warn!("event=picon_unservable name={name} reason=\"file keeps vanishing\"");
        ErrorCode::Internal.response()
    }

    /// Counters and the current size of the cache.
    pub fn stats(&self) -> PiconStats {
        let (bytes, files) = {
            let st = self.state();
            (st.bytes, st.files.len() as u64)
        };
        PiconStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fetch_errors: self.fetch_errors.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            bytes,
            files,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.png"))
    }

    /// Decides, under the lock, whether to serve, refuse, wait or fetch.
    fn step(&self, name: &str) -> Step {
        let mut st = self.state();
        if st.touch(name) {
            return Step::Hit(self.path_of(name));
        }
        if st.is_missing(name, Instant::now()) {
            return Step::Missing;
        }
        if let Some(flight) = st.flights.get(name) {
            return Step::Wait(flight.clone());
        }
        let (done_tx, done_rx) = smol::channel::bounded(1);
        let flight = Arc::new(Flight {
            done: done_rx,
            outcome: Mutex::new(None),
        });
        st.flights.insert(name.to_owned(), flight.clone());
        Step::Fetch(done_tx, flight)
    }

    /// Serves the file at `path` with our caching headers; `None` when it is gone.
    async fn serve(&self, req: &Request, path: PathBuf) -> Option<Response> {
        let req = req.clone();
        let mut resp = smol::unblock(move || serve_file(&req, &path, "image/png")).await;
        if resp.status == ErrorCode::NotReady.status() {
            return None;
        }
        if resp.status == 200 || resp.status == 304 {
            resp.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("cache-control"));
            resp.headers
                .push(("Cache-Control".to_owned(), CACHE_CONTROL.to_owned()));
        }
        Some(resp)
    }

    /// Also tells the observer, if any.
    fn count(&self, counter: &AtomicU64, label: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(observe) = &self.observe {
            observe(label);
        }
    }

    /// Adds the outcome observer (metrics).
    pub fn with_observer(mut self, observe: Observer) -> PiconCache {
        self.observe = Some(observe);
        self
    }

    /// Sends every fetch through `gate` (the receiver's pacing and circuit breaker):
    /// for picons served by the receiver itself, see [`PiconConfig::from_receiver`].
    pub fn with_gate(mut self, gate: Arc<Gate>) -> PiconCache {
        self.gate = Some(gate);
        self
    }

    fn not_found(&self) -> Response {
        self.count(&self.not_found, "not_found");
        ErrorCode::PiconNotFound
            .response()
            .with_header("Cache-Control", NOT_FOUND_CACHE_CONTROL)
    }

    /// Fetches `guard.name`, stores it and tells the waiters; the answer for this request,
    /// or `None` when the picon is on disk now and is served like a hit.
    async fn fetch_and_store(&self, guard: FlightGuard<'_>) -> Option<Response> {
        let name = guard.name.clone();
        let fetched = {
            let _slot = self.fetch_slots.acquire().await;
            self.count(&self.misses, "miss");
            self.fetch(&name).await
        };
        let stored = match fetched {
            Ok((raw, gzip)) => {
                let dir = self.dir.clone();
                let max = self.max_picon;
                let n = name.clone();
                smol::unblock(move || store(&dir, &n, raw, gzip, max)).await
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok(Stored::Written(size)) => {
                let victims = {
                    let mut st = self.state();
                    st.insert(&name, size);
                    st.evict(self.max_bytes, Some(&name))
                };
                log::info!(
                    "event=picon_fetched name={name} bytes={size} evicted={}",
                    victims.len()
                );
                guard.finish(Outcome::Stored);
                if !victims.is_empty() {
                    let dir = self.dir.clone();
                    smol::unblock(move || {
                        for victim in &victims {
                            remove_picon(&dir, victim);
                        }
                    })
                    .await;
                }
                None
            }
            Ok(Stored::Unwritten(bytes, e)) => {
                log::warn!("event=picon_store_failed name={name} error=\"{e}\"");
                let bytes: Arc<[u8]> = bytes.into();
                guard.finish(Outcome::Unstored(bytes.clone()));
                Some(png_from_memory(&bytes))
            }
            Err(e) if e.is_missing() => {
                log::info!("event=picon_missing name={name} reason=\"{e}\"");
                self.state().remember_missing(&name, Instant::now());
                guard.finish(Outcome::Missing);
                Some(self.not_found())
            }
            Err(e) => {
                log::warn!("event=picon_fetch_failed name={name} error=\"{e}\"");
                self.count(&self.fetch_errors, "error");
                guard.finish(Outcome::Failed);
                Some(ErrorCode::PiconFetchFailed.response())
            }
        }
    }

    /// GETs `<base>/<name>.png` within the fetch deadline, through the receiver's gate
    /// when the picons come from the receiver; the body (at most `max_picon` bytes,
    /// still gzip-coded when the flag says so) or why there is none.
    async fn fetch(&self, name: &str) -> Result<(Vec<u8>, bool), Error> {
        let permit = match &self.gate {
            None => None,
            Some(gate) => {
                let req = || format!("GET {}/{name}.png", self.origin.prefix());
                let permit = gate.enter(req).await.map_err(|cause| Error::Fetch {
                    name: name.to_owned(),
                    cause,
                })?;
                Some(permit)
            }
        };
        let after = self.timeout.saturating_mul(FETCH_DEADLINE_FACTOR);
        let deadline = async {
            Timer::after(after).await;
            Err(Error::Deadline {
                name: name.to_owned(),
                after,
            })
        };
        let result = self.fetch_body(name).or(deadline).await;
        if let Some(permit) = permit {
            match &result {
                Err(e) if e.is_receiver_failure() => permit.failure(),
                // The box answered, even if with a 404 or something that is no PNG.
                _ => permit.success(),
            }
        }
        result
    }

    async fn fetch_body(&self, name: &str) -> Result<(Vec<u8>, bool), Error> {
        let fetch_error = |cause| Error::Fetch {
            name: name.to_owned(),
            cause,
        };
        let path = format!("/{name}.png");
        let mut resp = http_client::get(
            &self.origin,
            &path,
            self.authorization.as_deref(),
            self.timeout,
        )
        .await
        .map_err(fetch_error)?;
        let status = resp.head.status;
        match status {
            200..=299 => {}
            404 | 410 => {
                return Err(Error::Missing {
                    name: name.to_owned(),
                    status,
                });
            }
            _ => {
                return Err(Error::Status {
                    name: name.to_owned(),
                    status,
                });
            }
        }
        let gzip = match resp.head.content_encoding().as_deref() {
            None => false,
            Some("gzip" | "x-gzip") => true,
            Some(other) => {
                return Err(Error::NotPng {
                    name: name.to_owned(),
                    reason: format!("content encoding {other:?}"),
                });
            }
        };
        let too_large = || Error::NotPng {
            name: name.to_owned(),
            reason: format!("larger than {} bytes", self.max_picon),
        };
        let capacity = match resp.head.framing() {
            Ok(Framing::Length(n)) if n > self.max_picon => return Err(too_large()),
            Ok(Framing::Length(n)) => usize::try_from(n).unwrap_or(0),
            _ => READ_CHUNK,
        };
        let cap = usize::try_from(self.max_picon).unwrap_or(usize::MAX);
        let mut body = Vec::with_capacity(capacity);
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = resp.body.read(&mut chunk).await.map_err(fetch_error)?;
            if n == 0 {
                break;
            }
            if body.len().saturating_add(n) > cap {
                return Err(too_large());
            }
            body.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        Ok((body, gzip))
    }
}

/// Decodes (when gzip), checks and writes one picon atomically. Blocking.
fn store(dir: &Path, name: &str, raw: Vec<u8>, gzip: bool, max: u64) -> Result<Stored, Error> {
    let not_png = |reason: String| Error::NotPng {
        name: name.to_owned(),
        reason,
    };
    let png = if gzip {
        let mut out = Vec::new();
        let decoder = flate2::read::GzDecoder::new(raw.as_slice());
        decoder
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| not_png(format!("bad gzip data: {e}")))?;
        if out.len() as u64 > max {
            return Err(not_png(format!("larger than {max} bytes")));
        }
        out
    } else {
        raw
    };
    if !png.starts_with(&PNG_SIGNATURE) {
        return Err(not_png("no PNG signature".to_owned()));
    }
    if !png.ends_with(&PNG_IEND) {
        return Err(Error::Truncated {
            name: name.to_owned(),
        });
    }
    let path = dir.join(format!("{name}.png"));
    match crate::guide::write_atomic(&path, |w| w.write_all(&png)) {
        Ok(size) => Ok(Stored::Written(size)),
        Err(cause) => Ok(Stored::Unwritten(png, Error::Io { path, cause })),
    }
}

/// Deletes the file of an evicted picon; one already gone is fine. Blocking.
fn remove_picon(dir: &Path, name: &str) {
    let path = dir.join(format!("{name}.png"));
    match fs::remove_file(&path) {
        Ok(()) => log::debug!("event=picon_evicted name={name}"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!(
            "event=picon_evict_failed path={} error=\"{e}\"",
            path.display()
        ),
    }
}

/// A picon that could not be stored, answered from memory (no validators to offer).
fn png_from_memory(bytes: &[u8]) -> Response {
    Response::bytes(200, "image/png", bytes.to_vec()).with_header("Cache-Control", CACHE_CONTROL)
}
