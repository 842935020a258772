//! The one way into the receiver: every request to the box (OpenWebIF calls and picon
//! fetches alike) first waits for a token of one shared pacing bucket, then asks one
//! shared circuit breaker. Owned by the refresher, so both outlive a client rebuilt on
//! reload; a reload that changes the rate swaps in a new bucket.

use std::num::NonZeroU32;
use std::sync::Arc;

use super::Error;
use crate::config::Live;
use crate::limit::{Breaker, Permit, TokenBucket};

/// Pacing bucket plus breaker; see the module rules. `Send + Sync`; share as `Arc<Gate>`.
#[derive(Debug)]
pub struct Gate {
    breaker: Arc<Breaker>,
    pacing: Arc<Live<TokenBucket>>,
}

impl Gate {
    /// A gate pacing at `rate` requests per second with a burst of `rate`.
    pub fn new(breaker: Arc<Breaker>, rate: NonZeroU32) -> Gate {
        Gate::with_burst(breaker, rate, rate)
    }

    /// [`Gate::new`] with a burst other than the rate (tests).
    pub fn with_burst(breaker: Arc<Breaker>, rate: NonZeroU32, burst: NonZeroU32) -> Gate {
        Gate {
            breaker,
            pacing: Live::new(Arc::new(TokenBucket::new(rate, burst))),
        }
    }

    /// The breaker (status page, readiness).
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Requests per second the gate lets through.
    pub fn rate(&self) -> NonZeroU32 {
        self.pacing.get().rate()
    }

    /// Takes over a reloaded rate: a new, full bucket when it differs.
    pub fn set_rate(&self, rate: NonZeroU32) {
        if self.rate() != rate {
            self.pacing.replace(Arc::new(TokenBucket::new(rate, rate)));
        }
    }

    /// Waits for this request's pacing token, then asks the breaker (after the wait, so
    /// its state is fresh). The permit must be told how the request went. A rejection
    /// is [`Error::CircuitOpen`] naming `req` (the request line, built only then):
    /// nothing may be sent.
    pub async fn enter(&self, req: impl FnOnce() -> String) -> Result<Permit<'_>, Error> {
        let wait = self.pacing.get().reserve();
        if !wait.is_zero() {
            async_io::Timer::after(wait).await;
        }
        self.breaker
            .try_acquire()
            .map_err(|rejected| Error::CircuitOpen {
                req: req(),
                retry_after: rejected.retry_after,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::limit::{BreakerConfig, BreakerState};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn breaker(threshold: u32) -> Arc<Breaker> {
        Arc::new(Breaker::new(
            "receiver",
            BreakerConfig {
                enabled: true,
                failure_threshold: threshold,
                open_timeout: Duration::from_secs(30),
            },
        ))
    }

    #[test]
    fn requests_beyond_the_burst_wait_for_their_token() {
        let gate = Gate::with_burst(breaker(5), nz(20), nz(2));
        let started = Instant::now();
        smol::block_on(async {
            for _ in 0..4 {
                gate.enter(String::new).await.unwrap().success();
            }
        });
        // Two from the burst, then two at 50 ms each.
        assert!(
            started.elapsed() >= Duration::from_millis(95),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn failures_open_the_shared_breaker_and_it_rejects_at_once() {
        let shared = breaker(2);
        let gate = Gate::new(shared.clone(), nz(100));
        smol::block_on(async {
            gate.enter(String::new).await.unwrap().failure();
            gate.enter(String::new).await.unwrap().failure();
            assert!(gate.enter(String::new).await.is_err());
        });
        assert_eq!(shared.state(), BreakerState::Open);
    }

    #[test]
    fn a_new_rate_replaces_the_bucket_and_the_same_rate_keeps_it() {
        let gate = Gate::with_burst(breaker(5), nz(1), nz(1));
        smol::block_on(async { gate.enter(String::new).await.unwrap().success() });
        gate.set_rate(nz(1));
        // The same rate: the spent token is still spent.
        assert!(!gate.pacing.get().check().allowed);
        gate.set_rate(nz(50));
        assert_eq!(gate.rate(), nz(50));
        assert!(gate.pacing.get().check().allowed);
    }
}
