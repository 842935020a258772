//! A circuit breaker for one upstream: after `failure_threshold` consecutive failures it
//! rejects calls for `open_timeout`, then lets exactly one probe call decide whether to
//! close again or to stay open for another `open_timeout`.
//!
//! Rules:
//! - No timer thread: an Open breaker whose timeout has passed still reads Open (in
//!   [`Breaker::state`] and so in the gauge) until the next [`Breaker::try_acquire`] turns
//!   it HalfOpen. State, gauge and transition count therefore always agree.
//! - Every admitted call carries the generation it was admitted in (the transition count
//!   at that moment). An outcome reported after the breaker has changed state since is
//!   stale and ignored, so a slow call can neither close an open breaker nor extend its
//!   timeout.
//! - At most one half-open probe is out at any time; a probe dropped without an outcome
//!   frees the slot for the next caller.
//! - A disabled breaker admits everything and never changes state.
//! - Each transition is logged and handed to the observer exactly once, in the order the
//!   transitions happened, never while the state lock is held.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Settings;

/// Floor for `retry_after`, so a rejection never tells a client to retry "now".
const MIN_RETRY: Duration = Duration::from_millis(1);

/// `retry_after` while a probe is out. Its outcome is unknown: a second is soon enough to
/// notice a successful probe and long enough not to invite a busy retry loop.
const PROBE_RETRY: Duration = Duration::from_secs(1);

/// Transitions waiting for the observer. Only an observer that blocks while dozens of
/// transitions happen (each needing a full open timeout or a probe) can fill it.
const PENDING_CAP: usize = 64;

/// What the observer hook is: called once per state change, outside the lock.
type Observer = Arc<dyn Fn(&Transition<'_>) + Send + Sync>;

/// How a breaker behaves; built once from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// `false`: the breaker admits every call and never changes state.
    pub enabled: bool,
    /// Consecutive failures that open a closed breaker; 0 is treated as 1.
    pub failure_threshold: u32,
    /// How long an open breaker rejects before it lets one probe through.
    pub open_timeout: Duration,
}

impl BreakerConfig {
    /// The `XG2G_CIRCUIT_BREAKER_*` settings, field for field.
    pub fn from_settings(s: &Settings) -> BreakerConfig {
        BreakerConfig {
            enabled: s.circuit_breaker_enabled,
            failure_threshold: s.circuit_breaker_failure_threshold,
            open_timeout: s.circuit_breaker_timeout,
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are rejected until the open timeout has passed.
    Open,
    /// One probe call is (or may be) out; everyone else is rejected until it reports.
    HalfOpen,
}

impl BreakerState {
    /// The stable lowercase name used in logs and JSON: `closed`, `open`, `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// The metric value: 0 closed, 1 half-open, 2 open (higher is worse).
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a transition observer is told: which breaker moved from where to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<'a> {
    /// The breaker's name as given to [`Breaker::new`].
    pub name: &'a str,
    /// The state before the change.
    pub from: BreakerState,
    /// The state after the change; never equal to `from`.
    pub to: BreakerState,
}

/// A call was refused because the breaker is open (or its one probe is out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open; retry in {retry_after:?}")]
pub struct Rejected {
    /// When asking again may succeed: the time left until a probe may go, or 1 s (the
    /// open timeout if shorter) while a probe is out; never less than 1 ms.
    pub retry_after: Duration,
}

/// What kind of call a permit stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Admitted by a disabled breaker: its outcome is not looked at.
    Unchecked,
    /// Admitted while closed.
    Closed,
    /// The single half-open probe.
    Probe,
}

/// How a permit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// Dropped without a report: counts as neither.
    Abandoned,
}

/// The mutable part, behind the one lock.
struct Inner {
    state: BreakerState,
    failures: u32,
    /// When the breaker last opened; only meaningful while Open.
    opened_at: Instant,
    /// A probe permit is out (only ever true while HalfOpen).
    probe_out: bool,
    /// Total state changes; doubles as the generation stamped on permits.
    transitions: u64,
    /// Transitions not yet logged and handed to the observer, oldest first.
    pending: VecDeque<(BreakerState, BreakerState)>,
    /// Some thread is delivering `pending`; others just queue behind it.
    draining: bool,
}

impl Inner {
    fn move_to(&mut self, to: BreakerState) {
        let from = self.state;
        self.state = to;
        self.transitions = self.transitions.wrapping_add(1);
        if self.pending.len() < PENDING_CAP {
            self.pending.push_back((from, to));
            return;
        }
        // Full only if the observer is stuck: fold into the newest entry so the observer
        // still ends on the true state, at the price of missing intermediate steps.
        if let Some(last) = self.pending.back_mut() {
            last.1 = to;
            if last.0 == last.1 {
                self.pending.pop_back();
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.opened_at = now;
        self.probe_out = false;
        self.move_to(BreakerState::Open);
    }
}

/// A circuit breaker for one named upstream. `Send + Sync`; share it with an `Arc`.
pub struct Breaker {
    name: String,
    cfg: BreakerConfig,
    observer: Option<Observer>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A closed breaker with no failures and no observer; a `failure_threshold` of 0 is
    /// raised to 1.
    pub fn new(name: impl Into<String>, cfg: BreakerConfig) -> Breaker {
        let cfg = BreakerConfig {
            failure_threshold: cfg.failure_threshold.max(1),
            ..cfg
        };
        Breaker {
            name: name.into(),
            cfg,
            observer: None,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: Instant::now(),
                probe_out: false,
                transitions: 0,
                pending: VecDeque::new(),
                draining: false,
            }),
        }
    }

    /// Observer called (outside the lock) on every state change: metrics + logs hook.
    /// It is called exactly once per transition and in transition order, though possibly
    /// on another thread that is delivering earlier transitions at the time. It may call
    /// back into the breaker; a panic in it propagates to the caller whose call it ran on.
    pub fn with_observer(mut self, f: Arc<dyn Fn(&Transition<'_>) + Send + Sync>) -> Breaker {
        self.observer = Some(f);
        self
    }

    /// The name given to [`Breaker::new`], used in logs and metric labels.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks to make one call. Closed: Ok. Open before the timeout: Err(Rejected{retry_after}).
    /// Open after the timeout: becomes HalfOpen and lets exactly ONE probe through (Ok);
    /// while that probe is out, every other caller is rejected. Disabled: always Ok.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.try_acquire_at(Instant::now())
    }

    /// [`Breaker::try_acquire`] with the clock reading `now`; a `now` earlier than the
    /// moment the breaker opened counts as no time passed.
    pub fn try_acquire_at(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        if !self.cfg.enabled {
            return Ok(Permit::new(self, Kind::Unchecked, 0));
        }
        let (admitted, generation, moved) = {
            let mut g = self.lock();
            let before = g.transitions;
            let admitted = match g.state {
                BreakerState::Closed => Ok(Kind::Closed),
                BreakerState::Open => {
                    let elapsed = now.saturating_duration_since(g.opened_at);
                    match self.cfg.open_timeout.checked_sub(elapsed) {
                        Some(left) if !left.is_zero() => Err(Rejected {
                            retry_after: left.max(MIN_RETRY),
                        }),
                        _ => {
                            g.move_to(BreakerState::HalfOpen);
                            g.probe_out = true;
                            Ok(Kind::Probe)
                        }
                    }
                }
                BreakerState::HalfOpen if g.probe_out => Err(Rejected {
                    retry_after: PROBE_RETRY.min(self.cfg.open_timeout).max(MIN_RETRY),
                }),
                BreakerState::HalfOpen => {
                    g.probe_out = true;
                    Ok(Kind::Probe)
                }
            };
            (admitted, g.transitions, g.transitions != before)
        };
        // The permit exists before the observer runs: should the observer panic, dropping
        // the probe permit while unwinding frees the probe slot instead of leaking it.
        let result = admitted.map(|kind| Permit::new(self, kind, generation));
        if moved {
            self.deliver();
        }
        result
    }

    /// The state as last changed by a call: an Open breaker whose timeout has passed
    /// still reads Open until someone asks, matching the gauge and [`Breaker::transitions`].
    /// A disabled breaker always reads Closed.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Failures counted since the last success: reset by a success while closed or a
    /// successful probe, kept while open. Stale outcomes are not counted.
    pub fn consecutive_failures(&self) -> u32 {
        self.lock().failures
    }

    /// Total state changes since the breaker was built.
    pub fn transitions(&self) -> u64 {
        self.lock().transitions
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held, so a poisoned lock still holds
        // consistent state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one permit's outcome, if it is not stale.
    fn settle(&self, kind: Kind, generation: u64, outcome: Outcome, now: Instant) {
        if kind == Kind::Unchecked {
            return;
        }
        let moved = {
            let mut g = self.lock();
            if g.transitions != generation {
                return;
            }
            match (kind, g.state, outcome) {
                (Kind::Closed, BreakerState::Closed, Outcome::Success) => {
                    g.failures = 0;
                    false
                }
                (Kind::Closed, BreakerState::Closed, Outcome::Failure) => {
                    g.failures = g.failures.saturating_add(1);
                    if g.failures >= self.cfg.failure_threshold {
                        g.open(now);
                        true
                    } else {
                        false
                    }
                }
                (Kind::Probe, BreakerState::HalfOpen, Outcome::Success) => {
                    g.failures = 0;
                    g.probe_out = false;
                    g.move_to(BreakerState::Closed);
                    true
                }
                (Kind::Probe, BreakerState::HalfOpen, Outcome::Failure) => {
                    g.failures = g.failures.saturating_add(1);
                    g.open(now);
                    true
                }
                (Kind::Probe, BreakerState::HalfOpen, Outcome::Abandoned) => {
                    g.probe_out = false;
                    false
                }
                // Same generation means same state as at admission, so these are only an
                // abandoned closed call and impossible pairs: nothing to do.
                _ => false,
            }
        };
        if moved {
            self.deliver();
        }
    }

    /// Logs and hands out queued transitions, unless another thread already is. One
    /// deliverer at a time keeps them in order; queuing under the state lock and giving up
    /// the role under the same lock means no transition is ever left undelivered.
    fn deliver(&self) {
        {
            let mut g = self.lock();
            if g.draining {
                return;
            }
            g.draining = true;
        }
        let mut role = DeliveryRole {
            breaker: self,
            held: true,
        };
        loop {
            let next = {
                let mut g = self.lock();
                let next = g.pending.pop_front();
                if next.is_none() {
                    g.draining = false;
                }
                next
            };
            let Some((from, to)) = next else {
                role.held = false;
                return;
            };
            log::info!(
                "event=breaker name={} from={} to={}",
                self.name,
                from.as_str(),
                to.as_str()
            );
            if let Some(observer) = &self.observer {
                observer(&Transition {
                    name: &self.name,
                    from,
                    to,
                });
            }
        }
    }
}

/// Gives up the delivery role if the observer panics, so later transitions still get
/// delivered (including the ones queued meanwhile).
struct DeliveryRole<'a> {
    breaker: &'a Breaker,
    held: bool,
}

impl Drop for DeliveryRole<'_> {
    fn drop(&mut self) {
        if self.held {
            self.breaker.lock().draining = false;
        }
    }
}

/// One admitted call; report its outcome. Dropping it without reporting counts as
/// neither (a half-open probe slot is released, so the next caller may probe).
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// `None` once reported.
    kind: Option<Kind>,
    generation: u64,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name)
            .field("kind", &self.kind)
            .field("generation", &self.generation)
            .finish()
    }
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, kind: Kind, generation: u64) -> Permit<'a> {
        Permit {
            breaker,
            kind: Some(kind),
            generation,
        }
    }
}

impl Permit<'_> {
    /// True if this call is the half-open probe whose outcome decides the breaker's state.
    pub fn is_probe(&self) -> bool {
        self.kind == Some(Kind::Probe)
    }

    /// The call worked. Closed: resets the failure count; half-open probe: closes.
    /// Ignored if the breaker changed state since this call was admitted.
    pub fn success(self) {
        self.success_at(Instant::now());
    }

    /// The call failed. Closed: counts one failure and opens at the threshold; half-open
    /// probe: reopens with a fresh timeout. Ignored if the breaker changed state since
    /// this call was admitted.
    pub fn failure(self) {
        self.failure_at(Instant::now());
    }

    /// [`Permit::success`] with the clock reading `now` (a success does not depend on time;
    /// the twin exists so tests use one clock throughout).
    pub fn success_at(mut self, now: Instant) {
        self.report(Outcome::Success, now);
    }

    /// [`Permit::failure`] with the clock reading `now`: an opening starts its timeout at `now`.
    pub fn failure_at(mut self, now: Instant) {
        self.report(Outcome::Failure, now);
    }

    fn report(&mut self, outcome: Outcome, now: Instant) {
        if let Some(kind) = self.kind.take() {
            self.breaker.settle(kind, self.generation, outcome, now);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // Only a probe has anything to give back; skip the clock read for the rest.
        if self.kind == Some(Kind::Probe) {
            self.report(Outcome::Abandoned, Instant::now());
        }
        self.kind = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{OnceLock, Weak, mpsc};
    use std::thread;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn cfg(threshold: u32, open_timeout: Duration) -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            failure_threshold: threshold,
            open_timeout,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The transitions an observer saw, as (from, to).
    type Seen = Arc<Mutex<Vec<(BreakerState, BreakerState)>>>;

    /// A breaker plus the transitions its observer saw.
    fn recorded(threshold: u32, open_timeout: Duration) -> (Breaker, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let b = Breaker::new("test", cfg(threshold, open_timeout)).with_observer(Arc::new(
            move |t: &Transition<'_>| {
                assert_eq!(t.name, "test");
                sink.lock().unwrap().push((t.from, t.to));
            },
        ));
        (b, seen)
    }

    /// Fails `n` calls admitted at `at`.
    fn fail(b: &Breaker, n: u32, at: Instant) {
        for _ in 0..n {
            b.try_acquire_at(at).unwrap().failure_at(at);
        }
    }

    /// Runs `f` on a thread and fails the test instead of hanging if it deadlocks.
    fn within_5s(f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        let worker = thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(()) => worker.join().unwrap(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The closure panicked; surface its message.
                if let Err(p) = worker.join() {
                    std::panic::resume_unwind(p);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("deadlock: no answer in 5 s"),
        }
    }

    use BreakerState::{Closed, HalfOpen, Open};

    #[test]
    fn names_and_gauge_values() {
        assert_eq!(Closed.as_str(), "closed");
        assert_eq!(Open.as_str(), "open");
        assert_eq!(HalfOpen.as_str(), "half-open");
        assert_eq!(HalfOpen.to_string(), "half-open");
        assert_eq!(Closed.gauge_value(), 0);
        assert_eq!(HalfOpen.gauge_value(), 1);
        assert_eq!(Open.gauge_value(), 2);
        let r = Rejected {
            retry_after: ms(1500),
        };
        assert_eq!(r.to_string(), "circuit breaker open; retry in 1.5s");
    }

    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Breaker>();
        send::<Permit<'static>>();
        send_sync::<Rejected>();
    }

    #[test]
    fn config_from_settings() {
        let env = |k: &str| match k {
            "XG2G_OWI_BASE" => Some("http://127.0.0.1".to_string()),
            "XG2G_CIRCUIT_BREAKER_ENABLED" => Some("false".to_string()),
            "XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD" => Some("7".to_string()),
            "XG2G_CIRCUIT_BREAKER_TIMEOUT" => Some("45s".to_string()),
            _ => None,
        };
        let s = Settings::load(None, &env).unwrap();
        assert_eq!(
            BreakerConfig::from_settings(&s),
            BreakerConfig {
                enabled: false,
                failure_threshold: 7,
                open_timeout: Duration::from_secs(45),
            }
        );
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let (b, seen) = recorded(3, TIMEOUT);
        assert_eq!(b.name(), "test");
        fail(&b, 2, t0);
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 2));
        assert!(b.try_acquire_at(t0).is_ok(), "below threshold still admits");
        fail(&b, 1, t0);
        assert_eq!((b.state(), b.consecutive_failures()), (Open, 3));
        assert_eq!(b.transitions(), 1);
        assert_eq!(*seen.lock().unwrap(), vec![(Closed, Open)]);
        assert_eq!(b.try_acquire_at(t0).unwrap_err().retry_after, TIMEOUT);
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(3, TIMEOUT));
        for _ in 0..5 {
            fail(&b, 2, t0);
            b.try_acquire_at(t0).unwrap().success_at(t0);
            assert_eq!((b.state(), b.consecutive_failures()), (Closed, 0));
        }
        assert_eq!(b.transitions(), 0);
    }

    #[test]
    fn dropped_closed_permit_counts_as_neither() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(2, TIMEOUT));
        fail(&b, 1, t0);
        drop(b.try_acquire_at(t0).unwrap());
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 1));
        fail(&b, 1, t0);
        assert_eq!(b.state(), Open);
    }

    #[test]
    fn zero_threshold_means_one() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(0, TIMEOUT));
        fail(&b, 1, t0);
        assert_eq!(b.state(), Open);
    }

    #[test]
    fn retry_after_counts_down_and_never_reaches_zero() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(1, TIMEOUT));
        fail(&b, 1, t0);
        let retry = |at: Instant| b.try_acquire_at(at).unwrap_err().retry_after;
        assert_eq!(retry(t0), TIMEOUT);
        assert_eq!(retry(t0 + Duration::from_secs(10)), Duration::from_secs(20));
        assert_eq!(retry(t0 + TIMEOUT - ms(1)), ms(1));
        assert_eq!(retry(t0 + TIMEOUT - Duration::from_nanos(1)), ms(1));
        // A clock reading from before the opening counts as no time passed.
        let b = Breaker::new("x", cfg(1, TIMEOUT));
        fail(&b, 1, t0 + ms(500));
        assert_eq!(b.try_acquire_at(t0).unwrap_err().retry_after, TIMEOUT);
        assert_eq!(b.state(), Open);
        assert_eq!(b.transitions(), 1);
    }

    #[test]
    fn huge_timeout_does_not_overflow() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(1, Duration::MAX));
        fail(&b, 1, t0);
        let r = b.try_acquire_at(t0 + ms(1)).unwrap_err();
        assert_eq!(r.retry_after, Duration::MAX - ms(1));
    }

    #[test]
    fn half_open_only_when_asked_and_one_probe_at_a_time() {
        let t0 = Instant::now();
        let (b, seen) = recorded(1, TIMEOUT);
        fail(&b, 1, t0);
        // Time alone changes nothing: there is no timer.
        thread::sleep(ms(2));
        assert_eq!(b.state(), Open);
        assert_eq!(b.state().gauge_value(), 2);
        let probe = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(b.transitions(), 2);
        for later in [0, 1, 10_000, 3_600_000] {
            let r = b.try_acquire_at(t0 + TIMEOUT + ms(later)).unwrap_err();
            assert_eq!(r.retry_after, PROBE_RETRY);
        }
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(Closed, Open), (Open, HalfOpen)]
        );
        drop(probe);
    }

    #[test]
    fn probe_retry_is_capped_by_a_short_timeout() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(1, ms(200)));
        fail(&b, 1, t0);
        let _probe = b.try_acquire_at(t0 + ms(200)).unwrap();
        assert_eq!(
            b.try_acquire_at(t0 + ms(200)).unwrap_err().retry_after,
            ms(200)
        );
        let b = Breaker::new("x", cfg(1, Duration::ZERO));
        fail(&b, 1, t0);
        let _probe = b.try_acquire_at(t0).unwrap();
        assert_eq!(b.try_acquire_at(t0).unwrap_err().retry_after, ms(1));
    }

    #[test]
    fn probe_success_closes_and_resets() {
        let t0 = Instant::now();
        let (b, seen) = recorded(2, TIMEOUT);
        fail(&b, 2, t0);
        let probe = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        probe.success_at(t0 + TIMEOUT + ms(5));
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 0));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
        assert_eq!(b.transitions(), 3);
        // Closed again means the full threshold is needed again.
        fail(&b, 1, t0 + TIMEOUT);
        assert_eq!(b.state(), Closed);
        fail(&b, 1, t0 + TIMEOUT);
        assert_eq!(b.state(), Open);
    }

    #[test]
    fn probe_failure_reopens_with_a_fresh_timeout() {
        let t0 = Instant::now();
        let (b, seen) = recorded(2, TIMEOUT);
        fail(&b, 2, t0);
        let probe = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        let failed_at = t0 + TIMEOUT + Duration::from_secs(5);
        probe.failure_at(failed_at);
        assert_eq!((b.state(), b.consecutive_failures()), (Open, 3));
        let r = b.try_acquire_at(t0 + 2 * TIMEOUT).unwrap_err();
        assert_eq!(r.retry_after, Duration::from_secs(5));
        assert!(b.try_acquire_at(failed_at + TIMEOUT).unwrap().is_probe());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Closed, Open),
                (Open, HalfOpen),
                (HalfOpen, Open),
                (Open, HalfOpen)
            ]
        );
    }

    #[test]
    fn dropped_probe_frees_the_slot_without_a_transition() {
        let t0 = Instant::now();
        let (b, seen) = recorded(1, TIMEOUT);
        fail(&b, 1, t0);
        let probe = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        assert!(b.try_acquire_at(t0 + TIMEOUT).is_err());
        drop(probe);
        assert_eq!(b.state(), HalfOpen);
        let again = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        assert!(again.is_probe());
        assert!(b.try_acquire_at(t0 + TIMEOUT).is_err());
        again.success_at(t0 + TIMEOUT);
        assert_eq!(b.state(), Closed);
        assert_eq!(b.transitions(), 3);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn late_success_does_not_close_an_open_breaker() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(2, TIMEOUT));
        let slow = b.try_acquire_at(t0).unwrap();
        fail(&b, 2, t0 + ms(10));
        slow.success_at(t0 + ms(20));
        assert_eq!((b.state(), b.consecutive_failures()), (Open, 2));
        assert_eq!(b.transitions(), 1);
    }

    #[test]
    fn late_failure_does_not_extend_the_timeout() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(2, TIMEOUT));
        let slow = b.try_acquire_at(t0).unwrap();
        fail(&b, 2, t0);
        slow.failure_at(t0 + Duration::from_secs(20));
        assert_eq!(b.consecutive_failures(), 2);
        assert!(b.try_acquire_at(t0 + TIMEOUT).unwrap().is_probe());
    }

    #[test]
    fn late_outcomes_do_not_touch_a_probe_or_a_reclosed_breaker() {
        let t0 = Instant::now();
        let b = Breaker::new("x", cfg(1, TIMEOUT));
        let early_ok = b.try_acquire_at(t0).unwrap();
        let early_bad = b.try_acquire_at(t0).unwrap();
        let early_bad2 = b.try_acquire_at(t0).unwrap();
        fail(&b, 1, t0);
        let probe = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        // While the probe is out, stale outcomes neither close nor reopen.
        early_ok.success_at(t0 + TIMEOUT);
        early_bad.failure_at(t0 + TIMEOUT);
        assert_eq!(b.state(), HalfOpen);
        assert!(
            b.try_acquire_at(t0 + TIMEOUT).is_err(),
            "probe slot still taken"
        );
        probe.success_at(t0 + TIMEOUT);
        // Closed again, but in a later generation: the old call's failure is stale.
        early_bad2.failure_at(t0 + TIMEOUT);
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 0));
        assert_eq!(b.transitions(), 3);
    }

    #[test]
    fn disabled_never_rejects_and_never_changes() {
        let t0 = Instant::now();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let b = Breaker::new(
            "off",
            BreakerConfig {
                enabled: false,
                failure_threshold: 1,
                open_timeout: TIMEOUT,
            },
        )
        .with_observer(Arc::new(move |_: &Transition<'_>| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        for i in 0..100 {
            let p = b.try_acquire_at(t0 + ms(i)).unwrap();
            assert!(!p.is_probe());
            if i % 3 == 0 {
                p.success_at(t0);
            } else {
                p.failure_at(t0);
            }
        }
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 0));
        assert_eq!(b.transitions(), 0);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn observer_may_read_state_without_deadlock() {
        within_5s(|| {
            let t0 = Instant::now();
            let slot: Arc<OnceLock<Weak<Breaker>>> = Arc::new(OnceLock::new());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (slot2, seen2) = (Arc::clone(&slot), Arc::clone(&seen));
            let b = Arc::new(Breaker::new("obs", cfg(1, TIMEOUT)).with_observer(Arc::new(
                move |t: &Transition<'_>| {
                    if let Some(b) = slot2.get().and_then(Weak::upgrade) {
                        seen2
                            .lock()
                            .unwrap()
                            .push((t.to, b.state(), b.transitions()));
                    }
                },
            )));
            slot.set(Arc::downgrade(&b)).unwrap();
            fail(&b, 1, t0);
            b.try_acquire_at(t0 + TIMEOUT)
                .unwrap()
                .success_at(t0 + TIMEOUT);
            assert_eq!(
                *seen.lock().unwrap(),
                vec![
                    (Open, Open, 1),
                    (HalfOpen, HalfOpen, 2),
                    (Closed, Closed, 3)
                ]
            );
        });
    }

    #[test]
    fn observer_may_cause_transitions_and_order_is_kept() {
        within_5s(|| {
            let t0 = Instant::now();
            let slot: Arc<OnceLock<Weak<Breaker>>> = Arc::new(OnceLock::new());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (slot2, seen2) = (Arc::clone(&slot), Arc::clone(&seen));
            let b = Arc::new(
                Breaker::new("re", cfg(1, Duration::ZERO)).with_observer(Arc::new(
                    move |t: &Transition<'_>| {
                        seen2.lock().unwrap().push((t.from, t.to));
                        // On opening, probe at once and fail it: two more transitions that
                        // must be delivered after this one, by the outer delivery loop.
                        if t.to == Open && seen2.lock().unwrap().len() == 1 {
                            if let Some(b) = slot2.get().and_then(Weak::upgrade) {
                                b.try_acquire_at(t0).unwrap().failure_at(t0);
                            }
                        }
                    },
                )),
            );
            slot.set(Arc::downgrade(&b)).unwrap();
            fail(&b, 1, t0);
            assert_eq!(
                *seen.lock().unwrap(),
                vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Open)]
            );
            assert_eq!(b.transitions(), 3);
        });
    }

    #[test]
    fn panicking_observer_leaks_neither_probe_nor_delivery() {
        let t0 = Instant::now();
        let armed = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let (armed2, calls2) = (Arc::clone(&armed), Arc::clone(&calls));
        let b = Breaker::new("p", cfg(1, TIMEOUT)).with_observer(Arc::new(
            move |t: &Transition<'_>| {
                calls2.fetch_add(1, Ordering::SeqCst);
                if t.to == HalfOpen && armed2.swap(false, Ordering::SeqCst) {
                    panic!("observer failure (expected by the test)");
                }
            },
        ));
        fail(&b, 1, t0);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = b.try_acquire_at(t0 + TIMEOUT);
        }));
        assert!(unwound.is_err());
        assert_eq!(b.state(), HalfOpen);
        let probe = b.try_acquire_at(t0 + TIMEOUT).unwrap();
        assert!(probe.is_probe(), "the panicked call's probe slot was freed");
        probe.success_at(t0 + TIMEOUT);
        assert_eq!(b.state(), Closed);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "delivery resumed after the panic"
        );
    }

    #[test]
    fn pending_queue_is_bounded_and_ends_on_the_true_state() {
        let b = Breaker::new("q", cfg(1, TIMEOUT));
        let mut g = b.lock();
        // Pretend a stuck deliverer so nothing drains.
        g.draining = true;
        let cycle = [Open, HalfOpen, Closed];
        for i in 0..(3 * PENDING_CAP + 2) {
            let to = cycle.get(i % 3).copied().unwrap_or(Closed);
            g.move_to(to);
            assert!(g.pending.len() <= PENDING_CAP);
            let last = g.pending.back().copied();
            assert!(last.is_none_or(|(from, to)| from != to && to == g.state));
        }
        assert_eq!(g.transitions, 3 * PENDING_CAP as u64 + 2);
    }

    #[test]
    fn concurrent_callers_never_see_two_probes() {
        const THREADS: usize = 4;
        const ROUNDS: u64 = 20_000;
        // Zero timeout and threshold 2 make the breaker cycle through all states constantly.
        let last_to = Arc::new(Mutex::new(Closed));
        let notified = Arc::new(AtomicUsize::new(0));
        let (last2, notified2) = (Arc::clone(&last_to), Arc::clone(&notified));
        let b = Arc::new(
            Breaker::new("hammer", cfg(2, Duration::ZERO)).with_observer(Arc::new(
                move |t: &Transition<'_>| {
                    let mut last = last2.lock().unwrap();
                    assert_eq!(t.from, *last, "transitions delivered out of order");
                    assert_ne!(t.from, t.to);
                    *last = t.to;
                    notified2.fetch_add(1, Ordering::SeqCst);
                },
            )),
        );
        let out = Arc::new(AtomicUsize::new(0));
        let max_out = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        // Everyone starts together so the threads really overlap.
        let start = Arc::new(std::sync::Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|id| {
                let (b, out, max_out, probes, start) = (
                    Arc::clone(&b),
                    Arc::clone(&out),
                    Arc::clone(&max_out),
                    Arc::clone(&probes),
                    Arc::clone(&start),
                );
                thread::spawn(move || {
                    start.wait();
                    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (id as u64 + 1);
                    for _ in 0..ROUNDS {
                        // xorshift64: cheap, deterministic per thread.
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let Ok(permit) = b.try_acquire() else {
                            continue;
                        };
                        if permit.is_probe() {
                            let now_out = out.fetch_add(1, Ordering::SeqCst) + 1;
                            max_out.fetch_max(now_out, Ordering::SeqCst);
                            probes.fetch_add(1, Ordering::SeqCst);
                            thread::yield_now();
                            // Leave before reporting: the report is what frees the slot.
                            out.fetch_sub(1, Ordering::SeqCst);
                        }
                        match rng % 5 {
                            0 | 1 => permit.failure(),
                            2 | 3 => permit.success(),
                            _ => drop(permit),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert!(probes.load(Ordering::SeqCst) > 0, "the test never probed");
        assert_eq!(max_out.load(Ordering::SeqCst), 1);
        assert_eq!(notified.load(Ordering::SeqCst) as u64, b.transitions());
        assert_eq!(*last_to.lock().unwrap(), b.state());
    }
}
