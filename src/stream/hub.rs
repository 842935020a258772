//! The fan-out hub of one channel: the upstream task that reads the receiver's stream
//! into a ring, and the clients that read it at their own pace.
//!
//! Rules: with two or more clients the upstream never waits for a client. A client
//! further behind than the ring holds is cut off at once (its abort signal closes the
//! connection even while the server is stuck writing to it) and counted. A lone client
//! gets a bounded read-ahead instead: while it is more than half the ring behind, the
//! upstream is not read (nobody would gain from reading on), and if that lasts longer
//! than the source's `max_pause` the client is cut off and reading resumes. One short
//! lock guards ring and clients; wakers are collected under it and woken after it is
//! released. When the upstream ends (EOF, error, stall, stop) every client first gets
//! what is left in the ring, then EOF.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::AsyncRead;

use super::StreamError;
use super::open::{PortKind, READ_CHUNK};

/// What a hub reads its stream from: the receiver's answer body, or an encoder's output.
pub(super) trait Source: Send {
    /// Reads the next bytes into `buf`; `Ok(0)` is the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, SourceError>> + Send;

    /// Longest this source may go unread while the hub holds reads back for a lone
    /// client that lags; after that the client is cut off and reading resumes.
    fn max_pause(&self) -> Duration {
        DEFAULT_MAX_PAUSE
    }

    /// How long to wait before reading again after a read that found the source drained
    /// (see [`READ_PAUSE`]); zero (the default) reads again at once. Only for sources that
    /// buffer on their own, like a socket: a transcoder is fed inside its own reads.
    fn read_pause(&self) -> Duration {
        Duration::ZERO
    }
}

/// `max_pause` of a source that does not say (`XG2G_STREAM_TIMEOUT`'s default).
pub(super) const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(10);

/// Why a source stopped delivering.
#[derive(Debug)]
pub(super) struct SourceError {
    /// Metric and log label (`timeout`, `io`, `ffmpeg_exit`, ...).
    pub kind: &'static str,
    /// What happened, for the log.
    pub detail: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A source that delivered MPEG-TS: the rest of it, its first bytes, and (for the
/// receiver) the port it came from.
pub(super) struct Started<S> {
    pub body: S,
    pub first: Vec<u8>,
    pub port: Option<PortKind>,
}
use super::ring::{ReadOutcome, Ring};

/// Longest a waiting client is left without the bytes that arrived (players buffer
/// seconds of a live stream; 10 ms is invisible to them).
const WAKE_EVERY: Duration = Duration::from_millis(10);
/// Pause before reading again once a read found the source drained: a receiver sends
/// a burst every ~1.3 ms at 8 Mbit/s, and reading (and waking) per burst is where the
/// CPU goes at TV rates; 20 ms lets ~20 KiB gather in the socket buffer (far below its
/// size) and adds 20 ms at most to a live stream. Only slow sources are paced (see
/// [`PACE_BELOW_BYTES_PER_SECOND`]), and a read after a pause that fills what was asked
/// ends pacing, so a fast source is never held back.
pub(super) const READ_PAUSE: Duration = Duration::from_millis(20);
/// Only a source slower than this is read with pauses: 8 MB/s is 64 Mbit/s, above any
/// broadcast (UHD is at most ~40 Mbit/s), and what 160 KiB per pause sustains.
const PACE_BELOW_BYTES_PER_SECOND: u64 = 8 << 20;
/// How long the source's rate is measured before deciding whether to pace it.
const RATE_WINDOW: Duration = Duration::from_millis(250);
/// Bytes that wake waiting clients as soon as the source has nothing more right now.
const WAKE_BYTES: usize = 32 * 1024;
/// Bytes that wake waiting clients at once, even while the source keeps delivering:
/// an unpaced source would otherwise cost a wake (and often a thread switch) per read.
const WAKE_MAX: usize = 256 * 1024;

/// What the upstream does next, decided under the lock after each push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read at most this many bytes (a lone client is never overrun by one read).
    Read(usize),
    /// Hold reads back: the lone client is more than half the ring behind.
    Pause,
    /// The hub was asked to stop.
    Stop,
}

/// What the upstream task woke up for.
enum Step {
    /// A read from the receiver finished.
    Read(Result<usize, SourceError>),
    /// Time to wake clients for bytes that arrived in small pieces.
    Flush,
    /// The hub was asked to stop.
    Stop,
}

/// Where an upstream is in its life.
#[derive(Debug, Clone)]
pub(super) enum Phase {
    /// Connecting and waiting for the first bytes.
    Opening,
    /// Delivering.
    Running,
    /// Could not be opened; waiting clients get this error.
    Failed(StreamError),
    /// Ended after running; clients drain the ring, then see EOF.
    Ended,
}

/// One client's place in the stream.
struct Slot {
    id: u64,
    /// Absolute offset of its next byte.
    pos: u64,
    waker: Option<Waker>,
    /// Dropped to cut the client off (its receiver then completes).
    abort: Option<Sender<()>>,
    lagged: bool,
}

/// Everything behind the hub's lock.
pub(super) struct HubState {
    pub(super) phase: Phase,
    ring: Option<Ring>,
    slots: Vec<Slot>,
    /// Bumped whenever a client attaches: a linger timer started before that is void.
    pub(super) generation: u64,
    /// When the last client left (while no client is attached).
    pub(super) idle_since: Option<Instant>,
    /// Asked to stop (linger over, tuner needed, shutdown); takes no new clients.
    pub(super) stopping: bool,
    pub(super) port: Option<PortKind>,
    /// The upstream holds reads back for a lone client; whoever changes that wakes it.
    paused: bool,
    upstream: Option<Waker>,
}

impl HubState {
    /// Clients attached now.
    pub(super) fn clients(&self) -> usize {
        self.slots.len()
    }

    /// Bytes received from the receiver so far.
    pub(super) fn bytes_in(&self) -> u64 {
        self.ring.as_ref().map_or(0, Ring::written)
    }

    fn take_wakers(&mut self, into: &mut Vec<Waker>) {
        into.extend(self.slots.iter_mut().filter_map(|s| s.waker.take()));
    }

    /// How far the only client that is not cut off lags; `None` unless there is exactly one.
    fn lone_lag(&self) -> Option<u64> {
        let written = self.ring.as_ref()?.written();
        let mut active = self.slots.iter().filter(|s| !s.lagged);
        let lone = active.next()?;
        if active.next().is_some() {
            return None;
        }
        Some(written.saturating_sub(lone.pos))
    }

    /// What the upstream does next.
    fn next(&self) -> Next {
        if self.stopping {
            return Next::Stop;
        }
        let capacity = self.ring.as_ref().map_or(0, Ring::capacity);
        match self.lone_lag() {
            Some(lag) if lag > capacity / 2 => Next::Pause,
            Some(lag) => {
                let room = usize::try_from(capacity.saturating_sub(lag)).unwrap_or(usize::MAX);
                Next::Read(room.clamp(1, READ_CHUNK))
            }
            None => Next::Read(READ_CHUNK),
        }
    }

    /// True while a pause must go on: the lone client has not caught up to a quarter of
    /// the ring (the gap to the half that paused keeps pauses and wakes rare).
    fn keeps_paused(&self) -> bool {
        let capacity = self.ring.as_ref().map_or(0, Ring::capacity);
        !self.stopping && self.lone_lag().is_some_and(|lag| lag > capacity / 4)
    }

    /// The paused upstream's waker, to wake it after the lock is released: something it
    /// waits for (a client, a stop) may have changed.
    fn resume(&mut self) -> Option<Waker> {
        if !self.paused {
            return None;
        }
        self.paused = false;
        self.upstream.take()
    }
}

/// What the hub reports to its owner (metrics and the registry).
pub(super) trait HubEvents: Send + Sync {
    /// A client was cut off for falling behind.
    fn client_dropped_slow(&self);
    /// Bytes handed to a client.
    fn bytes_out(&self, n: usize);
    /// The last client left `hub` (start the linger).
    fn hub_idle(&self, hub: &Arc<Hub>, generation: u64);
    /// A client detached (for the client gauge).
    fn client_left(&self);
}

/// One channel's upstream and its clients.
pub(super) struct Hub {
    /// Canonical ref (registry key).
    pub(super) key: String,
    /// The ref sent upstream.
    pub(super) sref: String,
    /// Whitelisted for the stream relay.
    pub(super) relay: bool,
    /// When the upstream was asked for.
    pub(super) created: Instant,
    capacity: usize,
    state: Mutex<HubState>,
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
}

impl Hub {
    /// A hub in the `Opening` phase whose ring will hold `capacity` bytes.
    pub(super) fn new(key: String, sref: String, relay: bool, capacity: usize) -> Arc<Hub> {
        let (stop_tx, stop_rx) = smol::channel::bounded(1);
        Arc::new(Hub {
            key,
            sref,
            relay,
            created: Instant::now(),
            capacity,
            state: Mutex::new(HubState {
                phase: Phase::Opening,
                ring: None,
                slots: Vec::new(),
                generation: 0,
                idle_since: None,
                stopping: false,
                port: None,
                paused: false,
                upstream: None,
            }),
            stop_tx,
            stop_rx,
        })
    }

    /// The state behind the lock (kept short by every caller).
    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        // Plain data: a panic elsewhere cannot leave it in a state worse than stale.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a client, starting at the join point; `None` when the hub is stopping or over.
    pub(super) fn attach(self: &Arc<Self>, id: u64) -> Option<(Receiver<()>, u64)> {
        let mut st = self.lock();
        if st.stopping || matches!(st.phase, Phase::Failed(_) | Phase::Ended) {
            return None;
        }
        let pos = st.ring.as_ref().map_or(0, Ring::join_offset);
        let (abort_tx, abort_rx) = smol::channel::bounded(1);
        st.slots.push(Slot {
            id,
            pos,
            waker: None,
            abort: Some(abort_tx),
            lagged: false,
        });
        st.generation += 1;
        st.idle_since = None;
        // A second client ends a lone client's read-ahead pause.
        let resume = st.resume();
        let generation = st.generation;
        drop(st);
        resume.into_iter().for_each(Waker::wake);
        Some((abort_rx, generation))
    }

    /// Asks the upstream task to stop; it then ends its clients. Idempotent.
    pub(super) fn stop(&self) {
        let resume = {
            let mut st = self.lock();
            st.stopping = true;
            st.resume()
        };
        resume.into_iter().for_each(Waker::wake);
        let _ = self.stop_tx.try_send(());
    }

    /// Waits until the upstream delivers (Ok) or failed to open (its error).
    pub(super) async fn wait_open(&self, id: u64) -> Result<(), StreamError> {
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            match &st.phase {
                Phase::Running | Phase::Ended => Poll::Ready(Ok(())),
                Phase::Failed(e) => Poll::Ready(Err(e.clone())),
                Phase::Opening => {
                    if let Some(slot) = st.slots.iter_mut().find(|s| s.id == id) {
                        set_waker(&mut slot.waker, cx);
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Runs the upstream: `open` connects and returns the first bytes, then the body is
    /// pumped into the ring until it ends or the hub is stopped. Returns how it ended.
    pub(super) async fn run<F, S>(self: &Arc<Self>, open: F, events: &dyn HubEvents) -> &'static str
    where
        F: Future<Output = Result<Started<S>, StreamError>>,
        S: Source,
    {
        let mut wakers = Vec::new();
        // One stop listener for the whole run: a fresh one per read would allocate.
        let mut stopped = std::pin::pin!(async {
            let _ = self.stop_rx.recv().await;
        });
        let stop_opening = async {
            stopped.as_mut().await;
            Err(StreamError::ShuttingDown)
        };
        let opened = match open.or(stop_opening).await {
            Ok(opened) => opened,
            Err(e) => {
                self.finish(Phase::Failed(e), &mut wakers);
                return "open_failed";
            }
        };
        let Started {
            mut body,
            first,
            port,
        } = opened;
        let idle = {
            let mut st = self.lock();
            let mut ring = Ring::new(self.capacity);
            ring.push(&first);
            st.ring = Some(ring);
            st.phase = Phase::Running;
            st.port = port;
            st.take_wakers(&mut wakers);
            // Every client that waited for the open may have left meanwhile.
            (st.slots.is_empty() && !st.stopping).then_some(st.generation)
        };
        wakers.drain(..).for_each(Waker::wake);
        if let Some(generation) = idle {
            self.lock().idle_since = Some(Instant::now());
            events.hub_idle(self, generation);
        }
        drop(first);
        let max_pause = body.max_pause();
        let read_pause = body.read_pause();
        let mut buf = vec![0u8; READ_CHUNK];
        // Clients waiting for bytes are woken at most every WAKE_EVERY unless WAKE_BYTES
        // piled up and the source has nothing more for now, or WAKE_MAX piled up: a
        // receiver sends 1316-byte bursts, and waking every client for each one costs a
        // task switch and a small write per client per burst.
        let mut flush = Timer::never();
        let mut last_wake = Instant::now();
        let mut unwoken = 0usize;
        // A slow source (measured over RATE_WINDOW) is read with pauses: after a read
        // that drained it, the next waits `read_pause` (see READ_PAUSE). A read after a
        // pause that fills what was asked means the source is faster than pauses allow:
        // pacing stops until the next window says otherwise.
        let mut pause = Timer::never();
        let mut pausing = false;
        let mut paced = false;
        let mut window = (Instant::now(), 0u64);
        let mut next = self.lock().next();
        let ended = loop {
            let want = match next {
                Next::Read(want) => want,
                Next::Stop => break "stopped",
                Next::Pause => {
                    // The lone client is what the upstream waits for: it gets every byte.
                    self.wake_clients(&mut wakers);
                    (unwoken, last_wake) = (0, Instant::now());
                    flush = Timer::never();
                    let resumed = self.pause(max_pause, events);
                    let stop = async {
                        stopped.as_mut().await;
                        false
                    };
                    if !resumed.or(stop).await {
                        break "stopped";
                    }
                    next = self.lock().next();
                    continue;
                }
            };
            let after_pause = pausing;
            if pausing {
                // The last read drained the source: deliver it, let the next bursts gather.
                if unwoken > 0 {
                    self.wake_clients(&mut wakers);
                    (unwoken, last_wake) = (0, Instant::now());
                    flush = Timer::never();
                }
                let paused = async {
                    (&mut pause).await;
                    false
                };
                let stop = async {
                    stopped.as_mut().await;
                    true
                };
                if paused.or(stop).await {
                    break "stopped";
                }
                pausing = false;
            }
            let step = {
                let mut read = std::pin::pin!(body.read(buf.get_mut(..want).unwrap_or_default()));
                match smol::future::poll_once(read.as_mut()).await {
                    Some(result) => Step::Read(result),
                    None => {
                        // The source has nothing right now: a burst is over, deliver it.
                        if unwoken >= WAKE_BYTES {
                            self.wake_clients(&mut wakers);
                            (unwoken, last_wake) = (0, Instant::now());
                            flush = Timer::never();
                        }
                        let read = async { Step::Read(read.as_mut().await) };
                        let flush_due = async {
                            (&mut flush).await;
                            Step::Flush
                        };
                        let stop = async {
                            stopped.as_mut().await;
                            Step::Stop
                        };
                        read.or(flush_due).or(stop).await
                    }
                }
            };
            match step {
                Step::Read(Ok(0)) => break "eof",
                Step::Read(Ok(n)) => {
                    next = self.push(buf.get(..n).unwrap_or_default(), events);
                    window.1 += n as u64;
                    if after_pause && n == want {
                        paced = false;
                        window = (Instant::now(), 0);
                    } else if window.0.elapsed() >= RATE_WINDOW {
                        let per_second = window.1 as f64 / window.0.elapsed().as_secs_f64();
                        paced = !read_pause.is_zero()
                            && per_second < PACE_BELOW_BYTES_PER_SECOND as f64;
                        window = (Instant::now(), 0);
                    }
                    if paced && n < want {
                        pausing = true;
                        pause.set_after(read_pause);
                    }
                    unwoken += n;
                    if unwoken < WAKE_MAX.min(self.capacity / 4) && last_wake.elapsed() < WAKE_EVERY
                    {
                        if unwoken == n {
                            flush.set_at(last_wake + WAKE_EVERY);
                        }
                        continue;
                    }
                }
                Step::Read(Err(e)) => {
                    log::warn!(
                        "event=stream_upstream_error ref=\"{}\" error=\"{e}\"",
                        self.sref
                    );
                    break e.kind;
                }
                Step::Flush => {}
                Step::Stop => break "stopped",
            }
            self.wake_clients(&mut wakers);
            (unwoken, last_wake) = (0, Instant::now());
            flush = Timer::never();
        };
        self.finish(Phase::Ended, &mut wakers);
        ended
    }

    /// Holds reads back until the lone client has caught up (or left, or has company);
    /// after `limit` it is cut off instead. False when the hub was asked to stop.
    async fn pause(&self, limit: Duration, events: &dyn HubEvents) -> bool {
        let resumed = std::future::poll_fn(|cx| {
            let mut st = self.lock();
            if st.keeps_paused() {
                st.paused = true;
                set_waker(&mut st.upstream, cx);
                Poll::Pending
            } else {
                st.paused = false;
                Poll::Ready(!st.stopping)
            }
        });
        let timed_out = async {
            Timer::after(limit).await;
            let mut st = self.lock();
            st.paused = false;
            if !st.keeps_paused() {
                return !st.stopping;
            }
            if let Some(slot) = st.slots.iter_mut().find(|s| !s.lagged) {
                slot.lagged = true;
                slot.abort = None;
                let waker = slot.waker.take();
                drop(st);
                waker.into_iter().for_each(Waker::wake);
                log::info!(
                    "event=stream_read_ahead_expired ref=\"{}\" after_ms={}",
                    self.sref,
                    limit.as_millis()
                );
                events.client_dropped_slow();
            }
            true
        };
        resumed.or(timed_out).await
    }

    /// Ends the hub in `phase` (it takes no new clients) and wakes every client so it
    /// sees the end (after draining the ring) or the open error.
    fn finish(&self, phase: Phase, wakers: &mut Vec<Waker>) {
        {
            let mut st = self.lock();
            st.phase = phase;
            st.stopping = true;
            st.take_wakers(wakers);
        }
        wakers.drain(..).for_each(Waker::wake);
    }

    /// Wakes every client waiting for bytes.
    fn wake_clients(&self, wakers: &mut Vec<Waker>) {
        self.lock().take_wakers(wakers);
        wakers.drain(..).for_each(Waker::wake);
    }

    /// Appends upstream bytes, cuts off every client they overran, and says what the
    /// upstream does next.
    fn push(&self, data: &[u8], events: &dyn HubEvents) -> Next {
        let mut st = self.lock();
        let HubState { ring, slots, .. } = &mut *st;
        let Some(ring) = ring.as_mut() else {
            return Next::Stop;
        };
        ring.push(data);
        let oldest = ring.written().saturating_sub(ring.capacity());
        for slot in slots.iter_mut() {
            if slot.pos < oldest && !slot.lagged {
                slot.lagged = true;
                // Closing the abort channel ends the client's connection even while the
                // server is blocked writing to it.
                slot.abort = None;
                events.client_dropped_slow();
            }
        }
        st.next()
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// One client's stream: reads the hub's ring from its own cursor. Dropping it detaches.
pub struct ClientStream {
    hub: Arc<Hub>,
    id: u64,
    events: Arc<dyn HubEvents>,
}

impl ClientStream {
    pub(super) fn new(hub: Arc<Hub>, id: u64, events: Arc<dyn HubEvents>) -> ClientStream {
        ClientStream { hub, id, events }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.hub.lock();
        let HubState {
            phase,
            ring,
            slots,
            paused,
            upstream,
            ..
        } = &mut *st;
        let Some(slot) = slots.iter_mut().find(|s| s.id == this.id) else {
            return Poll::Ready(Ok(0));
        };
        if slot.lagged {
            return Poll::Ready(Err(io::Error::other("stream client fell behind")));
        }
        let outcome = ring
            .as_ref()
            .map_or(ReadOutcome::Empty, |r| r.read(slot.pos, buf));
        match outcome {
            ReadOutcome::Data(n) => {
                slot.pos += n as u64;
                // A lone client that caught up to a quarter of the ring ends the pause.
                let resume = match ring {
                    Some(r)
                        if *paused && r.written().saturating_sub(slot.pos) <= r.capacity() / 4 =>
                    {
                        *paused = false;
                        upstream.take()
                    }
                    _ => None,
                };
                drop(st);
                resume.into_iter().for_each(Waker::wake);
                this.events.bytes_out(n);
                Poll::Ready(Ok(n))
            }
            ReadOutcome::Lagged => {
                slot.lagged = true;
                slot.abort = None;
                drop(st);
                this.events.client_dropped_slow();
                Poll::Ready(Err(io::Error::other("stream client fell behind")))
            }
            ReadOutcome::Empty => match phase {
                Phase::Ended | Phase::Failed(_) => Poll::Ready(Ok(0)),
                Phase::Opening | Phase::Running => {
                    set_waker(&mut slot.waker, cx);
                    Poll::Pending
                }
            },
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        let (idle, resume) = {
            let mut st = self.hub.lock();
            st.slots.retain(|s| s.id != self.id);
            // Whoever the upstream paused for may have been this client.
            let resume = st.resume();
            let idle = st.slots.is_empty()
                && !st.stopping
                && matches!(st.phase, Phase::Running | Phase::Opening);
            if idle {
                st.idle_since = Some(Instant::now());
            }
            (idle.then_some(st.generation), resume)
        };
        resume.into_iter().for_each(Waker::wake);
        self.events.client_left();
        if let Some(generation) = idle {
            self.events.hub_idle(&self.hub, generation);
        }
    }
}

/// A future that completes when the client must be cut off (it fell behind).
pub(super) async fn aborted(abort: Receiver<()>) {
    // The sender is never used to send: it is dropped, which ends `recv`.
    let _ = abort.recv().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::AsyncReadExt as _;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    const CAP: usize = 256 * 1024;

    /// An unpaced source: every read is answered at once, byte `o` of the stream being
    /// `o % 251`, so a reader can tell lost or repeated bytes.
    struct Endless {
        produced: Arc<AtomicU64>,
        max_pause: Duration,
    }

    impl Source for Endless {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
            let at = self.produced.load(Ordering::SeqCst);
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((at + i as u64) % 251) as u8;
            }
            self.produced.fetch_add(buf.len() as u64, Ordering::SeqCst);
            Ok(buf.len())
        }

        fn max_pause(&self) -> Duration {
            self.max_pause
        }
    }

    #[derive(Default)]
    struct Events {
        dropped: AtomicUsize,
    }

    impl HubEvents for Events {
        fn client_dropped_slow(&self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
        fn bytes_out(&self, _: usize) {}
        fn hub_idle(&self, _: &Arc<Hub>, _: u64) {}
        fn client_left(&self) {}
    }

    struct Running {
        hub: Arc<Hub>,
        events: Arc<Events>,
        produced: Arc<AtomicU64>,
        ended: std::thread::JoinHandle<&'static str>,
    }

    impl Running {
        /// A hub over an `Endless` source with `clients` attached before it opens.
        fn start(clients: u64, max_pause: Duration) -> (Running, Vec<ClientStream>) {
            let hub = Hub::new("k".into(), "1:0:1".into(), false, CAP);
            let events = Arc::new(Events::default());
            let produced = Arc::new(AtomicU64::new(0));
            let streams = (1..=clients)
                .map(|id| {
                    hub.attach(id).expect("attach");
                    let ev: Arc<dyn HubEvents> = events.clone();
                    ClientStream::new(Arc::clone(&hub), id, ev)
                })
                .collect();
            let body = Endless {
                produced: produced.clone(),
                max_pause,
            };
            let ended = run_upstream(&hub, &events, body);
            let running = Running {
                hub,
                events,
                produced,
                ended,
            };
            (running, streams)
        }

        fn produced(&self) -> u64 {
            self.produced.load(Ordering::SeqCst)
        }

        fn dropped(&self) -> usize {
            self.events.dropped.load(Ordering::SeqCst)
        }

        /// Waits (up to 5 s) until the source stops being read; returns its total.
        fn settled(&self) -> u64 {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut last = self.produced();
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let now = self.produced();
                if now == last && now > 0 {
                    return now;
                }
                assert!(Instant::now() < deadline, "the upstream never paused");
                last = now;
            }
        }

        fn wait_for(&self, what: &str, cond: impl Fn(&Running) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cond(self) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn stop(self) -> &'static str {
            self.hub.stop();
            self.ended.join().expect("hub thread")
        }
    }

    /// Runs `hub`'s upstream over `body` on its own thread (opened at once, no first bytes).
    fn run_upstream<S: Source + 'static>(
        hub: &Arc<Hub>,
        events: &Arc<Events>,
        body: S,
    ) -> std::thread::JoinHandle<&'static str> {
        let (hub, events) = (Arc::clone(hub), Arc::clone(events));
        std::thread::spawn(move || {
            let open = async {
                Ok(Started {
                    body,
                    first: Vec::new(),
                    port: None,
                })
            };
            smol::block_on(hub.run(open, &*events))
        })
    }

    /// Reads `n` bytes (waiting as needed) and checks they continue the pattern at `pos`.
    fn read_checked(client: &mut ClientStream, pos: &mut u64, n: u64) {
        let mut buf = vec![0u8; 64 * 1024];
        let end = *pos + n;
        while *pos < end {
            let want = usize::try_from(end - *pos)
                .unwrap_or(buf.len())
                .min(buf.len());
            let got = smol::block_on(client.read(&mut buf[..want])).expect("client read");
            assert!(got > 0, "EOF at {pos}");
            for (i, b) in buf[..got].iter().enumerate() {
                assert_eq!(
                    *b,
                    ((*pos + i as u64) % 251) as u8,
                    "byte {}",
                    *pos + i as u64
                );
            }
            *pos += got as u64;
        }
    }

    #[test]
    fn a_lone_client_that_stops_reading_pauses_the_upstream_without_losing_bytes() {
        let (run, mut clients) = Running::start(1, Duration::from_secs(30));
        let held = run.settled();
        // Paused once the client was more than half the ring behind, and no read may
        // overrun it.
        assert!(held > CAP as u64 / 2, "paused too early: {held}");
        assert!(held <= CAP as u64, "read past the ring: {held}");
        assert_eq!(run.dropped(), 0);
        // Reading on resumes the upstream, again and again, and nothing is lost.
        let mut pos = 0;
        read_checked(&mut clients[0], &mut pos, 8 * CAP as u64);
        assert!(run.produced() >= 8 * CAP as u64);
        assert_eq!(run.dropped(), 0);
        let held = run.settled();
        assert!(
            held - pos <= CAP as u64,
            "{held} read for a client at {pos}"
        );
        assert_eq!(run.stop(), "stopped");
    }

    #[test]
    fn a_pause_that_lasts_longer_than_max_pause_cuts_the_lone_client_off() {
        let (run, mut clients) = Running::start(1, Duration::from_millis(100));
        let started = Instant::now();
        run.wait_for("the cut-off", |r| r.dropped() == 1);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The upstream reads on (the ring overwrites) and the client learns it fell behind.
        run.wait_for("reading on", |r| r.produced() > 4 * CAP as u64);
        let err = smol::block_on(clients[0].read(&mut [0u8; 100])).expect_err("cut off");
        assert_eq!(err.to_string(), "stream client fell behind");
        assert_eq!(run.dropped(), 1);
        assert_eq!(run.stop(), "stopped");
    }

    #[test]
    fn with_two_clients_the_upstream_never_waits_and_laggards_are_cut_off() {
        let (run, _clients) = Running::start(2, Duration::from_secs(30));
        run.wait_for("reading past the ring", |r| r.produced() > 8 * CAP as u64);
        run.wait_for("both cut off", |r| r.dropped() == 2);
        assert_eq!(run.stop(), "stopped");
    }

    #[test]
    fn a_second_client_ends_the_pause() {
        let (run, clients) = Running::start(1, Duration::from_secs(30));
        let held = run.settled();
        run.hub.attach(99).expect("attach");
        let ev: Arc<dyn HubEvents> = run.events.clone();
        let _second = ClientStream::new(Arc::clone(&run.hub), 99, ev);
        // With two clients the upstream reads on, and the first one, half a ring behind,
        // is cut off once it lags by the ring, as with any two clients.
        run.wait_for("the laggard cut off", |r| r.dropped() == 1);
        assert!(run.produced() > CAP as u64);
        // Then the second is the lone client: paused for, not cut off.
        let again = run.settled();
        assert!(again <= held + 2 * CAP as u64, "{again}");
        assert_eq!(run.dropped(), 1);
        drop(clients);
        assert_eq!(run.stop(), "stopped");
    }

    #[test]
    fn the_lone_client_leaving_ends_the_pause_and_stop_ends_a_paused_upstream() {
        let (run, clients) = Running::start(1, Duration::from_secs(30));
        let held = run.settled();
        drop(clients);
        run.wait_for("reading on", |r| r.produced() > held + 2 * CAP as u64);
        // A new lone client pauses it again; stop ends it while paused.
        run.hub.attach(7).expect("attach");
        let ev: Arc<dyn HubEvents> = run.events.clone();
        let _lone = ClientStream::new(Arc::clone(&run.hub), 7, ev);
        run.settled();
        assert_eq!(run.dropped(), 0);
        assert_eq!(run.stop(), "stopped");
    }

    /// A receiver-like source: one 1316-byte burst every `every`, counting its reads.
    struct Bursts {
        every: Duration,
        next: Instant,
        reads: Arc<AtomicUsize>,
        read_pause: Duration,
    }

    impl Source for Bursts {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let now = Instant::now();
            if self.next > now {
                Timer::at(self.next).await;
            }
            // Everything due since the last read, as a socket buffer would hold it.
            let mut n = 0;
            while self.next <= Instant::now() && n + 1316 <= buf.len() {
                n += 1316;
                self.next += self.every;
            }
            buf.get_mut(..n).unwrap_or_default().fill(0x47);
            Ok(n)
        }

        fn read_pause(&self) -> Duration {
            self.read_pause
        }
    }

    /// Source reads in `window` of a bursty source read by one eager client.
    fn reads_of_bursts(read_pause: Duration, window: Duration) -> (usize, u64) {
        let hub = Hub::new("k".into(), "1:0:1".into(), false, CAP);
        let events = Arc::new(Events::default());
        hub.attach(1).expect("attach");
        let ev: Arc<dyn HubEvents> = events.clone();
        let mut client = ClientStream::new(Arc::clone(&hub), 1, ev);
        let reads = Arc::new(AtomicUsize::new(0));
        let body = Bursts {
            every: Duration::from_micros(1300),
            next: Instant::now(),
            reads: reads.clone(),
            read_pause,
        };
        let upstream = run_upstream(&hub, &events, body);
        let started = Instant::now();
        let mut got = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while started.elapsed() < window {
            let read = async { Some(client.read(&mut buf).await) };
            let tick = async {
                Timer::after(Duration::from_millis(50)).await;
                None
            };
            if let Some(n) = smol::block_on(read.or(tick)) {
                got += n.expect("client read") as u64;
            }
        }
        let counted = reads.load(Ordering::SeqCst);
        hub.stop();
        drop(client);
        upstream.join().expect("hub thread");
        (counted, got)
    }

    #[test]
    fn a_slow_source_is_read_every_pause_not_per_burst() {
        let window = Duration::from_millis(1500);
        let (paced, paced_bytes) = reads_of_bursts(READ_PAUSE, window);
        let (eager, eager_bytes) = reads_of_bursts(Duration::ZERO, window);
        // ~770 bursts a second (fewer on a loaded machine): read per burst unless paced
        // (one 250 ms window unpaced, then about one read per 20 ms).
        assert!(eager > 300, "unpaced reads {eager}");
        assert!(paced < eager / 2, "paced {paced} vs unpaced {eager} reads");
        // Pacing delays bytes by at most a pause; it loses none.
        assert!(
            paced_bytes + 64 * 1316 >= eager_bytes * 9 / 10,
            "paced got {paced_bytes} B, unpaced {eager_bytes} B"
        );
    }

    #[test]
    fn a_fast_source_is_never_held_back_by_the_pause() {
        // Every other read comes back half full (a socket caught mid-write), but the
        // source is fast: it must not be paced. Paced at one read per 20 ms it could not
        // pass 6.4 MB/s.
        struct Fast(Endless, bool);
        impl Source for Fast {
            async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
                self.1 = !self.1;
                let n = if self.1 { buf.len() / 2 } else { buf.len() };
                self.0.read(buf.get_mut(..n).unwrap_or_default()).await
            }
            fn read_pause(&self) -> Duration {
                READ_PAUSE
            }
        }
        // One client, reading as fast as it can (a second, idle one would be cut off
        // and could take this one with it when the source outruns the first read).
        let hub = Hub::new("k".into(), "1:0:1".into(), false, CAP);
        let events = Arc::new(Events::default());
        hub.attach(1).expect("attach");
        let ev: Arc<dyn HubEvents> = events.clone();
        let mut client = ClientStream::new(Arc::clone(&hub), 1, ev);
        let produced = Arc::new(AtomicU64::new(0));
        let body = Fast(
            Endless {
                produced: produced.clone(),
                max_pause: Duration::from_secs(5),
            },
            false,
        );
        let upstream = run_upstream(&hub, &events, body);
        let started = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        while started.elapsed() < Duration::from_secs(1) {
            got += smol::block_on(client.read(&mut buf)).expect("a lone client is never cut off")
                as u64;
        }
        hub.stop();
        drop(client);
        upstream.join().expect("hub thread");
        assert!(
            produced.load(Ordering::SeqCst) > 20 << 20,
            "a fast source was held back: {} B read in 1 s ({got} B delivered)",
            produced.load(Ordering::SeqCst)
        );
    }
}
