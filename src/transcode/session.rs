//! One transcode session: an ffmpeg child fed the channel's MPEG-TS on stdin, read back
//! as MPEG-TS from stdout, with its stderr parsed into log lines and error metrics.
//!
//! Rules:
//! - The child is spawned through the blocking pool (fork/exec must not stall the core);
//!   its three pipes are non-blocking on the core reactor, so a session costs no thread.
//! - Input is pumped into stdin from inside [`Session::read`] (one cancel-safe read or
//!   write at a time), so the session owns its input and can hand it to a restarted
//!   child; nothing is buffered beyond one 64 KiB chunk.
//! - A child is killed (SIGKILL) when its session ends, however it ends, and always
//!   reaped: `wait()` runs in the blocking pool. No zombies, no orphans while we live.
//! - A child that exits, breaks its pipe or writes nothing for `stall` while its input
//!   is still alive is restarted at most `max_restarts` times (the slot is kept); the
//!   clients see one continuous stream (a partial packet is padded to 188 bytes).
//! - stderr lines are bounded ([`MAX_LINE_BYTES`]), throttled in the log, and their error
//!   classes counted.

use std::io;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use smol::Task;
use smol::future::FutureExt as _;
use smol::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::args::{Backend, ffmpeg_args_with, hls_args, snapshot_args};
use super::ffmpeg_log::{Admit, Level, Line, LogThrottle, MAX_LINE_BYTES, classify, parse_line};
use super::profile::Profile;
use super::queue::Lease;
use crate::metrics::{BackendLabel, Metrics};

/// What a session reads its MPEG-TS from (a client of the channel's shared upstream).
pub type Input = Box<dyn AsyncRead + Unpin + Send>;

/// Bytes moved from the input to ffmpeg per write.
const PUMP_CHUNK: usize = 64 * 1024;
/// Pause between input reads: the channel's ring holds seconds, ffmpeg buffers far more
/// than 40 ms anyway, and reading every few packets would wake the daemon and ffmpeg
/// for every receiver burst (~760/s at 8 Mbit/s) instead of 25 times a second.
const PUMP_EVERY: Duration = Duration::from_millis(40);
/// MPEG-TS packet size, for padding a packet cut by a crash.
const PACKET: u64 = 188;
/// stderr lines logged per level and window.
const LOG_LINES_PER_WINDOW: u32 = 5;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Why a session could not start or ended badly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// ffmpeg could not be started at all (missing program, no permission).
    #[error("cannot start {program}: {detail}")]
    Spawn {
        /// The program tried.
        program: String,
        /// The OS error.
        detail: String,
    },
    /// ffmpeg ended or stalled and no restart was left.
    #[error("ffmpeg {how} ({detail})")]
    Failed {
        /// Metric label: `exit`, `stall`, `io`.
        how: &'static str,
        /// Exit status and the last error ffmpeg printed.
        detail: String,
    },
}

impl SessionError {
    /// The metric and log label.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Spawn { .. } => "spawn",
            SessionError::Failed { how, .. } => how,
        }
    }
}

/// What a child does.
#[derive(Clone)]
pub enum Job {
    /// Transcode the stream with `profile` on `backend`.
    Encode {
        /// The profile encoded.
        profile: Profile,
        /// Where it is encoded.
        backend: Backend,
    },
    /// Write one JPEG frame, at most `max_height` lines high, and exit.
    Snapshot {
        /// Upper bound on the height.
        max_height: u32,
    },
    /// Cut the stream (already in its profile) into HLS segments in `dir`, without
    /// re-encoding: `index.m3u8` plus `seg<N>.ts`, at most `list_size` + 1 segments kept.
    Hls {
        /// The session's own folder.
        dir: std::path::PathBuf,
        /// Target segment length.
        segment_seconds: u32,
        /// Segments listed in the playlist.
        list_size: u32,
    },
}

impl Job {
    /// The ffmpeg arguments (VAAPI decodes on the GPU when `hw_decode`).
    fn args(&self, hw_decode: bool) -> Vec<String> {
        match self {
            Job::Encode { profile, backend } => ffmpeg_args_with(profile, backend, hw_decode),
            Job::Snapshot { max_height } => snapshot_args(*max_height),
            Job::Hls {
                dir,
                segment_seconds,
                list_size,
            } => hls_args(dir, *segment_seconds, *list_size),
        }
    }

    fn backend(&self) -> &Backend {
        match self {
            Job::Encode { backend, .. } => backend,
            Job::Snapshot { .. } | Job::Hls { .. } => &Backend::Software,
        }
    }
}

/// Counts ffmpeg children spawned and not yet reaped, so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct Children(AtomicUsize);

impl Children {
    /// Children alive or not yet waited for.
    pub fn live(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Waits until every child is reaped or `limit` passed; true when none is left.
    /// Only shutdown waits, so a short poll is simpler than a notifier.
    pub async fn reaped(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.live() > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(20)).await;
        }
        self.live() == 0
    }

    fn spawned(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    fn reaped_one(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a session needs to (re)start its child.
#[derive(Clone)]
pub struct Recipe {
    /// Where its children are counted.
    pub children: Arc<Children>,
    /// The ffmpeg program.
    pub program: std::path::PathBuf,
    /// What the child does.
    pub job: Job,
    /// Restarts allowed after a crash.
    pub max_restarts: u32,
    /// Longest silence on stdout before the child counts as stalled; `None` for jobs
    /// that write files, not stdout.
    pub stall: Option<Duration>,
}

/// One running ffmpeg child with its pipes.
struct Process {
    child: Option<FfmpegChild>,
    stdin: Option<Async<ChildStdin>>,
    stdout: Async<ChildStdout>,
    /// Drains stderr into the log and `last_error`.
    stderr: Option<Task<()>>,
    last_error: Arc<Mutex<Option<String>>>,
    pid: u32,
    children: Arc<Children>,
}

impl Process {
    /// Spawns ffmpeg with `args` (blocking pool) and wraps its pipes.
    async fn spawn(
        program: &std::path::Path,
        args: Vec<String>,
        backend: &'static str,
        metrics: &Arc<Metrics>,
        children: &Arc<Children>,
    ) -> Result<Process, SessionError> {
        let program_owned = program.to_path_buf();
        let spawned = smol::unblock(move || {
            let mut cmd = FfmpegCommand::new_with_path(&program_owned);
            // `-n` up front so the wrapper adds no trailing option after our output.
            cmd.arg("-n").args(&args);
            cmd.spawn()
        })
        .await;
        let fail = |detail: String| SessionError::Spawn {
            program: program.to_string_lossy().into_owned(),
            detail,
        };
        let mut child = spawned.map_err(|e| fail(e.to_string()))?;
        children.spawned();
        let pid = child.as_inner().id();
        let pipes = (child.take_stdin(), child.take_stdout(), child.take_stderr());
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            reap_later(child, Arc::clone(children));
            return Err(fail("stdio pipes missing".into()));
        };
        let wrapped = (Async::new(stdin), Async::new(stdout), Async::new(stderr));
        let (Ok(stdin), Ok(stdout), Ok(stderr)) = wrapped else {
            reap_later(child, Arc::clone(children));
            return Err(fail("cannot make the pipes non-blocking".into()));
        };
        let last_error = Arc::new(Mutex::new(None));
        let stderr = smol::spawn(drain_stderr(
            stderr,
            pid,
            backend,
            Arc::clone(metrics),
            Arc::clone(&last_error),
        ));
        log::info!("event=transcode_child_started pid={pid} backend={backend}");
        Ok(Process {
            child: Some(child),
            stdin: Some(stdin),
            stdout,
            stderr: Some(stderr),
            last_error,
            pid,
            children: Arc::clone(children),
        })
    }

    /// Kills the child and waits for it; returns its status and last error line.
    async fn finish(mut self) -> (Option<ExitStatus>, Option<String>) {
        let status = match self.child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let status = smol::unblock(move || child.wait()).await.ok();
                self.children.reaped_one();
                status
            }
            None => None,
        };
        // stderr ends with the child; give its last lines a moment to be read.
        if let Some(stderr) = self.stderr.take() {
            stderr
                .or(async {
                    Timer::after(Duration::from_millis(200)).await;
                })
                .await;
        }
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        (status, last)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            log::debug!("event=transcode_child_killed pid={}", self.pid);
            reap_later(child, Arc::clone(&self.children));
        }
    }
}

/// Kills `child` now and reaps it in the blocking pool.
fn reap_later(mut child: FfmpegChild, children: Arc<Children>) {
    let _ = child.kill();
    smol::unblock(move || {
        let _ = child.wait();
        children.reaped_one();
    })
    .detach();
}

/// Reads stderr line by line (bounded), logs through a throttle, counts error classes.
async fn drain_stderr(
    stderr: Async<ChildStderr>,
    pid: u32,
    backend: &'static str,
    metrics: Arc<Metrics>,
    last_error: Arc<Mutex<Option<String>>>,
) {
    let mut reader = smol::io::BufReader::with_capacity(4096, stderr);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut warnings = LogThrottle::new(LOG_LINES_PER_WINDOW, LOG_WINDOW);
    let mut errors = LogThrottle::new(LOG_LINES_PER_WINDOW, LOG_WINDOW);
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        let Line::Log {
            level,
            context,
            message,
        } = parse_line(&line)
        else {
            continue;
        };
        let context = context.unwrap_or_default();
        let throttle = match level {
            Level::Error | Level::Fatal | Level::Panic => {
                metrics.transcode.count_error(backend, classify(&message));
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
                &mut errors
            }
            _ => &mut warnings,
        };
        match throttle.admit(Instant::now()) {
            Admit::No => {}
            Admit::Yes => log::warn!(
                "event=ffmpeg_log pid={pid} level={} context=\"{context}\" message=\"{message}\"",
                level.as_str()
            ),
            Admit::YesAfterSuppressing(n) => log::warn!(
                "event=ffmpeg_log pid={pid} level={} context=\"{context}\" message=\"{message}\" suppressed_before={n}",
                level.as_str()
            ),
        }
    }
    let dropped = warnings.take_suppressed() + errors.take_suppressed();
    if dropped > 0 {
        log::warn!("event=ffmpeg_log_suppressed pid={pid} lines={dropped}");
    }
}

/// Reads one line into `line`, keeping at most [`MAX_LINE_BYTES`] + 1 of it (the parser
/// marks it cut). `Ok(false)` at end of input.
async fn read_bounded_line<R: AsyncRead + Unpin>(
    reader: &mut smol::io::BufReader<R>,
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    use smol::io::AsyncBufReadExt as _;
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            Some(i) => (buf.get(..=i).unwrap_or(buf), true),
            None => (buf, false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
        line.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        let used = chunk.len();
        reader.consume(used);
        if done {
            return Ok(true);
        }
    }
}

/// Input bytes on their way into ffmpeg's stdin.
struct Pump {
    buf: Box<[u8]>,
    /// `buf[at..len]` is still to be written.
    at: usize,
    len: usize,
    /// When the input may be read again (see [`PUMP_EVERY`]); `None`: now.
    read_after: Option<Instant>,
    /// The timer for `read_after`, and the instant it was last armed for (re-arming
    /// costs a reactor round trip, so it is done once per pause).
    timer: Timer,
    armed_for: Option<Instant>,
}

/// What one pump step did.
enum PumpStep {
    /// Moved bytes.
    Moved,
    /// The input ended (EOF) or failed (e.g. it fell behind its channel): close stdin.
    InputEnded(Option<String>),
    /// ffmpeg's stdin is gone (the child died).
    OutputClosed,
}

/// A running transcode: read it like a stream.
pub struct Session {
    recipe: Recipe,
    process: Option<Process>,
    input: Option<Input>,
    pump: Pump,
    /// The encoder slot, held for the whole session (restarts included); `None` for
    /// jobs that encode nothing (HLS segmenting).
    lease: Option<Lease>,
    metrics: Arc<Metrics>,
    restarts: u32,
    /// VAAPI: decode on the GPU until that fails once.
    hw_decode: bool,
    /// Bytes handed out (to pad a packet a crash cut short).
    delivered: u64,
    /// When stdout last delivered, and the timer that checks it lazily.
    last_output: Instant,
    stall_check: Timer,
}

impl Session {
    /// Starts ffmpeg for `recipe` on the slot `lease` holds, reading `input`.
    pub async fn start(
        recipe: Recipe,
        input: Input,
        lease: Option<Lease>,
        metrics: Arc<Metrics>,
    ) -> Result<Session, SessionError> {
        let hw_decode = matches!(recipe.job.backend(), Backend::Vaapi { .. });
        let args = recipe.job.args(hw_decode);
        let backend = recipe.job.backend().as_str();
        let process = match Process::spawn(
            &recipe.program,
            args,
            backend,
            &metrics,
            &recipe.children,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                metrics.transcode.count_error(backend, e.kind());
                return Err(e);
            }
        };
        metrics
            .transcode
            .sessions
            .get_or_create(&BackendLabel {
                backend: backend.to_string(),
            })
            .inc();
        let stall = recipe.stall;
        Ok(Session {
            recipe,
            process: Some(process),
            input: Some(input),
            pump: Pump {
                buf: vec![0; PUMP_CHUNK].into_boxed_slice(),
                at: 0,
                len: 0,
                read_after: None,
                timer: Timer::never(),
                armed_for: None,
            },
            lease,
            metrics,
            restarts: 0,
            hw_decode,
            delivered: 0,
            last_output: Instant::now(),
            stall_check: stall.map_or_else(Timer::never, Timer::after),
        })
    }

    /// The process id of the current child (for logs and tests).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid)
    }

    /// The encoder slot this session holds, if it needs one.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Reads transcoded MPEG-TS into `buf`, feeding the input to ffmpeg meanwhile;
    /// `Ok(0)` once the input ended and ffmpeg flushed everything.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SessionError> {
        loop {
            let Some(process) = self.process.as_mut() else {
                return Ok(0);
            };
            let outcome = {
                let stdout = &mut process.stdout;
                let read = async { Event::Output(stdout.read(buf).await) };
                let pump = async {
                    match (self.input.as_mut(), process.stdin.as_mut()) {
                        (Some(input), Some(stdin)) => {
                            Event::Pump(pump_step(&mut self.pump, input, stdin).await)
                        }
                        // Nothing to feed: only the output matters now.
                        _ => std::future::pending().await,
                    }
                };
                let stall = async {
                    (&mut self.stall_check).await;
                    Event::StallCheck
                };
                read.or(pump).or(stall).await
            };
            match outcome {
                Event::Output(Ok(n)) if n > 0 => {
                    self.delivered += n as u64;
                    self.last_output = Instant::now();
                    return Ok(n);
                }
                Event::Output(Ok(_)) => return self.child_ended("exit", buf).await,
                Event::Output(Err(_)) => return self.child_ended("io", buf).await,
                Event::Pump(PumpStep::Moved) => {}
                Event::Pump(PumpStep::InputEnded(why)) => {
                    if let Some(why) = why {
                        log::warn!("event=transcode_input_ended error=\"{why}\"");
                    }
                    // Closing stdin makes ffmpeg flush and exit: the output then ends.
                    self.input = None;
                    process.stdin = None;
                }
                Event::Pump(PumpStep::OutputClosed) => process.stdin = None,
                Event::StallCheck => {
                    let Some(stall) = self.recipe.stall else {
                        self.stall_check = Timer::never();
                        continue;
                    };
                    let due = self.last_output + stall;
                    if Instant::now() >= due {
                        return self.child_ended("stall", buf).await;
                    }
                    self.stall_check.set_at(due);
                }
            }
        }
    }

    /// The child's output ended (`how`): reap it, then restart it if the input lives
    /// and restarts are left, else end the session (cleanly when the input ended).
    async fn child_ended(
        &mut self,
        how: &'static str,
        buf: &mut [u8],
    ) -> Result<usize, SessionError> {
        let backend = self.recipe.job.backend().as_str();
        let (status, last_error) = match self.process.take() {
            Some(p) => p.finish().await,
            None => (None, None),
        };
        let status_text = status.map_or_else(|| "unknown".to_string(), |s| s.to_string());
        // Finished by itself (its input ended, or a one-frame job is done), or ended
        // after its input did: the stream is over, not broken.
        let exited = how == "exit";
        let success = status.is_some_and(|s| s.success());
        if exited && (success || (self.input.is_none() && self.delivered > 0)) {
            log::info!("event=transcode_child_ended status=\"{status_text}\"");
            return Ok(0);
        }
        self.metrics.transcode.count_error(backend, how);
        if self.restarts >= self.recipe.max_restarts || self.input.is_none() {
            return Err(self.failure(how, &status_text, last_error));
        }
        self.restarts += 1;
        // A VAAPI child that never delivered may have failed to decode on the GPU.
        if self.delivered == 0 && self.hw_decode {
            self.hw_decode = false;
        }
        self.metrics
            .transcode
            .restarts
            .get_or_create(&BackendLabel {
                backend: backend.to_string(),
            })
            .inc();
        log::warn!(
            "event=transcode_restart how={how} status=\"{status_text}\" attempt={} of={} last_error=\"{}\"",
            self.restarts,
            self.recipe.max_restarts,
            last_error.as_deref().unwrap_or("")
        );
        let args = self.recipe.job.args(self.hw_decode);
        let process = Process::spawn(
            &self.recipe.program,
            args,
            backend,
            &self.metrics,
            &self.recipe.children,
        )
        .await?;
        self.process = Some(process);
        self.last_output = Instant::now();
        if let Some(stall) = self.recipe.stall {
            self.stall_check.set_after(stall);
        }
        // The old child may have died mid-packet: complete it so packets stay aligned.
        let partial = self.delivered % PACKET;
        if partial > 0 {
            let pad = usize::try_from(PACKET - partial)
                .unwrap_or(0)
                .min(buf.len());
            buf.get_mut(..pad).unwrap_or_default().fill(0xFF);
            self.delivered += pad as u64;
            return Ok(pad);
        }
        Box::pin(self.read(buf)).await
    }

    fn failure(&self, how: &'static str, status: &str, last_error: Option<String>) -> SessionError {
        SessionError::Failed {
            how,
            detail: match last_error {
                Some(e) => format!("status {status}: {e}"),
                None => format!("status {status}"),
            },
        }
    }
}

enum Event {
    Output(io::Result<usize>),
    Pump(PumpStep),
    StallCheck,
}

/// One cancel-safe step: write pending input bytes, or read the next chunk of input.
async fn pump_step(pump: &mut Pump, input: &mut Input, stdin: &mut Async<ChildStdin>) -> PumpStep {
    if pump.at < pump.len {
        let pending = pump.buf.get(pump.at..pump.len).unwrap_or_default();
        return match stdin.write(pending).await {
            Ok(0) | Err(_) => PumpStep::OutputClosed,
            Ok(n) => {
                pump.at += n;
                PumpStep::Moved
            }
        };
    }
    if let Some(at) = pump.read_after {
        if Instant::now() < at {
            if pump.armed_for != Some(at) {
                pump.timer.set_at(at);
                pump.armed_for = Some(at);
            }
            (&mut pump.timer).await;
        }
        pump.read_after = None;
    }
    match input.read(&mut pump.buf).await {
        Ok(0) => PumpStep::InputEnded(None),
        Ok(n) => {
            pump.at = 0;
            pump.len = n;
            // A full buffer means more is waiting: read again at once.
            if n < pump.buf.len() {
                pump.read_after = Some(Instant::now() + PUMP_EVERY);
            }
            PumpStep::Moved
        }
        Err(e) => PumpStep::InputEnded(Some(e.to_string())),
    }
}
