//! MPEG-TS for the simulated streaming port: the clip (made by ffmpeg or embedded) and a
//! body that loops it forever, paced to the clip's bitrate.
//!
//! Rules: a clip is a whole number of 188-byte packets each starting with 0x47; pacing
//! uses an async timer between chunks of 7 packets (no busy loop); a consumer that falls
//! behind is not flooded with a catch-up burst longer than `MAX_LAG`.

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

/// The cached clip's file name inside the cache folder.
const CLIP_FILE: &str = "sim-clip.ts";

/// The clip used when ffmpeg is not available: 2 s of test pattern at 160x90 with a tone.
pub(crate) static FALLBACK: &[u8] = include_bytes!("fallback.ts");

/// True when `clip` is non-empty, a whole number of 188-byte packets, each starting with
/// the sync byte 0x47.
pub fn is_valid_clip(clip: &[u8]) -> bool {
    !clip.is_empty()
        && clip.len() % PACKET == 0
        && clip.chunks(PACKET).all(|p| p.first() == Some(&0x47))
}

/// The simulator's MPEG-TS clip: the one cached in `cache_dir` if valid, else a fresh one
/// made with ffmpeg (4 s, 320x180 MPEG-2 + MP2) and cached there, else the small clip
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
        .args(["-t", "4", "-c:v", "mpeg2video", "-b:v", "300k"])
        .args(["-c:a", "mp2", "-b:a", "64k", "-f", "mpegts"])
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

/// The PCR (27 MHz units / 300, i.e. the 90 kHz base) of a packet, if it carries one.
fn packet_pcr(p: &[u8]) -> Option<u64> {
    let adaptation = (p.get(3)? >> 4) & 0b10 != 0;
    if !adaptation || *p.get(4)? < 7 || p.get(5)? & 0x10 == 0 {
        return None;
    }
    let [b0, b1, b2, b3, b4] = <[u8; 5]>::try_from(p.get(6..11)?).ok()?;
    Some(
        u64::from(b0) << 25
            | u64::from(b1) << 17
            | u64::from(b2) << 9
            | u64::from(b3) << 1
            | u64::from(b4) >> 7,
    )
}

/// The clip's bitrate in bit/s from the PCRs of its first PCR-carrying PID.
pub(crate) fn clip_bitrate(clip: &[u8]) -> u64 {
    let mut pid_seen = None;
    let mut first: Option<(usize, u64)> = None;
    let mut last: Option<(usize, u64)> = None;
    for (n, p) in clip.chunks_exact(PACKET).enumerate() {
        let Some(pcr) = packet_pcr(p) else {
            continue;
        };
        let pid = (u16::from(p.get(1).copied().unwrap_or(0) & 0x1F) << 8)
            | u16::from(p.get(2).copied().unwrap_or(0));
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

/// Counts a stream as active while it lives.
pub(crate) struct Active(Arc<Counters>);

impl Active {
    pub(crate) fn new(counters: Arc<Counters>) -> Active {
        counters.streams_active.fetch_add(1, Ordering::Relaxed);
        counters.streams_total.fetch_add(1, Ordering::Relaxed);
        Active(counters)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.streams_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The clip looped forever, one chunk of 7 packets per tick of the bitrate's clock.
pub(crate) struct TsBody {
    clip: Arc<[u8]>,
    pos: usize,
    chunk: Vec<u8>,
    sent: usize,
    timer: Timer,
    next: Instant,
    interval: Duration,
    /// The `stall` fault: after this many chunks, send nothing more (connection stays).
    stall_after: Option<u32>,
    chunks: u32,
    _active: Active,
}

impl TsBody {
    pub(crate) fn new(
        clip: Arc<[u8]>,
        bitrate: u64,
        stall_after: Option<u32>,
        active: Active,
    ) -> TsBody {
        let bits = (CHUNK_PACKETS * PACKET * 8) as u64;
        let interval = Duration::from_nanos(bits * 1_000_000_000 / bitrate.max(1));
        let now = Instant::now();
        TsBody {
            clip,
            pos: 0,
            chunk: Vec::with_capacity(CHUNK_PACKETS * PACKET),
            sent: 0,
            timer: Timer::at(now),
            next: now,
            interval,
            stall_after,
            chunks: 0,
            _active: active,
        }
    }

    /// The next 7 packets of the clip, wrapping around at its end.
    fn fill_chunk(&mut self) {
        self.chunk.clear();
        self.sent = 0;
        for _ in 0..CHUNK_PACKETS {
            let packet = match self.clip.get(self.pos..self.pos + PACKET) {
                Some(p) => p,
                None => {
                    self.pos = 0;
                    match self.clip.get(..PACKET) {
                        Some(p) => p,
                        None => return,
                    }
                }
            };
            self.chunk.extend_from_slice(packet);
            self.pos += PACKET;
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
        loop {
            if this.sent < this.chunk.len() {
                let avail = this.chunk.get(this.sent..).unwrap_or(&[]);
                let n = avail.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
                    dst.copy_from_slice(src);
                }
                this.sent += n;
                return Poll::Ready(Ok(n));
            }
            if Pin::new(&mut this.timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            if this.stall_after.is_some_and(|n| this.chunks >= n) {
                // Never fires: the body just stops producing while the connection stays.
                this.timer = Timer::never();
                return Poll::Pending;
            }
            this.fill_chunk();
            if this.chunk.is_empty() {
                return Poll::Ready(Ok(0));
            }
            this.chunks = this.chunks.saturating_add(1);
            this.next += this.interval;
            let now = Instant::now();
            if this.next + MAX_LAG < now {
                this.next = now;
            }
            this.timer.set_at(this.next);
        }
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
        assert!(is_valid_clip(&clip));
        // Second call reads the cache (or falls back again when ffmpeg is missing).
        let again = load_clip(&dir);
        assert!(is_valid_clip(&again));
        if dir.join(CLIP_FILE).exists() {
            assert_eq!(clip, again);
            assert!(clip_bitrate(&clip) > 64_000);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
