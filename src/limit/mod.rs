//! Protection against overload: the token bucket, the per-client rate limiter and the
//! circuit breaker.
//!
//! Rules for everything in here:
//! - No background threads and no timers: time moves only when a caller asks (every
//!   time-dependent call has an `*_at(Instant)` twin so tests drive a fake clock).
//! - State sits behind one short `std::sync::Mutex` per limiter, never held while user
//!   code (observers) or logging runs.
//! - Nothing here panics on what callers pass in, and every queue has a fixed bound.
//! - Limiters decide and count; what a rejection means on the wire (status code, JSON
//!   error) is the caller's business.

mod breaker;
mod bucket;
mod ipset;
mod ratelimit;

pub use breaker::{Breaker, BreakerConfig, BreakerState, Permit, Rejected, Transition};
pub use bucket::{Decision, TokenBucket};
pub use ipset::{IpSet, IpSetError, client_ip};
pub use ratelimit::{
    ClassLimit, RateLimitConfig, RateLimiter, RouteClass, SWEEP_EVERY, Scope, Verdict,
};
