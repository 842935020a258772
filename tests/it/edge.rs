//! The edge holds on a home network: idle floods, slowloris, huge heads, fd exhaustion,
//! and SIGTERM with open connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Daemon, Sim, TempDir, http, proc_status_field};

#[test]
fn idle_flood_and_slowloris_do_not_starve_a_normal_client() {
    let sim = Sim::start(&["--channels", "20", "--days", "1"]);
    let data = TempDir::new("edge");
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_HTTP_HEADER_TIMEOUT", "3s"),
            ("XG2G_HTTP_MAX_CONNECTIONS", "256"),
        ],
    );
    daemon.wait_refreshed(Duration::from_secs(60));

    // 500 connections that never send a byte, and a slowloris that trickles a head.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(daemon.addr).expect("idle connect"))
        .collect();
    let mut slow = TcpStream::connect(daemon.addr).unwrap();
    slow.write_all(b"GET /playlist.m3u HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let r = daemon.get("/playlist.m3u");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "normal client refused: {}", r.text());
    assert!(
        took < Duration::from_secs(2),
        "normal client waited {took:?}"
    );
    let threads = daemon.proc.threads();
    assert!(threads <= 16, "{threads} threads with 500 idle connections");
    let open = daemon.metric("xg2g_http_connections_open");
    assert!(open <= 256.0, "{open} open connections above the cap");

    // The slowloris is cut by the header timeout although it keeps sending.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cut_at = Instant::now();
    let mut buf = [0u8; 256];
    let mut closed = false;
    while cut_at.elapsed() < Duration::from_secs(8) {
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
        slow.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "slowloris connection still open after {:?}",
        cut_at.elapsed()
    );
    assert!(daemon.metric("xg2g_http_timeouts_total") >= 1.0);
    drop(idle);

    // A head over the limit gets 431 and a code.
    let big = "x".repeat(20_000);
    let r = http(daemon.addr, "GET", "/playlist.m3u", &[("X-Big", &big)]);
    assert_eq!(r.status, 431);
    assert_eq!(r.json()["code"], "E009");
}

#[test]
fn serving_continues_after_file_descriptors_run_out() {
    let sim = Sim::start(&["--channels", "10", "--days", "1"]);
    let data = TempDir::new("emfile");
    let daemon = Daemon::start_with(&sim.base(), data.path(), &[], Some(40));
    daemon.wait_refreshed(Duration::from_secs(60));
    // Far more connections than the daemon has descriptors for.
    let burst: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(daemon.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(burst);
    std::thread::sleep(Duration::from_millis(300));
    let mut ok = false;
    for _ in 0..40 {
        if let Ok(r) = std::panic::catch_unwind(|| daemon.get("/playlist.m3u")) {
            if r.status == 200 {
                ok = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ok,
        "daemon stopped serving after fd exhaustion:\n{}",
        daemon.proc.output()
    );
    assert!(
        daemon.metric("xg2g_http_accept_errors_total") >= 1.0,
        "the burst should have exhausted descriptors"
    );
}

#[test]
fn sigterm_exits_0_quickly_with_open_connections() {
    let sim = Sim::start(&["--channels", "10", "--days", "1"]);
    let data = TempDir::new("term");
    let mut daemon = Daemon::start(&sim, data.path(), &[]);
    daemon.wait_refreshed(Duration::from_secs(60));
    let _idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(daemon.addr).unwrap())
        .collect();
    let pid = daemon.proc.pid();
    assert!(proc_status_field(pid, "Threads:") > 0);
    let started = Instant::now();
    daemon.proc.signal("TERM");
    let status = loop {
        if let Some(status) = daemon.proc.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(daemon.proc.output().contains("event=shutdown"));
}
