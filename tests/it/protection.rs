//! Protection: the rate limiter, the tokens, the receiver's circuit breaker and hot
//! reload, against the real daemon over real sockets.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{
    Daemon, HttpResponse, Sim, TOKEN, TempDir, eventually, http, http_from, median, read_head,
    stream_path,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Requests to the receiver's API (everything but the simulator's own control calls
/// and streams) made so far.
fn receiver_requests(sim: &Sim) -> u64 {
    let stats = sim.stats();
    stats["requests"]
        .as_object()
        .expect("requests")
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "sim" | "stream"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

fn code(r: &HttpResponse) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_string()
}

/// Audit lines of one type in the daemon's output.
fn audit_lines(daemon: &Daemon, kind: &str) -> Vec<String> {
    let needle = format!("\"type\":\"{kind}\"");
    daemon
        .proc
        .output()
        .lines()
        .filter(|l| l.contains("xg2g::audit") && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_burst_from_one_client_is_limited_while_others_are_served() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("ratelimit");
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_INITIAL_REFRESH", "false")]);
    let (two, three) = (ip("127.0.0.2"), ip("127.0.0.3"));

    let first = http_from(two, daemon.addr, "GET", "/api/v1/status", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("X-RateLimit-Limit"), Some("20"));
    assert_eq!(first.header("X-RateLimit-Remaining"), Some("19"));
    assert!(first.header("X-Request-Id").is_some());
    let mut ok = 1;
    let mut refused = None;
    for _ in 1..200 {
        let r = http_from(two, daemon.addr, "GET", "/api/v1/status", &[]);
        match r.status {
            200 => ok += 1,
            429 => refused = Some(r),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    // 20 at once, plus the 10/s that came back while the burst ran.
    let refused = refused.expect("some requests were refused");
    assert!((20..=30).contains(&ok), "{ok} of 200 admitted");
    assert_eq!(code(&refused), "E001");
    assert_eq!(refused.json()["error"], "rate limit exceeded");
    let retry: u64 = refused
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(refused.header("X-RateLimit-Limit"), Some("20"));
    assert_eq!(refused.header("X-RateLimit-Remaining"), Some("0"));
    let reset: u64 = refused
        .header("X-RateLimit-Reset")
        .and_then(|v| v.parse().ok())
        .expect("X-RateLimit-Reset");
    assert!((1..=2).contains(&reset), "Reset {reset}");

    // Another client is served; so is the limited client's other route classes.
    let other = http_from(three, daemon.addr, "GET", "/api/v1/status", &[]);
    assert_eq!(other.status, 200);
    assert_eq!(other.header("X-RateLimit-Remaining"), Some("19"));
    let files = http_from(two, daemon.addr, "GET", "/playlist.m3u", &[]);
    assert_eq!(files.status, 503, "files are not starved by API traffic");
    assert_eq!(code(&files), "E007");
    assert_eq!(files.header("X-RateLimit-Limit"), Some("20"));
    // Health checks are never limited.
    assert_eq!(
        http_from(two, daemon.addr, "GET", "/healthz", &[]).status,
        200
    );
    // The whitelisted address is never limited and gets no rate-limit headers.
    for _ in 0..60 {
        let r = http(daemon.addr, "GET", "/api/v1/status", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-RateLimit-Limit"), None);
    }
    let limited =
        daemon.metric("xg2g_http_rate_limited_total{class=\"api\",scope=\"client\"}") as u64;
    assert_eq!(limited, 200 - ok);
    // One audit line per episode (a run of refusals ended by an admitted request),
    // not one per refusal.
    let lines = audit_lines(&daemon, "ratelimit.exceeded");
    assert!(
        !lines.is_empty() && lines.len() as u64 <= ok - 19,
        "{} audit lines for {} refusals and {ok} admissions",
        lines.len(),
        200 - ok
    );
    assert!(lines[0].contains("\"actor\":\"127.0.0.2\""), "{}", lines[0]);
}

/// Sends `n` keep-alive GETs of `path`, each with its own `X-Forwarded-For` address
/// (`10.x.y.z` from `start`), reading each answer before the next.
fn spoof(addr: SocketAddr, path: &str, start: u32, n: u32) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = vec![0u8; 64 * 1024];
    for i in start..start + n {
        let spoofed = std::net::Ipv4Addr::from(0x0A00_0000 | i);
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {spoofed}\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send");
        // Read one whole answer: head, then Content-Length bytes.
        let mut have = 0;
        loop {
            let got = s.read(&mut buf[have..]).expect("read");
            assert!(got > 0, "daemon closed the connection");
            have += got;
            let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if have >= end + 4 + len {
                break;
            }
        }
    }
}

#[test]
fn spoofed_addresses_through_a_trusted_proxy_keep_memory_bounded() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("spoof");
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_INITIAL_REFRESH", "false"),
            ("XG2G_TRUSTED_PROXIES", "127.0.0.1"),
            // Nobody is exempt, and the global bucket is out of the way, so every
            // spoofed address is a client the limiter must track.
            ("XG2G_RATELIMIT_WHITELIST", " "),
            ("XG2G_RATELIMIT_GLOBAL_RPS", "1000000"),
            ("XG2G_RATELIMIT_GLOBAL_BURST", "1000000"),
            ("XG2G_RATELIMIT_MAX_CLIENTS", "4096"),
        ],
    );
    // Warm up: the first few thousand clients fill the table once.
    spoof(daemon.addr, "/playlist.m3u", 1, 5_000);
    let before = daemon.proc.rss_bytes();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let addr = daemon.addr;
            std::thread::spawn(move || spoof(addr, "/playlist.m3u", 10_000 + t * 25_000, 25_000))
        })
        .collect();
    for t in threads {
        t.join().expect("spoofing thread");
    }
    let after = daemon.proc.rss_bytes();
    assert!(
        after < before + 4 * 1024 * 1024,
        "RSS grew from {before} to {after} bytes over 100k spoofed addresses"
    );
    let st = http(
        daemon.addr,
        "GET",
        "/api/v1/status",
        &[("X-Forwarded-For", "192.0.2.1")],
    );
    let tracked = st.json()["rate_limit"]["tracked_clients"]
        .as_u64()
        .expect("tracked_clients");
    assert!(tracked <= 4096, "{tracked} clients tracked");
    // The header is believed only from the trusted proxy: 127.0.0.2 claiming to be a
    // whitelisted or fresh address is still itself.
    for _ in 0..25 {
        http_from(
            ip("127.0.0.2"),
            daemon.addr,
            "GET",
            "/api/v1/status",
            &[("X-Forwarded-For", "192.0.2.99")],
        );
    }
    let r = http_from(
        ip("127.0.0.2"),
        daemon.addr,
        "GET",
        "/api/v1/status",
        &[("X-Forwarded-For", "192.0.2.100")],
    );
    assert_eq!(
        r.status, 429,
        "spoofing from an untrusted peer must not help"
    );
}

const STREAM_TOKEN: &str = "tv-secret-0123456789";

#[test]
fn tokens_guard_every_protected_route() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("tokens");
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_STREAM_TOKEN", STREAM_TOKEN)]);
    daemon.wait_refreshed(Duration::from_secs(60));
    let sref = sim.plain_refs()[0].clone();
    let picon = sref.trim_end_matches(':').replace(':', "_");
    let stream = stream_path(&sref);
    let with = |path: &str, token: &str| {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}token={token}")
    };
    for (method, path) in [
        ("GET", "/playlist.m3u"),
        ("GET", "/xmltv.xml"),
        ("GET", "/xmltv.xml.gz"),
        ("HEAD", stream.as_str()),
        ("GET", &format!("/picon/{picon}.png")),
    ] {
        let none = http(daemon.addr, method, path, &[]);
        assert_eq!(none.status, 401, "{method} {path} without a token");
        if method == "GET" {
            assert_eq!(code(&none), "E002");
        }
        let wrong = http(daemon.addr, method, &with(path, "guess"), &[]);
        assert_eq!(wrong.status, 403, "{method} {path} with a wrong token");
        let right = http(daemon.addr, method, &with(path, STREAM_TOKEN), &[]);
        assert_eq!(
            right.status,
            200,
            "{method} {path} with the token: {}",
            right.text()
        );
    }
    // The playlist's links carry the token, since IPTV apps cannot add it.
    let playlist = http(
        daemon.addr,
        "GET",
        &with("/playlist.m3u", STREAM_TOKEN),
        &[],
    )
    .text();
    let links: Vec<&str> = playlist
        .lines()
        .filter(|l| l.contains("/stream/"))
        .collect();
    assert!(!links.is_empty(), "{playlist}");
    for link in &links {
        assert!(link.ends_with(&format!("?token={STREAM_TOKEN}")), "{link}");
    }
    assert!(
        playlist.contains(&format!(".png?token={STREAM_TOKEN}")),
        "logos"
    );

    // The API's write endpoints: header tokens only.
    for path in ["/api/v1/refresh", "/api/v1/config/reload"] {
        let none = http(daemon.addr, "POST", path, &[]);
        assert_eq!(none.status, 401, "{path}");
        assert_eq!(code(&none), "E002");
        assert_eq!(none.header("WWW-Authenticate"), Some("Bearer"));
        let wrong = http(daemon.addr, "POST", path, &[("X-API-Token", "nope")]);
        assert_eq!(wrong.status, 403, "{path}");
        assert_eq!(code(&wrong), "E003");
        let query = http(daemon.addr, "POST", &with(path, TOKEN), &[]);
        assert_eq!(
            query.status, 401,
            "{path}: the API token never comes in the URL"
        );
        let bearer = format!("Bearer {TOKEN}");
        let right = http(daemon.addr, "POST", path, &[("Authorization", &bearer)]);
        assert!(
            matches!(right.status, 200 | 202),
            "{path}: {}",
            right.text()
        );
        let right = http(daemon.addr, "POST", path, &[("X-API-Token", TOKEN)]);
        assert!(
            matches!(right.status, 200 | 202),
            "{path}: {}",
            right.text()
        );
    }
    assert!(!audit_lines(&daemon, "auth.missing").is_empty());
    assert!(!audit_lines(&daemon, "auth.failure").is_empty());
    assert!(!audit_lines(&daemon, "auth.success").is_empty());
    let wrong = daemon.metric("xg2g_auth_failures_total{reason=\"wrong\"}");
    assert!(wrong >= 7.0, "{wrong}");
    // No token ever reaches the log.
    let log = daemon.proc.output();
    assert!(!log.contains(STREAM_TOKEN), "stream token in the log");
    assert!(!log.contains(TOKEN), "API token in the log");
}

/// Median answer time of `n` requests of `path` on one keep-alive connection.
fn median_answer_seconds(addr: SocketAddr, path: &str, n: usize) -> f64 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut times = Vec::with_capacity(n);
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..n {
        let t0 = Instant::now();
        s.write_all(req.as_bytes()).expect("send");
        let (head, status, mut body) = read_head(&mut s, 8192, "daemon");
        assert_eq!(status, 403);
        times.push(t0.elapsed().as_secs_f64());
        // Read the rest of the JSON body by its length, so the next head starts clean
        // however the body was split into segments.
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        let mut rest = [0u8; 256];
        while body.len() < length {
            let n = s.read(&mut rest).expect("read body");
            assert!(n > 0, "closed inside the body");
            body.extend_from_slice(&rest[..n]);
        }
    }
    median(times)
}

#[test]
fn token_checks_take_the_same_time_however_much_of_a_guess_matches() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("timing");
    let secret = "k".repeat(64);
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_STREAM_TOKEN", &secret),
            ("XG2G_INITIAL_REFRESH", "false"),
        ],
    );
    let first_wrong = format!("/xmltv.xml?token=x{}", "k".repeat(63));
    let last_wrong = format!("/xmltv.xml?token={}x", "k".repeat(63));
    // Alternate rounds so machine noise hits both alike.
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        early.push(median_answer_seconds(daemon.addr, &first_wrong, 300));
        late.push(median_answer_seconds(daemon.addr, &last_wrong, 300));
    }
    let (early, late) = (median(early), median(late));
    let ratio = late / early;
    eprintln!("token timing: first byte wrong {early:.6}s, last byte wrong {late:.6}s");
    assert!(
        (0.75..=1.33).contains(&ratio),
        "a guess right up to its last byte takes {ratio:.2}x the time of one wrong at once"
    );
}

#[test]
fn receiver_breaker_opens_fails_fast_and_closes_again() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("breaker");
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
            ("XG2G_CIRCUIT_BREAKER_TIMEOUT", "2s"),
            ("XG2G_OWI_CACHE_TTL", "0s"),
        ],
    );
    daemon.wait_refreshed(Duration::from_secs(60));
    let breaker = |d: &Daemon| {
        d.status()["receiver"]["breaker"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(breaker(&daemon), "closed");
    sim.set_fault("http500");
    let mut refreshes = 0;
    while breaker(&daemon) != "open" {
        let answer = daemon.refresh();
        assert_eq!(answer["result"], "error", "{answer}");
        refreshes += 1;
        assert!(refreshes <= 3, "the breaker did not open");
    }
    assert_eq!(
        daemon.metric("xg2g_circuit_breaker_state{name=\"receiver\"}"),
        2.0
    );
    // While open: refreshes fail fast and not one request reaches the receiver.
    let requests = receiver_requests(&sim);
    for _ in 0..3 {
        let t0 = Instant::now();
        let answer = daemon.refresh();
        assert_eq!(answer["result"], "error");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("circuit open"), "{error}");
        assert!(t0.elapsed() < Duration::from_millis(500), "not fast");
    }
    assert_eq!(
        receiver_requests(&sim),
        requests,
        "the receiver was contacted while the breaker was open"
    );
    let ready = daemon.get("/readyz?verbose=true");
    assert_eq!(ready.status, 200, "the last good files are still served");
    assert_eq!(ready.json()["checks"]["receiver"]["ok"], false);
    assert_eq!(daemon.get("/playlist.m3u").status, 200);
    // The receiver comes back; after the open timeout one probe closes the breaker.
    sim.set_fault("none");
    std::thread::sleep(Duration::from_millis(2100));
    let answer = daemon.refresh();
    assert_eq!(answer["result"], "ok", "{answer}");
    assert_eq!(breaker(&daemon), "closed");
    assert_eq!(
        daemon.metric("xg2g_circuit_breaker_state{name=\"receiver\"}"),
        0.0
    );
}

fn write_config(path: &std::path::Path, body: &str) {
    // Write then rename, as editors do, so the watcher never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

fn api_limit(daemon: &Daemon, source: &str) -> Option<String> {
    let r = http_from(ip(source), daemon.addr, "GET", "/api/v1/status", &[]);
    r.header("X-RateLimit-Limit").map(str::to_string)
}

#[test]
fn reload_applies_valid_settings_keeps_streams_and_refuses_invalid_ones() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("reload");
    let config = data.path().join("xg2g.toml");
    write_config(&config, "epg_days = 1\n");
    let daemon = Daemon::start_with_config(
        &sim,
        &config,
        data.path(),
        &[("XG2G_CONFIG_WATCH_INTERVAL", "1s")],
    );
    daemon.wait_refreshed(Duration::from_secs(60));
    assert_eq!(api_limit(&daemon, "127.0.0.2").as_deref(), Some("20"));

    // A stream that must survive every reload below.
    let sref = sim.plain_refs()[0].clone();
    let mut stream = TcpStream::connect(daemon.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        stream_path(&sref)
    )
    .expect("send");
    let (_, status, _) = read_head(&mut stream, 8192, "daemon");
    assert_eq!(status, 200);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut read_some = |s: &mut TcpStream| {
        let mut total = 0;
        while total < 188 * 100 {
            let n = s.read(&mut chunk).expect("stream bytes");
            assert!(n > 0, "the stream ended");
            total += n;
        }
    };
    read_some(&mut stream);

    // A valid change through the API: applied at once, the listener change reported.
    write_config(
        &config,
        "epg_days = 1\nratelimit_api_burst = 3\nhttp_max_connections = 100\n",
    );
    let r = daemon.post_api("/api/v1/config/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["status"], "applied");
    assert_eq!(
        report["applied"],
        serde_json::json!(["XG2G_RATELIMIT_API_BURST"])
    );
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["XG2G_HTTP_MAX_CONNECTIONS"])
    );
    assert_eq!(api_limit(&daemon, "127.0.0.3").as_deref(), Some("3"));
    read_some(&mut stream);

    // An invalid file is refused with the key and value, and changes nothing.
    write_config(&config, "epg_days = 99\nratelimit_api_burst = 7\n");
    let r = daemon.post_api("/api/v1/config/reload");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(code(&r), "E022");
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains("epg_days = 99") && detail.contains("1 to 14"),
        "{detail}"
    );
    assert_eq!(api_limit(&daemon, "127.0.0.4").as_deref(), Some("3"));
    assert!(!audit_lines(&daemon, "config.reload.error").is_empty());
    read_some(&mut stream);

    // SIGHUP reloads (the watcher may have seen the file first; either way it applies).
    write_config(&config, "epg_days = 1\nratelimit_api_burst = 4\n");
    daemon.proc.signal("HUP");
    eventually(Duration::from_secs(10), "SIGHUP reload", || {
        api_limit(&daemon, "127.0.0.5").as_deref() == Some("4")
    });
    // The file watcher alone.
    std::thread::sleep(Duration::from_millis(1100));
    write_config(&config, "epg_days = 1\nratelimit_api_burst = 5\n");
    eventually(Duration::from_secs(10), "file-watch reload", || {
        api_limit(&daemon, "127.0.0.6").as_deref() == Some("5")
    });
    read_some(&mut stream);
    assert!(daemon.metric("xg2g_config_reloads_total{result=\"error\"}") >= 1.0);
    assert!(daemon.metric("xg2g_config_reloads_total{result=\"ok\"}") >= 3.0);
    assert!(!audit_lines(&daemon, "config.reload.ok").is_empty());
}
