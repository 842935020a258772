//! Receiver faults during a refresh: the daemon stays up, keeps the last good files
//! byte-identical, says what failed, stays small, and recovers.

use std::time::Duration;

use crate::common::{Daemon, Sim, TempDir};

const FILES: [&str; 3] = ["playlist.m3u", "xmltv.xml", "xmltv.xml.gz"];

fn snapshot(daemon: &Daemon) -> Vec<Vec<u8>> {
    FILES.iter().map(|f| daemon.file(f)).collect()
}

#[test]
fn faults_keep_the_last_good_files_and_recover() {
    let sim = Sim::start(&["--channels", "40", "--days", "2"]);
    let data = TempDir::new("faults");
    let mut daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_OWI_TIMEOUT_MS", "1500"),
            ("XG2G_OWI_MAX_BODY_BYTES", "8MiB"),
            // Every fault must reach every endpoint: no cached lists, and no breaker
            // stopping the requests (protection.rs tests the breaker).
            ("XG2G_OWI_CACHE_TTL", "0s"),
            ("XG2G_CIRCUIT_BREAKER_ENABLED", "false"),
        ],
    );
    daemon.wait_refreshed(Duration::from_secs(60));
    let rss_before = daemon.proc.rss_bytes();

    for (fault, words) in [
        ("http500", "500"),
        ("malformed", "malformed"),
        ("endless", "larger than"),
        ("slow", "timed out"),
    ] {
        let good = snapshot(&daemon);
        sim.set_fault(fault);
        let answer = daemon.refresh();
        assert_eq!(answer["result"], "error", "{fault}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains(words),
            "{fault}: error {error:?} should mention {words:?}"
        );
        assert!(daemon.proc.alive(), "daemon died on {fault}");
        assert!(
            snapshot(&daemon) == good,
            "{fault} changed the served files"
        );
        let served = daemon.get("/playlist.m3u");
        assert_eq!(served.status, 200);
        assert!(
            served.body == good[0],
            "served playlist differs from the file"
        );
        let st = daemon.status();
        assert_eq!(st["refresh"]["last_result"], "error");
        assert_eq!(st["receiver"]["reachable"], false);
        // Ready stays 200 (last good files are served), verbose shows the receiver failing.
        let ready = daemon.get("/readyz?verbose=true");
        assert_eq!(ready.status, 200, "{}", ready.text());
        assert_eq!(ready.json()["checks"]["receiver"]["ok"], false);
        // Bounded by the body cap (8 MiB here; parsed values cost a few times their JSON).
        let rss = daemon.proc.rss_bytes();
        assert!(
            rss < rss_before + 4 * 8 * 1024 * 1024,
            "{fault}: RSS grew from {rss_before} to {rss}"
        );
        sim.set_fault("none");
        let answer = daemon.refresh();
        assert_eq!(answer["result"], "ok", "recovery after {fault}: {answer}");
    }
}

#[test]
fn receiver_down_then_back() {
    let sim = Sim::start(&["--channels", "20", "--days", "1"]);
    let api = sim.api.to_string();
    let data = TempDir::new("down");
    let daemon = Daemon::start(&sim, data.path(), &[]);
    daemon.wait_refreshed(Duration::from_secs(60));
    let good = snapshot(&daemon);
    drop(sim); // the receiver is switched off
    let answer = daemon.refresh();
    assert_eq!(answer["result"], "error");
    assert!(
        answer["error"].as_str().unwrap().contains("connect"),
        "{answer}"
    );
    assert!(
        snapshot(&daemon) == good,
        "a failed refresh changed the files"
    );
    assert_eq!(daemon.get("/readyz").status, 200);
    // Back on the same address: the next refresh recovers.
    let _sim = Sim::start_on(&["--channels", "20", "--days", "1"], &api);
    let answer = daemon.refresh();
    assert_eq!(answer["result"], "ok", "{answer}");
}
