//! Benchmark (a program, not a timed test): guide refresh of 1000 channels × 7 days × 30
//! events/day from the simulator, idle memory after the demo's first refresh, and the
//! binary size. Run with `cargo bench --bench refresh`; figures go into the README.
//!
//! The reference measured in the same run is the transfer floor: a plain client reading
//! exactly the answers the daemon needs (bouquets, services, bouquet EPGs) and throwing
//! them away. The daemon's refresh does that plus parsing, cleaning and writing three
//! files, so `refresh / floor` says what our work costs on top of moving the bytes.

#[path = "../tests/it/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sim, TempDir, clock_ticks_per_second, cpu_seconds, http, median};

const RUNS: usize = 5;

/// Reads what a refresh reads, discarding it: the transfer floor.
fn transfer_floor(sim: &Sim) -> (f64, u64) {
    let started = Instant::now();
    let mut bytes = 0u64;
    let bouquets = http(sim.api, "GET", "/api/bouquets", &[]);
    bytes += bouquets.body.len() as u64;
    let list: serde_json::Value = bouquets.json();
    for b in list["bouquets"].as_array().unwrap() {
        let sref = b[0].as_str().unwrap();
        let enc = xg2g::http::percent_encode(sref);
        let services = http(sim.api, "GET", &format!("/api/getservices?sRef={enc}"), &[]);
        bytes += services.body.len() as u64;
        let epg = http(
            sim.api,
            "GET",
            &format!("/api/epgbouquet?bRef={enc}&time=0&endTime=10080"),
            &[],
        );
        bytes += epg.body.len() as u64;
    }
    (started.elapsed().as_secs_f64(), bytes)
}

fn main() {
    let ticks = clock_ticks_per_second();
    println!("# xg2g refresh benchmark ({RUNS} runs each, medians)");

    // 1. Large guide.
    let sim = Sim::start(&[
        "--channels",
        "1000",
        "--days",
        "7",
        "--events-per-day",
        "30",
    ]);
    let data = TempDir::new("bench");
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_INITIAL_REFRESH", "false")]);
    let mut floor = Vec::new();
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut floor_bytes = 0;
    let mut programmes = 0;
    for _ in 0..RUNS {
        let (secs, bytes) = transfer_floor(&sim);
        floor.push(secs);
        floor_bytes = bytes;
        let cpu_before = cpu_seconds(daemon.proc.pid(), ticks);
        let started = Instant::now();
        let answer = daemon.refresh();
        walls.push(started.elapsed().as_secs_f64());
        cpus.push(cpu_seconds(daemon.proc.pid(), ticks) - cpu_before);
        assert_eq!(answer["result"], "ok", "{answer}");
        programmes = answer["programmes"].as_u64().unwrap();
    }
    let peak_rss = daemon.proc.peak_rss_bytes();
    let (wall, cpu, floor) = (median(walls), median(cpus), median(floor));
    let xml_bytes = std::fs::metadata(data.path().join("xmltv.xml"))
        .unwrap()
        .len();
    let per_100k = cpu / (programmes as f64 / 100_000.0);
    println!("programmes:                 {programmes}");
    println!(
        "receiver answers:           {:.1} MiB; xmltv.xml {:.1} MiB",
        floor_bytes as f64 / 1048576.0,
        xml_bytes as f64 / 1048576.0
    );
    println!("transfer floor (reference): {floor:.2} s");
    println!(
        "refresh wall:               {wall:.2} s  ({:.2}x the floor)",
        wall / floor
    );
    println!(
        "refresh CPU (daemon):       {cpu:.2} s  = {per_100k:.2} s per 100k programmes (target < 1.00)"
    );
    println!(
        "peak RSS (daemon):          {:.1} MiB (target < 24)",
        peak_rss as f64 / 1048576.0
    );
    drop(daemon);
    drop(sim);

    // 2. Idle memory after the default demo's first refresh.
    let sim = Sim::start(&[]);
    let data = TempDir::new("bench-idle");
    let daemon = Daemon::start(&sim, data.path(), &[]);
    daemon.wait_refreshed(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let idle = daemon.proc.rss_bytes();
    println!(
        "idle RSS after first refresh (40 channels): {:.2} MiB (target <= 6)",
        idle as f64 / 1048576.0
    );
    println!("threads when idle:          {}", daemon.proc.threads());

    // 3. Binary size (this bench builds the release profile).
    let size = std::fs::metadata(common::BIN).map(|m| m.len()).unwrap_or(0);
    println!(
        "binary (x86_64, stripped):  {size} bytes = {:.2} MiB (target <= 3)",
        size as f64 / 1048576.0
    );
}
