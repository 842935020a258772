//! A token bucket (`rate` tokens per second, at most `burst` stored) kept as the
//! generic cell rate algorithm: one "theoretical arrival time" instead of a token count.
//!
//! Rules:
//! - Time is integer and exact: instants are kept in "scaled nanoseconds" (nanoseconds ×
//!   rate), in which one token is worth exactly 10⁹, so no rounding ever lets more
//!   through than `burst + rate × window` over any window.
//! - It refills lazily from the caller's clock (no timer); a clock that goes backwards
//!   (a fake clock in tests) is treated as standing still.
//! - One short lock per bucket, never held beyond a few integer operations.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One token's worth of scaled time: a second in nanoseconds.
pub(super) const TOKEN: u128 = 1_000_000_000;

/// What a bucket said to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may go ahead (a token was taken).
    pub allowed: bool,
    /// The bucket's size (the `X-RateLimit-Limit` value).
    pub limit: u32,
    /// Tokens left after this request.
    pub remaining: u32,
    /// When refused: how long until a token is available; zero when allowed.
    pub retry_after: Duration,
    /// How long until the bucket is full again (the `X-RateLimit-Reset` value).
    pub reset: Duration,
}

/// The bucket arithmetic on bare arrival times, shared by [`TokenBucket`] (one locked
/// arrival time) and the per-client limiter (many, in one table). Instants are
/// nanoseconds since the owner's epoch; arrival times are scaled nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gcra {
    rate: u128,
    /// The bucket's size in scaled time (`limit` tokens).
    capacity: u128,
    limit: u32,
}

impl Gcra {
    pub(super) fn new(rate: NonZeroU32, burst: NonZeroU32) -> Gcra {
        Gcra {
            rate: u128::from(rate.get()),
            capacity: u128::from(burst.get()) * TOKEN,
            limit: burst.get(),
        }
    }

    /// What taking a token at `ns` from a bucket whose theoretical arrival time is
    /// `tat` decides, and the new `tat` if the token was taken.
    pub(super) fn take(&self, tat: u128, ns: u128) -> (Decision, Option<u128>) {
        // `ns` is below 2⁹⁵ (the span of an `Instant`) and `rate` below 2³², so none of
        // this comes near overflowing; saturating keeps it provably panic-free anyway.
        let now = ns.saturating_mul(self.rate);
        let start = tat.max(now);
        let next = start.saturating_add(TOKEN);
        let owed = next - now;
        if owed <= self.capacity {
            let d = Decision {
                allowed: true,
                limit: self.limit,
                remaining: self.remaining(owed),
                retry_after: Duration::ZERO,
                reset: self.unscale(owed),
            };
            return (d, Some(next));
        }
        let d = Decision {
            retry_after: self.unscale(owed - self.capacity),
            ..self.status(tat, ns)
        };
        (d, None)
    }

    /// The bucket as it stands at `ns`, as a refusal that took nothing describes it.
    pub(super) fn status(&self, tat: u128, ns: u128) -> Decision {
        let now = ns.saturating_mul(self.rate);
        let owed = tat.saturating_sub(now);
        Decision {
            allowed: false,
            limit: self.limit,
            remaining: self.remaining(owed),
            retry_after: Duration::ZERO,
            reset: self.unscale(owed),
        }
    }

    /// Takes the next token whether or not it is there: how long to wait before using
    /// it, and the new `tat`.
    pub(super) fn reserve(&self, tat: u128, ns: u128) -> (Duration, u128) {
        let now = ns.saturating_mul(self.rate);
        let next = tat.max(now).saturating_add(TOKEN);
        let wait = (next - now).saturating_sub(self.capacity);
        (self.unscale(wait), next)
    }

    /// Whether the bucket is full at `ns`: it remembers nothing worth keeping.
    pub(super) fn is_full(&self, tat: u128, ns: u128) -> bool {
        tat <= ns.saturating_mul(self.rate)
    }

    fn remaining(&self, owed: u128) -> u32 {
        let left = self.capacity.saturating_sub(owed) / TOKEN;
        u32::try_from(left).unwrap_or(u32::MAX)
    }

    /// Scaled time back to a duration, rounded up so nobody retries or wakes early.
    fn unscale(&self, scaled: u128) -> Duration {
        let nanos = scaled.div_ceil(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A token bucket; see the module rules.
#[derive(Debug)]
pub struct TokenBucket {
    gcra: Gcra,
    rate: NonZeroU32,
    burst: NonZeroU32,
    /// Instants are measured from here.
    epoch: Instant,
    /// Theoretical arrival time of the next request, in scaled nanoseconds since
    /// `epoch`; the bucket is full whenever it is at or before now.
    tat: Mutex<u128>,
}

impl TokenBucket {
    /// A full bucket refilling `rate` tokens per second and holding at most `burst`.
    pub fn new(rate: NonZeroU32, burst: NonZeroU32) -> TokenBucket {
        TokenBucket::new_at(rate, burst, Instant::now())
    }

    /// [`TokenBucket::new`] with the clock's current reading given (fake clocks).
    pub fn new_at(rate: NonZeroU32, burst: NonZeroU32, now: Instant) -> TokenBucket {
        TokenBucket {
            gcra: Gcra::new(rate, burst),
            rate,
            burst,
            epoch: now,
            tat: Mutex::new(0),
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> NonZeroU32 {
        self.rate
    }

    /// The most tokens the bucket holds (the `X-RateLimit-Limit` value).
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// Takes a token if one is there.
    pub fn check(&self) -> Decision {
        self.check_at(Instant::now())
    }

    /// [`TokenBucket::check`] at `now`.
    pub fn check_at(&self, now: Instant) -> Decision {
        let ns = self.nanos(now);
        let mut tat = self.lock();
        let (decision, next) = self.gcra.take(*tat, ns);
        if let Some(next) = next {
            *tat = next;
        }
        decision
    }

    /// Takes the next token whether or not it is there yet and says how long to wait
    /// before using it: callers that must go ahead eventually (the receiver client)
    /// queue up behind each other at exactly `rate`.
    pub fn reserve(&self) -> Duration {
        self.reserve_at(Instant::now())
    }

    /// [`TokenBucket::reserve`] at `now`.
    pub fn reserve_at(&self, now: Instant) -> Duration {
        let ns = self.nanos(now);
        let mut tat = self.lock();
        let (wait, next) = self.gcra.reserve(*tat, ns);
        *tat = next;
        wait
    }

    /// Whether the bucket is full at `now`, i.e. it remembers nothing worth keeping
    /// (a per-client table may forget it).
    pub fn is_full_at(&self, now: Instant) -> bool {
        let ns = self.nanos(now);
        self.gcra.is_full(*self.lock(), ns)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u128> {
        self.tat.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `now` as nanoseconds since the epoch (a clock before it stands still there).
    fn nanos(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.epoch).as_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn a_full_bucket_admits_exactly_the_burst_at_once() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(nz(10), nz(20), t0);
        for i in 0..20 {
            let d = b.check_at(t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 19 - i);
        }
        let d = b.check_at(t0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_millis(100));
        assert_eq!(d.reset, Duration::from_secs(2));
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(nz(4), nz(1), t0);
        assert!(b.check_at(t0).allowed);
        assert!(!b.check_at(t0 + Duration::from_millis(249)).allowed);
        assert!(b.check_at(t0 + Duration::from_millis(250)).allowed);
        assert!(!b.is_full_at(t0 + Duration::from_millis(499)));
        assert!(b.is_full_at(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn refused_requests_take_nothing() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(nz(1), nz(1), t0);
        assert!(b.check_at(t0).allowed);
        for _ in 0..100 {
            assert!(!b.check_at(t0 + Duration::from_millis(500)).allowed);
        }
        assert!(b.check_at(t0 + Duration::from_secs(1)).allowed);
    }

    #[test]
    fn a_clock_going_backwards_stands_still() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let b = TokenBucket::new_at(nz(1), nz(2), t0);
        let earlier = t0 - Duration::from_secs(5);
        assert!(b.check_at(earlier).allowed);
        assert!(b.check_at(earlier).allowed);
        assert!(!b.check_at(t0).allowed);
    }

    #[test]
    fn reservations_queue_at_the_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(nz(10), nz(2), t0);
        assert_eq!(b.reserve_at(t0), Duration::ZERO);
        assert_eq!(b.reserve_at(t0), Duration::ZERO);
        assert_eq!(b.reserve_at(t0), Duration::from_millis(100));
        assert_eq!(b.reserve_at(t0), Duration::from_millis(200));
        // A check sees the queue: nothing left for a second.
        assert!(!b.check_at(t0 + Duration::from_millis(250)).allowed);
    }

    #[test]
    fn odd_rates_never_round_in_the_callers_favour() {
        // 3 per second: a token every 333.33 ms; 300 tokens take exactly 100 s.
        let t0 = Instant::now();
        let b = TokenBucket::new_at(nz(3), nz(1), t0);
        let mut admitted = 0u32;
        let mut t = t0;
        while t < t0 + Duration::from_secs(100) {
            if b.check_at(t).allowed {
                admitted += 1;
            }
            t += Duration::from_millis(1);
        }
        assert_eq!(admitted, 300);
    }

    #[test]
    fn four_threads_at_one_instant_admit_exactly_the_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(nz(1), nz(137), t0);
        let admitted: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..500).filter(|_| b.check_at(t0).allowed).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        assert_eq!(admitted, 137);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn limits() -> impl Strategy<Value = (u32, u32)> {
            (
                prop_oneof![1u32..20, 1u32..2000, Just(u32::MAX)],
                prop_oneof![1u32..10, 1u32..100],
            )
        }

        /// Offsets from the start in ns: mostly forward steps (0 often, so bursts
        /// happen), sometimes a jump back (a clock going backwards).
        fn offsets() -> impl Strategy<Value = Vec<u64>> {
            let step = prop_oneof![
                3 => Just(0i64),
                4 => 0i64..2_000_000_000,
                4 => 0i64..20_000_000,
                1 => -1_000_000_000i64..0,
            ];
            proptest::collection::vec(step, 1..300).prop_map(|steps| {
                let mut t = 0u64;
                steps
                    .into_iter()
                    .map(|s| {
                        t = t.saturating_add_signed(s);
                        t
                    })
                    .collect()
            })
        }

        /// Whether `times` (ns, any order) never has more than `burst + rate × window`
        /// of them in a window, allowing `slack` ns of rounding per window.
        fn window_ok(times: &[u64], rate: u32, burst: u32, slack: u64) -> bool {
            let mut sorted = times.to_vec();
            sorted.sort_unstable();
            let (rate, burst) = (u128::from(rate), u128::from(burst));
            sorted.iter().enumerate().all(|(i, &start)| {
                sorted.iter().skip(i).enumerate().all(|(k, &end)| {
                    let count = k as u128 + 1;
                    let window = u128::from(end - start + slack);
                    count <= burst || (count - burst) * TOKEN <= rate * window
                })
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(192))]

            #[test]
            fn no_window_admits_more_than_burst_plus_rate(
                (rate, burst) in limits(),
                times in offsets(),
            ) {
                let t0 = Instant::now();
                let b = TokenBucket::new_at(nz(rate), nz(burst), t0);
                let admitted: Vec<u64> = times
                    .into_iter()
                    .filter(|&t| b.check_at(t0 + Duration::from_nanos(t)).allowed)
                    .collect();
                prop_assert!(window_ok(&admitted, rate, burst, 0));
            }

            #[test]
            fn reservations_are_monotone_and_spaced_by_the_rate(
                (rate, burst) in limits(),
                mut times in offsets(),
            ) {
                times.sort_unstable();
                let t0 = Instant::now();
                let b = TokenBucket::new_at(nz(rate), nz(burst), t0);
                let mut ready = Vec::new();
                let mut queued: Vec<(usize, u64)> = Vec::new();
                for (k, t) in times.into_iter().enumerate() {
                    let wait = b.reserve_at(t0 + Duration::from_nanos(t));
                    let at = t + u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                    prop_assert!(ready.last().is_none_or(|&last| last <= at), "monotone");
                    if !wait.is_zero() {
                        queued.push((k, at));
                    }
                    ready.push(at);
                }
                // Queued ones go exactly at the rate, rounded up to whole ns each.
                for (i, &(ki, ai)) in queued.iter().enumerate() {
                    for &(kj, aj) in queued.iter().skip(i + 1) {
                        let spacing = (kj - ki) as u128 * TOKEN / u128::from(rate);
                        prop_assert!(u128::from(aj - ai) >= spacing, "spacing");
                    }
                }
                prop_assert!(window_ok(&ready, rate, burst, 1));
            }

            #[test]
            fn extreme_limits_and_instants_do_not_panic(
                rate in prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()],
                burst in prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()],
                calls in proptest::collection::vec((any::<u64>(), 0u8..3), 1..50),
            ) {
                let t0 = Instant::now();
                let b = TokenBucket::new_at(nz(rate), nz(burst), t0);
                for (off, call) in calls {
                    // Up to ~146 years apart, in any order.
                    let at = t0 + Duration::from_nanos(off >> 2);
                    match call {
                        0 => {
                            let d = b.check_at(at);
                            prop_assert!(d.remaining <= burst);
                            prop_assert!(d.allowed == d.retry_after.is_zero());
                        }
                        1 => {
                            b.reserve_at(at);
                        }
                        _ => {
                            b.is_full_at(at);
                        }
                    }
                }
            }
        }
    }
}
