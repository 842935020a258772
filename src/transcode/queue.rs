//! The encoder slot pool: a fixed list of encoder devices, each with a capacity in
//! concurrent sessions, and a bounded priority queue of sessions waiting for a slot.
//!
//! Rules:
//! - One mutex guards all state; it is never held across an `.await`, and nothing in
//!   here blocks or busy-polls: a waiter sleeps on a one-shot channel raced against a
//!   timer.
//! - A request is served at once when an eligible, accepting device has a free slot
//!   (the least loaded one by reserved/capacity, ties to the lowest index); otherwise it
//!   waits, unless the queue already holds `max_queue` waiters (`Full`) or no listed
//!   device could ever serve it (`NoDevice`).
//! - Waiters are served strictly by priority (Active, then Normal, then Preview) and
//!   first come, first served within one priority. A lower-priority waiter is served
//!   only when no higher-priority waiter can use the free slot, so no waiter ever waits
//!   while a device it may use has a free, accepting slot.
//! - A slot is reserved for a waiter, under the lock, before the waiter hears of it. A
//!   waiter that leaves (timeout or dropped future) settles under the lock too: either it
//!   is still queued and just leaves, or it holds a grant and passes that slot on. So a
//!   slot is never lost and never counted twice.
//! - Capacity and the device list are fixed at construction; only the "accepting" flag
//!   of a device changes afterwards.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;

/// How urgent a transcoding request is; a higher priority is always served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A thumbnail or preview: served only when nobody else can use the slot.
    Preview = 0,
    /// An ordinary new playback.
    Normal = 1,
    /// A stream that is already playing (e.g. restarting its encoder): served first.
    Active = 2,
}

impl Priority {
    /// Every priority, lowest first; `ALL[p as usize] == p`.
    pub const ALL: [Priority; 3] = [Priority::Preview, Priority::Normal, Priority::Active];

    /// The stable lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Preview => "preview",
            Priority::Normal => "normal",
            Priority::Active => "active",
        }
    }

    /// Index into per-priority arrays (`PoolSnapshot::waiting`, the queues).
    fn index(self) -> usize {
        match self {
            Priority::Preview => 0,
            Priority::Normal => 1,
            Priority::Active => 2,
        }
    }
}

/// One encoder device offered to the pool.
#[derive(Debug, Clone)]
pub struct DeviceSlots {
    /// A stable name (e.g. a render node path), reported in snapshots.
    pub id: String,
    /// How many sessions it runs at once; 0 lists the device but never uses it.
    pub capacity: u32,
}

/// Which devices may serve a request: bit `i` set means device `i` may.
///
/// Only devices 0..64 can be named; bits for indices the pool does not have are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligible(pub u64);

impl Eligible {
    /// Every device may serve the request.
    pub const ANY: Eligible = Eligible(u64::MAX);

    /// Only `device` may serve the request; an index of 64 or more yields an empty mask
    /// (which `acquire` rejects with `NoDevice`).
    pub fn only(device: usize) -> Eligible {
        let bit = u32::try_from(device)
            .ok()
            .and_then(|shift| 1u64.checked_shl(shift))
            .unwrap_or(0);
        Eligible(bit)
    }

    /// Whether `device` may serve the request; always false for indices of 64 or more.
    pub fn contains(self, device: usize) -> bool {
        u32::try_from(device)
            .ok()
            .and_then(|shift| self.0.checked_shr(shift))
            .is_some_and(|bits| bits & 1 == 1)
    }
}

/// Why `acquire` gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The wait queue already held `max_queue` requests.
    #[error("transcode queue is full")]
    Full,
    /// No slot freed up within `max_wait`.
    #[error("no encoder slot freed up within the maximum wait")]
    Timeout,
    /// None of the eligible devices exists with a capacity above zero.
    #[error("no encoder device can serve this request")]
    NoDevice,
}

impl Rejected {
    /// The stable reason code, for logs, metric labels and JSON errors.
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::Full => "full",
            Rejected::Timeout => "timeout",
            Rejected::NoDevice => "no_device",
        }
    }
}

/// One device as seen by a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// The id it was given at construction.
    pub id: String,
    /// Its fixed capacity.
    pub capacity: u32,
    /// Slots held by leases (or granted to a waiter that has not woken yet); never above
    /// `capacity`.
    pub reserved: u32,
    /// Whether it takes new sessions.
    pub accepting: bool,
}

/// A consistent picture of the pool, taken under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Every device, in construction order (the index is the device number).
    pub devices: Vec<DeviceSnapshot>,
    /// Queued requests by priority, indexed by `Priority as usize`.
    pub waiting: [usize; 3],
    /// The queue bound.
    pub max_queue: usize,
    /// How long a request waits before `Timeout`.
    pub max_wait: Duration,
}

/// A device's live counters.
struct Device {
    id: String,
    capacity: u32,
    reserved: u32,
    accepting: bool,
}

impl Device {
    fn has_free_slot(&self) -> bool {
        self.accepting && self.reserved < self.capacity
    }
}

/// A queued request: the grant channel carries the device index of its reserved slot.
struct Waiter {
    id: u64,
    eligible: Eligible,
    grant: Sender<usize>,
}

struct State {
    devices: Vec<Device>,
    /// One FIFO per priority, indexed by `Priority::index`.
    queues: [VecDeque<Waiter>; 3],
    next_id: u64,
    /// Every grant made (priority, device), so tests can check the order of service.
    #[cfg(test)]
    grants: Vec<(Priority, usize)>,
}

/// The eligible, accepting device with a free slot and the lowest reserved/capacity
/// ratio; ties go to the lowest index.
fn best_device(devices: &[Device], eligible: Eligible) -> Option<usize> {
    let mut best: Option<(usize, &Device)> = None;
    for (index, device) in devices.iter().enumerate() {
        if !eligible.contains(index) || !device.has_free_slot() {
            continue;
        }
        let lighter = match best {
            None => true,
            // Cross-multiplied so no division or float is needed; u32 × u32 fits u64.
            Some((_, b)) => {
                u64::from(device.reserved) * u64::from(b.capacity)
                    < u64::from(b.reserved) * u64::from(device.capacity)
            }
        };
        if lighter {
            best = Some((index, device));
        }
    }
    best.map(|(index, _)| index)
}

impl State {
    fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Whether some listed device could ever serve the request (accepting or not).
    fn can_ever_serve(&self, eligible: Eligible) -> bool {
        self.devices
            .iter()
            .enumerate()
            .any(|(index, device)| eligible.contains(index) && device.capacity > 0)
    }

    /// Counts a slot as taken; the caller has checked it is free.
    fn reserve(&mut self, device: usize, priority: Priority) {
        if let Some(d) = self.devices.get_mut(device) {
            d.reserved = d.reserved.saturating_add(1);
        }
        #[cfg(test)]
        self.grants.push((priority, device));
        #[cfg(not(test))]
        let _ = priority;
    }

    /// Returns a slot and hands whatever is free to the waiters.
    fn release(&mut self, device: usize) {
        if let Some(d) = self.devices.get_mut(device) {
            d.reserved = d.reserved.saturating_sub(1);
        }
        self.dispatch();
    }

    /// Serves waiters, highest priority and oldest first, while a device they may use
    /// has a free slot. One pass suffices: serving only ever takes slots, so a waiter
    /// skipped earlier in the pass could not be served later in it either.
    fn dispatch(&mut self) {
        for priority in Priority::ALL.iter().rev().copied() {
            let mut at = 0;
            while let Some(waiter) = self.queues.get(priority.index()).and_then(|q| q.get(at)) {
                let Some(device) = best_device(&self.devices, waiter.eligible) else {
                    at += 1;
                    continue;
                };
                let Some(waiter) = self
                    .queues
                    .get_mut(priority.index())
                    .and_then(|q| q.remove(at))
                else {
                    break;
                };
                self.reserve(device, priority);
                // The channel is fresh with room for one, so this fails only if the
                // receiver is gone, and a receiver leaves the queue before it goes;
                // either way the slot must not stay counted for nobody.
                if waiter.grant.try_send(device).is_err() {
                    if let Some(d) = self.devices.get_mut(device) {
                        d.reserved = d.reserved.saturating_sub(1);
                    }
                }
            }
        }
    }
}

/// The encoder slot pool; share it as `Arc<Pool>`.
pub struct Pool {
    state: Mutex<State>,
    max_queue: usize,
    max_wait: Duration,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Pool {
    /// Builds a pool with every device accepting and nothing reserved.
    ///
    /// At most 64 devices can be addressed (`Eligible` is a u64 mask): devices past the
    /// 64th are listed in snapshots but never used. Capacity 0 means the device is listed
    /// but never used. `max_queue` 0 means a request that cannot be served at once is
    /// rejected with `Full`.
    pub fn new(devices: Vec<DeviceSlots>, max_queue: usize, max_wait: Duration) -> Arc<Pool> {
        if devices.len() > 64 {
            log::warn!(
                "event=transcode_pool_devices count={} usable=64 reason=eligible_mask_is_64_bits",
                devices.len()
            );
        }
        let devices = devices
            .into_iter()
            .map(|d| Device {
                id: d.id,
                capacity: d.capacity,
                reserved: 0,
                accepting: true,
            })
            .collect();
        Arc::new(Pool {
            state: Mutex::new(State {
                devices,
                queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
                next_id: 0,
                #[cfg(test)]
                grants: Vec::new(),
            }),
            max_queue,
            max_wait,
        })
    }

    /// The state lock. Nothing panics while holding it, but should a panic poison it, the
    /// counters are still consistent (every update is a single step), so go on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gets a slot on one of the `eligible` devices.
    ///
    /// Returns at once with a lease when a slot is free, with `NoDevice` when no eligible
    /// device has capacity, with `Full` when the queue is at `max_queue`; otherwise waits
    /// in the queue until served (a lease) or until `max_wait` has passed (`Timeout`).
    /// Cancel-safe: dropping the future leaves the queue at once, and a slot granted in
    /// the meantime is passed on to the next waiter.
    pub async fn acquire(
        self: &Arc<Self>,
        eligible: Eligible,
        priority: Priority,
    ) -> Result<Lease, Rejected> {
        let started = Instant::now();
        let (grant, rx) = channel::bounded(1);
        let id = {
            let mut state = self.lock();
            if !state.can_ever_serve(eligible) {
                return Err(Rejected::NoDevice);
            }
            // No queued waiter can use a free slot (dispatch guarantees it), so taking
            // one here never overtakes anybody.
            if let Some(device) = best_device(&state.devices, eligible) {
                state.reserve(device, priority);
                drop(state);
                return Ok(self.lease(device, priority, started));
            }
            if state.queued() >= self.max_queue {
                return Err(Rejected::Full);
            }
            let id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1);
            if let Some(queue) = state.queues.get_mut(priority.index()) {
                queue.push_back(Waiter {
                    id,
                    eligible,
                    grant,
                });
            }
            id
        };
        let mut waiting = Waiting {
            pool: self,
            priority,
            id,
            rx,
            settled: false,
        };
        let deadline = started
            .checked_add(self.max_wait)
            .map_or_else(Timer::never, Timer::at);
        // A closed channel cannot happen while queued; settle() sorts out any case.
        let received = async { waiting.rx.recv().await.ok() }
            .or(async {
                deadline.await;
                None
            })
            .await;
        let device = match received {
            Some(device) => {
                waiting.settled = true;
                Some(device)
            }
            None => waiting.settle(),
        };
        match device {
            Some(device) => Ok(self.lease(device, priority, started)),
            None => Err(Rejected::Timeout),
        }
    }

    fn lease(self: &Arc<Self>, device: usize, priority: Priority, started: Instant) -> Lease {
        Lease {
            pool: Arc::clone(self),
            device,
            priority,
            waited: started.elapsed(),
        }
    }

    /// Marks a device as taking new sessions or not; running sessions are not affected.
    /// Turning it on serves waiters that can use its free slots. An unknown index is
    /// ignored.
    pub fn set_accepting(&self, device: usize, accepting: bool) {
        let mut state = self.lock();
        let Some(d) = state.devices.get_mut(device) else {
            return;
        };
        d.accepting = accepting;
        if accepting {
            state.dispatch();
        }
    }

    /// The devices' counters and the queue lengths, all from one moment.
    pub fn snapshot(&self) -> PoolSnapshot {
        let state = self.lock();
        let waiting = state.queues.each_ref().map(VecDeque::len);
        PoolSnapshot {
            devices: state
                .devices
                .iter()
                .map(|d| DeviceSnapshot {
                    id: d.id.clone(),
                    capacity: d.capacity,
                    reserved: d.reserved,
                    accepting: d.accepting,
                })
                .collect(),
            waiting,
            max_queue: self.max_queue,
            max_wait: self.max_wait,
        }
    }

    fn release(&self, device: usize) {
        self.lock().release(device);
    }
}

/// A queued request in flight; dropping it unsettled leaves the queue or passes on the
/// slot it was granted.
struct Waiting<'a> {
    pool: &'a Arc<Pool>,
    priority: Priority,
    id: u64,
    rx: Receiver<usize>,
    settled: bool,
}

impl Waiting<'_> {
    /// Leaves the queue under the lock. Grants are sent under the same lock, so either
    /// the waiter is still queued (and leaves empty-handed) or its grant is already in
    /// the channel: the returned device's slot is then the caller's to hold or release.
    fn settle(&mut self) -> Option<usize> {
        self.settled = true;
        let mut state = self.pool.lock();
        if let Some(queue) = state.queues.get_mut(self.priority.index()) {
            if let Some(at) = queue.iter().position(|w| w.id == self.id) {
                queue.remove(at);
                return None;
            }
        }
        self.rx.try_recv().ok()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Some(device) = self.settle() {
            self.pool.release(device);
        }
    }
}

/// A held encoder slot; dropping it releases the slot and hands it to the next waiter
/// that may use it.
pub struct Lease {
    pool: Arc<Pool>,
    device: usize,
    priority: Priority,
    waited: Duration,
}

impl Lease {
    /// The index (into `PoolSnapshot::devices`) of the device this slot is on; always one
    /// of the request's eligible devices.
    pub fn device(&self) -> usize {
        self.device
    }

    /// How long the request waited from `acquire` until it was served.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The priority the request was made with.
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("device", &self.device)
            .field("priority", &self.priority)
            .field("waited", &self.waited)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.release(self.device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::future::Future;
    use std::pin::Pin;

    type Pending = Pin<Box<dyn Future<Output = Result<Lease, Rejected>> + Send>>;

    const LONG: Duration = Duration::from_secs(3600);

    fn pool(capacities: &[u32], max_queue: usize, max_wait: Duration) -> Arc<Pool> {
        let devices = capacities
            .iter()
            .enumerate()
            .map(|(i, &capacity)| DeviceSlots {
                id: format!("dev{i}"),
                capacity,
            })
            .collect();
        Pool::new(devices, max_queue, max_wait)
    }

    /// An acquire future that owns its pool handle, so tests can keep many of them.
    fn request(pool: &Arc<Pool>, eligible: Eligible, priority: Priority) -> Pending {
        let pool = Arc::clone(pool);
        Box::pin(async move { pool.acquire(eligible, priority).await })
    }

    /// Polls once, deterministically: no executor, no waiting.
    fn poll(fut: &mut Pending) -> Option<Result<Lease, Rejected>> {
        smol::future::block_on(smol::future::poll_once(fut.as_mut()))
    }

    fn ready(pool: &Arc<Pool>, eligible: Eligible, priority: Priority) -> Lease {
        match poll(&mut request(pool, eligible, priority)) {
            Some(Ok(lease)) => lease,
            other => panic!("expected an immediate lease, got {other:?}"),
        }
    }

    fn queued(pool: &Arc<Pool>, eligible: Eligible, priority: Priority) -> Pending {
        let mut fut = request(pool, eligible, priority);
        assert!(poll(&mut fut).is_none(), "expected the request to wait");
        fut
    }

    fn granted(fut: &mut Pending) -> Lease {
        match poll(fut) {
            Some(Ok(lease)) => lease,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    fn reserved(pool: &Pool) -> Vec<u32> {
        pool.snapshot().devices.iter().map(|d| d.reserved).collect()
    }

    #[test]
    fn names_and_masks() {
        assert_eq!(
            Priority::ALL.map(Priority::as_str),
            ["preview", "normal", "active"]
        );
        for (i, p) in Priority::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
        assert!(Priority::Preview < Priority::Normal && Priority::Normal < Priority::Active);
        assert_eq!(Rejected::Full.reason(), "full");
        assert_eq!(Rejected::Timeout.reason(), "timeout");
        assert_eq!(Rejected::NoDevice.reason(), "no_device");
        assert!(Eligible::only(3).contains(3));
        assert!(!Eligible::only(3).contains(2));
        assert!(Eligible::only(63).contains(63));
        assert_eq!(Eligible::only(64), Eligible(0));
        assert_eq!(Eligible::only(usize::MAX), Eligible(0));
        assert!(Eligible::ANY.contains(0) && Eligible::ANY.contains(63));
        assert!(!Eligible::ANY.contains(64));
    }

    #[test]
    fn futures_and_leases_are_send() {
        fn send<T: Send>(_: &T) {}
        let pool = pool(&[1], 1, LONG);
        let fut = pool.acquire(Eligible::ANY, Priority::Normal);
        send(&fut);
        drop(fut);
        let lease = ready(&pool, Eligible::ANY, Priority::Normal);
        send(&lease);
    }

    #[test]
    fn strict_priority_between_levels() {
        let pool = pool(&[1], 8, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let mut low = queued(&pool, Eligible::ANY, Priority::Preview);
        let mut mid = queued(&pool, Eligible::ANY, Priority::Normal);
        let mut high = queued(&pool, Eligible::ANY, Priority::Active);
        assert_eq!(pool.snapshot().waiting, [1, 1, 1]);

        drop(held);
        assert!(poll(&mut low).is_none() && poll(&mut mid).is_none());
        let first = granted(&mut high);
        assert_eq!(first.priority(), Priority::Active);
        drop(first);
        assert!(poll(&mut low).is_none());
        let second = granted(&mut mid);
        assert_eq!(second.priority(), Priority::Normal);
        drop(second);
        let third = granted(&mut low);
        assert_eq!(third.priority(), Priority::Preview);
        assert!(third.waited() > Duration::ZERO);
        assert_eq!(pool.snapshot().waiting, [0, 0, 0]);
        drop(third);
        assert_eq!(reserved(&pool), [0]);
    }

    #[test]
    fn fifo_within_one_priority() {
        let pool = pool(&[1], 8, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let mut waiters: Vec<Pending> = (0..4)
            .map(|_| queued(&pool, Eligible::ANY, Priority::Normal))
            .collect();
        drop(held);
        for i in 0..waiters.len() {
            for later in waiters.iter_mut().skip(i + 1) {
                assert!(poll(later).is_none(), "a later waiter overtook waiter {i}");
            }
            drop(granted(&mut waiters[i]));
        }
    }

    #[test]
    fn eligibility_is_respected() {
        let pool = pool(&[1, 1], 8, LONG);
        let on0 = ready(&pool, Eligible::only(0), Priority::Normal);
        let on1 = ready(&pool, Eligible::only(1), Priority::Normal);
        // Highest priority, but it may only use device 1.
        let mut wants1 = queued(&pool, Eligible::only(1), Priority::Active);
        let mut any = queued(&pool, Eligible::ANY, Priority::Preview);
        drop(on0);
        assert!(poll(&mut wants1).is_none());
        let lower = granted(&mut any);
        assert_eq!(lower.device(), 0);
        drop(on1);
        assert_eq!(granted(&mut wants1).device(), 1);
    }

    #[test]
    fn least_loaded_device_ties_to_lowest_index() {
        let pool = pool(&[2, 4], 0, LONG);
        let devices: Vec<usize> = (0..6)
            .map(|_| ready(&pool, Eligible::ANY, Priority::Normal))
            .map(|lease| {
                let device = lease.device();
                std::mem::forget(lease);
                device
            })
            .collect();
        // 0/2=0/4 → 0; 1/2>0/4 → 1; 1/2>1/4 → 1; 1/2=2/4 → 0; full → 1, 1.
        assert_eq!(devices, [0, 1, 1, 0, 1, 1]);
        assert_eq!(reserved(&pool), [2, 4]);
    }

    #[test]
    fn not_accepting_device_is_skipped_until_reenabled() {
        let pool = pool(&[1, 1], 8, LONG);
        pool.set_accepting(0, false);
        let lease = ready(&pool, Eligible::ANY, Priority::Normal);
        assert_eq!(lease.device(), 1);
        let mut waiter = queued(&pool, Eligible::ANY, Priority::Normal);
        assert!(!pool.snapshot().devices[0].accepting);
        pool.set_accepting(7, true); // unknown index: ignored
        pool.set_accepting(0, true);
        assert_eq!(pool.snapshot().waiting, [0, 0, 0]);
        assert_eq!(granted(&mut waiter).device(), 0);
        drop(lease);
        assert_eq!(reserved(&pool), [0, 0]);
    }

    #[test]
    fn no_device_when_nothing_eligible_has_capacity() {
        let pool = pool(&[0, 1], 8, LONG);
        let mut fut = request(&pool, Eligible::only(0), Priority::Active);
        assert!(matches!(poll(&mut fut), Some(Err(Rejected::NoDevice))));
        let mut fut = request(&pool, Eligible::only(5), Priority::Active);
        assert!(matches!(poll(&mut fut), Some(Err(Rejected::NoDevice))));
        // A device that is merely not accepting still counts: the request waits.
        pool.set_accepting(1, false);
        let _waiter = queued(&pool, Eligible::only(1), Priority::Active);
    }

    #[test]
    fn full_queue_rejects_at_once() {
        let pool = pool(&[1], 2, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let _a = queued(&pool, Eligible::ANY, Priority::Preview);
        let _b = queued(&pool, Eligible::ANY, Priority::Normal);
        let mut c = request(&pool, Eligible::ANY, Priority::Active);
        assert!(matches!(poll(&mut c), Some(Err(Rejected::Full))));
        assert_eq!(pool.snapshot().waiting, [1, 1, 0]);
        drop(held);
        // A zero-length queue still serves what is free at once.
        let pool = super::tests::pool(&[1], 0, LONG);
        let _held = ready(&pool, Eligible::ANY, Priority::Normal);
        let mut d = request(&pool, Eligible::ANY, Priority::Active);
        assert!(matches!(poll(&mut d), Some(Err(Rejected::Full))));
    }

    #[test]
    fn timeout_after_max_wait() {
        let pool = pool(&[1], 4, Duration::from_millis(50));
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let started = Instant::now();
        let outcome = smol::block_on(pool.acquire(Eligible::ANY, Priority::Active));
        assert!(matches!(outcome, Err(Rejected::Timeout)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(pool.snapshot().waiting, [0, 0, 0]);
        drop(held);
        assert_eq!(reserved(&pool), [0]);
    }

    #[test]
    fn waiter_is_served_before_its_timeout() {
        let pool = pool(&[1], 4, Duration::from_secs(5));
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(held);
        });
        let lease = smol::block_on(pool.acquire(Eligible::ANY, Priority::Normal))
            .expect("served when the slot frees");
        assert!(lease.waited() >= Duration::from_millis(30));
        assert!(lease.waited() < Duration::from_secs(5));
        releaser.join().expect("releaser thread");
    }

    #[test]
    fn dropped_waiter_leaves_at_once() {
        let pool = pool(&[1], 2, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let first = queued(&pool, Eligible::ANY, Priority::Normal);
        let mut second = queued(&pool, Eligible::ANY, Priority::Normal);
        assert_eq!(pool.snapshot().waiting, [0, 2, 0]);
        drop(first);
        assert_eq!(pool.snapshot().waiting, [0, 1, 0]);
        // Its place is free again.
        let _third = queued(&pool, Eligible::ANY, Priority::Normal);
        drop(held);
        let lease = granted(&mut second);
        assert_eq!(reserved(&pool), [1]);
        drop(lease);
    }

    #[test]
    fn dropped_lease_hands_over() {
        let pool = pool(&[1], 2, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let mut waiter = queued(&pool, Eligible::ANY, Priority::Normal);
        drop(held);
        // The slot went straight to the waiter: still reserved, queue empty.
        assert_eq!(reserved(&pool), [1]);
        assert_eq!(pool.snapshot().waiting, [0, 0, 0]);
        let lease = granted(&mut waiter);
        drop(lease);
        assert_eq!(reserved(&pool), [0]);
    }

    #[test]
    fn grant_to_a_dropped_waiter_is_passed_on() {
        let pool = pool(&[1], 4, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let granted_then_dropped = queued(&pool, Eligible::ANY, Priority::Active);
        let mut next = queued(&pool, Eligible::ANY, Priority::Preview);
        drop(held); // the grant is now in the Active waiter's channel, unread
        drop(granted_then_dropped);
        let lease = granted(&mut next);
        assert_eq!(lease.priority(), Priority::Preview);
        assert_eq!(reserved(&pool), [1]);
        drop(lease);
        assert_eq!(reserved(&pool), [0]);

        // With nobody left to take it, the slot goes back to the pool.
        let pool = super::tests::pool(&[1], 4, LONG);
        let held = ready(&pool, Eligible::ANY, Priority::Normal);
        let orphan = queued(&pool, Eligible::ANY, Priority::Normal);
        drop(held);
        drop(orphan);
        assert_eq!(reserved(&pool), [0]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Arrive { priority: usize, eligible: u64 },
        Cancel(usize),
        DropLease(usize),
        Toggle(usize, bool),
        PollAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, any::<u64>()).prop_map(|(priority, eligible)| Op::Arrive {
                priority,
                // Mostly small masks over the few devices, sometimes everything.
                eligible: if eligible % 5 == 0 { u64::MAX } else { eligible % 64 },
            }),
            1 => any::<usize>().prop_map(Op::Cancel),
            2 => any::<usize>().prop_map(Op::DropLease),
            1 => (0..7usize, any::<bool>()).prop_map(|(d, a)| Op::Toggle(d, a)),
            2 => Just(Op::PollAll),
        ]
    }

    /// What the test holds: pending requests and leases, each with its eligibility.
    struct Model {
        pool: Arc<Pool>,
        pending: Vec<(Pending, Eligible)>,
        leases: Vec<(Lease, Eligible)>,
    }

    impl Model {
        fn take(&mut self, outcome: Result<Lease, Rejected>, eligible: Eligible) {
            match outcome {
                Ok(lease) => {
                    assert!(
                        eligible.contains(lease.device()),
                        "lease on ineligible device"
                    );
                    self.leases.push((lease, eligible));
                }
                Err(e) => panic!("a queued request ended with {e:?}"),
            }
        }

        fn poll_all(&mut self) {
            let mut still = Vec::new();
            for (mut fut, eligible) in std::mem::take(&mut self.pending) {
                match poll(&mut fut) {
                    Some(outcome) => self.take(outcome, eligible),
                    None => still.push((fut, eligible)),
                }
            }
            self.pending = still;
        }

        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Arrive { priority, eligible } => {
                    let eligible = Eligible(eligible);
                    let priority = Priority::ALL[priority];
                    let (could_serve, queue_was) = {
                        let state = self.pool.lock();
                        (state.can_ever_serve(eligible), state.queued())
                    };
                    let mut fut = request(&self.pool, eligible, priority);
                    match poll(&mut fut) {
                        None => self.pending.push((fut, eligible)),
                        Some(Err(Rejected::NoDevice)) => assert!(!could_serve),
                        Some(Err(Rejected::Full)) => {
                            assert!(could_serve);
                            assert_eq!(queue_was, self.pool.max_queue);
                        }
                        Some(outcome) => self.take(outcome, eligible),
                    }
                }
                Op::Cancel(i) => {
                    if !self.pending.is_empty() {
                        let i = i % self.pending.len();
                        drop(self.pending.swap_remove(i));
                    }
                }
                Op::DropLease(i) => {
                    if !self.leases.is_empty() {
                        let i = i % self.leases.len();
                        drop(self.leases.swap_remove(i));
                    }
                }
                Op::Toggle(device, accepting) => self.pool.set_accepting(device, accepting),
                Op::PollAll => self.poll_all(),
            }
        }

        fn check(&self) {
            let mut state = self.pool.lock();
            let queued = state.queued();
            assert!(queued <= self.pool.max_queue);
            // Pending futures are either queued or hold an unread grant.
            assert!(self.pending.len() >= queued);
            let in_flight = self.pending.len() - queued;
            let total: u64 = state.devices.iter().map(|d| u64::from(d.reserved)).sum();
            assert_eq!(total, (self.leases.len() + in_flight) as u64);
            for d in &state.devices {
                assert!(d.reserved <= d.capacity, "reserved above capacity");
            }
            for (level, queue) in state.queues.iter().enumerate() {
                for w in queue {
                    for (i, d) in state.devices.iter().enumerate() {
                        assert!(
                            !(w.eligible.contains(i) && d.accepting && d.reserved < d.capacity),
                            "a waiter waits while device {i} has a free slot for it"
                        );
                    }
                    // Every grant since the last check went to a request no waiter of
                    // higher priority, still queued, could have used on that device.
                    for &(priority, device) in &state.grants {
                        assert!(
                            level <= priority.index() || !w.eligible.contains(device),
                            "{priority:?} got device {device} over a waiting higher one"
                        );
                    }
                }
            }
            state.grants.clear();
            drop(state);
            let snapshot = self.pool.snapshot();
            assert_eq!(snapshot.waiting.iter().sum::<usize>(), queued);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn random_operations_keep_the_invariants(
            capacities in prop::collection::vec(0u32..4, 1..6),
            max_queue in 0usize..8,
            ops in prop::collection::vec(op(), 1..400),
            leases_first in any::<bool>(),
        ) {
            let mut model = Model {
                pool: pool(&capacities, max_queue, LONG),
                pending: Vec::new(),
                leases: Vec::new(),
            };
            for op in &ops {
                model.apply(op);
                model.check();
            }
            if leases_first {
                model.leases.clear();
                model.check();
            }
            while let Some(p) = model.pending.pop() {
                drop(p);
                model.check();
            }
            model.leases.clear();
            let snapshot = model.pool.snapshot();
            prop_assert!(snapshot.devices.iter().all(|d| d.reserved == 0));
            prop_assert_eq!(snapshot.waiting, [0, 0, 0]);
        }
    }
}
