//! Encoder discovery: which hardware encoders this box has, found once at start by
//! probing the render and V4L2 nodes that [`load::find_nodes`] lists under a root.
//!
//! Rules:
//! - Blocking (device opens, child processes): the daemon calls [`discover`] once at
//!   start through `smol::unblock`, never on the executor.
//! - Never fails and never panics: a node that cannot be probed is logged and left out;
//!   an empty list means "software only".
//! - The software encoder is never returned: the caller always adds it.
//! - Only character devices are probed: a node that is a regular file, a FIFO or a
//!   dangling link is skipped before anything opens it or runs ffmpeg on it.
//! - How a node is probed, first that answers:
//!   - render nodes: with cargo feature `vaapi`, libva (`hw::vaapi`): H.264 encode
//!     found → an encoder, none → not one; a libva error is inconclusive and falls
//!     through to ffmpeg. Then (and without the feature) the one-frame ffmpeg test
//!     encode of `transcode::args::probe_args` (exit 0 = it encodes), once with
//!     `h264_vaapi` and, if that works, once with `hevc_vaapi`.
//!   - video nodes: with cargo feature `v4l2`, the ioctl probe (`hw::v4l2`): M2M
//!     with H.264 on its CAPTURE queue → an encoder, anything else → not one; an ioctl
//!     error is inconclusive. Without the feature (or for inconclusive nodes) ffmpeg
//!     5.1's `h264_v4l2m2m` cannot be pointed at one node (it takes the first device in
//!     `/dev` that encodes H.264), so the test encode only says "some node encodes":
//!     it is run once, for the first video node whose V4L2 name contains `enc`
//!     (`bcm2835-codec-encode`, `s5p-mfc-enc`, `qcom-venus-encoder`, `*-vpu-enc`), and
//!     that node is offered. Nodes without a sysfs name are never offered this way:
//!     name them in the setting ([`super::spec`]).
//!   - At most one V4L2 encoder is offered whichever probe found it, for the same
//!     reason: two would be two slots on whichever single device ffmpeg picks.
//! - Bounded: at most [`MAX_PROBED`] render nodes are probed; video nodes (at most
//!   `load::MAX_NODES`) cost an ioctl or a sysfs name each and one ffmpeg run in all,
//!   so all of them are looked at (SoCs have a dozen ISP and codec nodes, the encoder
//!   not always among the first). Each ffmpeg run is killed (its whole process group,
//!   SIGKILL) after the caller's timeout and always waited for (no zombies); its stderr
//!   is drained so it never blocks, and at most [`STDERR_CAP`] bytes of it are kept.
//!   Worst case: `MAX_PROBED × 2 + 1` timeouts.
//! - libva and V4L2 calls have no timeout (a thread in a driver call cannot be
//!   interrupted): a driver that hangs in `vaInitialize` hangs discovery. The caller
//!   may stop waiting for the `smol::unblock` future and go on with software; the
//!   thread stays stuck, nothing else does.
//! - Untested on real hardware: the build machines have no GPU and no `/dev/video*`.
//!   Tests cover the software probe and the failure paths with the real ffmpeg, fake
//!   trees, `/dev/null` and fake `ffmpeg` scripts.

use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::load::{self, Node, NodeKind};
use super::spec::{EncoderSpec, backend_id};
use crate::transcode::args::{Backend, probe_args};

/// Default sessions on one VAAPI render node: Intel Quick Sync and AMD VCN encode
/// several 1080p H.264 streams in real time; 4 leaves room for the decoding and scaling
/// the same GPU does for each.
pub const VAAPI_CAPACITY: u32 = 4;

/// Default sessions on one V4L2 M2M encoder: SoC encoders (the Raspberry Pi's
/// bcm2835-codec manages 1080p30) hold about one real-time HD stream.
pub const V4L2M2M_CAPACITY: u32 = 1;

/// Default software (CPU) sessions: half the cores, at least one; libx264 veryfast at
/// 720p keeps about two cores of a small ARM box busy, an audio-only `aac` far less.
pub fn software_capacity() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores / 2).unwrap_or(1).max(1)
}

/// Render nodes probed; more GPUs than this is not a set-top box, and it bounds
/// start-up to a few timeouts.
pub const MAX_PROBED: usize = 8;

/// Bytes of a probe's stderr kept for the log line; the rest is read and dropped.
pub const STDERR_CAP: usize = 4096;

/// How often a running probe is polled for exit.
const POLL: Duration = Duration::from_millis(10);

/// How long the stderr reader may take after the child was reaped. Only a grandchild
/// that escaped the process-group kill could hold the pipe longer; then its text is
/// given up on (the reader thread ends when the pipe closes).
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// One hardware encoder that was found (or named in the setting).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    /// Stable id, the setting's syntax without the capacity:
    /// `vaapi:/dev/dri/renderD128`, `v4l2m2m:/dev/video11` ([`backend_id`]).
    pub id: String,
    /// The backend with the device path ffmpeg opens (the node under the discovery
    /// root, i.e. exactly what was probed).
    pub backend: Backend,
    /// Concurrent sessions; [`default_capacity`] unless the setting says otherwise.
    /// 0 means switched off.
    pub capacity: u32,
    /// HEVC encodes work on it too (always false for V4L2 M2M, which xg2g drives for
    /// H.264 only; false for devices named in the setting, which are trusted for H.264
    /// only).
    pub hevc: bool,
    /// The node, for load sampling (`load::read_load`); `None` when not known.
    pub node: Option<Node>,
    /// What established it: "libva", "v4l2", "ffmpeg" or "config".
    pub probed_by: &'static str,
}

impl Encoder {
    /// An encoder for a device named in the setting, trusted without probing:
    /// capacity from the spec or [`default_capacity`], `hevc` true only for software
    /// (libx265), `node` the one of `nodes` whose path under `root` is the spec's path.
    pub fn from_spec(spec: &EncoderSpec, root: &Path, nodes: &[Node]) -> Encoder {
        let path = match &spec.backend {
            Backend::Software => None,
            Backend::Vaapi { render_node: p } | Backend::V4l2m2m { device: p } => Some(p),
        };
        Encoder {
            id: spec.id(),
            backend: spec.backend.clone(),
            capacity: spec
                .capacity
                .unwrap_or_else(|| default_capacity(&spec.backend)),
            hevc: spec.backend == Backend::Software,
            node: path.and_then(|p| nodes.iter().find(|n| &under(root, &n.path) == p).cloned()),
            probed_by: "config",
        }
    }
}

/// The default capacity of a backend: [`VAAPI_CAPACITY`], [`V4L2M2M_CAPACITY`] or
/// [`software_capacity`].
pub fn default_capacity(backend: &Backend) -> u32 {
    match backend {
        Backend::Software => software_capacity(),
        Backend::Vaapi { .. } => VAAPI_CAPACITY,
        Backend::V4l2m2m { .. } => V4L2M2M_CAPACITY,
    }
}

/// Why a one-frame ffmpeg probe said no.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// ffmpeg could not be started (missing, not executable).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program run.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting for ffmpeg failed (it was killed and reaped anyway).
    #[error("cannot wait for {program}: {source}")]
    Wait {
        /// The program run.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// ffmpeg did not finish in time; it was killed and reaped.
    #[error("no result within {} ms, killed", .after.as_millis())]
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// ffmpeg ended unsuccessfully: the backend does not encode (or ffmpeg lacks it).
    #[error("test encode failed ({status}): {stderr}")]
    Failed {
        /// `exit N` or `signal N`.
        status: String,
        /// The last line ffmpeg wrote to stderr, escaped, at most 200 characters.
        stderr: String,
    },
}

/// The one-frame H.264 test encode of `probe_args(backend)`, run with `ffmpeg`.
///
/// Guarantees: stdin and stdout are null, stderr is drained (at most [`STDERR_CAP`]
/// bytes kept); the child runs in its own process group, which is SIGKILLed once
/// `timeout` has passed; the child is always waited for before this returns. `Ok`
/// means exit status 0.
pub fn probe_ffmpeg(ffmpeg: &Path, backend: &Backend, timeout: Duration) -> Result<(), ProbeError> {
    run_probe(ffmpeg, &probe_args(backend), timeout)
}

/// Encoders under `root` (see the module rules for how each node is probed), each with
/// its default capacity; `ffmpeg` is the program the test encodes run, `timeout` bounds
/// each run. Never fails; never returns the software encoder.
pub fn discover(root: &Path, ffmpeg: &Path, timeout: Duration) -> Vec<Encoder> {
    let started = Instant::now();
    let nodes = load::find_nodes(root);
    let render: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Render)
        .collect();
    let video: Vec<&Node> = nodes.iter().filter(|n| n.kind == NodeKind::Video).collect();

    let mut found: Vec<Encoder> = render
        .iter()
        .take(MAX_PROBED)
        .filter_map(|n| probe_render(root, n, ffmpeg, timeout))
        .collect();
    found.extend(probe_video(root, &video, ffmpeg, timeout));

    for e in &found {
        let node = e.node.as_ref();
        log::info!(
            "event=encoder_found id=\"{}\" backend={} capacity={} hevc={} probed_by={} driver=\"{}\" name=\"{}\"",
            e.id.escape_debug(),
            e.backend.as_str(),
            e.capacity,
            e.hevc,
            e.probed_by,
            node.and_then(|n| n.driver.as_deref()).unwrap_or(""),
            node.and_then(|n| n.name.as_deref()).unwrap_or(""),
        );
    }
    log::info!(
        "event=encoder_discovery found={} render_nodes={} video_nodes={} elapsed_ms={}",
        found.len(),
        render.len(),
        video.len(),
        started.elapsed().as_millis()
    );
    found
}

fn probe_render(root: &Path, node: &Node, ffmpeg: &Path, timeout: Duration) -> Option<Encoder> {
    let path = under(root, &node.path);
    let backend = Backend::Vaapi {
        render_node: path.clone(),
    };
    let id = backend_id(&backend);
    if !is_char_device(&path) {
        skip(&id, "not_a_character_device", "");
        return None;
    }
    let encoder = |hevc: bool, probed_by: &'static str| Encoder {
        id: id.clone(),
        backend: backend.clone(),
        capacity: VAAPI_CAPACITY,
        hevc,
        node: Some(node.clone()),
        probed_by,
    };

    #[cfg(feature = "vaapi")]
    match super::vaapi::probe(&path) {
        Ok(caps) if caps.h264 => return Some(encoder(caps.hevc, "libva")),
        Ok(caps) => {
            skip(&id, "no_h264_encode", &format!("vendor={}", caps.vendor));
            return None;
        }
        Err(e) => log::info!(
            "event=encoder_probe_inconclusive id=\"{}\" probe=libva error=\"{}\" next=ffmpeg",
            id.escape_debug(),
            e.to_string().escape_debug()
        ),
    }

    if let Err(e) = probe_ffmpeg(ffmpeg, &backend, timeout) {
        skip(&id, "test_encode_failed", &e.to_string());
        return None;
    }
    let hevc = match hevc_probe_args(&backend).map(|args| run_probe(ffmpeg, &args, timeout)) {
        Some(Ok(())) => true,
        Some(Err(e)) => {
            log::debug!(
                "event=encoder_no_hevc id=\"{}\" error=\"{}\"",
                id.escape_debug(),
                e.to_string().escape_debug()
            );
            false
        }
        None => false,
    };
    Some(encoder(hevc, "ffmpeg"))
}

/// The probe arguments with `hevc_vaapi` in place of `h264_vaapi`; `None` (no VAAPI
/// probe at all, which would be a bug) if `probe_args` no longer names `h264_vaapi`.
fn hevc_probe_args(backend: &Backend) -> Option<Vec<String>> {
    let mut args = probe_args(backend);
    let codec = args.iter_mut().find(|a| *a == "h264_vaapi")?;
    *codec = "hevc_vaapi".to_owned();
    Some(args)
}

fn probe_video(root: &Path, nodes: &[&Node], ffmpeg: &Path, timeout: Duration) -> Option<Encoder> {
    let encoder = |node: &Node, path: PathBuf, probed_by: &'static str| {
        let backend = Backend::V4l2m2m { device: path };
        Encoder {
            id: backend_id(&backend),
            backend,
            capacity: V4L2M2M_CAPACITY,
            hevc: false,
            node: Some(node.clone()),
            probed_by,
        }
    };

    // Nodes the ffmpeg fallback may offer: all of them without the v4l2 feature, only
    // those the ioctl probe could not decide with it.
    let mut candidates: Vec<&Node> = Vec::new();
    #[cfg(feature = "v4l2")]
    {
        let mut encoders: Vec<(&Node, PathBuf)> = Vec::new();
        for &node in nodes {
            let path = under(root, &node.path);
            let id = backend_id(&Backend::V4l2m2m {
                device: path.clone(),
            });
            if !is_char_device(&path) {
                skip(&id, "not_a_character_device", "");
                continue;
            }
            match super::v4l2::probe(&path) {
                Ok(caps) if caps.is_h264_encoder() => encoders.push((node, path)),
                Ok(caps) => skip(
                    &id,
                    "not_an_h264_m2m_encoder",
                    &format!("driver={} card={} m2m={}", caps.driver, caps.card, caps.m2m),
                ),
                Err(e) => {
                    log::info!(
                        "event=encoder_probe_inconclusive id=\"{}\" probe=v4l2 error=\"{}\" next=ffmpeg",
                        id.escape_debug(),
                        e.to_string().escape_debug()
                    );
                    candidates.push(node);
                }
            }
        }
        let mut encoders = encoders.into_iter();
        if let Some((node, path)) = encoders.next() {
            for (other, _) in encoders {
                log::warn!(
                    "event=encoder_ignored path=\"{}\" reason=one_v4l2m2m_encoder_only (ffmpeg's h264_v4l2m2m picks its own device; name the one to use in the setting)",
                    other.path.to_string_lossy().escape_debug()
                );
            }
            return Some(encoder(node, path, "v4l2"));
        }
    }
    #[cfg(not(feature = "v4l2"))]
    candidates.extend(nodes.iter().copied());

    let node = candidates
        .into_iter()
        .find(|n| looks_like_encoder(n) && is_char_device(&under(root, &n.path)))?;
    let path = under(root, &node.path);
    let backend = Backend::V4l2m2m {
        device: path.clone(),
    };
    match probe_ffmpeg(ffmpeg, &backend, timeout) {
        Ok(()) => Some(encoder(node, path, "ffmpeg")),
        Err(e) => {
            skip(&backend_id(&backend), "test_encode_failed", &e.to_string());
            None
        }
    }
}

/// A video node whose V4L2 name says "encoder" (case-insensitive `enc`; `codec`
/// alone does not count, decoders are named `...-decode`, `...-dec`).
fn looks_like_encoder(node: &Node) -> bool {
    node.name
        .as_deref()
        .is_some_and(|n| n.to_ascii_lowercase().contains("enc"))
}

fn skip(id: &str, reason: &str, detail: &str) {
    log::info!(
        "event=encoder_rejected id=\"{}\" reason={reason} detail=\"{}\"",
        id.escape_debug(),
        detail.escape_debug()
    );
}

fn is_char_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// `root` joined with a path written as seen from `root` (as `load` does).
fn under(root: &Path, rel: &Path) -> PathBuf {
    root.join(rel.strip_prefix("/").unwrap_or(rel))
}

fn run_probe(ffmpeg: &Path, args: &[String], timeout: Duration) -> Result<(), ProbeError> {
    let mut child = Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so the timeout kill reaches anything it started.
        .process_group(0)
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: ffmpeg.to_owned(),
            source,
        })?;

    // Drained on a thread so a chatty child never blocks on a full pipe. If the thread
    // cannot start, the pipe closes and the child's next write fails: a failed probe.
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(1);
    if let Some(mut stderr) = child.stderr.take() {
        let _ = thread::Builder::new()
            .name("ffmpeg-probe".into())
            .spawn(move || {
                let _ = tx.send(read_bounded(&mut stderr, STDERR_CAP));
            });
    }

    let status = wait_bounded(&mut child, timeout).map_err(|e| match e {
        WaitError::Timeout => ProbeError::Timeout { after: timeout },
        WaitError::Io(source) => ProbeError::Wait {
            program: ffmpeg.to_owned(),
            source,
        },
    })?;
    if status.success() {
        return Ok(());
    }
    let stderr = rx.recv_timeout(STDERR_GRACE).unwrap_or_default();
    Err(ProbeError::Failed {
        status: describe(status),
        stderr: last_line(&stderr),
    })
}

enum WaitError {
    Timeout,
    Io(io::Error),
}

/// Waits for `child` at most `timeout`; on timeout or error kills its process group.
/// Always reaps the child before returning.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<ExitStatus, WaitError> {
    // A timeout too large for an Instant (Duration::MAX) means "no deadline".
    let deadline = Instant::now().checked_add(timeout);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if deadline.is_none_or(|d| Instant::now() < d) => thread::sleep(POLL),
            Ok(None) => {
                kill_group(child);
                let _ = child.wait();
                return Err(WaitError::Timeout);
            }
            Err(e) => {
                kill_group(child);
                let _ = child.wait();
                return Err(WaitError::Io(e));
            }
        }
    }
}

/// SIGKILL to the child's process group (it leads one: `process_group(0)`), then to the
/// child itself in case the group kill could not be sent.
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group
        // id is the child's pid, which cannot have been reused: the child is not reaped
        // yet (we reap it right after this).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

/// Reads `r` to its end, keeping the first `cap` bytes.
fn read_bounded(r: &mut impl Read, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// The last non-empty line of `bytes`, escaped for one log line, at most 200 chars.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    line.chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect()
}

#[cfg(test)]
mod tests;
