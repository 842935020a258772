//! kill -9 in the middle of writing a large guide never leaves a torn file.

use std::time::Duration;

use crate::common::{Daemon, Sim, TempDir, run_tool};

#[test]
fn kill_9_during_refresh_never_tears_files() {
    let sim = Sim::start(&["--channels", "300", "--days", "7", "--events-per-day", "30"]);
    let data = TempDir::new("crash");
    // A first complete set of files.
    {
        let daemon = Daemon::start(&sim, data.path(), &[]);
        daemon.wait_refreshed(Duration::from_secs(120));
    }
    let delays_ms = [150u64, 400, 700, 1000, 1500, 250];
    for delay in delays_ms {
        let daemon = Daemon::start(&sim, data.path(), &[]);
        std::thread::sleep(Duration::from_millis(delay));
        daemon.proc.signal("KILL");
        drop(daemon);
        check_files_whole(&data);
    }
    // And a restart cleans the temp files a killed writer left behind.
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_INITIAL_REFRESH", "false")]);
    let leftovers: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "stale temp files: {leftovers:?}");
    assert_eq!(daemon.get("/playlist.m3u").status, 200);
}

fn check_files_whole(data: &TempDir) {
    let playlist = std::fs::read_to_string(data.path().join("playlist.m3u")).expect("playlist");
    assert!(playlist.starts_with("#EXTM3U"));
    assert!(playlist.ends_with('\n'));
    assert_eq!(playlist.lines().count(), 1 + 2 * 300, "whole playlist");
    let xml = data.path().join("xmltv.xml");
    let (ok, out) = run_tool(
        "xmllint",
        &["--noout", "--nonet", xml.to_str().unwrap()],
        "libxml2-utils",
    );
    assert!(ok, "torn guide: {out}");
    let gz = std::fs::read(data.path().join("xmltv.xml.gz")).unwrap();
    let (ok, out) = run_tool(
        "sh",
        &[
            "-c",
            &format!("gzip -t {}", data.path().join("xmltv.xml.gz").display()),
        ],
        "gzip",
    );
    assert!(ok && !gz.is_empty(), "torn gzip: {out}");
}
