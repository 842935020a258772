//! Benchmark (a program, not a timed test) of what the daemon adds to a transcode: the
//! CPU of one `aac` stream through xg2g (daemon + its ffmpeg child together) against the
//! same ffmpeg command run directly on the simulated receiver's stream URL, in the same
//! run. Run with `cargo bench --bench transcode`; figures go into the README.
//!
//! Rules: both sides read the same paced channel (a broadcast-like 8 Mbit/s) for the
//! same wall time, so CPU seconds per stream second compare like for like; rounds
//! alternate (reference, xg2g) so drift on this noisy 2-core machine hits both; the
//! figures are medians. A measurement that cannot be trusted (no ffmpeg child, a short
//! stream, a non-200 answer) panics with the reason instead of being reported.

#[path = "../tests/it/common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Daemon, Sim, StreamClient, TempDir, clock_ticks_per_second, cpu_seconds, ffmpeg_children,
    median, stream_path,
};
use xg2g::transcode::args::{Backend, ffmpeg_args};
use xg2g::transcode::profile::Profiles;

/// Broadcast-like rate of the simulated channel.
const BITRATE: &str = "8000000";
/// Wall time each side streams per round.
const WINDOW: Duration = Duration::from_secs(20);
const ROUNDS: usize = 5;

/// CPU seconds per stream second of ffmpeg reading the receiver directly.
fn reference(url: &str, ticks: f64) -> f64 {
    let profiles = Profiles::default();
    let aac = profiles.get("aac").expect("built-in aac");
    let args: Vec<String> = ffmpeg_args(aac, &Backend::Software)
        .into_iter()
        .map(|a| if a == "pipe:0" { url.to_string() } else { a })
        .collect();
    let mut child = Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ffmpeg (apt-get install ffmpeg)");
    std::thread::sleep(WINDOW);
    let cpu = cpu_seconds(child.id(), ticks);
    let _ = child.kill();
    let _ = child.wait();
    cpu / WINDOW.as_secs_f64()
}

/// CPU seconds per stream second of the daemon plus its ffmpeg child, for one viewer of
/// `path` (read and discarded by this process, which is not counted).
fn through_xg2g(daemon: &Daemon, path: &str, ticks: f64) -> (f64, u64) {
    let pid = daemon.proc.pid();
    let before = cpu_seconds(pid, ticks);
    let mut viewer = StreamClient::open(daemon.addr, path);
    assert_eq!(viewer.status, 200, "{}", viewer.head);
    let started = Instant::now();
    let mut bytes = viewer.pending.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut child = None;
    while started.elapsed() < WINDOW {
        let n = std::io::Read::read(&mut viewer.sock, &mut buf).expect("read the stream");
        assert!(n > 0, "stream ended after {bytes} bytes");
        bytes += n as u64;
        if child.is_none() {
            child = ffmpeg_children(pid).first().map(|(p, _)| *p);
        }
    }
    let child = child.expect("no ffmpeg child of the daemon");
    let cpu = cpu_seconds(pid, ticks) - before + cpu_seconds(child, ticks);
    drop(viewer);
    // The child goes after the linger (0 s here); wait so rounds do not overlap.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ffmpeg_children(pid).is_empty() {
        assert!(Instant::now() < deadline, "ffmpeg child stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    (cpu / started.elapsed().as_secs_f64(), bytes)
}

fn main() {
    let ticks = clock_ticks_per_second();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# xg2g transcode overhead benchmark (nproc {nproc})");
    let version = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .expect("ffmpeg must be installed (apt-get install ffmpeg)");
    println!("{version}");
    let sim = Sim::start(&[
        "--channels",
        "4",
        "--days",
        "1",
        "--stream-bitrate",
        BITRATE,
    ]);
    let data = TempDir::new("bench-transcode");
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_STREAM_LINGER", "0s")]);
    daemon.wait_refreshed(Duration::from_secs(60));
    let sref = sim.plain_refs()[0].clone();
    let direct = format!("http://{}/{}", sim.stream, sref);
    let path = format!("{}?profile=aac", stream_path(&sref));

    let (mut refs, mut ours, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let r = reference(&direct, ticks);
        let (x, bytes) = through_xg2g(&daemon, &path, ticks);
        let rate = bytes as f64 * 8.0 / WINDOW.as_secs_f64() / 1e6;
        println!(
            "round {round}: ffmpeg direct {r:.4} CPU s/s, xg2g + ffmpeg {x:.4} CPU s/s ({:+.1} %), output {rate:.2} Mbit/s",
            (x / r - 1.0) * 100.0
        );
        refs.push(r);
        ours.push(x);
        rates.push(rate);
    }
    let (r, x) = (median(refs), median(ours));
    println!(
        "\n## Result (medians of {ROUNDS} rounds of {} s, channel at {} Mbit/s)\n",
        WINDOW.as_secs(),
        BITRATE.parse::<f64>().unwrap_or(0.0) / 1e6
    );
    println!("| figure | value |\n| --- | --- |");
    println!(
        "| ffmpeg alone on the receiver URL: CPU | {:.1} % of one core |",
        r * 100.0
    );
    println!(
        "| xg2g + its ffmpeg: CPU | {:.1} % of one core |",
        x * 100.0
    );
    println!(
        "| overhead | **{:+.1} %** (target ≤ 5 %) |",
        (x / r - 1.0) * 100.0
    );
    println!("| aac output rate | {:.2} Mbit/s |", median(rates));
}
