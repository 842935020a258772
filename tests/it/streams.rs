//! The stream proxy against the simulator's real MPEG-TS: sharing, slow clients, relay
//! port and fallback, tuner limit, hostile refs, upstream stalls, picons.

use std::time::{Duration, Instant};

use crate::common::{
    Daemon, Sim, StreamClient, TempDir, eventually, fd_count, ffprobe_streams, http, stream_path,
};

const PACKET: usize = 188;

fn assert_aligned(data: &[u8], who: &str) {
    assert!(data.len() >= PACKET, "{who}: short");
    for (i, p) in data.chunks_exact(PACKET).enumerate() {
        assert_eq!(p[0], 0x47, "{who}: packet {i} out of sync");
    }
}

#[test]
fn a_playlist_stream_decodes_with_ffprobe_and_head_opens_nothing() {
    let sim = Sim::start(&["--channels", "6", "--days", "1"]);
    let (_data, daemon) = Daemon::start_refreshed(&sim, "stream-ffprobe", &[]);
    let playlist = String::from_utf8(daemon.file("playlist.m3u")).unwrap();
    let url = playlist
        .lines()
        .find(|l| l.contains("/stream/"))
        .expect("a stream URL")
        .to_string();
    let path = &url[url.find("/stream/").unwrap()..];

    let head = http(daemon.addr, "HEAD", path, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("video/mp2t"));
    assert_eq!(
        sim.stat("stream_connections_total"),
        0,
        "HEAD opened upstream"
    );

    let local = format!("http://{}{path}", daemon.addr);
    let streams = ffprobe_streams(&local);
    let kinds: Vec<&str> = streams.iter().map(|(kind, _)| kind.as_str()).collect();
    assert!(
        kinds.contains(&"video") && kinds.contains(&"audio"),
        "{streams:?}"
    );
}

#[test]
fn clients_of_one_channel_share_one_upstream_and_get_identical_aligned_bytes() {
    let sim = Sim::start(&[
        "--channels",
        "6",
        "--days",
        "1",
        "--stream-bitrate",
        "4000000",
    ]);
    let (_data, daemon) = Daemon::start_refreshed(&sim, "stream-share", &[]);
    let path = stream_path(&sim.plain_refs()[0]);

    let mut first = StreamClient::open(daemon.addr, &path);
    assert_eq!(first.status, 200, "{}", first.head);
    assert!(first.head.contains("video/mp2t"), "{}", first.head);
    let early = first.read_n(200_000);
    let addr = daemon.addr;
    let late: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = StreamClient::open(addr, &path);
                assert_eq!(c.status, 200);
                c.read_n(300_000)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("late client"))
        .collect();
    let mut all = early;
    all.extend(first.read_n(600_000));
    assert_eq!(
        sim.stat("streams_total"),
        1,
        "one upstream for three clients"
    );
    assert_eq!(sim.stat("streams_active"), 1);

    assert_aligned(&all, "first client");
    for (i, data) in late.iter().enumerate() {
        let data = &data[..data.len() - data.len() % PACKET];
        assert_aligned(data, "late client");
        // A late joiner's bytes are a packet-aligned stretch of the first client's.
        let probe = &data[..PACKET * 8];
        let at = all
            .windows(probe.len())
            .position(|w| w == probe)
            .unwrap_or_else(|| panic!("late client {i} start not found in the first's bytes"));
        assert_eq!(at % PACKET, 0, "late client {i} joined mid-packet");
        let overlap = (all.len() - at).min(data.len());
        assert!(overlap > 100_000, "overlap {overlap}");
        assert!(
            all[at..at + overlap] == data[..overlap],
            "late client {i} differs"
        );
        // It starts at a PAT (PID 0), so it can decode at once.
        assert_eq!(data[1] & 0x1F, 0);
        assert_eq!(data[2], 0);
    }
}

#[test]
fn a_client_that_stops_reading_is_dropped_while_another_keeps_full_rate() {
    // 8 Mbit/s upstream, 256 KiB of lag allowed.
    let sim = Sim::start(&[
        "--channels",
        "4",
        "--days",
        "1",
        "--stream-bitrate",
        "8000000",
    ]);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "stream-slow",
        &[("XG2G_STREAM_CLIENT_BUFFER", "256KiB")],
    );
    let path = stream_path(&sim.plain_refs()[0]);
    let mut fast = StreamClient::open(daemon.addr, &path);
    assert_eq!(fast.status, 200);
    let mut stuck = StreamClient::open_with(daemon.addr, &path, Some(4096));
    assert_eq!(stuck.status, 200);

    let started = Instant::now();
    let got = fast.read_n(6_000_000).len();
    let rate = got as f64 / started.elapsed().as_secs_f64();
    // The sim sends 1 MB/s; were the stuck client holding the upstream back, the fast
    // one would starve once the buffers filled (a few hundred KiB). The margin is for
    // a loaded CI machine, where the sim's own pacing slips.
    assert!(rate > 600_000.0, "fast client got {rate:.0} B/s");
    eventually(Duration::from_secs(10), "slow client dropped", || {
        daemon.metric("xg2g_stream_clients_dropped_slow_total") >= 1.0
    });
    // The stuck client's connection was closed: after its buffered bytes, EOF.
    let (_, _) = stuck.read_to_end_within(Duration::from_secs(10));
    assert_eq!(sim.stat("streams_total"), 1);
    let more = fast.read_n(500_000);
    assert!(more.len() >= 500_000);
}

#[test]
fn a_lone_client_that_stops_reading_holds_the_upstream_back_then_is_cut_off() {
    let sim = Sim::start(&[
        "--channels",
        "4",
        "--days",
        "1",
        "--stream-bitrate",
        "8000000",
    ]);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "stream-lone",
        &[
            ("XG2G_STREAM_CLIENT_BUFFER", "256KiB"),
            ("XG2G_STREAM_TIMEOUT", "2s"),
        ],
    );
    let path = stream_path(&sim.plain_refs()[0]);
    let mut stuck = StreamClient::open_with(daemon.addr, &path, Some(4096));
    assert_eq!(stuck.status, 200);
    let started = Instant::now();
    eventually(Duration::from_secs(10), "lone stuck client cut off", || {
        daemon.metric("xg2g_stream_clients_dropped_slow_total") >= 1.0
    });
    let waited = started.elapsed();
    // Held back first (not cut at once at 256 KiB, 0.25 s of stream), then cut off
    // after XG2G_STREAM_TIMEOUT of holding.
    assert!(
        waited >= Duration::from_millis(1800),
        "cut off after {waited:?}"
    );
    let (_, _) = stuck.read_to_end_within(Duration::from_secs(10));
    assert_eq!(daemon.metric("xg2g_stream_clients_dropped_slow_total"), 1.0);
}

#[test]
fn relay_channels_use_the_relay_port_and_fall_back_when_it_is_down() {
    let sim = Sim::start(&["--channels", "20", "--days", "1"]);
    let relay = sim.relay_refs();
    assert_eq!(relay.len(), 2, "the sim whitelists two channels");
    let relay_port = sim.relay.port().to_string();
    {
        let (_data, daemon) =
            Daemon::start_refreshed(&sim, "stream-relay", &[("XG2G_RELAY_PORT", &relay_port)]);
        let mut c = StreamClient::open(daemon.addr, &stream_path(&relay[0]));
        assert_eq!(c.status, 200, "{}", c.head);
        assert_aligned(&c.read_n(20_000)[..18_800], "relay stream");
        assert_eq!(sim.stat("relay_streams_total"), 1);
        assert_eq!(sim.stat("streams_total"), 0);
        let st = daemon.status();
        assert_eq!(st["streams"]["upstreams"][0]["port"], "relay", "{st}");
    }

    // Relay port down (nothing listens there): detection falls back to 8001, and two
    // consecutive relay failures open its breaker.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "stream-relay-down",
        &[
            ("XG2G_RELAY_PORT", &dead_port),
            ("XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2"),
            ("XG2G_CIRCUIT_BREAKER_TIMEOUT", "60s"),
            ("XG2G_STREAM_LINGER", "0s"),
        ],
    );
    let direct_before = sim.stat("streams_total");
    for sref in &relay {
        let mut c = StreamClient::open(daemon.addr, &stream_path(sref));
        assert_eq!(c.status, 200, "fallback for {sref}: {}", c.head);
        assert_aligned(&c.read_n(2_000)[..1_880], "fallback stream");
    }
    assert_eq!(sim.stat("streams_total"), direct_before + 2);
    let st = daemon.status();
    let breakers = st["streams"]["breakers"]
        .as_array()
        .expect("breakers")
        .clone();
    let relay_breaker = breakers
        .iter()
        .find(|b| b["name"] == "stream_relay")
        .expect("relay breaker");
    assert_eq!(relay_breaker["state"], "open", "{st}");
    assert_eq!(
        daemon.metric("xg2g_circuit_breaker_state{name=\"stream_relay\"}"),
        2.0
    );
    assert!(daemon.metric("xg2g_stream_open_failures_total{reason=\"connect\"}") >= 2.0);
    // While open, the relay is skipped: the channel still plays via 8001.
    let mut c = StreamClient::open(daemon.addr, &stream_path(&relay[0]));
    assert_eq!(c.status, 200);
    c.read_n(1_000);
}

#[test]
fn the_tuner_limit_refuses_a_new_channel_and_spares_the_open_ones() {
    let sim = Sim::start(&["--channels", "10", "--days", "1"]);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "stream-limit",
        &[("XG2G_MAX_STREAMS", "2"), ("XG2G_STREAM_LINGER", "30s")],
    );
    let refs = sim.plain_refs();
    let mut a = StreamClient::open(daemon.addr, &stream_path(&refs[0]));
    let mut b = StreamClient::open(daemon.addr, &stream_path(&refs[1]));
    assert_eq!((a.status, b.status), (200, 200));
    a.read_n(5_000);
    b.read_n(5_000);

    let refused = http(daemon.addr, "GET", &stream_path(&refs[2]), &[]);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("x-hdhomerun-error"), Some("805"));
    assert_eq!(refused.json()["code"], "E018");
    assert_eq!(
        sim.stat("streams_total"),
        2,
        "no upstream for the refused one"
    );
    // The open ones carry on.
    a.read_n(20_000);
    b.read_n(20_000);

    // A second client on an open channel is not a new tuner.
    let mut a2 = StreamClient::open(daemon.addr, &stream_path(&refs[0]));
    assert_eq!(a2.status, 200);
    a2.read_n(2_000);

    // b leaves: its upstream lingers, but a new channel takes its tuner at once.
    drop(b);
    eventually(Duration::from_secs(5), "b lingering", || {
        daemon.status()["streams"]["active"] == 1
    });
    let mut c = StreamClient::open(daemon.addr, &stream_path(&refs[2]));
    assert_eq!(c.status, 200, "{}", c.head);
    c.read_n(2_000);
    eventually(Duration::from_secs(5), "lingering upstream closed", || {
        sim.stat("streams_active") == 2
    });
    a.read_n(5_000);
}

#[test]
fn zapping_back_within_the_linger_reuses_the_upstream() {
    let sim = Sim::start(&["--channels", "4", "--days", "1"]);
    let (_data, daemon) =
        Daemon::start_refreshed(&sim, "stream-linger", &[("XG2G_STREAM_LINGER", "2s")]);
    let path = stream_path(&sim.plain_refs()[0]);
    for _ in 0..3 {
        let mut c = StreamClient::open(daemon.addr, &path);
        assert_eq!(c.status, 200);
        c.read_n(2_000);
    }
    assert_eq!(sim.stat("streams_total"), 1, "zapping back re-tuned");
    eventually(
        Duration::from_secs(6),
        "upstream closed after the linger",
        || sim.stat("streams_active") == 0,
    );
}

#[test]
fn hostile_refs_are_refused_without_touching_the_receiver() {
    let sim = Sim::start(&["--channels", "4", "--days", "1"]);
    let (_data, daemon) = Daemon::start_refreshed(&sim, "stream-hostile", &[]);
    let long = format!("/stream/{}", "1:0:19:".repeat(150));
    let cases: Vec<(String, u16)> = vec![
        ("/stream/..%2F..%2Fetc%2Fpasswd".into(), 400),
        ("/stream/../../etc/passwd".into(), 400),
        ("/stream/1:0:19:283D:3FB:1:C00000:0:0:0:/x".into(), 400),
        ("/stream/1:0:19:283D:3FB:1:C00000:0:0:0:%2Fx".into(), 400),
        ("/stream/1:0:1:0:0:0:0:0:0:0:user@evil.example".into(), 400),
        ("/stream/http%3A%2F%2Fevil.example%2Fx".into(), 400),
        ("/stream/1:0:19:283D:3FB:1:C00000:0:0:0:%2E%2E".into(), 400),
        ("/stream/".into(), 400),
        (long, 400),
        ("/stream/1:0:19:1234:1:1:C00000:0:0:0:".into(), 404),
    ];
    for (path, want) in &cases {
        let r = http(daemon.addr, "GET", path, &[]);
        assert_eq!(r.status, *want, "{path}: {}", r.text());
        let code = r.json()["code"].as_str().unwrap_or_default().to_string();
        assert!(code == "E015" || code == "E016", "{path}: {code}");
    }
    let st = sim.stats();
    assert_eq!(st["stream_connections_total"], 0, "{st}");
    assert_eq!(st["relay_connections_total"], 0, "{st}");
}

#[test]
fn upstream_stall_and_eof_end_the_clients_and_leak_nothing() {
    let sim = Sim::start(&["--channels", "4", "--days", "1"]);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "stream-stall",
        &[("XG2G_STREAM_TIMEOUT", "2s"), ("XG2G_STREAM_LINGER", "0s")],
    );
    let pid = daemon.proc.pid();
    let refs = sim.plain_refs();
    // Warm up once so lazily created things (pools, timers) exist before counting.
    {
        let mut c = StreamClient::open(daemon.addr, &stream_path(&refs[0]));
        c.read_n(1_000);
    }
    eventually(Duration::from_secs(5), "warm-up upstream closed", || {
        sim.stat("streams_active") == 0
    });
    let fds_before = fd_count(pid);
    let threads_before = daemon.proc.threads();

    for fault in ["stall", "eof"] {
        sim.set_fault(fault);
        let mut clients: Vec<StreamClient> = (0..3)
            .map(|_| StreamClient::open(daemon.addr, &stream_path(&refs[1])))
            .collect();
        for c in &mut clients {
            assert_eq!(c.status, 200, "{fault}: {}", c.head);
        }
        for c in &mut clients {
            let (took, _) = c.read_to_end_within(Duration::from_secs(8));
            assert!(
                took < Duration::from_secs(7),
                "{fault}: client ended after {took:?}"
            );
        }
        sim.set_fault("none");
    }
    eventually(Duration::from_secs(5), "upstreams closed", || {
        daemon.status()["streams"]["upstreams"]
            .as_array()
            .is_some_and(|u| u.is_empty())
    });
    eventually(Duration::from_secs(5), "fds back to the start", || {
        fd_count(pid) <= fds_before
    });
    assert!(
        daemon.proc.threads() <= threads_before + 1,
        "threads {} -> {}",
        threads_before,
        daemon.proc.threads()
    );
}

#[test]
fn picons_are_fetched_once_and_served_from_the_cache() {
    let sim = Sim::start(&["--channels", "4", "--days", "1"]);
    let (_data, daemon) = Daemon::start_refreshed(&sim, "stream-picon", &[]);
    let playlist = String::from_utf8(daemon.file("playlist.m3u")).unwrap();
    let logo = playlist
        .split("tvg-logo=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a logo")
        .to_string();
    let path = &logo[logo.find("/picon/").expect("logo points at the daemon")..];
    let before = sim.stats()["requests"]["picon"].as_u64().unwrap();
    for _ in 0..3 {
        let r = http(daemon.addr, "GET", path, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/png"));
        assert!(r.body.starts_with(b"\x89PNG"));
    }
    assert_eq!(
        sim.stats()["requests"]["picon"].as_u64().unwrap(),
        before + 1
    );
    let missing = http(
        daemon.addr,
        "GET",
        "/picon/1_0_1_1_1_1_C00000_0_0_0.png",
        &[],
    );
    assert_eq!(missing.status, 404);
    let bad = http(daemon.addr, "GET", "/picon/..%2F..%2Fetc%2Fpasswd.png", &[]);
    assert_eq!(bad.status, 400);
}

#[test]
fn after_a_restart_the_saved_lineup_streams_before_any_refresh() {
    let sim = Sim::start(&["--channels", "4", "--days", "1"]);
    let data = TempDir::new("stream-restart");
    let refs = sim.plain_refs();
    {
        let daemon = Daemon::start(&sim, data.path(), &[]);
        daemon.wait_refreshed(Duration::from_secs(60));
    }
    // The receiver's API is down now; only its stream port answers.
    sim.set_fault("http500");
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_INITIAL_REFRESH", "false")]);
    let mut c = StreamClient::open(daemon.addr, &stream_path(&refs[0]));
    assert_eq!(c.status, 200, "{}", c.head);
    assert_aligned(&c.read_n(1_880)[..1_880], "stream after restart");
    let unknown = http(
        daemon.addr,
        "GET",
        "/stream/1:0:19:1234:1:1:C00000:0:0:0:",
        &[],
    );
    assert_eq!(unknown.status, 404, "the saved lineup is enforced");
}
