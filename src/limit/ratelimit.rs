//! The HTTP rate limiter: one token bucket per client IP and route class (files, stream,
//! api) in front of one global bucket shared by everyone.
//!
//! Rules:
//! - Whitelisted clients (and everyone, when disabled) are exempt: never limited, never
//!   tracked, and they take nothing from the global bucket.
//! - A request takes a token from its client's class bucket and from the global bucket,
//!   or from neither: both are decided under one lock, so a refusal by either bucket
//!   costs the other nothing, exactly.
//! - Clients are keyed by IPv4 address, or by IPv6 /64 (a host can pick any address in
//!   its /64). At most `max_tracked` clients are remembered; when the table is full,
//!   idle clients (all buckets full again) are dropped at most once per
//!   [`SWEEP_EVERY`], and clients that still do not fit share one overflow set of
//!   buckets, so a flood of source addresses shares one budget and cannot grow memory
//!   (and one refusal episode per class, so it cannot flood the audit log either).
//! - The arithmetic is the token bucket's own (`bucket::Gcra`: GCRA in exact scaled
//!   integer time), kept here as bare arrival times so a tracked client costs a few dozen
//!   bytes instead of three locked buckets.
//! - No background thread: the daemon's janitor calls [`RateLimiter::evict_idle`].

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::bucket::Gcra;
use super::{Decision, IpSet};

/// Least time between two sweeps of a full table from the request path, so a flood of
/// new addresses costs one table scan per 100 ms instead of one per request.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Which limiter a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// Playlist, guide and picon files.
    Files,
    /// Stream and transcode requests.
    Stream,
    /// `/api/...` and the other small JSON endpoints.
    Api,
}

impl RouteClass {
    /// Every class, in a fixed order.
    pub const ALL: [RouteClass; 3] = [RouteClass::Files, RouteClass::Stream, RouteClass::Api];

    /// The stable lowercase name used in logs and metric labels: `files`, `stream`, `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Files => "files",
            RouteClass::Stream => "stream",
            RouteClass::Api => "api",
        }
    }

    /// The class's slot in per-class arrays (its position in [`RouteClass::ALL`]).
    fn index(self) -> usize {
        match self {
            RouteClass::Files => 0,
            RouteClass::Stream => 1,
            RouteClass::Api => 2,
        }
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bucket's size: `rps` tokens per second, at most `burst` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLimit {
    /// Tokens per second.
    pub rps: NonZeroU32,
    /// The most tokens stored (the `X-RateLimit-Limit` value).
    pub burst: NonZeroU32,
}

/// How the limiter behaves; built once from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `false`: every request is [`Verdict::Exempt`].
    pub enabled: bool,
    /// One bucket for all clients and classes.
    pub global: ClassLimit,
    /// Each client's bucket for file routes.
    pub files: ClassLimit,
    /// Each client's bucket for stream routes.
    pub stream: ClassLimit,
    /// Each client's bucket for API routes.
    pub api: ClassLimit,
    /// Clients that are never limited and not tracked.
    pub whitelist: IpSet,
    /// Most clients remembered at once (the memory bound).
    pub max_tracked: NonZeroUsize,
}

impl RateLimitConfig {
    /// The `XG2G_RATELIMIT_*` settings; a class without its own rate or burst uses
    /// `XG2G_RATELIMIT_RPS` / `_BURST`.
    pub fn from_settings(s: &crate::config::Settings) -> RateLimitConfig {
        let class = |rps: Option<NonZeroU32>, burst: Option<NonZeroU32>| ClassLimit {
            rps: rps.unwrap_or(s.ratelimit_rps),
            burst: burst.unwrap_or(s.ratelimit_burst),
        };
        RateLimitConfig {
            enabled: s.ratelimit_enabled,
            global: ClassLimit {
                rps: s.ratelimit_global_rps,
                burst: s.ratelimit_global_burst,
            },
            files: class(s.ratelimit_files_rps, s.ratelimit_files_burst),
            stream: class(s.ratelimit_stream_rps, s.ratelimit_stream_burst),
            api: class(s.ratelimit_api_rps, s.ratelimit_api_burst),
            whitelist: s.ratelimit_whitelist.clone(),
            max_tracked: s.ratelimit_max_clients,
        }
    }

    /// The per-client limit for `class`.
    pub fn limit(&self, class: RouteClass) -> ClassLimit {
        match class {
            RouteClass::Files => self.files,
            RouteClass::Stream => self.stream,
            RouteClass::Api => self.api,
        }
    }
}

/// Which bucket refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The client's own bucket for the route class.
    Client,
    /// The global bucket.
    Global,
}

impl Scope {
    /// The stable lowercase name used in logs and metric labels: `client`, `global`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::Global => "global",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the limiter said to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Disabled or whitelisted: serve it, and send no rate-limit headers at all.
    Exempt,
    /// Serve it; the decision is the client's class bucket's (for `X-RateLimit-*`).
    Allowed(Decision),
    /// Refuse it (429).
    Limited {
        /// The client's class bucket as it stands (nothing was taken from it), except
        /// that for a [`Scope::Global`] refusal `retry_after` is the global bucket's.
        decision: Decision,
        /// Which bucket refused.
        scope: Scope,
        /// The first refusal of an episode: for [`Scope::Client`] since the last
        /// admitted request of this client and class, for [`Scope::Global`] since the
        /// last admitted request of anyone. One audit line per episode is enough.
        first: bool,
    },
}

impl Verdict {
    /// The decision to describe in `X-RateLimit-*` headers; `None` when exempt.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Verdict::Exempt => None,
            Verdict::Allowed(d) | Verdict::Limited { decision: d, .. } => Some(*d),
        }
    }
}

/// One tracked client (or the overflow set): a theoretical arrival time per class, 0
/// being "full". Per entry in the table: 16 (key) + 48 (arrival times) + 1 (flags),
/// padded to 80 bytes, plus one control byte; at hashbrown's 7/8 load factor and
/// power-of-two sizes that is 93 to 185 bytes per tracked client, so 10 000 clients cost
/// 1–2 MB.
#[derive(Debug, Clone, Copy, Default)]
struct Client {
    tat: [u128; 3],
    /// Bit per class: inside a refusal episode (the last request of the class was
    /// refused by this client's own bucket).
    refusing: u8,
}

impl Client {
    fn is_idle(&self, limits: &[Gcra; 3], ns: u128) -> bool {
        limits
            .iter()
            .zip(self.tat)
            .all(|(limit, tat)| limit.is_full(tat, ns))
    }
}

/// The client table: the part of the state whose size depends on traffic.
#[derive(Debug, Default)]
struct Table {
    clients: HashMap<u128, Client>,
    /// The buckets shared by every client that did not fit.
    overflow: Client,
    /// When the table was last swept (nanoseconds since the epoch).
    last_sweep: Option<u128>,
}

impl Table {
    /// The client's entry, made if it fits; otherwise the overflow set.
    fn slot(&mut self, key: u128, cap: usize, limits: &[Gcra; 3], ns: u128) -> &mut Client {
        if self.clients.len() >= cap && !self.clients.contains_key(&key) {
            let due = self
                .last_sweep
                .is_none_or(|last| ns >= last.saturating_add(SWEEP_EVERY.as_nanos()));
            if due {
                self.sweep(limits, ns);
            }
            if self.clients.len() >= cap {
                return &mut self.overflow;
            }
        }
        // Growing the map reallocates under the lock, but capacity never shrinks, so
        // that happens at most log2(max_tracked) times in the daemon's life.
        self.clients.entry(key).or_default()
    }

    /// Drops idle clients; returns how many. Dropping a full bucket loses nothing: a
    /// new one starts full.
    fn sweep(&mut self, limits: &[Gcra; 3], ns: u128) -> usize {
        let before = self.clients.len();
        self.clients.retain(|_, c| !c.is_idle(limits, ns));
        self.last_sweep = Some(ns);
        before - self.clients.len()
    }
}

/// Everything behind the lock.
#[derive(Debug, Default)]
struct Inner {
    table: Table,
    global_tat: u128,
    /// Inside a global refusal episode (the last request was refused globally).
    global_refusing: bool,
}

/// The per-client and global HTTP rate limiter. `Send + Sync`; share it with an `Arc`.
pub struct RateLimiter {
    cfg: RateLimitConfig,
    /// Per class, in [`RouteClass::ALL`] order.
    limits: [Gcra; 3],
    global: Gcra,
    /// Scaled-time origin: instants are measured from here; earlier ones count as it.
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("cfg", &self.cfg)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter with every bucket full and no client tracked.
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        RateLimiter::new_at(cfg, Instant::now())
    }

    /// [`RateLimiter::new`] with the clock's current reading given (fake clocks).
    pub fn new_at(cfg: RateLimitConfig, now: Instant) -> RateLimiter {
        let limits = RouteClass::ALL.map(|class| {
            let l = cfg.limit(class);
            Gcra::new(l.rps, l.burst)
        });
        RateLimiter {
            global: Gcra::new(cfg.global.rps, cfg.global.burst),
            limits,
            cfg,
            epoch: now,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Decides one request of `client` on a route of `class`; see [`Verdict`].
    pub fn check(&self, client: IpAddr, class: RouteClass) -> Verdict {
        self.check_at(client, class, Instant::now())
    }

    /// [`RateLimiter::check`] at `now`. A `now` earlier than one seen before counts as
    /// no time passed, so it can only make the limiter stricter.
    pub fn check_at(&self, client: IpAddr, class: RouteClass, now: Instant) -> Verdict {
        if !self.cfg.enabled || self.cfg.whitelist.contains(client) {
            return Verdict::Exempt;
        }
        let key = client_key(client);
        let ns = self.nanos(now);
        let i = class.index();
        let bit = 1u8 << i;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let me = inner
            .table
            .slot(key, self.cfg.max_tracked.get(), &self.limits, ns);
        // `i` comes from the enum, never from the request: always below 3.
        let limit = &self.limits[i];
        let tat = &mut me.tat[i];
        let (mine, my_next) = limit.take(*tat, ns);
        let Some(my_next) = my_next else {
            let first = me.refusing & bit == 0;
            me.refusing |= bit;
            return Verdict::Limited {
                decision: mine,
                scope: Scope::Client,
                first,
            };
        };
        let (global, global_next) = self.global.take(inner.global_tat, ns);
        let Some(global_next) = global_next else {
            let first = !inner.global_refusing;
            inner.global_refusing = true;
            return Verdict::Limited {
                decision: Decision {
                    retry_after: global.retry_after,
                    ..limit.status(*tat, ns)
                },
                scope: Scope::Global,
                first,
            };
        };
        *tat = my_next;
        me.refusing &= !bit;
        inner.global_tat = global_next;
        inner.global_refusing = false;
        Verdict::Allowed(mine)
    }

    /// Drops clients whose buckets are all full again; returns how many. For the
    /// janitor task, every few seconds.
    pub fn evict_idle(&self) -> usize {
        self.evict_idle_at(Instant::now())
    }

    /// [`RateLimiter::evict_idle`] at `now`.
    pub fn evict_idle_at(&self, now: Instant) -> usize {
        let ns = self.nanos(now);
        self.lock().table.sweep(&self.limits, ns)
    }

    /// Clients tracked now (the overflow set not counted); never above `max_tracked`.
    pub fn tracked(&self) -> usize {
        self.lock().table.clients.len()
    }

    /// The configuration the limiter was built with.
    pub fn config(&self) -> &RateLimitConfig {
        &self.cfg
    }

    /// `now` as nanoseconds since the epoch.
    fn nanos(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.epoch).as_nanos()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held, so a poisoned lock still holds
        // consistent state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The table key: an IPv4 address as its mapped IPv6 form, an IPv6 address as its /64.
/// The two never collide: a mapped address has non-zero low bits, a /64 has none.
fn client_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::super::bucket::TOKEN;
    use super::*;
    use crate::limit::TokenBucket;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    fn lim(rps: u32, burst: u32) -> ClassLimit {
        ClassLimit {
            rps: nz(rps),
            burst: nz(burst),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// The defaults: 10/s with a burst of 20 per client and class, 100/s global.
    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            global: lim(100, 200),
            files: lim(10, 20),
            stream: lim(10, 20),
            api: lim(10, 20),
            whitelist: IpSet::default(),
            max_tracked: NonZeroUsize::new(1000).unwrap_or(NonZeroUsize::MIN),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn allowed(v: Verdict) -> bool {
        matches!(v, Verdict::Allowed(_))
    }

    fn limited(v: Verdict) -> Option<(Decision, Scope, bool)> {
        match v {
            Verdict::Limited {
                decision,
                scope,
                first,
            } => Some((decision, scope, first)),
            _ => None,
        }
    }

    #[test]
    fn a_burst_is_refused_with_exact_numbers_while_others_are_served() {
        let t0 = Instant::now();
        let rl = RateLimiter::new_at(cfg(), t0);
        let a = ip("127.0.0.2");
        for i in 0..20u32 {
            let v = rl.check_at(a, RouteClass::Api, t0);
            let expect = Decision {
                allowed: true,
                limit: 20,
                remaining: 19 - i,
                retry_after: Duration::ZERO,
                reset: ms(100 * u64::from(i + 1)),
            };
            assert_eq!(v, Verdict::Allowed(expect), "request {i}");
        }
        let refused = Decision {
            allowed: false,
            limit: 20,
            remaining: 0,
            retry_after: ms(100),
            reset: ms(2000),
        };
        assert_eq!(
            limited(rl.check_at(a, RouteClass::Api, t0)),
            Some((refused, Scope::Client, true))
        );
        assert_eq!(
            limited(rl.check_at(a, RouteClass::Api, t0 + ms(40))),
            Some((
                Decision {
                    retry_after: ms(60),
                    reset: ms(1960),
                    ..refused
                },
                Scope::Client,
                false
            ))
        );
        let v = rl.check_at(ip("127.0.0.3"), RouteClass::Api, t0);
        assert_eq!(
            v.decision().map(|d| (d.allowed, d.remaining)),
            Some((true, 19))
        );
        // A token is back after 100 ms.
        assert!(allowed(rl.check_at(a, RouteClass::Api, t0 + ms(100))));
        assert_eq!(rl.tracked(), 2);
    }

    #[test]
    fn whitelisted_and_disabled_are_exempt_and_untracked() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.global = lim(1, 1);
        c.whitelist = IpSet::parse("127.0.0.0/8, fd00::/8").unwrap_or_default();
        let rl = RateLimiter::new_at(c.clone(), t0);
        for _ in 0..1000 {
            assert_eq!(
                rl.check_at(ip("127.9.9.9"), RouteClass::Api, t0),
                Verdict::Exempt
            );
            assert_eq!(
                rl.check_at(ip("fd00::1"), RouteClass::Stream, t0),
                Verdict::Exempt
            );
            assert_eq!(
                rl.check_at(ip("::ffff:127.0.0.1"), RouteClass::Files, t0),
                Verdict::Exempt
            );
        }
        assert_eq!(rl.tracked(), 0);
        // The whitelist took nothing from the global bucket.
        assert!(allowed(rl.check_at(ip("192.0.2.1"), RouteClass::Api, t0)));

        c.enabled = false;
        let rl = RateLimiter::new_at(c, t0);
        for _ in 0..1000 {
            assert_eq!(
                rl.check_at(ip("192.0.2.1"), RouteClass::Api, t0),
                Verdict::Exempt
            );
        }
        assert_eq!(rl.tracked(), 0);
        assert_eq!(Verdict::Exempt.decision(), None);
    }

    #[test]
    fn an_api_flood_does_not_starve_files_or_streams() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.files = lim(1, 3);
        c.stream = lim(1, 4);
        let rl = RateLimiter::new_at(c, t0);
        let a = ip("10.0.0.7");
        let admitted = (0..500)
            .filter(|_| allowed(rl.check_at(a, RouteClass::Api, t0)))
            .count();
        assert_eq!(admitted, 20);
        let f = rl.check_at(a, RouteClass::Files, t0).decision();
        assert_eq!(f.map(|d| (d.allowed, d.remaining)), Some((true, 2)));
        let s = rl.check_at(a, RouteClass::Stream, t0).decision();
        assert_eq!(s.map(|d| (d.allowed, d.remaining)), Some((true, 3)));
        assert_eq!(rl.config().limit(RouteClass::Stream).burst.get(), 4);
    }

    #[test]
    fn the_global_bucket_refuses_across_clients() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.global = lim(1, 3);
        let rl = RateLimiter::new_at(c, t0);
        for n in 1..=3 {
            assert!(allowed(rl.check_at(
                ip(&format!("10.0.0.{n}")),
                RouteClass::Api,
                t0
            )));
        }
        let refused = Decision {
            allowed: false,
            limit: 20,
            remaining: 20,
            retry_after: ms(1000),
            reset: Duration::ZERO,
        };
        assert_eq!(
            limited(rl.check_at(ip("10.0.0.4"), RouteClass::Api, t0)),
            Some((refused, Scope::Global, true))
        );
        // Another client, another class: the same episode.
        assert_eq!(
            limited(rl.check_at(ip("10.0.0.5"), RouteClass::Files, t0 + ms(500))),
            Some((
                Decision {
                    retry_after: ms(500),
                    ..refused
                },
                Scope::Global,
                false
            ))
        );
        // One admission ends the episode.
        assert!(allowed(rl.check_at(
            ip("10.0.0.6"),
            RouteClass::Api,
            t0 + ms(1000)
        )));
        let again = limited(rl.check_at(ip("10.0.0.6"), RouteClass::Api, t0 + ms(1000)));
        assert_eq!(
            again.map(|(d, s, f)| (d.remaining, s, f)),
            Some((19, Scope::Global, true))
        );
    }

    #[test]
    fn a_client_refusal_takes_no_global_token() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.global = lim(1, 2);
        c.api = lim(1, 1);
        let rl = RateLimiter::new_at(c, t0);
        let a = ip("10.0.0.1");
        assert!(allowed(rl.check_at(a, RouteClass::Api, t0)));
        for _ in 0..100 {
            let v = limited(rl.check_at(a, RouteClass::Api, t0));
            assert_eq!(v.map(|(_, s, _)| s), Some(Scope::Client));
        }
        assert!(allowed(rl.check_at(ip("10.0.0.2"), RouteClass::Api, t0)));
        let v = limited(rl.check_at(ip("10.0.0.3"), RouteClass::Api, t0));
        assert_eq!(v.map(|(_, s, _)| s), Some(Scope::Global));
    }

    #[test]
    fn a_global_refusal_takes_no_client_token() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.global = lim(10, 1);
        c.api = lim(1, 2);
        let rl = RateLimiter::new_at(c, t0);
        let a = ip("10.0.0.1");
        assert!(allowed(rl.check_at(a, RouteClass::Api, t0)));
        for i in 0..5 {
            let v = limited(rl.check_at(a, RouteClass::Api, t0));
            let (d, scope, first) =
                v.unwrap_or((Decision::default_refusal(), Scope::Client, false));
            assert_eq!((scope, first), (Scope::Global, i == 0));
            assert_eq!(
                (d.remaining, d.retry_after, d.reset),
                (1, ms(100), ms(1000))
            );
        }
        // Had the refusals taken client tokens, this would be refused by the client.
        let v = rl.check_at(a, RouteClass::Api, t0 + ms(100));
        assert_eq!(
            v.decision().map(|d| (d.allowed, d.remaining)),
            Some((true, 0))
        );
    }

    impl Decision {
        fn default_refusal() -> Decision {
            Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                retry_after: Duration::ZERO,
                reset: Duration::ZERO,
            }
        }
    }

    #[test]
    fn episodes_are_per_client_and_class() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.api = lim(1, 1);
        c.files = lim(1, 1);
        let rl = RateLimiter::new_at(c, t0);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let first = |who, class, at| limited(rl.check_at(who, class, at)).map(|(_, _, f)| f);
        for who in [a, b] {
            for class in [RouteClass::Api, RouteClass::Files] {
                assert!(allowed(rl.check_at(who, class, t0)));
            }
        }
        assert_eq!(first(a, RouteClass::Api, t0), Some(true));
        assert_eq!(first(a, RouteClass::Api, t0), Some(false));
        assert_eq!(first(a, RouteClass::Files, t0), Some(true));
        assert_eq!(first(b, RouteClass::Api, t0), Some(true));
        assert_eq!(first(a, RouteClass::Api, t0 + ms(999)), Some(false));
        // Admitted again: the next refusal opens a new episode.
        assert!(allowed(rl.check_at(a, RouteClass::Api, t0 + ms(1000))));
        assert_eq!(first(a, RouteClass::Api, t0 + ms(1000)), Some(true));
        assert_eq!(first(a, RouteClass::Files, t0 + ms(500)), Some(false));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.api = lim(1, 2);
        let rl = RateLimiter::new_at(c, t0);
        assert!(allowed(rl.check_at(ip("2001:db8::1"), RouteClass::Api, t0)));
        assert!(allowed(rl.check_at(
            ip("2001:db8::ffff:2"),
            RouteClass::Api,
            t0
        )));
        let v = limited(rl.check_at(ip("2001:db8::abcd:1234:5678:9"), RouteClass::Api, t0));
        assert_eq!(v.map(|(_, s, f)| (s, f)), Some((Scope::Client, true)));
        assert!(allowed(rl.check_at(
            ip("2001:db8:0:1::1"),
            RouteClass::Api,
            t0
        )));
        // IPv4 by address, whether the socket reports it mapped or not; never sharing
        // with ::/64.
        assert!(allowed(rl.check_at(ip("192.0.2.1"), RouteClass::Api, t0)));
        assert!(allowed(rl.check_at(
            ip("::ffff:192.0.2.1"),
            RouteClass::Api,
            t0
        )));
        assert!(!allowed(rl.check_at(ip("192.0.2.1"), RouteClass::Api, t0)));
        assert!(allowed(rl.check_at(ip("192.0.2.2"), RouteClass::Api, t0)));
        assert!(allowed(rl.check_at(ip("::1"), RouteClass::Api, t0)));
        assert_eq!(rl.tracked(), 5);
        assert_ne!(client_key(ip("::c000:201")), client_key(ip("192.0.2.1")));
    }

    #[test]
    fn a_full_table_sweeps_rarely_and_sends_the_rest_to_the_overflow() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.api = lim(1, 2);
        c.max_tracked = NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN);
        let rl = RateLimiter::new_at(c, t0);
        let ok = |who: &str, at| allowed(rl.check_at(ip(who), RouteClass::Api, at));
        assert!(ok("10.0.0.1", t0));
        assert!(ok("10.0.0.1", t0));
        assert!(ok("10.0.0.2", t0));
        // Full, nobody idle: newcomers share the overflow's two tokens.
        assert!(ok("10.0.0.3", t0));
        assert!(ok("10.0.0.4", t0));
        assert!(!ok("10.0.0.5", t0));
        assert!(!ok("10.0.0.3", t0));
        // Tracked clients keep their own buckets.
        assert!(ok("10.0.0.2", t0));
        assert_eq!(rl.tracked(), 2);
        // 10.0.0.1 and 10.0.0.2 are full again at 2 s; the overflow gained a token by
        // 1 s. A sweep at 1.999 s finds nobody idle...
        let remaining = |who: &str, at| {
            let v = rl.check_at(ip(who), RouteClass::Api, at);
            v.decision().map(|d| (d.allowed, d.remaining))
        };
        assert_eq!(remaining("10.0.0.6", t0 + ms(1999)), Some((true, 0)));
        // ...and the next is not due for 100 ms although both are idle by then: still the
        // overflow (an own bucket would have a token left).
        assert_eq!(remaining("10.0.0.7", t0 + ms(2000)), Some((true, 0)));
        assert_eq!(remaining("10.0.0.7", t0 + ms(2098)), Some((false, 0)));
        assert_eq!(rl.tracked(), 2);
        assert_eq!(remaining("10.0.0.7", t0 + ms(2099)), Some((true, 1)));
        assert_eq!(rl.tracked(), 1);
        assert_eq!(remaining("10.0.0.8", t0 + ms(2099)), Some((true, 1)));
        assert_eq!(rl.tracked(), 2);
    }

    #[test]
    fn evict_idle_drops_exactly_the_full_clients() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.files = lim(1, 1);
        c.stream = lim(1, 1);
        c.api = lim(10, 1);
        let rl = RateLimiter::new_at(c, t0);
        assert!(allowed(rl.check_at(ip("10.0.0.1"), RouteClass::Api, t0)));
        assert!(allowed(rl.check_at(ip("10.0.0.2"), RouteClass::Stream, t0)));
        assert!(allowed(rl.check_at(
            ip("10.0.0.3"),
            RouteClass::Files,
            t0 + ms(500)
        )));
        assert_eq!(rl.evict_idle_at(t0), 0);
        assert_eq!(rl.evict_idle_at(t0 + ms(100)), 1);
        assert_eq!(rl.tracked(), 2);
        assert_eq!(rl.evict_idle_at(t0 + ms(1000)), 1);
        assert_eq!(rl.evict_idle_at(t0 + ms(1499)), 0);
        assert_eq!(rl.evict_idle_at(t0 + ms(1500)), 1);
        assert_eq!(rl.tracked(), 0);
        // Forgotten means full: a returning client gets its whole burst.
        let v = rl.check_at(ip("10.0.0.2"), RouteClass::Stream, t0 + ms(1500));
        assert_eq!(
            v.decision().map(|d| (d.allowed, d.remaining)),
            Some((true, 0))
        );
    }

    #[test]
    fn the_entry_size_estimate_holds() {
        assert!(std::mem::size_of::<(u128, Client)>() <= 80);
    }

    /// Runs `request` 200 times on each of 4 threads at once; returns how many passed.
    fn hammer(request: impl Fn(usize) -> bool + Sync) -> usize {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|n| {
                    let request = &request;
                    s.spawn(move || (0..200).filter(|_| request(n)).count())
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        })
    }

    #[test]
    fn four_threads_at_one_instant_admit_exactly_the_burst() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.api = lim(1, 37);
        c.global = lim(1, 1000);
        let rl = RateLimiter::new_at(c.clone(), t0);
        let one_client = hammer(|_| allowed(rl.check_at(ip("10.0.0.1"), RouteClass::Api, t0)));
        assert_eq!(one_client, 37);

        c.api = lim(1, 1000);
        c.global = lim(1, 50);
        let rl = RateLimiter::new_at(c, t0);
        let four_clients = hammer(|n| {
            let client = IpAddr::from([10, 0, 1, n as u8]);
            allowed(rl.check_at(client, RouteClass::Api, t0))
        });
        assert_eq!(four_clients, 50);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// One request: time step in ns (0 often, so bursts happen), client, class.
        fn op() -> impl Strategy<Value = (u64, usize, usize)> {
            (
                prop_oneof![Just(0u64), 0u64..2_000_000_000, 0u64..20_000_000],
                0usize..4,
                0usize..3,
            )
        }

        fn small_limit() -> impl Strategy<Value = ClassLimit> {
            (1u32..20, 1u32..10).prop_map(|(r, b)| lim(r, b))
        }

        /// Admission times (ns) never exceed `burst + rps × window` over any window.
        fn window_ok(times: &[u128], l: ClassLimit) -> bool {
            let burst = u128::from(l.burst.get());
            let rate = u128::from(l.rps.get());
            times.iter().enumerate().all(|(i, &start)| {
                times.iter().skip(i).enumerate().all(|(k, &end)| {
                    let count = k as u128 + 1;
                    count <= burst || (count - burst) * TOKEN <= rate * (end - start)
                })
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn no_window_admits_more_than_burst_plus_rate(
                ops in proptest::collection::vec(op(), 1..200),
                global in small_limit(),
                classes in proptest::array::uniform3(small_limit()),
                cap in 1usize..6,
            ) {
                let t0 = Instant::now();
                let c = RateLimitConfig {
                    enabled: true,
                    global,
                    files: classes[0],
                    stream: classes[1],
                    api: classes[2],
                    whitelist: IpSet::default(),
                    max_tracked: NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN),
                };
                let rl = RateLimiter::new_at(c.clone(), t0);
                let mut t = 0u64;
                let mut all = Vec::new();
                let mut per = vec![Vec::new(); 12];
                for (dt, who, class) in ops {
                    t = t.saturating_add(dt);
                    let class = RouteClass::ALL[class];
                    let client = IpAddr::from([10, 0, 0, who as u8]);
                    if allowed(rl.check_at(client, class, t0 + Duration::from_nanos(t))) {
                        all.push(u128::from(t));
                        per[who * 3 + class.index()].push(u128::from(t));
                    }
                    prop_assert!(rl.tracked() <= cap);
                }
                prop_assert!(window_ok(&all, global));
                // Per client only while nobody shares the overflow buckets.
                if cap >= 4 {
                    for (slot, times) in per.iter().enumerate() {
                        prop_assert!(window_ok(times, c.limit(RouteClass::ALL[slot % 3])));
                    }
                }
            }

            #[test]
            fn decisions_match_the_token_bucket(
                offsets in proptest::collection::vec(0u64..5_000_000_000, 1..200),
                l in (1u32..1000, 1u32..50).prop_map(|(r, b)| lim(r, b)),
            ) {
                // Offsets in any order: a clock that goes backwards included.
                let t0 = Instant::now();
                let mut c = cfg();
                c.global = lim(1, u32::MAX);
                c.stream = l;
                let rl = RateLimiter::new_at(c, t0);
                let bucket = TokenBucket::new_at(l.rps, l.burst, t0);
                for off in offsets {
                    let at = t0 + Duration::from_nanos(off);
                    let expect = bucket.check_at(at);
                    let got = rl.check_at(ip("10.0.0.1"), RouteClass::Stream, at).decision();
                    prop_assert_eq!(got, Some(expect));
                }
            }

            #[test]
            fn extreme_limits_and_instants_do_not_panic(
                rps in prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()],
                burst in prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()],
                offsets in proptest::collection::vec(any::<u64>(), 1..50),
            ) {
                let t0 = Instant::now();
                let l = lim(rps, burst);
                let c = RateLimitConfig {
                    enabled: true,
                    global: l,
                    files: l,
                    stream: l,
                    api: l,
                    whitelist: IpSet::default(),
                    max_tracked: NonZeroUsize::MIN,
                };
                let rl = RateLimiter::new_at(c, t0);
                for (n, off) in offsets.into_iter().enumerate() {
                    // Up to ~146 years apart, in any order.
                    let at = t0 + Duration::from_nanos(off >> 2);
                    let client = IpAddr::from([10, 0, 0, n as u8]);
                    let v = rl.check_at(client, RouteClass::ALL[n % 3], at);
                    prop_assert!(v != Verdict::Exempt);
                    rl.evict_idle_at(at);
                }
            }
        }
    }
}
