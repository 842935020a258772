//! A small TTL cache for receiver answers, keyed by request path.
//!
//! Rules:
//! - Bounded: never more than `capacity` entries; to make room, expired entries go
//!   first, then the oldest one.
//! - No timer: entries expire lazily when looked at or when room is needed, by the
//!   caller's clock (every time-dependent call has an `*_at(Instant)` twin for fake
//!   clocks); a clock going backwards counts as no time passed.
//! - A zero TTL or zero capacity turns the cache off: nothing is stored, every lookup
//!   misses.
//! - [`TtlCache::clear`] wins over fetches already under way: a value fetched before a
//!   clear is not stored after it, so a forced refresh never sees data older than itself.
//! - One short `std::sync::Mutex`, held for a map operation and a value clone; values
//!   are meant to be cheap to clone (an `Arc`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// When a lookup happened relative to [`TtlCache::clear`] calls; hand it back to
/// [`TtlCache::insert_at`] so a value fetched before a clear is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

/// One stored answer and when it was stored.
struct Slot<V> {
    value: V,
    stored: Instant,
}

struct State<V> {
    map: HashMap<String, Slot<V>>,
    /// Bumped by every clear.
    generation: u64,
}

/// A bounded map from request path to answer whose entries live `ttl`; see the module
/// rules. `Send + Sync` when `V` is.
pub struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    state: Mutex<State<V>>,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache keeping entries for `ttl` and at most `capacity` of them; off when
    /// either is zero.
    pub fn new(ttl: Duration, capacity: usize) -> TtlCache<V> {
        TtlCache {
            ttl,
            capacity,
            state: Mutex::new(State {
                map: HashMap::new(),
                generation: 0,
            }),
        }
    }

    /// Whether the cache stores anything at all (non-zero TTL and capacity).
    pub fn is_enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// The current generation; take it before fetching what you will insert.
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    /// The value stored under `key` if it is younger than the TTL.
    pub fn get(&self, key: &str) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    /// [`TtlCache::get`] with the clock reading `now`; an expired entry is removed.
    pub fn get_at(&self, key: &str, now: Instant) -> Option<V> {
        if !self.is_enabled() {
            return None;
        }
        let mut state = self.lock();
        match state.map.get(key) {
            Some(slot) if self.is_fresh(slot, now) => return Some(slot.value.clone()),
            Some(_) => {}
            None => return None,
        }
        state.map.remove(key);
        None
    }

    /// Stores `value` under `key` (replacing an older value), unless the cache is off or
    /// was cleared since `since` was taken.
    pub fn insert(&self, key: String, value: V, since: Generation) {
        self.insert_at(key, value, since, Instant::now());
    }

    /// [`TtlCache::insert`] with the clock reading `now` (the entry's birth time). When
    /// full, expired entries are dropped first, then the oldest.
    pub fn insert_at(&self, key: String, value: V, since: Generation, now: Instant) {
        if !self.is_enabled() {
            return;
        }
        let mut state = self.lock();
        if state.generation != since.0 {
            return;
        }
        if !state.map.contains_key(&key) && state.map.len() >= self.capacity {
            state.map.retain(|_, slot| self.is_fresh(slot, now));
            if state.map.len() >= self.capacity {
                // A linear scan is fine at the few hundred entries this is built for,
                // and needs no second index to keep in step.
                let oldest = state
                    .map
                    .iter()
                    .min_by_key(|(_, slot)| slot.stored)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    state.map.remove(&oldest);
                }
            }
        }
        state.map.insert(key, Slot { value, stored: now });
    }

    /// Forgets every entry, and makes inserts of values fetched before now no-ops.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.map.clear();
        state.generation = state.generation.wrapping_add(1);
    }

    /// Entries stored now, expired ones not yet dropped included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn is_fresh(&self, slot: &Slot<V>, now: Instant) -> bool {
        now.saturating_duration_since(slot.stored) < self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, State<V>> {
        // The map is consistent after every single operation, so a panic elsewhere
        // while it was held leaves nothing half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn entries_live_exactly_the_ttl() {
        let t0 = Instant::now();
        let c = TtlCache::new(TTL, 4);
        assert!(c.is_enabled());
        assert_eq!(c.get_at("/a", t0), None);
        c.insert_at("/a".into(), 1, c.generation(), t0);
        assert_eq!(c.get_at("/a", t0), Some(1));
        assert_eq!(c.get_at("/a", t0 + secs(59)), Some(1));
        assert_eq!(c.get_at("/b", t0), None);
        assert_eq!(c.get_at("/a", t0 + TTL), None);
        // The expired entry was dropped by the lookup.
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_newer_value_replaces_and_restarts_the_ttl() {
        let t0 = Instant::now();
        let c = TtlCache::new(TTL, 4);
        c.insert_at("/a".into(), 1, c.generation(), t0);
        c.insert_at("/a".into(), 2, c.generation(), t0 + secs(50));
        assert_eq!(c.get_at("/a", t0 + secs(100)), Some(2));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_clock_going_backwards_keeps_entries_fresh() {
        let t0 = Instant::now() + secs(100);
        let c = TtlCache::new(TTL, 4);
        c.insert_at("/a".into(), 1, c.generation(), t0);
        assert_eq!(c.get_at("/a", t0 - secs(100)), Some(1));
    }

    #[test]
    fn zero_ttl_or_capacity_turns_it_off() {
        let t0 = Instant::now();
        for c in [TtlCache::new(Duration::ZERO, 4), TtlCache::new(TTL, 0)] {
            assert!(!c.is_enabled());
            c.insert_at("/a".into(), 1, c.generation(), t0);
            assert_eq!(c.get_at("/a", t0), None);
            assert_eq!(c.len(), 0);
        }
    }

    #[test]
    fn when_full_expired_entries_go_first_then_the_oldest() {
        let t0 = Instant::now();
        let c = TtlCache::new(TTL, 3);
        let g = c.generation();
        c.insert_at("/old".into(), 0, g, t0);
        c.insert_at("/mid".into(), 1, g, t0 + secs(30));
        c.insert_at("/new".into(), 2, g, t0 + secs(40));
        // `/old` expired: it makes room although `/mid` is not the newest.
        c.insert_at("/d".into(), 3, g, t0 + secs(61));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get_at("/mid", t0 + secs(61)), Some(1));
        // Nothing expired: the oldest (`/mid`) goes.
        c.insert_at("/e".into(), 4, g, t0 + secs(62));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get_at("/mid", t0 + secs(62)), None);
        for (k, v) in [("/new", 2), ("/d", 3), ("/e", 4)] {
            assert_eq!(c.get_at(k, t0 + secs(62)), Some(v), "{k}");
        }
        // Replacing a present key needs no room.
        c.insert_at("/new".into(), 5, g, t0 + secs(63));
        assert_eq!(c.get_at("/d", t0 + secs(63)), Some(3));
        assert_eq!(c.get_at("/e", t0 + secs(63)), Some(4));
    }

    #[test]
    fn the_bound_holds_under_many_keys() {
        let t0 = Instant::now();
        let c = TtlCache::new(TTL, 16);
        for i in 0..1000u64 {
            c.insert_at(
                format!("/{i}"),
                i,
                c.generation(),
                t0 + Duration::from_millis(i),
            );
            assert!(c.len() <= 16);
        }
        // The 16 newest survive.
        let now = t0 + secs(1);
        assert_eq!(c.get_at("/983", now), None);
        assert_eq!(c.get_at("/984", now), Some(984));
        assert_eq!(c.get_at("/999", now), Some(999));
    }

    #[test]
    fn clear_forgets_and_drops_values_fetched_before_it() {
        let t0 = Instant::now();
        let c = TtlCache::new(TTL, 4);
        c.insert_at("/a".into(), 1, c.generation(), t0);
        let before = c.generation();
        c.clear();
        assert_eq!(c.get_at("/a", t0), None);
        // A fetch that started before the clear finishes after it: not stored.
        c.insert_at("/a".into(), 2, before, t0);
        assert_eq!(c.get_at("/a", t0), None);
        let after = c.generation();
        assert_ne!(before, after);
        c.insert_at("/a".into(), 3, after, t0);
        assert_eq!(c.get_at("/a", t0), Some(3));
    }
}
