//! MPEG-TS for the simulated streaming ports: the clip (made by ffmpeg or embedded) and a
//! body that loops it, paced to a bitrate or as fast as the reader takes it.
//!
//! Rules: a clip is a whole number of 188-byte packets each starting with 0x47; pacing
//! uses an async timer between chunks of 7 packets (no busy loop); a consumer that falls
//! behind is not flooded with a catch-up burst longer than `MAX_LAG`; an unpaced body
//! hands out at most 64 KiB per read.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::io::AsyncRead;

use super::clip::{self, Clip};
use super::{Counters, Error};

/// MPEG-TS packet size.
pub const PACKET: usize = 188;

/// Packets per chunk: what fits a 1316-byte UDP/RTP payload, as receivers send it.
const CHUNK_PACKETS: usize = 7;

/// Bitrate assumed when the clip carries no usable PCR.
const DEFAULT_BITRATE: u64 = 500_000;

/// How far behind schedule a slow consumer may get before the schedule is reset.
const MAX_LAG: Duration = Duration::from_secs(1);

/// How long ffmpeg may take to make the clip.
const FFMPEG_TIMEOUT: Duration = Duration::from_secs(60);

/// The cached clip's file name inside the cache folder (a new name when the recipe
/// changes, so an older cached clip is not used).
const CLIP_FILE: &str = "sim-clip-2.ts";

/// The clip used when ffmpeg is not available: 1.92 s of test pattern at 160x90 with a
/// tone, made with `run_ffmpeg`'s recipe (`-s 160x90 -t 1.92 -b:v 100k`).
pub(crate) static FALLBACK: &[u8] = include_bytes!("fallback.ts");

/// True when `clip` is non-empty, a whole number of 188-byte packets, each starting with
/// the sync byte 0x47.
pub fn is_valid_clip(clip: &[u8]) -> bool {
    !clip.is_empty()
        && clip.len() % PACKET == 0
        && clip.chunks(PACKET).all(|p| p.first() == Some(&0x47))
}

/// The simulator's MPEG-TS clip: the one cached in `cache_dir` if valid, else a fresh one
/// made with ffmpeg (3.96 s, 320x180 MPEG-2 + MP2) and cached there, else the small clip
/// embedded in the binary. Always returns a valid clip (see `is_valid_clip`). Blocking
/// (runs a process, writes a file): call it at start-up, or through `smol::unblock`.
pub fn load_clip(cache_dir: &Path) -> Vec<u8> {
    let path = cache_dir.join(CLIP_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        if is_valid_clip(&bytes) {
            return bytes;
        }
    }
    match make_clip(cache_dir, &path) {
        Ok(bytes) => {
            log::info!(
                "sim clip=generated path={} bytes={}",
                path.display(),
                bytes.len()
            );
            bytes
        }
        Err(e) => {
            log::warn!("sim clip=embedded reason=\"{e}\"");
            FALLBACK.to_vec()
        }
    }
}

fn clip_err(what: impl std::fmt::Display) -> Error {
    Error::Clip(what.to_string())
}

/// Runs ffmpeg into a temporary file next to `path`, validates, renames into place.
fn make_clip(dir: &Path, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| clip_err(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!("{CLIP_FILE}.{}.tmp", std::process::id()));
    let result = run_ffmpeg(&tmp).and_then(|()| {
        let mut bytes = std::fs::read(&tmp)
            .map_err(|e| clip_err(format!("cannot read {}: {e}", tmp.display())))?;
        bytes.truncate(bytes.len() - bytes.len() % PACKET);
        if !is_valid_clip(&bytes) {
            return Err(clip_err("ffmpeg wrote no valid MPEG-TS"));
        }
        std::fs::rename(&tmp, path)
            .map_err(|e| clip_err(format!("cannot store {}: {e}", path.display())))?;
        Ok(bytes)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn run_ffmpeg(out: &Path) -> Result<(), Error> {
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        // 3.96 s is 99 video frames and 165 MP2 frames exactly, and one audio frame per
        // PES: every stream ends where the next pass starts (see `clip`).
        .args(["-t", "3.96", "-c:v", "mpeg2video", "-b:v", "300k"])
        .args([
            "-c:a",
            "mp2",
            "-b:a",
            "64k",
            "-pes_payload_size",
            "0",
            "-f",
            "mpegts",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| clip_err(format!("cannot run ffmpeg: {e}")))?;
    let deadline = Instant::now() + FFMPEG_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(clip_err(format!("ffmpeg failed: {status}"))),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(clip_err("ffmpeg timed out"));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(clip_err(format!("waiting for ffmpeg: {e}")));
            }
        }
    }
}

/// The clip's bitrate in bit/s from the PCRs of its first PCR-carrying PID.
pub(crate) fn clip_bitrate(clip: &[u8]) -> u64 {
    let mut pid_seen = None;
    let mut first: Option<(usize, u64)> = None;
    let mut last: Option<(usize, u64)> = None;
    for (n, p) in clip.chunks_exact(PACKET).enumerate() {
        let Some(pcr) = clip::pcr_base(p) else {
            continue;
        };
        let pid = clip::pid(p);
        if *pid_seen.get_or_insert(pid) != pid {
            continue;
        }
        if first.is_none() {
            first = Some((n, pcr));
        } else {
            last = Some((n, pcr));
        }
    }
    let rate = match (first, last) {
        (Some((n0, p0)), Some((n1, p1))) if p1 > p0 && n1 > n0 => {
            ((n1 - n0) * PACKET) as u64 * 8 * 90_000 / (p1 - p0)
        }
        _ => DEFAULT_BITRATE,
    };
    rate.clamp(64_000, 50_000_000)
}

/// Which listener a stream was opened on; each has its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The streaming port (8001).
    Stream,
    /// The stream-relay port (17999).
    Relay,
}

/// Counts a stream as active (on its port) while it lives.
pub(crate) struct Active {
    counters: Arc<Counters>,
    port: Port,
}

impl Active {
    pub(crate) fn new(counters: Arc<Counters>, port: Port) -> Active {
        let (active, total) = counters.streams(port);
        active.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(1, Ordering::Relaxed);
        Active { counters, port }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.counters
            .streams(self.port)
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// How fast a `TsBody` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// As fast as the reader takes it, up to `UNPACED_READ` bytes per read.
    Unpaced,
    /// This many bit/s, one chunk of 7 packets per tick.
    Bitrate(u64),
}

/// What happens once a `TsBody`'s byte budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Nothing more is produced and the body never ends (the `stall` fault).
    Stall,
    /// The body ends (the `eof` fault).
    Eof,
}

/// Largest piece an unpaced body hands out per read: big copies, few wake-ups.
const UNPACED_READ: usize = 64 * 1024;

/// Bytes of one paced chunk.
const CHUNK_BYTES: usize = CHUNK_PACKETS * PACKET;

/// Bytes of `packets` whole packets.
pub(crate) fn packets_bytes(packets: u64) -> u64 {
    packets.saturating_mul(PACKET as u64)
}

/// Whole packets (at least one) that `bitrate` carries in `span`.
pub(crate) fn packets_in(bitrate: u64, span: Duration) -> u64 {
    let bits = u128::from(bitrate) * span.as_millis() / 1000;
    let packets = bits / (PACKET as u128 * 8);
    u64::try_from(packets).unwrap_or(u64::MAX).max(1)
}

/// The pacing clock of a paced body.
struct Pacer {
    timer: Timer,
    next: Instant,
    interval: Duration,
}

/// The clip looped forever (or until its budget is spent): seamlessly when paced, verbatim
/// when unpaced.
pub(crate) struct TsBody {
    clip: Arc<Clip>,
    /// Next byte of the clip to send; always inside the clip.
    pos: usize,
    /// Passes through the clip completed so far (how far its timestamps are shifted);
    /// stays 0 when unpaced.
    pass: u64,
    /// Bytes the pacer allows before its next tick (unused when unpaced).
    credit: usize,
    pacer: Option<Pacer>,
    /// Bytes left before `ending` applies; `None` for an endless body.
    left: Option<u64>,
    ending: Ending,
    _active: Active,
}

impl TsBody {
    /// A body looping `clip` (a valid clip, see `is_valid_clip`); with `limit`, after that
    /// many bytes (a whole number of packets) the body stalls or ends.
    pub(crate) fn new(
        clip: Arc<Clip>,
        pace: Pace,
        limit: Option<(u64, Ending)>,
        active: Active,
    ) -> TsBody {
        let pacer = match pace {
            Pace::Unpaced => None,
            Pace::Bitrate(rate) => {
                let bits = (CHUNK_BYTES * 8) as u64;
                let now = Instant::now();
                Some(Pacer {
                    timer: Timer::at(now),
                    next: now,
                    interval: Duration::from_nanos(bits * 1_000_000_000 / rate.max(1)),
                })
            }
        };
        TsBody {
            clip,
            pos: 0,
            pass: 0,
            credit: 0,
            pacer,
            left: limit.map(|(n, _)| n),
            ending: limit.map_or(Ending::Stall, |(_, e)| e),
            _active: active,
        }
    }
}

impl AsyncRead for TsBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.left == Some(0) {
            return match this.ending {
                Ending::Eof => Poll::Ready(Ok(0)),
                // No waker is registered: the body just stops producing while the
                // connection stays open, like a receiver that lost its signal.
                Ending::Stall => Poll::Pending,
            };
        }
        let mut want = buf.len().min(UNPACED_READ);
        if let Some(p) = this.pacer.as_mut() {
            if this.credit == 0 {
                if Pin::new(&mut p.timer).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.credit = CHUNK_BYTES;
                p.next += p.interval;
                let now = Instant::now();
                // A consumer that fell far behind gets no catch-up burst.
                if p.next + MAX_LAG < now {
                    p.next = now;
                }
                p.timer.set_at(p.next);
            }
            want = want.min(this.credit);
        }
        if let Some(left) = this.left {
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let n = want.min(this.clip.len() - this.pos);
        if let Some(dst) = buf.get_mut(..n) {
            this.clip.copy_pass(this.pass, this.pos, dst);
        }
        this.pos += n;
        if this.pos >= this.clip.len() {
            this.pos = 0;
            // Unpaced output is a byte source for throughput benchmarks: the clip repeated
            // verbatim, so the simulator spends no time on rewriting.
            if this.pacer.is_some() {
                this.pass += 1;
            }
        }
        if this.pacer.is_some() {
            this.credit -= n;
        }
        if let Some(left) = this.left.as_mut() {
            *left -= n as u64;
        }
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_clip_is_valid_small_and_has_a_bitrate() {
        assert!(is_valid_clip(FALLBACK));
        assert!(FALLBACK.len() < 120 * 1024);
        let rate = clip_bitrate(FALLBACK);
        assert!((100_000..2_000_000).contains(&rate), "rate {rate}");
    }

    #[test]
    fn invalid_clips_are_rejected() {
        assert!(!is_valid_clip(&[]));
        assert!(!is_valid_clip(&[0x47; 100]));
        let mut bad = FALLBACK.to_vec();
        bad[188] = 0;
        assert!(!is_valid_clip(&bad));
        assert_eq!(clip_bitrate(&[0x47; 188 * 3]), DEFAULT_BITRATE);
    }

    #[test]
    fn load_clip_caches_a_valid_clip() {
        let dir = std::env::temp_dir().join(format!("xg2g-sim-clip-{}", std::process::id()));
        let clip = load_clip(&dir);
        let cached = dir.join(CLIP_FILE).exists();
        // Second call reads the cache.
        let again = load_clip(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            cached,
            "no clip cached: ffmpeg must be installed (scripts/test.sh installs it)"
        );
        assert!(is_valid_clip(&clip));
        assert_ne!(clip, FALLBACK);
        assert_eq!(clip, again);
        assert!(clip_bitrate(&clip) > 64_000);
    }
}
