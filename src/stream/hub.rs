//! The fan-out hub of one channel: the upstream task that reads the receiver's stream
//! into a ring, and the clients that read it at their own pace.
//!
//! Rules: the upstream never waits for a client. A client further behind than the ring
//! holds is cut off at once (its abort signal closes the connection even while the
//! server is stuck writing to it) and counted. One short lock guards ring and clients;
//! wakers are collected under it and woken after it is released. When the upstream ends
//! (EOF, error, stall, stop) every client first gets what is left in the ring, then EOF.

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
}

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
/// Pause before reading again once a read found the socket drained: a receiver sends
/// a burst every ~1.3 ms at 8 Mbit/s, and reading (and waking) per burst is where the
/// CPU goes at TV rates; 20 ms lets ~20 KiB gather in the socket buffer (far below its
/// size) and adds 20 ms at most to a live stream. A read that fills the buffer goes on
/// at once, so a fast source is never slowed.
const READ_PAUSE: Duration = Duration::from_millis(20);
/// Bytes that wake waiting clients at once, whatever the time.
const WAKE_BYTES: usize = 32 * 1024;

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
        Some((abort_rx, st.generation))
    }

    /// Asks the upstream task to stop; it then ends its clients. Idempotent.
    pub(super) fn stop(&self) {
        self.lock().stopping = true;
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
        let mut buf = vec![0u8; READ_CHUNK];
        // Clients waiting for bytes are woken at most every WAKE_EVERY unless WAKE_BYTES
        // piled up: a receiver sends 1316-byte bursts, and waking every client for each
        // one costs a task switch and a small write per client per burst.
        let mut flush = Timer::never();
        let mut last_wake = Instant::now();
        let mut unwoken = 0usize;
        // After a read that drained the socket, the next waits READ_PAUSE (see there).
        let mut pause = Timer::never();
        let mut pausing = false;
        let ended = loop {
            let read = async {
                if pausing {
                    (&mut pause).await;
                }
                Step::Read(body.read(&mut buf).await)
            };
            let flush_due = async {
                (&mut flush).await;
                Step::Flush
            };
            let stop = async {
                stopped.as_mut().await;
                Step::Stop
            };
            match read.or(flush_due).or(stop).await {
                Step::Read(Ok(0)) => break "eof",
                Step::Read(Ok(n)) => {
                    self.push(buf.get(..n).unwrap_or_default(), events);
                    pausing = n < buf.len();
                    if pausing {
                        pause.set_after(READ_PAUSE);
                    }
                    unwoken += n;
                    if unwoken < WAKE_BYTES && last_wake.elapsed() < WAKE_EVERY {
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

    /// Appends upstream bytes and cuts off every client they overran.
    fn push(&self, data: &[u8], events: &dyn HubEvents) {
        let mut st = self.lock();
        let HubState { ring, slots, .. } = &mut *st;
        let Some(ring) = ring.as_mut() else {
            return;
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
            phase, ring, slots, ..
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
                drop(st);
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
        let idle = {
            let mut st = self.hub.lock();
            st.slots.retain(|s| s.id != self.id);
            let idle = st.slots.is_empty()
                && !st.stopping
                && matches!(st.phase, Phase::Running | Phase::Opening);
            if idle {
                st.idle_since = Some(Instant::now());
            }
            idle.then_some(st.generation)
        };
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
