//! Opening one upstream: which receiver port to ask (direct 8001 or the stream relay),
//! falling back to the other, remembering what worked, and telling a real MPEG-TS stream
//! from a receiver that answered `200 OK` but failed to tune.
//!
//! Rules: only the configured receiver host and its two stream ports are ever contacted;
//! a port whose breaker is open is skipped without a connection; the first bytes must be
//! MPEG-TS (sync byte every 188 bytes) or the attempt failed and nothing reaches a
//! client. Transport failures (connect, timeout, broken answers, 5xx) count against the
//! port's breaker; a failed tune or a 4xx does not (the port is alive).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::limit::{Breaker, BreakerConfig};
use crate::metrics::{Metrics, PortLabel};
use crate::receiver::Error as ReceiverError;
use crate::receiver::http_client::{self, BodyReader, Origin};

use super::StreamError;
use super::hub::{Source, SourceError, Started};
use super::ring::looks_like_ts;

/// How long a port that worked for a channel (other than its default) is remembered.
const DETECTION_TTL: Duration = Duration::from_secs(3600);
/// Channels remembered at most (a lineup rarely has more).
const DETECTION_MAX: usize = 4096;
/// Size of the buffer the first bytes are read into (and later reads reuse). 128 KiB
/// rather than 64: a fast upstream costs half the reads and writes (about 15 % less CPU
/// per GiB proxied, unpaced on loopback), while a live one rarely fills even 64 KiB.
pub(super) const READ_CHUNK: usize = 128 * 1024;

/// Which receiver port a stream comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// `XG2G_STREAM_PORT` (8001).
    Direct,
    /// `XG2G_RELAY_PORT` (17999), for channels in the relay whitelist.
    Relay,
}

impl PortKind {
    /// `direct` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Direct => "direct",
            PortKind::Relay => "relay",
        }
    }

    /// Where a channel goes unless detection learned otherwise.
    fn default_for(relay: bool) -> PortKind {
        if relay {
            PortKind::Relay
        } else {
            PortKind::Direct
        }
    }

    fn other(self) -> PortKind {
        match self {
            PortKind::Direct => PortKind::Relay,
            PortKind::Relay => PortKind::Direct,
        }
    }
}

/// An upstream of the receiver that delivered MPEG-TS.
pub(super) type Opened = Started<ReceiverBody>;

/// The receiver's answer body, and how long it may go unread (`XG2G_STREAM_TIMEOUT`,
/// the silence the receiver side is allowed too).
pub(super) struct ReceiverBody {
    body: BodyReader,
    timeout: Duration,
}

impl Source for ReceiverBody {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        self.body.read(buf).await.map_err(|e| SourceError {
            kind: e.kind(),
            detail: e.to_string(),
        })
    }

    fn max_pause(&self) -> Duration {
        self.timeout
    }

    fn read_pause(&self) -> Duration {
        super::hub::READ_PAUSE
    }
}

/// Why one attempt on one port failed.
struct Attempt {
    /// Metric label.
    reason: &'static str,
    /// For the log and the error.
    detail: String,
    /// Counts against the port's breaker.
    transport: bool,
}

/// The two receiver ports with their breakers, and what detection learned.
pub(super) struct Ports {
    direct: Origin,
    relay: Origin,
    authorization: Option<String>,
    timeout: Duration,
    smart: bool,
    direct_breaker: Breaker,
    relay_breaker: Breaker,
    learned: Mutex<HashMap<String, (PortKind, Instant)>>,
}

impl Ports {
    /// Ports of the receiver at `base` (`Origin::parse` form).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        base: &Origin,
        direct_port: u16,
        relay_port: u16,
        authorization: Option<String>,
        timeout: Duration,
        smart: bool,
        breaker: BreakerConfig,
        metrics: &Arc<Metrics>,
    ) -> Ports {
        Ports {
            direct: base.with_port(direct_port),
            relay: base.with_port(relay_port),
            authorization,
            timeout,
            smart,
            direct_breaker: metrics.observed_breaker("stream_direct", breaker),
            relay_breaker: metrics.observed_breaker("stream_relay", breaker),
            learned: Mutex::new(HashMap::new()),
        }
    }

    /// The breakers, for status pages.
    pub(super) fn breakers(&self) -> [&Breaker; 2] {
        [&self.direct_breaker, &self.relay_breaker]
    }

    fn breaker(&self, port: PortKind) -> &Breaker {
        match port {
            PortKind::Direct => &self.direct_breaker,
            PortKind::Relay => &self.relay_breaker,
        }
    }

    fn origin(&self, port: PortKind) -> &Origin {
        match port {
            PortKind::Direct => &self.direct,
            PortKind::Relay => &self.relay,
        }
    }

    /// The ports to try for a channel, in order.
    fn plan(&self, key: &str, relay: bool) -> impl Iterator<Item = PortKind> {
        let default = PortKind::default_for(relay);
        let first = if self.smart {
            self.learned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .filter(|(_, until)| *until > Instant::now())
                .map_or(default, |(port, _)| *port)
        } else {
            default
        };
        std::iter::once(first).chain(self.smart.then(|| first.other()))
    }

    fn learn(&self, key: &str, relay: bool, port: PortKind) {
        if !self.smart {
            return;
        }
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if port == PortKind::default_for(relay) {
            learned.remove(key);
            return;
        }
        if learned.len() >= DETECTION_MAX && !learned.contains_key(key) {
            let now = Instant::now();
            learned.retain(|_, (_, until)| *until > now);
            if learned.len() >= DETECTION_MAX {
                learned.clear();
            }
        }
        learned.insert(key.to_string(), (port, Instant::now() + DETECTION_TTL));
    }

    /// Opens the stream of `sref` (canonical `key`), trying the planned ports in turn.
    pub(super) async fn open(
        &self,
        key: &str,
        sref: &str,
        relay: bool,
        metrics: &Metrics,
    ) -> Result<Opened, StreamError> {
        let path = format!("/{}", crate::http::percent_encode(sref));
        let mut last: Option<Attempt> = None;
        let mut retry_after: Option<Duration> = None;
        for port in self.plan(key, relay) {
            let permit = match self.breaker(port).try_acquire() {
                Ok(p) => p,
                Err(rejected) => {
                    metrics.count_open_failure("breaker_open");
                    log::debug!(
                        "event=stream_port_skipped port={} reason=breaker_open",
                        port.as_str()
                    );
                    retry_after = Some(
                        retry_after.map_or(rejected.retry_after, |r| r.min(rejected.retry_after)),
                    );
                    continue;
                }
            };
            let started = Instant::now();
            match self.attempt(port, &path).await {
                Ok((body, first)) => {
                    permit.success();
                    metrics
                        .stream_open_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics
                        .stream_opens
                        .get_or_create(&PortLabel {
                            port: port.as_str().to_string(),
                        })
                        .inc();
                    self.learn(key, relay, port);
                    return Ok(Opened {
                        body: ReceiverBody {
                            body,
                            timeout: self.timeout,
                        },
                        first,
                        port: Some(port),
                    });
                }
                Err(failed) => {
                    if failed.transport {
                        permit.failure();
                    } else {
                        permit.success();
                    }
                    metrics.count_open_failure(failed.reason);
                    log::warn!(
                        "event=stream_open_failed ref=\"{sref}\" port={} reason={} detail=\"{}\"",
                        port.as_str(),
                        failed.reason,
                        failed.detail
                    );
                    last = Some(failed);
                }
            }
        }
        match (last, retry_after) {
            (Some(a), _) => Err(StreamError::OpenFailed {
                reason: a.reason,
                detail: a.detail,
            }),
            (None, Some(retry_after)) => Err(StreamError::Unavailable { retry_after }),
            (None, None) => Err(StreamError::OpenFailed {
                reason: "no_port",
                detail: "no port to try".into(),
            }),
        }
    }

    /// One GET on one port, up to and including the check of the first bytes.
    async fn attempt(&self, port: PortKind, path: &str) -> Result<(BodyReader, Vec<u8>), Attempt> {
        let response = http_client::get(
            self.origin(port),
            path,
            self.authorization.as_deref(),
            self.timeout,
        )
        .await
        .map_err(transport_failure)?;
        let status = response.head.status;
        if status != 200 {
            return Err(Attempt {
                reason: "http_status",
                detail: format!("HTTP {status}"),
                transport: status >= 500,
            });
        }
        let mut body = response.body;
        let mut first = vec![0u8; READ_CHUNK];
        let n = body.read(&mut first).await.map_err(transport_failure)?;
        if n == 0 {
            return Err(Attempt {
                reason: "empty",
                detail: "the stream ended before its first byte".into(),
                transport: false,
            });
        }
        first.truncate(n);
        if !looks_like_ts(&first) {
            return Err(Attempt {
                reason: "not_ts",
                detail: format!("not MPEG-TS: {}", printable_prefix(&first)),
                transport: false,
            });
        }
        Ok((body, first))
    }
}

fn transport_failure(e: ReceiverError) -> Attempt {
    let reason = match &e {
        ReceiverError::Timeout { .. } => "timeout",
        ReceiverError::Connect { .. } => "connect",
        ReceiverError::Malformed { .. } => "malformed",
        _ => "io",
    };
    Attempt {
        reason,
        detail: e.to_string(),
        transport: true,
    }
}

/// The first bytes of a non-TS answer as one printable line (what a failed tune wrote).
fn printable_prefix(data: &[u8]) -> String {
    data.iter()
        .take(40)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect()
}
