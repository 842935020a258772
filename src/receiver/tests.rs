//! End-to-end tests of the client against tiny HTTP servers on 127.0.0.1 that serve
//! canned (or generated) bytes, including broken and slow ones.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::limit::{Breaker, BreakerConfig, BreakerState};

/// A server thread answering each connection with `handler(connection index, request
/// head, stream)`; every request head is recorded.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start<H>(handler: H) -> Server
    where
        H: Fn(usize, &str, &mut TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = requests.clone();
        thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let handler = handler.clone();
                let log = log.clone();
                thread::spawn(move || {
                    let head = read_request_head(&mut stream);
                    log.lock().unwrap().push(head.clone());
                    handler(i, &head, &mut stream);
                });
            }
        });
        Server { addr, requests }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The request target of a recorded head, e.g. `/api/about`.
fn target(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or_default()
}

/// A query parameter of a request head, percent-decoded.
fn param(head: &str, key: &str) -> Option<String> {
    let query = target(head).split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| crate::http::percent_decode(v))
    })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(body);
}

/// An empty 500 answer (a box whose web interface is failing).
fn server_error(stream: &mut TcpStream) {
    respond(
        stream,
        "500 Internal Server Error",
        &[("Content-Length", "0")],
        b"",
    );
}

fn json_ok(stream: &mut TcpStream, body: &str) {
    let len = body.len().to_string();
    respond(
        stream,
        "200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
        ],
        body.as_bytes(),
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Chunked framing with `size`-byte chunks, a chunk extension and a trailer.
fn chunked(data: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(size) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    out
}

/// What the observer saw, owned.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Request(RequestOutcome),
    Cache(&'static str, bool),
}

type Outcomes = Arc<Mutex<Vec<Seen>>>;

fn recording_observer() -> (Observer, Outcomes) {
    let outcomes: Outcomes = Arc::default();
    let log = outcomes.clone();
    let observer: Observer = Arc::new(move |o: &Observation<'_>| {
        let seen = match *o {
            Observation::Request(r) => Seen::Request(r.clone()),
            Observation::Cache { endpoint, hit } => Seen::Cache(endpoint, hit),
        };
        log.lock().unwrap().push(seen);
    });
    (observer, outcomes)
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Client knobs beyond the basic ones; the defaults keep pacing, breaker and cache out
/// of the way of tests about other things.
#[derive(Clone, Copy)]
struct Setup {
    timeout_ms: u64,
    retries: u32,
    max: u64,
    rate: u32,
    burst: u32,
    cache_ttl: Duration,
    breaker: BreakerConfig,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            timeout_ms: 2000,
            retries: 0,
            max: 1 << 20,
            rate: 10_000,
            burst: 10_000,
            cache_ttl: Duration::ZERO,
            breaker: BreakerConfig {
                enabled: true,
                failure_threshold: 1000,
                open_timeout: Duration::from_secs(30),
            },
        }
    }
}

fn build(base: &str, setup: Setup) -> (Receiver, Outcomes, Arc<Breaker>) {
    let (observer, outcomes) = recording_observer();
    let cfg = ReceiverConfig {
        base: base.to_owned(),
        user: None,
        pass: None,
        timeout: Duration::from_millis(setup.timeout_ms),
        retries: setup.retries,
        max_body_bytes: setup.max,
        max_requests_per_second: nz(setup.rate),
        cache_ttl: setup.cache_ttl,
    };
    let breaker = Arc::new(Breaker::new("receiver", setup.breaker));
    let gate = Gate::with_burst(breaker.clone(), nz(setup.rate), nz(setup.burst));
    let rx = Receiver::new(cfg, observer, Arc::new(gate)).unwrap();
    (rx, outcomes, breaker)
}

/// A gate that keeps out of the way: no pacing to speak of, a lenient breaker.
fn test_gate() -> Arc<Gate> {
    let breaker = Arc::new(Breaker::new("receiver", Setup::default().breaker));
    Arc::new(Gate::new(breaker, nz(10_000)))
}

fn client_with(base: &str, timeout_ms: u64, retries: u32, max: u64) -> (Receiver, Outcomes) {
    let (rx, outcomes, _) = build(
        base,
        Setup {
            timeout_ms,
            retries,
            max,
            ..Setup::default()
        },
    );
    (rx, outcomes)
}

fn client(server: &Server) -> (Receiver, Outcomes) {
    client_with(&server.base(), 2000, 0, 1 << 20)
}

/// The request outcomes seen, in order.
fn requests(outcomes: &Outcomes) -> Vec<RequestOutcome> {
    outcomes
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| match s {
            Seen::Request(r) => Some(r.clone()),
            Seen::Cache(..) => None,
        })
        .collect()
}

fn results(outcomes: &Outcomes) -> Vec<&'static str> {
    requests(outcomes).iter().map(|o| o.result).collect()
}

const BOUQUETS: &str = r#"{"bouquets": [["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet", "Favourites (TV)"], ["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.news.tv\" ORDER BY bouquet", "News &amp; Sport"]]}"#;

#[test]
fn chunked_gzip_answer_and_request_head() {
    let server = Server::start(|_, _, s| {
        let body = chunked(&gzip(BOUQUETS.as_bytes()), 7);
        respond(
            s,
            "200 OK",
            &[
                ("Content-Type", "application/json; charset=UTF-8"),
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
            ],
            &body,
        );
        // Keep the connection open: the chunked framing alone must end the answer.
        thread::sleep(Duration::from_secs(3));
    });
    let (rx, outcomes) = client(&server);
    let started = Instant::now();
    let bouquets = smol::block_on(rx.bouquets()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(bouquets.len(), 2);
    assert_eq!(bouquets[1].name, "News & Sport");
    assert_eq!(results(&outcomes), ["ok"]);
    assert_eq!(requests(&outcomes)[0].endpoint, "bouquets");
    let head = &server.requests()[0];
    assert!(head.starts_with("GET /api/bouquets HTTP/1.1\r\n"), "{head}");
    for want in [
        format!("Host: {}\r\n", server.addr),
        format!("User-Agent: xg2g/{}\r\n", env!("CARGO_PKG_VERSION")),
        "Accept-Encoding: gzip\r\n".to_owned(),
        "Connection: close\r\n".to_owned(),
    ] {
        assert!(head.contains(&want), "{want:?} missing in {head}");
    }
    assert!(!head.contains("Authorization"));
}

#[test]
fn bare_newline_head_with_content_length_and_interim_answer() {
    let about = r#"{"info": {"model": "dm920", "tuners": [{"name": "A"}, {"name": "B"}]}}"#;
    let server = Server::start(move |_, _, s| {
        let head = format!(
            "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {}\n\n",
            about.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(about.as_bytes());
        thread::sleep(Duration::from_secs(3));
    });
    let (rx, _) = client(&server);
    let about = smol::block_on(rx.about()).unwrap();
    assert_eq!(
        about,
        About {
            model: "dm920".into(),
            tuners: 2
        }
    );
}

#[test]
fn close_delimited_answer() {
    let server = Server::start(|_, _, s| {
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n");
        for piece in BOUQUETS.as_bytes().chunks(10) {
            let _ = s.write_all(piece);
            let _ = s.flush();
        }
    });
    let (rx, _) = client(&server);
    assert_eq!(smol::block_on(rx.bouquets()).unwrap().len(), 2);
}

#[test]
fn latin1_bodies_declared_or_not() {
    let body = b"{\"bouquets\": [[\"1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \\\"a.tv\\\" ORDER BY bouquet\", \"M\xfcnchen \x86Sport\x87\"]]}";
    for declared in [true, false] {
        let server = Server::start(move |_, _, s| {
            let content_type = if declared {
                "application/json; charset=ISO-8859-1"
            } else {
                "application/json"
            };
            let len = body.len().to_string();
            respond(
                s,
                "200 OK",
                &[("Content-Type", content_type), ("Content-Length", &len)],
                body,
            );
        });
        let (rx, _) = client(&server);
        let bouquets = smol::block_on(rx.bouquets()).unwrap();
        assert_eq!(bouquets[0].name, "München Sport", "declared={declared}");
    }
}

#[test]
fn answers_over_the_cap_fail_without_retry() {
    let big = format!("{{\"bouquets\": [], \"pad\": \"{}\"}}", "x".repeat(5000));
    let server = Server::start(move |i, _, s| match i {
        // Declared too large: refused before reading.
        0 => json_ok(s, &big),
        // Chunked, no length: refused while reading.
        1 => respond(
            s,
            "200 OK",
            &[("Transfer-Encoding", "chunked")],
            &chunked(big.as_bytes(), 100),
        ),
        // Small on the wire, large once decoded.
        _ => {
            let packed = gzip(big.as_bytes());
            assert!(packed.len() < 1000);
            let len = packed.len().to_string();
            respond(
                s,
                "200 OK",
                &[("Content-Encoding", "gzip"), ("Content-Length", &len)],
                &packed,
            );
        }
    });
    let (rx, outcomes) = client_with(&server.base(), 2000, 2, 1000);
    for _ in 0..3 {
        let err = smol::block_on(rx.bouquets()).unwrap_err();
        assert_eq!(err.kind(), "too_large", "{err}");
        assert_eq!(
            err.to_string(),
            "GET /api/bouquets: answer larger than 1000 bytes"
        );
    }
    assert_eq!(results(&outcomes), ["too_large"; 3]);
}

#[test]
fn stalled_server_times_out_and_is_retried() {
    let server = Server::start(|i, _, s| {
        if i == 1 {
            // The retry stalls in the middle of the body instead.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"bou");
        }
        thread::sleep(Duration::from_secs(2));
    });
    let (rx, outcomes) = client_with(&server.base(), 200, 1, 1 << 20);
    let started = Instant::now();
    let err = smol::block_on(rx.bouquets()).unwrap_err();
    assert_eq!(err.kind(), "timeout");
    assert_eq!(err.to_string(), "GET /api/bouquets: timed out after 200ms");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(results(&outcomes), ["timeout", "timeout"]);
    assert!(requests(&outcomes)[0].seconds >= 0.2);
}

#[test]
fn refused_connection_is_a_connect_error_retried_with_backoff() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (rx, outcomes) = client_with(&format!("http://127.0.0.1:{port}/owif"), 1000, 2, 1000);
    let started = Instant::now();
    let err = smol::block_on(rx.about()).unwrap_err();
    assert_eq!(err.kind(), "connect");
    assert!(
        err.to_string().starts_with(&format!(
            "GET /owif/api/about: cannot connect to 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    assert_eq!(results(&outcomes), ["connect"; 3]);
    // 250 ms + 500 ms of backoff.
    assert!(started.elapsed() >= Duration::from_millis(750));
}

#[test]
fn server_error_then_success_is_retried() {
    let server = Server::start(|i, _, s| {
        if i == 0 {
            server_error(s);
        } else {
            json_ok(s, BOUQUETS);
        }
    });
    let (rx, outcomes) = client_with(&server.base(), 2000, 2, 1 << 20);
    assert_eq!(smol::block_on(rx.bouquets()).unwrap().len(), 2);
    assert_eq!(results(&outcomes), ["http_5xx", "ok"]);
}

#[test]
fn client_errors_and_malformed_answers_are_not_retried() {
    let server = Server::start(|i, _, s| match i {
        0 => respond(s, "404 Not Found", &[("Content-Length", "0")], b""),
        1 => json_ok(s, "{\"bouquets\": [}"),
        2 => respond(s, "200 OK", &[("Content-Length", "100")], b"{\"bouquets\""),
        3 => respond(
            s,
            "200 OK",
            &[("Content-Encoding", "gzip"), ("Content-Length", "9")],
            b"not gzip!",
        ),
        4 => respond(
            s,
            "200 OK",
            &[("Transfer-Encoding", "chunked")],
            b"zz\r\nabc\r\n0\r\n\r\n",
        ),
        _ => {
            let mut head = "HTTP/1.1 200 OK\r\n".to_owned();
            while head.len() < 20_000 {
                head.push_str(&format!("X-Padding: {}\r\n", "a".repeat(1000)));
            }
            let _ = s.write_all(head.as_bytes());
        }
    });
    let (rx, outcomes) = client_with(&server.base(), 2000, 3, 1 << 20);
    let mut errors = Vec::new();
    for _ in 0..6 {
        errors.push(smol::block_on(rx.bouquets()).unwrap_err());
    }
    let kinds: Vec<_> = errors.iter().map(Error::kind).collect();
    assert_eq!(
        kinds,
        [
            "http_4xx",
            "malformed",
            "io",
            "malformed",
            "malformed",
            "malformed"
        ]
    );
    assert_eq!(errors[0].to_string(), "GET /api/bouquets: HTTP 404");
    assert_eq!(
        errors[1].to_string(),
        "GET /api/bouquets: malformed JSON at line 1 column 15: expected value"
    );
    assert!(errors[5].to_string().contains("16384"), "{}", errors[5]);
    assert_eq!(results(&outcomes), kinds);
}

#[test]
fn basic_auth_header_is_sent() {
    let server = Server::start(|_, _, s| json_ok(s, BOUQUETS));
    let cfg = ReceiverConfig {
        base: server.base(),
        user: Some("root".into()),
        pass: Some("dreambox".into()),
        timeout: Duration::from_secs(2),
        retries: 0,
        max_body_bytes: 1 << 20,
        max_requests_per_second: nz(10),
        cache_ttl: Duration::ZERO,
    };
    let rx = Receiver::new(cfg, Arc::new(|_: &Observation<'_>| {}), test_gate()).unwrap();
    assert!(!format!("{rx:?}").contains("cm9vd"));
    smol::block_on(rx.bouquets()).unwrap();
    assert!(
        server.requests()[0].contains("\r\nAuthorization: Basic cm9vdDpkcmVhbWJveA==\r\n"),
        "{}",
        server.requests()[0]
    );
}

#[test]
fn bad_settings_are_refused() {
    let ok = ReceiverConfig {
        base: "http://box".into(),
        user: None,
        pass: None,
        timeout: Duration::from_secs(1),
        retries: 0,
        max_body_bytes: 1,
        max_requests_per_second: nz(1),
        cache_ttl: Duration::from_secs(1),
    };
    let observer: Observer = Arc::new(|_: &Observation<'_>| {});
    assert!(Receiver::new(ok.clone(), observer.clone(), test_gate()).is_ok());
    for bad in [
        ReceiverConfig {
            base: "https://box".into(),
            ..ok.clone()
        },
        ReceiverConfig {
            timeout: Duration::ZERO,
            ..ok.clone()
        },
        ReceiverConfig {
            max_body_bytes: 0,
            ..ok.clone()
        },
    ] {
        let err = Receiver::new(bad, observer.clone(), test_gate()).unwrap_err();
        assert_eq!(err.kind(), "config");
    }
}

fn bouquet_ref(file: &str) -> String {
    format!("1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"{file}\" ORDER BY bouquet")
}

fn services_json(entries: &[(&str, &str)]) -> String {
    let list: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(i, (sref, name))| {
            format!(
                "{{\"servicereference\": {}, \"servicename\": {}, \"program\": 0, \"pos\": {i}}}",
                serde_json::to_string(sref).unwrap(),
                serde_json::to_string(name).unwrap()
            )
        })
        .collect();
    format!("{{\"pos\": 0, \"services\": [{}]}}", list.join(", "))
}

/// A bouquet server: `userbouquet.top.tv` holds a marker, a spacer, services, an
/// alternatives group, and sub-bouquets that refer back to each other.
fn bouquet_server() -> Server {
    Server::start(|_, head, s| {
        let sref = param(head, "sRef").unwrap_or_default();
        let alt = "1:134:1:0:0:0:0:0:0:0:FROM BOUQUET \"alternatives.one.tv\" ORDER BY bouquet";
        let entries: Vec<(String, &str)> = if sref == bouquet_ref("userbouquet.top.tv") {
            vec![
                ("1:64:1:0:0:0:0:0:0:0::Section".into(), "Section"),
                (
                    "1:0:19:A:1:1:C00000:0:0:0:".into(),
                    "\u{86}Channel&amp;amp;A\u{87}",
                ),
                ("1:832:D:0:0:0:0:0:0:0:".into(), ""),
                (bouquet_ref("subbouquet.one.tv"), "Sub one"),
                (alt.into(), "Alt"),
                ("1:0:19:D:1:1:C00000:0:0:0:".into(), "D"),
            ]
        } else if sref == bouquet_ref("subbouquet.one.tv") {
            vec![
                ("1:0:19:B:1:1:C00000:0:0:0:".into(), "B"),
                (bouquet_ref("subbouquet.two.tv"), "Sub two"),
                ("1:0:19:C:1:1:C00000:0:0:0:".into(), ""),
            ]
        } else if sref == bouquet_ref("subbouquet.two.tv") {
            vec![
                (bouquet_ref("userbouquet.top.tv"), "cycle to top"),
                (bouquet_ref("subbouquet.one.tv"), "cycle to one"),
                ("1:0:2:E:1:1:C00000:0:0:0:".into(), "Radio E"),
            ]
        } else if let Some(n) = sref
            .split("\"deep.")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<u32>().ok())
        {
            let sub = bouquet_ref(&format!("deep.{}.tv", n + 1));
            vec![
                (format!("1:0:19:{n:X}:1:1:C00000:0:0:0:"), "level"),
                (sub, "deeper"),
            ]
        } else {
            respond(s, "404 Not Found", &[("Content-Length", "0")], b"");
            return;
        };
        let entries: Vec<(&str, &str)> = entries.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        json_ok(s, &services_json(&entries));
    })
}

#[test]
fn bouquet_content_skips_markers_expands_sub_bouquets_and_survives_cycles() {
    let server = bouquet_server();
    let (rx, outcomes) = client(&server);
    let top = Bouquet {
        sref: bouquet_ref("userbouquet.top.tv"),
        name: "Top".into(),
    };
    let content = smol::block_on(rx.bouquet_content(&top)).unwrap();
    let names: Vec<&str> = content.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Channel&amp;A",
            "B",
            "Radio E",
            "1:0:19:C:1:1:C00000:0:0:0:",
            "Alt",
            "D"
        ]
    );
    assert!(content.channels.iter().all(|c| c.group == "Top"));
    assert_eq!(
        content.channels[4].sref,
        "1:134:1:0:0:0:0:0:0:0:FROM BOUQUET \"alternatives.one.tv\" ORDER BY bouquet"
    );
    assert_eq!(
        content.epg_refs,
        [
            bouquet_ref("userbouquet.top.tv"),
            bouquet_ref("subbouquet.one.tv"),
            bouquet_ref("subbouquet.two.tv")
        ]
    );
    assert_eq!(results(&outcomes), ["ok"; 3]);
    assert!(requests(&outcomes).iter().all(|o| o.endpoint == "services"));
    // The ref travels percent-encoded.
    assert!(
        server.requests()[0].starts_with(
            "GET /api/getservices?sRef=1:7:1:0:0:0:0:0:0:0:FROM%20BOUQUET%20%22userbouquet.top.tv%22%20ORDER%20BY%20bouquet HTTP/1.1"
        ),
        "{}",
        server.requests()[0]
    );
    assert_eq!(smol::block_on(rx.channels(&top)).unwrap(), content.channels);
}

#[test]
fn nesting_stops_at_the_depth_limit() {
    let server = bouquet_server();
    let (rx, _) = client(&server);
    let top = Bouquet {
        sref: bouquet_ref("deep.0.tv"),
        name: "Deep".into(),
    };
    let content = smol::block_on(rx.bouquet_content(&top)).unwrap();
    assert_eq!(content.channels.len(), MAX_NESTING + 1);
    assert_eq!(content.epg_refs.len(), MAX_NESTING + 1);
    assert_eq!(server.requests().len(), MAX_NESTING + 1);
}

fn event_json(i: u64, sref: &str) -> String {
    format!(
        "{{\"id\": {i}, \"sref\": \"{sref}\", \"sname\": \"Chan\", \"title\": \"Show {i}\", \
         \"shortdesc\": \"short\", \"longdesc\": \"long\\u008atext\", \"begin_timestamp\": {}, \
         \"duration_sec\": 1800, \"genre\": \"News\", \"genreid\": 32, \"now_timestamp\": 0}}",
        1_700_000_000 + i * 1800
    )
}

#[test]
fn epg_events_stream_one_by_one() {
    let server = Server::start(|_, _, s| {
        let mut body = String::from("{\"result\": true, \"events\": [");
        for i in 0..50u64 {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&event_json(i, "1:0:19:A:1:1:C00000:0:0:0:"));
        }
        // Bad entries in between: tolerated.
        body.push_str(", {\"title\": \"x\"}, null, {\"sref\": \"s\", \"title\": \"&#x41;&amp;amp;\", \"begin_timestamp\": \"5\", \"duration_sec\": \"0\"}");
        body.push_str("]}");
        let packed = chunked(&gzip(body.as_bytes()), 333);
        respond(
            s,
            "200 OK",
            &[
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
            ],
            &packed,
        );
    });
    let (rx, outcomes) = client(&server);
    let bref = bouquet_ref("userbouquet.top.tv");
    // The callback is handed back when the answer is complete.
    let mut titles = Vec::new();
    let mut sink = smol::block_on(rx.epg_bouquet(
        &bref,
        1_700_000_000,
        1_700_000_000 + 7 * 86400,
        move |e: Event| titles.push(e.title),
    ))
    .unwrap();
    sink(Event {
        sref: String::new(),
        start: 1,
        duration: 1,
        title: "after".into(),
        short_desc: String::new(),
        long_desc: String::new(),
        genre: None,
    });
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let sink = smol::block_on(rx.epg_bouquet(&bref, 10, 100, move |e: Event| {
        if e.sref == "s" {
            assert_eq!((e.title.as_str(), e.start, e.duration), ("A&amp;", 5, 1800));
        } else {
            assert_eq!(e.long_desc, "long\ntext");
        }
        counter.fetch_add(1, Ordering::SeqCst);
    }))
    .unwrap();
    drop(sink);
    assert_eq!(count.load(Ordering::SeqCst), 51);
    assert_eq!(results(&outcomes), ["ok", "ok"]);
    assert!(
        requests(&outcomes)
            .iter()
            .all(|o| o.endpoint == "epgbouquet")
    );
    let head = &server.requests()[0];
    assert_eq!(param(head, "bRef").as_deref(), Some(bref.as_str()));
    assert_eq!(param(head, "time").as_deref(), Some("1700000000"));
    assert_eq!(param(head, "endTime").as_deref(), Some("10080"));
    assert_eq!(
        param(&server.requests()[1], "endTime").as_deref(),
        Some("2")
    );
}

#[test]
fn epg_is_not_retried_once_events_were_delivered() {
    let server = Server::start(|_, _, s| {
        let mut body = String::from("{\"events\": [");
        body.push_str(&event_json(1, "1:0:19:A:1:1:C00000:0:0:0:"));
        body.push(',');
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        let _ = s.write_all(body.as_bytes());
        thread::sleep(Duration::from_secs(2));
    });
    let (rx, outcomes) = client_with(&server.base(), 300, 3, 1 << 20);
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let Err(err) = smol::block_on(rx.epg_bouquet("b", 0, 60, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    })) else {
        panic!("a stalled answer must fail");
    };
    assert_eq!(err.kind(), "timeout");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(results(&outcomes), ["timeout"]);
}

#[test]
fn epg_service_collects_and_fills_in_the_ref() {
    let server = Server::start(|_, _, s| {
        json_ok(
            s,
            r#"{"events": [
                {"title": "Caf\u00e9 &amp;amp; Bar\u0086!", "begin_timestamp": 100, "duration_sec": 60,
                 "longdesc": "a\u008a\u008a\u008a\u008ab &lt;i&gt;", "shortdesc": "&#39;quoted&#39;"},
                {"title": "N/A", "begin_timestamp": 0}
            ], "result": true}"#,
        )
    });
    let (rx, outcomes) = client(&server);
    let sref = "1:0:19:283d:3fb:1:c00000:0:0:0:";
    let events = smol::block_on(rx.epg_service(sref, 0, 3600)).unwrap();
    assert_eq!(
        events,
        [Event {
            sref: sref.into(),
            start: 100,
            duration: 60,
            title: "Café &amp; Bar!".into(),
            short_desc: "'quoted'".into(),
            long_desc: "a\n\nb <i>".into(),
            genre: None,
        }]
    );
    assert_eq!(requests(&outcomes)[0].endpoint, "epgservice");
    let head = &server.requests()[0];
    assert!(
        target(head)
            .starts_with("/api/epgservice?sRef=1:0:19:283d:3fb:1:c00000:0:0:0:&time=0&endTime=60"),
        "{head}"
    );
}

#[test]
fn big_epg_streams_with_bounded_memory() {
    const EVENTS: u64 = 200_000;
    let progress = Arc::new(AtomicU64::new(0));
    let streamed = Arc::new(AtomicBool::new(false));
    let (server_progress, server_streamed) = (progress.clone(), streamed.clone());
    let server = Server::start(move |_, _, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let mut chunk = String::from("{\"result\": true, \"events\": [");
        for i in 0..EVENTS {
            if i > 0 {
                chunk.push(',');
            }
            chunk.push_str(&event_json(i, "1:0:19:A:1:1:C00000:0:0:0:"));
            if chunk.len() > 32 * 1024 {
                let _ = write!(s, "{:x}\r\n{chunk}\r\n", chunk.len());
                chunk.clear();
            }
            if i == EVENTS / 2 {
                // Hold the second half back until the client has parsed events from
                // the first: proof that it parses while the answer is still arriving.
                let deadline = Instant::now() + Duration::from_secs(20);
                while server_progress.load(Ordering::SeqCst) < 1000 && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                server_streamed.store(
                    server_progress.load(Ordering::SeqCst) >= 1000,
                    Ordering::SeqCst,
                );
            }
        }
        chunk.push_str("]}");
        let _ = write!(s, "{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    });
    // The whole answer (~60 MB) is far above the per-request chunk budget; the cap is
    // set above it so only streaming keeps memory bounded.
    let (rx, outcomes) = client_with(&server.base(), 30_000, 0, 1 << 30);
    let counter = progress.clone();
    let mut last_start = 0i64;
    let started = Instant::now();
    let _sink = smol::block_on(rx.epg_bouquet("b", 0, 86400, move |e| {
        assert!(e.start > last_start);
        last_start = e.start;
        counter.fetch_add(1, Ordering::SeqCst);
    }))
    .unwrap();
    assert_eq!(progress.load(Ordering::SeqCst), EVENTS);
    assert!(
        streamed.load(Ordering::SeqCst),
        "events were not parsed while arriving"
    );
    assert_eq!(results(&outcomes), ["ok"]);
    eprintln!("200k events in {:?}", started.elapsed());
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn request_futures_can_run_on_a_multi_threaded_executor() {
    let (rx, _) = client_with("http://127.0.0.1:1", 100, 0, 1);
    let bouquet = Bouquet {
        sref: "b".into(),
        name: "B".into(),
    };
    assert_send(&rx.about());
    assert_send(&rx.bouquets());
    assert_send(&rx.channels(&bouquet));
    assert_send(&rx.bouquet_content(&bouquet));
    assert_send(&rx.epg_bouquet("b", 0, 1, |_| {}));
    assert_send(&rx.epg_service("s", 0, 1));
    let clone = rx.clone();
    assert_eq!(clone.origin().authority(), "127.0.0.1:1");
}

/// A port nothing listens on.
fn dead_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn breaker_cfg(threshold: u32, open_ms: u64) -> BreakerConfig {
    BreakerConfig {
        enabled: true,
        failure_threshold: threshold,
        open_timeout: Duration::from_millis(open_ms),
    }
}

#[test]
fn failed_attempts_retries_included_open_the_breaker() {
    let (rx, outcomes, breaker) = build(
        &dead_base(),
        Setup {
            retries: 3,
            breaker: breaker_cfg(2, 30_000),
            ..Setup::default()
        },
    );
    // Two failed attempts open it; the second retry is refused without a backoff sleep
    // after it.
    let started = Instant::now();
    let err = smol::block_on(rx.about()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), "circuit_open", "{err}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .starts_with("GET /api/about: receiver circuit open, retry in "),
        "{err}"
    );
    assert_eq!(results(&outcomes), ["connect", "connect", "circuit_open"]);
    // 250 ms + 500 ms of backoff, not the 1 s that would follow a third failure.
    assert!(took >= Duration::from_millis(750), "{took:?}");
    assert!(took < Duration::from_millis(1700), "{took:?}");
    assert_eq!(breaker.state(), BreakerState::Open);
    // The next call fails at once, reported with zero seconds.
    let started = Instant::now();
    let err = smol::block_on(rx.bouquets()).unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(err.kind(), "circuit_open");
    let last = requests(&outcomes).pop().unwrap();
    assert_eq!(
        last,
        RequestOutcome {
            endpoint: "bouquets",
            result: "circuit_open",
            seconds: 0.0
        }
    );
}

#[test]
fn an_open_breaker_sends_nothing_then_one_probe_decides() {
    // Four 500s (three to open it, one failed probe), then good answers.
    let server = Server::start(|i, _, s| {
        if i < 4 {
            server_error(s);
        } else {
            json_ok(s, BOUQUETS);
        }
    });
    let (rx, outcomes, breaker) = build(
        &server.base(),
        Setup {
            breaker: breaker_cfg(3, 200),
            ..Setup::default()
        },
    );
    let call = || smol::block_on(rx.bouquets()).map_err(|e| e.kind());
    for _ in 0..3 {
        assert_eq!(call(), Err("http_5xx"));
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    for _ in 0..5 {
        assert_eq!(call(), Err("circuit_open"));
    }
    assert_eq!(
        server.requests().len(),
        3,
        "an open breaker let a request out"
    );
    // After the open timeout exactly one probe goes out; it fails and reopens.
    thread::sleep(Duration::from_millis(250));
    assert_eq!(call(), Err("http_5xx"));
    assert_eq!(server.requests().len(), 4);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(call(), Err("circuit_open"));
    assert_eq!(server.requests().len(), 4);
    // The next probe gets a 2xx: closed again, requests flow.
    thread::sleep(Duration::from_millis(250));
    assert_eq!(call().map(|b| b.len()), Ok(2));
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(call().map(|b| b.len()), Ok(2));
    assert_eq!(server.requests().len(), 6);
    let seen = results(&outcomes);
    assert_eq!(seen.iter().filter(|r| **r == "circuit_open").count(), 6);
    assert_eq!(seen.iter().filter(|r| **r == "http_5xx").count(), 4);
}

#[test]
fn answers_of_any_kind_keep_the_breaker_closed() {
    let server = Server::start(|i, head, s| {
        if target(head).starts_with("/file") {
            respond(s, "404 Not Found", &[("Content-Length", "0")], b"");
            return;
        }
        match i % 3 {
            0 => server_error(s),
            1 => respond(s, "404 Not Found", &[("Content-Length", "0")], b""),
            _ => json_ok(s, "{\"bouquets\": [}"),
        }
    });
    let (rx, outcomes, breaker) = build(
        &server.base(),
        Setup {
            breaker: breaker_cfg(2, 30_000),
            ..Setup::default()
        },
    );
    // 500, 404, malformed, 500, 404, ...: a failure never follows another, so a
    // threshold of 2 is never reached.
    for _ in 0..9 {
        assert!(smol::block_on(rx.bouquets()).is_err());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
    assert_eq!(breaker.consecutive_failures(), 0);
    // A box without a whitelist file answered: a success.
    for _ in 0..3 {
        assert_eq!(
            smol::block_on(rx.stream_relay_whitelist()).unwrap(),
            Vec::<String>::new()
        );
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(server.requests().len(), 12);
    assert!(!results(&outcomes).contains(&"circuit_open"));
}

#[test]
fn requests_are_paced_and_cache_hits_are_not() {
    let server = Server::start(|_, _, s| json_ok(s, r#"{"events": []}"#));
    let (rx, _, _) = build(
        &server.base(),
        Setup {
            rate: 10,
            burst: 2,
            ..Setup::default()
        },
    );
    let started = Instant::now();
    for _ in 0..5 {
        smol::block_on(rx.epg_service("s", 0, 60)).unwrap();
    }
    // Two at once, then one every 100 ms.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(server.requests().len(), 5);

    let server = Server::start(|_, _, s| json_ok(s, BOUQUETS));
    let (rx, _, _) = build(
        &server.base(),
        Setup {
            rate: 1,
            burst: 1,
            cache_ttl: Duration::from_secs(60),
            ..Setup::default()
        },
    );
    smol::block_on(rx.bouquets()).unwrap();
    // The bucket is empty for a second now; hits must not wait for it.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(smol::block_on(rx.bouquets()).unwrap().len(), 2);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn bouquets_and_services_are_cached_for_the_ttl() {
    let server = bouquet_server();
    let bouquets = Server::start(|_, _, s| json_ok(s, BOUQUETS));
    let (rx, outcomes, _) = build(
        &bouquets.base(),
        Setup {
            cache_ttl: Duration::from_millis(400),
            ..Setup::default()
        },
    );
    let first = smol::block_on(rx.bouquets()).unwrap();
    assert_eq!(smol::block_on(rx.bouquets()).unwrap(), first);
    assert_eq!(bouquets.requests().len(), 1);
    let request = requests(&outcomes)[0].clone();
    assert_eq!(
        *outcomes.lock().unwrap(),
        [
            Seen::Cache("bouquets", false),
            Seen::Request(request),
            Seen::Cache("bouquets", true),
        ]
    );
    thread::sleep(Duration::from_millis(450));
    smol::block_on(rx.bouquets()).unwrap();
    assert_eq!(bouquets.requests().len(), 2, "an expired entry was served");

    // Bouquet contents: the whole walk is served from the cache the second time.
    let (rx, outcomes, _) = build(
        &server.base(),
        Setup {
            cache_ttl: Duration::from_secs(60),
            ..Setup::default()
        },
    );
    let top = Bouquet {
        sref: bouquet_ref("userbouquet.top.tv"),
        name: "Top".into(),
    };
    let content = smol::block_on(rx.bouquet_content(&top)).unwrap();
    assert_eq!(server.requests().len(), 3);
    assert_eq!(smol::block_on(rx.bouquet_content(&top)).unwrap(), content);
    assert_eq!(server.requests().len(), 3);
    let hits: Vec<bool> = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| match s {
            Seen::Cache("services", hit) => Some(*hit),
            _ => None,
        })
        .collect();
    assert_eq!(hits, [false, false, false, true, true, true]);
    // A forced refresh asks again.
    rx.clear_cache();
    smol::block_on(rx.bouquet_content(&top)).unwrap();
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn epg_is_never_cached() {
    let server = Server::start(|_, _, s| json_ok(s, r#"{"events": []}"#));
    let (rx, outcomes, _) = build(
        &server.base(),
        Setup {
            cache_ttl: Duration::from_secs(60),
            ..Setup::default()
        },
    );
    for _ in 0..2 {
        smol::block_on(rx.epg_service("s", 0, 60)).unwrap();
        let _sink = smol::block_on(rx.epg_bouquet("b", 0, 60, |_| {})).unwrap();
        smol::block_on(rx.about()).unwrap();
    }
    assert_eq!(server.requests().len(), 6);
    assert!(
        outcomes
            .lock()
            .unwrap()
            .iter()
            .all(|s| matches!(s, Seen::Request(_)))
    );
}

#[test]
fn only_successful_answers_are_cached() {
    let server = Server::start(|i, _, s| match i {
        0 => json_ok(s, "{\"bouquets\": [}"),
        1 => respond(s, "404 Not Found", &[("Content-Length", "0")], b""),
        _ => json_ok(s, BOUQUETS),
    });
    let (rx, _, _) = build(
        &server.base(),
        Setup {
            cache_ttl: Duration::from_secs(60),
            ..Setup::default()
        },
    );
    assert_eq!(
        smol::block_on(rx.bouquets()).unwrap_err().kind(),
        "malformed"
    );
    assert_eq!(
        smol::block_on(rx.bouquets()).unwrap_err().kind(),
        "http_4xx"
    );
    assert_eq!(smol::block_on(rx.bouquets()).unwrap().len(), 2);
    assert_eq!(smol::block_on(rx.bouquets()).unwrap().len(), 2);
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn an_answer_fetched_across_a_clear_is_not_cached() {
    let server = Server::start(|i, _, s| {
        if i == 0 {
            thread::sleep(Duration::from_millis(300));
        }
        json_ok(s, BOUQUETS);
    });
    let (rx, _, _) = build(
        &server.base(),
        Setup {
            cache_ttl: Duration::from_secs(60),
            ..Setup::default()
        },
    );
    let clearing = async {
        async_io::Timer::after(Duration::from_millis(100)).await;
        rx.clear_cache();
    };
    let (fetched, ()) = smol::block_on(smol::future::zip(rx.bouquets(), clearing));
    assert_eq!(fetched.unwrap().len(), 2);
    smol::block_on(rx.bouquets()).unwrap();
    assert_eq!(server.requests().len(), 2, "a pre-clear answer was cached");
    smol::block_on(rx.bouquets()).unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn the_cache_bound_holds() {
    let server = Server::start(|_, _, s| {
        json_ok(s, &services_json(&[("1:0:19:A:1:1:C00000:0:0:0:", "A")]));
    });
    let (rx, outcomes, _) = build(
        &server.base(),
        Setup {
            cache_ttl: Duration::from_secs(60),
            ..Setup::default()
        },
    );
    let refs: Vec<String> = (0..=MAX_CACHED)
        .map(|i| bouquet_ref(&format!("b{i}.tv")))
        .collect();
    for r in &refs {
        smol::block_on(rx.entries(r)).unwrap();
    }
    assert_eq!(rx.inner.services.len(), MAX_CACHED);
    assert_eq!(server.requests().len(), MAX_CACHED + 1);
    // The oldest made room; the newest is still there.
    smol::block_on(rx.entries(&refs[MAX_CACHED])).unwrap();
    assert_eq!(server.requests().len(), MAX_CACHED + 1);
    smol::block_on(rx.entries(&refs[0])).unwrap();
    assert_eq!(server.requests().len(), MAX_CACHED + 2);
    assert_eq!(rx.inner.services.len(), MAX_CACHED);
    let last: Vec<Seen> = outcomes
        .lock()
        .unwrap()
        .iter()
        .rev()
        .take(3)
        .cloned()
        .collect();
    assert!(matches!(last[0], Seen::Request(_)));
    assert_eq!(last[1], Seen::Cache("services", false));
    assert_eq!(last[2], Seen::Cache("services", true));
}

/// The receiver JSON decoders fed random bytes and random JSON-shaped text: they return
/// Ok or Err, never panic, and what they return keeps their documented promises.
mod json_fuzz {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::super::json;

    /// Field names the decoders look for, plus noise.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "bouquets", "services", "events", "servicereference", "servicename",
                "sref", "sname", "title", "begin_timestamp", "duration_sec", "shortdesc",
                "longdesc", "genre", "genreid", "id", "info", "model", "boxtype", "tuners",
                "result", "pos", "program",
            ])
            .prop_map(str::to_owned),
            1 => "[a-z_]{0,8}",
        ]
    }

    /// Text with the things OpenWebIF sends: entities, Enigma2 control characters,
    /// escapes, refs.
    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 :&#;x.\"\\\\\\x{86}\\x{87}\\x{8a}\\x{0}\\x{1f}\\x{e9}\\x{1f600}]{0,24}"
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::String),
            "-?[0-9]{1,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn object(fields: Vec<(String, Value)>) -> Value {
        Value::Object(fields.into_iter().collect::<Map<_, _>>())
    }

    /// Documents shaped like real answers, with random leaves, as text; sometimes cut
    /// short or with a byte flipped.
    fn document() -> impl Strategy<Value = Vec<u8>> {
        let shaped = prop_oneof![
            vec(vec(value(), 0..3).prop_map(Value::Array), 0..6)
                .prop_map(|b| object(vec![("bouquets".into(), Value::Array(b))])),
            vec(vec((key(), value()), 0..5).prop_map(object), 0..6)
                .prop_map(|s| object(vec![("services".into(), Value::Array(s))])),
            vec(vec((key(), value()), 0..8).prop_map(object), 0..6)
                .prop_map(|e| object(vec![("events".into(), Value::Array(e))])),
            value(),
        ];
        (shaped, any::<prop::sample::Index>(), 0u8..4, any::<u8>()).prop_map(
            |(doc, at, how, byte)| {
                let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
                if bytes.is_empty() {
                    return bytes;
                }
                let at = at.index(bytes.len());
                match how {
                    0 => bytes.truncate(at),
                    1 => {
                        if let Some(b) = bytes.get_mut(at) {
                            *b = byte;
                        }
                    }
                    _ => {}
                }
                bytes
            },
        )
    }

    fn decode_all(input: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(bouquets) = json::parse_bouquets(input) {
            for b in bouquets {
                prop_assert!(!b.sref.is_empty() && !b.name.is_empty());
            }
        }
        if let Ok(entries) = json::parse_services(input) {
            for e in entries {
                prop_assert!(!e.sref.is_empty());
            }
        }
        let _ = json::parse_about(input);
        for default in [None, Some("1:0:1:1:1:1:C00000:0:0:0:")] {
            let mut events = Vec::new();
            if let Ok(count) = json::stream_events(input, default, &mut |e| events.push(e)) {
                prop_assert_eq!(count, events.len() as u64);
            }
            for e in &events {
                prop_assert!(!e.title.is_empty());
                prop_assert!(e.duration > 0);
                prop_assert!(!e.sref.is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..512)) {
            decode_all(&input)?;
        }

        #[test]
        fn json_shaped_text_never_panics(input in document()) {
            decode_all(&input)?;
        }
    }
}
