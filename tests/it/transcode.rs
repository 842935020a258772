//! Transcoding for real: the simulator's MPEG-TS through the daemon's ffmpeg children
//! (software backend), checked with ffprobe; one child per (channel, profile); children
//! reaped on leave, crash and SIGTERM; the encoder queue's refusals; snapshots.

use std::time::{Duration, Instant};

use crate::common::{
    Daemon, Sim, StreamClient, eventually, ffmpeg_children, ffprobe_streams, http, stream_path,
};

const SIM: &[&str] = &[
    "--channels",
    "6",
    "--days",
    "1",
    "--stream-bitrate",
    "3000000",
];

#[test]
fn aac_and_h264_profiles_decode_with_ffprobe() {
    let sim = Sim::start(SIM);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "tc-probe",
        &[
            ("XG2G_TRANSCODE_CPU_SLOTS", "2"),
            ("XG2G_STREAM_LINGER", "0s"),
        ],
    );
    let refs = sim.plain_refs();
    let aac = ffprobe_streams(&format!(
        "http://{}{}?profile=aac",
        daemon.addr,
        stream_path(&refs[0])
    ));
    assert!(aac.contains(&("audio".into(), "aac".into())), "{aac:?}");
    assert!(
        aac.iter().any(|(t, c)| t == "video" && c != "h264"),
        "aac copies the broadcast video: {aac:?}"
    );
    // The Jellyfin-style parameter maps to the h264 profile.
    let h264 = ffprobe_streams(&format!(
        "http://{}{}?transcode=mobile",
        daemon.addr,
        stream_path(&refs[1])
    ));
    assert!(h264.contains(&("video".into(), "h264".into())), "{h264:?}");
    assert!(h264.contains(&("audio".into(), "aac".into())), "{h264:?}");
    assert!(daemon.metric("xg2g_transcode_sessions_total{backend=\"software\"}") >= 2.0);

    let unknown = daemon.get(&format!("{}?profile=nope", stream_path(&refs[2])));
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["code"], "E023", "{}", unknown.text());
    let head = http(
        daemon.addr,
        "HEAD",
        &format!("{}?profile=h264", stream_path(&refs[3])),
        &[],
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("video/mp2t"));
    eventually(Duration::from_secs(10), "children gone", || {
        ffmpeg_children(daemon.proc.pid()).is_empty()
    });
    assert_eq!(
        sim.stat("streams_total"),
        2,
        "bad profile and HEAD opened nothing"
    );
}

#[test]
fn viewers_of_one_channel_and_profile_share_one_child_which_leaves_after_the_linger() {
    let sim = Sim::start(SIM);
    let (_data, daemon) =
        Daemon::start_refreshed(&sim, "tc-share", &[("XG2G_STREAM_LINGER", "1s")]);
    let path = format!("{}?profile=aac", stream_path(&sim.plain_refs()[0]));
    let mut first = StreamClient::open(daemon.addr, &path);
    assert_eq!(first.status, 200, "{}", first.head);
    let a = first.read_n(100_000);
    let mut second = StreamClient::open(daemon.addr, &path);
    assert_eq!(second.status, 200, "{}", second.head);
    let b = second.read_n(100_000);
    assert_eq!(a[0], 0x47);
    assert_eq!(b[0], 0x47, "a late viewer starts on a packet");
    let children = ffmpeg_children(daemon.proc.pid());
    assert_eq!(
        children.len(),
        1,
        "one ffmpeg for two viewers: {children:?}"
    );
    assert_eq!(sim.stat("streams_total"), 1, "one upstream");
    assert_eq!(
        daemon.metric("xg2g_active_streams_by_mode{mode=\"transcode\"}"),
        2.0
    );
    let st = daemon.status();
    assert_eq!(st["streams"]["transcodes"][0]["profile"], "aac", "{st}");
    assert_eq!(st["streams"]["transcodes"][0]["clients"], 2, "{st}");
    let enc = daemon.get("/api/v1/encoders").json();
    assert_eq!(enc["devices"][0]["id"], "software", "{enc}");
    assert_eq!(enc["devices"][0]["reserved"], 1, "{enc}");

    drop(first);
    drop(second);
    let left = Instant::now();
    eventually(
        Duration::from_secs(4),
        "ffmpeg gone after linger + 2 s",
        || ffmpeg_children(daemon.proc.pid()).is_empty(),
    );
    assert!(
        left.elapsed() >= Duration::from_millis(800),
        "lingered first"
    );
    eventually(Duration::from_secs(5), "upstream closed too", || {
        sim.stat("streams_active") == 0
    });
    let enc = daemon.get("/api/v1/encoders").json();
    assert_eq!(enc["devices"][0]["reserved"], 0, "slot released: {enc}");
}

#[test]
fn a_crashed_child_is_restarted_and_sigterm_leaves_no_ffmpeg() {
    let sim = Sim::start(SIM);
    let (_data, mut daemon) = Daemon::start_refreshed(&sim, "tc-crash", &[]);
    let path = format!("{}?profile=aac", stream_path(&sim.plain_refs()[0]));
    let mut viewer = StreamClient::open(daemon.addr, &path);
    assert_eq!(viewer.status, 200, "{}", viewer.head);
    viewer.read_n(50_000);
    let before = ffmpeg_children(daemon.proc.pid());
    assert_eq!(before.len(), 1, "{before:?}");
    let (victim, _) = before[0];
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // The viewer keeps receiving from the restarted child.
    viewer.pending.clear();
    viewer.read_n(200_000);
    let after = ffmpeg_children(daemon.proc.pid());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0].0, victim, "a new child");
    assert!(daemon.metric("xg2g_transcode_restarts_total{backend=\"software\"}") >= 1.0);

    let pids: Vec<u32> = after.iter().map(|(p, _)| *p).collect();
    daemon.proc.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(8);
    while daemon.proc.alive() {
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "ffmpeg {pid} left behind (or not reaped)"
        );
    }
}

#[test]
fn the_encoder_queue_refuses_when_full_or_too_slow_and_forgets_a_client_that_left() {
    let sim = Sim::start(SIM);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "tc-queue",
        &[
            ("XG2G_TRANSCODE_CPU_SLOTS", "1"),
            ("XG2G_GPU_QUEUE_SIZE", "1"),
            ("XG2G_GPU_QUEUE_MAX_WAIT", "3s"),
        ],
    );
    let refs = sim.plain_refs();
    let aac = |i: usize| format!("{}?profile=aac", stream_path(&refs[i]));
    let mut holder = StreamClient::open(daemon.addr, &aac(0));
    assert_eq!(holder.status, 200, "{}", holder.head);
    holder.read_n(10_000);

    // A waiting client that hangs up leaves the queue at once.
    let quitter = std::thread::spawn({
        let (addr, path) = (daemon.addr, aac(1));
        move || {
            let sock = std::net::TcpStream::connect(addr).expect("connect");
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            std::io::Write::write_all(&mut &sock, req.as_bytes()).expect("send");
            std::thread::sleep(Duration::from_millis(700));
            drop(sock);
        }
    });
    eventually(Duration::from_secs(3), "one waiting", || {
        daemon.metric("xg2g_gpu_queue_size{priority=\"normal\"}") == 1.0
    });
    quitter.join().unwrap();
    eventually(Duration::from_secs(3), "the quitter left the queue", || {
        daemon.metric("xg2g_gpu_queue_size{priority=\"normal\"}") == 0.0
    });

    // One waits (and times out); the next finds the queue full.
    let waiter = std::thread::spawn({
        let addr = daemon.addr;
        let path = aac(2);
        move || {
            let started = Instant::now();
            let r = http(addr, "GET", &path, &[]);
            (r, started.elapsed())
        }
    });
    eventually(Duration::from_secs(3), "the waiter queued", || {
        daemon.metric("xg2g_gpu_queue_size{priority=\"normal\"}") == 1.0
    });
    let full = daemon.get(&aac(3));
    assert_eq!(full.status, 503, "{}", full.text());
    assert_eq!(full.json()["code"], "E024", "{}", full.text());
    assert_eq!(full.json()["reason"], "full");
    let (timed_out, waited) = waiter.join().unwrap();
    assert_eq!(timed_out.status, 503, "{}", timed_out.text());
    assert_eq!(timed_out.json()["code"], "E025", "{}", timed_out.text());
    assert_eq!(timed_out.json()["reason"], "timeout");
    assert!(waited >= Duration::from_millis(2900), "waited {waited:?}");
    assert_eq!(
        daemon.metric("xg2g_gpu_queue_rejections_total{reason=\"full\"}"),
        1.0
    );
    assert_eq!(
        daemon.metric("xg2g_gpu_queue_rejections_total{reason=\"timeout\"}"),
        1.0
    );
    // The holder was never disturbed.
    holder.pending.clear();
    holder.read_n(50_000);
}

#[test]
fn a_snapshot_is_one_jpeg_frame() {
    let sim = Sim::start(SIM);
    let (data, daemon) = Daemon::start_refreshed(&sim, "tc-snap", &[]);
    let path = format!(
        "/snapshot/{}.jpg",
        &stream_path(&sim.plain_refs()[0])["/stream/".len()..]
    );
    let r = daemon.get(&path);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let file = data.path().join("snap.jpg");
    std::fs::write(&file, &r.body).unwrap();
    let probed = ffprobe_streams(&file.to_string_lossy());
    assert_eq!(probed, vec![("video".to_string(), "mjpeg".to_string())]);
    let bad = daemon.get("/snapshot/1:0:1:zz.jpg");
    assert_eq!(bad.status, 400);
    assert!(daemon.metric("xg2g_gpu_queue_wait_seconds_count{priority=\"preview\"}") >= 1.0);
}

#[test]
fn hls_serves_a_live_playlist_of_segments_and_cleans_up_when_idle() {
    let sim = Sim::start(SIM);
    let (data, daemon) = Daemon::start_refreshed(
        &sim,
        "tc-hls",
        &[
            ("XG2G_HLS_IDLE_TIMEOUT", "5s"),
            ("XG2G_HLS_MAX_SESSIONS", "1"),
            ("XG2G_STREAM_LINGER", "0s"),
        ],
    );
    let refs = sim.plain_refs();
    let tail = |i: usize| stream_path(&refs[i])["/stream/".len()..].to_string();
    let index = format!("/hls/{}/index.m3u8?profile=aac", tail(0));
    let r = daemon.get(&index);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let text = r.text();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    let segment = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a segment")
        .to_string();
    assert!(segment.starts_with("aac/seg"), "{segment}");
    let seg = daemon.get(&format!("/hls/{}/{segment}", tail(0)));
    assert_eq!(seg.status, 200);
    assert_eq!(seg.body[0], 0x47, "a segment is MPEG-TS");
    let url = format!("http://{}{index}", daemon.addr);
    let probed = ffprobe_streams(&url);
    assert!(
        probed.contains(&("audio".into(), "aac".into())),
        "{probed:?}"
    );

    // Hostile segment names and a second session beyond the limit.
    for bad in [
        "aac/index.m3u8",
        "aac/seg1.ts.tmp",
        "aac/..%2Fx",
        "nope/seg0.ts",
    ] {
        let r = daemon.get(&format!("/hls/{}/{bad}", tail(0)));
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
    }
    let second = daemon.get(&format!("/hls/{}/index.m3u8", tail(1)));
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(second.json()["code"], "E028");
    assert_eq!(
        daemon.metric("xg2g_active_streams_by_mode{mode=\"hls\"}"),
        1.0
    );

    // Nobody asks: the session ends, its ffmpeg and folder go.
    let hls_dir = data.path().join("hls");
    eventually(Duration::from_secs(12), "idle session ended", || {
        std::fs::read_dir(&hls_dir).map_or(0, |d| d.count()) == 0
            && ffmpeg_children(daemon.proc.pid()).is_empty()
    });
    assert_eq!(
        daemon.metric("xg2g_active_streams_by_mode{mode=\"hls\"}"),
        0.0
    );
    let gone = daemon.get(&format!("/hls/{}/{segment}", tail(0)));
    assert_eq!(gone.status, 404);
}

#[test]
fn configured_encoders_are_listed_as_given_with_the_cpu_last() {
    let sim = Sim::start(SIM);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "tc-encoders",
        &[(
            "XG2G_TRANSCODE_ENCODERS",
            "software=3, vaapi:/dev/dri/renderD128=2",
        )],
    );
    let enc = daemon.get("/api/v1/encoders").json();
    let devices = enc["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "{enc}");
    assert_eq!(devices[0]["id"], "vaapi:/dev/dri/renderD128", "{enc}");
    assert_eq!(devices[0]["backend"], "vaapi");
    assert_eq!(devices[0]["path"], "/dev/dri/renderD128");
    assert_eq!(devices[0]["capacity"], 2);
    assert_eq!(devices[0]["probed_by"], "config");
    assert_eq!(devices[0]["profiles"], serde_json::json!(["h264"]));
    assert_eq!(devices[1]["id"], "software");
    assert_eq!(devices[1]["capacity"], 3);
    assert_eq!(enc["queue"]["size"]["preview"], 0);
}

#[test]
fn a_missing_ffmpeg_is_a_clear_502_and_frees_the_slot() {
    let sim = Sim::start(SIM);
    let (_data, daemon) = Daemon::start_refreshed(
        &sim,
        "tc-noffmpeg",
        &[("XG2G_FFMPEG_PATH", "/nonexistent/ffmpeg")],
    );
    let path = format!("{}?profile=aac", stream_path(&sim.plain_refs()[0]));
    let r = daemon.get(&path);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["code"], "E027", "{}", r.text());
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/ffmpeg"),
        "{}",
        r.text()
    );
    assert_eq!(
        daemon.metric("xg2g_transcode_errors_total{backend=\"software\",kind=\"spawn\"}"),
        1.0
    );
    let enc = daemon.get("/api/v1/encoders").json();
    assert_eq!(enc["devices"][0]["reserved"], 0, "{enc}");
    // The plain proxy is unaffected.
    let mut plain = StreamClient::open(daemon.addr, &stream_path(&sim.plain_refs()[0]));
    assert_eq!(plain.status, 200);
    plain.read_n(10_000);
}
