//! Handler-level tests: requests go straight into `handle()`, bodies are read to the end
//! (or as far as needed for bodies that never end).

use std::io::Read;
use std::time::{Duration, Instant};

use smol::Executor;
use smol::io::AsyncReadExt;

use super::*;

const NOW: i64 = 1_700_000_000;

fn cfg() -> SimConfig {
    SimConfig {
        now: Some(NOW),
        ..SimConfig::default()
    }
}

fn req(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        peer: "127.0.0.1:1".parse().expect("addr"),
        body: Vec::new(),
    }
}

fn call(h: &dyn Handler, r: Request) -> Response {
    smol::block_on(h.handle(r))
}

fn read_all(resp: Response) -> Vec<u8> {
    match resp.body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) => b,
        Body::File { .. } => panic!("no file bodies here"),
        Body::Stream(mut s) => smol::block_on(async {
            let mut v = Vec::new();
            s.read_to_end(&mut v).await.expect("read");
            v
        }),
    }
}

fn get_json(h: &dyn Handler, path: &str, query: &str) -> serde_json::Value {
    let resp = call(h, req("GET", path, query, &[]));
    assert_eq!(resp.status, 200, "{path}?{query}");
    serde_json::from_slice(&read_all(resp)).expect("valid json")
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes the entities OpenWebIF produces, exactly once (as the client must).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|e| *e < 10);
        let rep = end.and_then(|e| match &rest[1..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "#39" | "#x27" => Some('\''),
            _ => None,
        });
        match (rep, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A response body as text: Latin-1 (every byte one char) or UTF-8.
fn body_text(resp: Response, latin1: bool) -> String {
    let bytes = read_all(resp);
    if latin1 {
        bytes.iter().map(|b| char::from(*b)).collect()
    } else {
        String::from_utf8(bytes).expect("utf8")
    }
}

/// What a client does with the API: bouquets, services (nested expanded, markers and
/// spacers skipped, duplicates dropped), names cleaned.
fn client_playlist(h: &dyn Handler, latin1: bool) -> Vec<ExpectedChannel> {
    fn walk(
        h: &dyn Handler,
        sref: &str,
        group: &str,
        seen: &mut std::collections::HashSet<String>,
        out: &mut Vec<ExpectedChannel>,
        latin1: bool,
    ) {
        let q = format!("sRef={}", crate::http::percent_encode(sref));
        let text = body_text(call(h, req("GET", "/api/getservices", &q, &[])), latin1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        for s in v["services"].as_array().expect("services") {
            let r = s["servicereference"].as_str().expect("ref");
            let name = s["servicename"].as_str().expect("name");
            let flags = r.split(':').nth(1).unwrap_or("");
            if flags == "64" || flags == "832" {
                continue;
            }
            if flags == "7" {
                walk(h, r, group, seen, out, latin1);
                continue;
            }
            if seen.insert(r.to_string()) {
                out.push(ExpectedChannel {
                    sref: r.to_string(),
                    name: layout::clean_name(&unescape(name), false),
                    group: group.to_string(),
                    kept_events: 0,
                    relay: false,
                });
            }
        }
    }
    let text = body_text(call(h, req("GET", "/api/bouquets", "", &[])), latin1);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for b in v["bouquets"].as_array().expect("bouquets") {
        let r = b[0].as_str().expect("ref");
        let group = layout::clean_name(&unescape(b[1].as_str().expect("name")), false);
        walk(h, r, &group, &mut seen, &mut out, latin1);
    }
    out
}

#[test]
fn fault_names_parse() {
    for f in FAULTS {
        assert_eq!(f.as_str().parse::<Fault>().ok(), Some(f));
    }
    assert_eq!(" HTTP500 ".parse::<Fault>().ok(), Some(Fault::Http500));
    let err = "boom".parse::<Fault>().err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("boom") && !e.contains('\n')));
}

#[test]
fn api_and_expected_playlist_agree() {
    for (channels, latin1) in [(40, false), (40, true), (7, false), (523, false)] {
        let sim = Simulator::new(SimConfig {
            channels,
            latin1,
            ..cfg()
        });
        let expected = sim.expected();
        assert_eq!(expected.len(), channels);
        assert_eq!(sim.channel_count(), channels);
        let client = client_playlist(&sim.api_handler(), latin1);
        let listed: Vec<ExpectedChannel> = expected
            .iter()
            .map(|c| ExpectedChannel {
                kept_events: 0,
                relay: false,
                ..c.clone()
            })
            .collect();
        assert_eq!(client, listed, "channels={channels} latin1={latin1}");
        // The same list over HTTP.
        let v = get_json(&sim.api_handler(), "/sim/expected", "");
        assert_eq!(v["channels"].as_array().map(Vec::len), Some(channels));
    }
}

#[test]
fn expected_names_are_clean_and_hostile_ones_present() {
    let sim = Simulator::new(cfg());
    let e = sim.expected();
    let names: Vec<&str> = e.iter().map(|c| c.name.as_str()).collect();
    for want in [
        "Tom & Jerry TV",
        "<b>Bold</b> TV",
        "Comma, Channel, HD",
        "Line Break TV",
        "RTL Television",
        "Evil #EXTINF:-1,evil",
        "AT&amp;T Literal",
        "Padded Name",
        "📺 Emoji TV 🎬",
        "Sat.1 \"Gold\"",
        "Das Erste (Alternativen)",
        "KiKA HD",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for c in &e {
        assert!(!c.name.chars().any(char::is_control), "{:?}", c.name);
    }
    let kika = e.iter().find(|c| c.name == "KiKA HD").expect("kika");
    assert_eq!(kika.group, "Favourites (TV)");
    let groups: Vec<&str> = e.iter().map(|c| c.group.as_str()).collect();
    assert!(groups.contains(&"News & Sport") && groups.contains(&"Österreich, Schweiz"));
    let alt = e
        .iter()
        .find(|c| c.sref.starts_with("1:134:"))
        .expect("alt");
    assert!(alt.sref.contains("FROM BOUQUET"));
}

#[test]
fn epg_bouquet_has_all_events_and_counts_them() {
    let sim = Simulator::new(cfg());
    let h = sim.api_handler();
    let fav = sim.inner.layout.bouquets[0].sref.clone();
    let direct = sim.inner.layout.direct_services(0).len();
    let q = format!("bRef={}&time={NOW}", crate::http::percent_encode(&fav));
    let v = get_json(&h, "/api/epgbouquet", &q);
    let events = v["events"].as_array().expect("events");
    assert_eq!(events.len(), direct * 7 * 24);
    let len = 86_400 / 24;
    let mut valid = 0;
    for ev in events {
        let title = ev["title"].as_str().expect("title");
        if layout::has_visible_text(&unescape(title)) {
            valid += 1;
        }
        assert!(ev["sref"].is_string() && ev["begin_timestamp"].is_i64());
    }
    assert!(valid < events.len(), "some titles are empty");
    // The first event of the first service is running now, the last ends before +7 days.
    let b0 = events[0]["begin_timestamp"].as_i64().expect("ts");
    assert_eq!(b0, NOW - len / 2);
    let last = events[7 * 24 - 1]["begin_timestamp"].as_i64().expect("ts");
    assert!(last + len <= NOW + 7 * 86_400);
    let text = serde_json::to_string(&v).expect("json");
    for needle in [
        "&amp;",
        "&#39;",
        "\u{8A}",
        "\u{86}",
        "\"genre\"",
        "\"duration_sec\":0",
    ] {
        assert!(text.contains(needle), "{needle:?} missing");
    }
    let stats = sim.stats();
    assert_eq!(stats.epg_events_served, events.len() as u64);
    assert_eq!(stats.epg_events_valid, valid as u64);
    assert_eq!(stats.requests["epgbouquet"], 1);
    // The nested sub-bouquet answers for its own channels.
    let kids = sim.inner.layout.bouquets[1].sref.clone();
    let q = format!("bRef={}", crate::http::percent_encode(&kids));
    let v = get_json(&h, "/api/epgbouquet", &q);
    assert_eq!(v["events"].as_array().map(Vec::len), Some(3 * 7 * 24));
}

#[test]
fn epg_window_and_single_service() {
    let sim = Simulator::new(SimConfig {
        events_per_day: 30,
        ..cfg()
    });
    let h = sim.api_handler();
    let alt = sim
        .expected()
        .into_iter()
        .find(|c| c.sref.starts_with("1:134:"))
        .expect("alt");
    let q = format!("sRef={}", crate::http::percent_encode(&alt.sref));
    let v = get_json(&h, "/api/epgservice", &q);
    let events = v["events"].as_array().expect("events");
    assert_eq!(events.len(), 7 * 30);
    assert!(events.iter().all(|e| e["sref"] == alt.sref.as_str()));
    // One day from tomorrow (endTime is minutes): 30 events, plus the one running then.
    let q = format!(
        "sRef={}&time={}&endTime=1440",
        crate::http::percent_encode(&alt.sref),
        NOW + 86_400
    );
    let v = get_json(&h, "/api/epgservice", &q);
    let n = v["events"].as_array().map_or(0, Vec::len);
    assert!((30..=31).contains(&n), "{n}");
    // Unknown service: OpenWebIF's placeholder without a usable timestamp.
    let v = get_json(&h, "/api/epgservice", "sRef=1:0:1:1:1:1:C00000:0:0:0:");
    assert_eq!(v["events"][0]["begin_timestamp"], 0);
    let v = get_json(&h, "/api/epgbouquet", "bRef=nope");
    assert_eq!(v["result"], false);
}

#[test]
fn big_epg_streams_in_small_pieces() {
    let sim = Simulator::new(SimConfig {
        channels: 1000,
        events_per_day: 30,
        ..cfg()
    });
    let h = sim.api_handler();
    let bq = sim
        .inner
        .layout
        .bouquets
        .iter()
        .find(|b| b.name == "Weitere Sender 1")
        .expect("generic bouquet")
        .sref
        .clone();
    let q = format!("bRef={}", crate::http::percent_encode(&bq));
    let resp = call(&h, req("GET", "/api/epgbouquet", &q, &[]));
    let Body::Stream(mut s) = resp.body else {
        panic!("EPG must be a stream");
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut all = Vec::new();
    let mut biggest = 0;
    smol::block_on(async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            biggest = biggest.max(n);
            all.extend_from_slice(&buf[..n]);
        }
    });
    assert!(biggest < 16 * 1024, "pieces of a few KiB, got {biggest}");
    let v: serde_json::Value = serde_json::from_slice(&all).expect("json");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(200 * 7 * 30));
}

#[test]
fn gzip_answer_decodes_to_the_same_json() {
    let sim = Simulator::new(cfg());
    let h = sim.api_handler();
    let fav = crate::http::percent_encode(&sim.inner.layout.bouquets[0].sref);
    for (path, q) in [
        ("/api/epgbouquet", format!("bRef={fav}")),
        ("/api/getservices", format!("sRef={fav}")),
        ("/api/bouquets", String::new()),
    ] {
        let plain = read_all(call(&h, req("GET", path, &q, &[])));
        let resp = call(
            &h,
            req(
                "GET",
                path,
                &q,
                &[("Accept-Encoding", "deflate, gzip;q=0.8")],
            ),
        );
        assert_eq!(header(&resp, "Content-Encoding"), Some("gzip"));
        let gz = read_all(resp);
        let mut dec = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut dec)
            .expect("gunzip");
        assert_eq!(dec, plain, "{path}");
    }
    let resp = call(
        &h,
        req(
            "GET",
            "/api/bouquets",
            "",
            &[("Accept-Encoding", "gzip;q=0")],
        ),
    );
    assert_eq!(header(&resp, "Content-Encoding"), None);
}

#[test]
fn latin1_and_ascii_bodies_decode() {
    let sim = Simulator::new(SimConfig {
        latin1: true,
        ..cfg()
    });
    let h = sim.api_handler();
    let resp = call(&h, req("GET", "/api/bouquets", "", &[]));
    assert_eq!(
        header(&resp, "Content-Type"),
        Some("application/json; charset=ISO-8859-1")
    );
    let bytes = read_all(resp);
    assert!(std::str::from_utf8(&bytes).is_err(), "raw Latin-1 bytes");
    assert!(bytes.windows(2).any(|w| w == [0xD6, b's']), "Ö as one byte");
    let fav = crate::http::percent_encode(&sim.inner.layout.bouquets[0].sref);
    let text = body_text(
        call(
            &h,
            req("GET", "/api/epgbouquet", &format!("bRef={fav}"), &[]),
        ),
        true,
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(v["events"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(!text.contains("\\u"), "no \\u escapes in Latin-1 bodies");

    let sim = Simulator::new(SimConfig {
        ascii_json: true,
        ..cfg()
    });
    let bytes = read_all(call(
        &sim.api_handler(),
        req("GET", "/api/getservices", &format!("sRef={fav}"), &[]),
    ));
    assert!(bytes.is_ascii());
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let names = v.to_string();
    assert!(names.contains("📺"));
}

#[test]
fn endless_bodies_keep_producing() {
    let sim = Simulator::new(SimConfig {
        fault: Fault::Endless,
        ..cfg()
    });
    let h = sim.api_handler();
    let fav = crate::http::percent_encode(&sim.inner.layout.bouquets[0].sref);
    for (path, q) in [
        (
            "/api/epgbouquet",
            format!("bRef={fav}&time={NOW}&endTime=60"),
        ),
        ("/api/bouquets", String::new()),
        ("/api/getservices", format!("sRef={fav}")),
    ] {
        let resp = call(&h, req("GET", path, &q, &[]));
        let Body::Stream(mut s) = resp.body else {
            panic!("{path}: endless must be a stream");
        };
        let mut buf = vec![0u8; 32 * 1024];
        let mut total = 0usize;
        smol::block_on(async {
            while total < 4 * 1024 * 1024 {
                let n = s.read(&mut buf).await.expect("read");
                assert!(n > 0, "{path} ended after {total} bytes");
                total += n;
            }
        });
    }
    assert!(sim.stats().epg_events_served > 1000);
}

#[test]
fn faults_switch_at_run_time() {
    let sim = Simulator::new(SimConfig {
        slow_delay: Duration::from_millis(200),
        ..cfg()
    });
    let h = sim.api_handler();
    let set = |mode: &str| call(&h, req("POST", "/sim/fault", &format!("mode={mode}"), &[])).status;

    assert_eq!(set("http500"), 200);
    assert_eq!(sim.fault(), Fault::Http500);
    assert_eq!(call(&h, req("GET", "/api/bouquets", "", &[])).status, 500);
    // Control endpoints are never affected.
    assert_eq!(get_json(&h, "/sim/stats", "")["fault"], "http500");

    assert_eq!(set("malformed"), 200);
    let fav = crate::http::percent_encode(&sim.inner.layout.bouquets[0].sref);
    for (path, q) in [
        ("/api/bouquets", String::new()),
        ("/api/about", String::new()),
        ("/api/epgbouquet", format!("bRef={fav}")),
    ] {
        let resp = call(&h, req("GET", path, &q, &[]));
        assert_eq!(resp.status, 200);
        let body = read_all(resp);
        assert!(!body.is_empty());
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_err(),
            "{path}"
        );
    }

    assert_eq!(set("slow"), 200);
    let t = Instant::now();
    assert_eq!(call(&h, req("GET", "/api/about", "", &[])).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));

    assert_eq!(set("bogus"), 400);
    assert_eq!(
        call(&h, req("GET", "/sim/fault", "mode=none", &[])).status,
        405
    );
    assert_eq!(set("none"), 200);
    let t = Instant::now();
    let v = get_json(&h, "/api/about", "");
    assert!(t.elapsed() < Duration::from_millis(200));
    assert_eq!(v["info"]["model"], "sim920");
    assert_eq!(v["info"]["tuners"].as_array().map(Vec::len), Some(4));
    let stats = sim.stats();
    assert_eq!(stats.fault, "none");
    assert_eq!(stats.requests["about"], 3);
    assert_eq!(stats.requests["sim"], 7);
    assert_eq!(stats.channels, 40);
}

#[test]
fn picons_and_relay_whitelist() {
    let sim = Simulator::new(cfg());
    let h = sim.api_handler();
    for c in sim.expected() {
        let name = layout::picon_name(&c.sref);
        let resp = call(&h, req("GET", &format!("/picon/{name}.png"), "", &[]));
        assert_eq!(resp.status, 200, "{name}");
        assert!(read_all(resp).starts_with(b"\x89PNG"));
    }
    let resp = call(&h, req("GET", "/picon/1_0_1_0_0_0_0_0_0_0.png", "", &[]));
    assert_eq!(resp.status, 404);
    let q = "file=%2Fetc%2Fenigma2%2Fwhitelist_streamrelay";
    let body = read_all(call(&h, req("GET", "/file", q, &[])));
    let text = String::from_utf8(body).expect("text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let known: Vec<String> = sim.expected().into_iter().map(|c| c.sref).collect();
    assert!(lines.iter().all(|l| known.iter().any(|k| k == l)));
    // `/sim/expected` flags exactly the whitelisted channels.
    let mut relayed: Vec<String> = sim
        .expected()
        .into_iter()
        .filter(|c| c.relay)
        .map(|c| c.sref)
        .collect();
    relayed.sort();
    let mut listed = lines.clone();
    listed.sort();
    assert_eq!(relayed, listed);
    let v = get_json(&h, "/sim/expected", "");
    let flagged = v["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter(|c| c["relay"] == true)
        .count();
    assert_eq!(flagged, 2);
    assert_eq!(
        call(&h, req("GET", "/file", "file=/etc/passwd", &[])).status,
        404
    );
}

/// The stream body of the first channel on the streaming port.
fn first_stream(sim: &Simulator) -> Pin<Box<dyn smol::io::AsyncRead + Send>> {
    let sref = sim.expected()[0].sref.clone();
    let Body::Stream(body) = call(
        &sim.stream_handler(),
        req("GET", &format!("/{sref}"), "", &[]),
    )
    .body
    else {
        panic!("stream body");
    };
    body
}

/// Reads from a stream body until `want` bytes arrived or `limit` passed.
fn read_stream(
    body: &mut Pin<Box<dyn smol::io::AsyncRead + Send>>,
    want: usize,
    limit: Duration,
) -> Vec<u8> {
    smol::block_on(async {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        let deadline = Instant::now() + limit;
        while out.len() < want {
            let read = body.read(&mut buf);
            let timeout = async {
                async_io::Timer::at(deadline).await;
                Ok(usize::MAX)
            };
            match smol::future::or(read, timeout).await {
                Ok(usize::MAX) | Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    })
}

#[test]
fn stream_port_sends_paced_ts_and_fails_like_a_box() {
    let sim = Simulator::new(cfg());
    let h = sim.stream_handler();
    let sref = sim.expected()[0].sref.clone();
    let resp = call(&h, req("GET", &format!("/{sref}"), "", &[]));
    assert_eq!(resp.status, 200);
    assert!(resp.close);
    assert_eq!(header(&resp, "Content-Type"), Some("video/mpeg"));
    let Body::Stream(mut body) = resp.body else {
        panic!("stream body");
    };
    assert_eq!(sim.stats().streams_active, 1);
    // More than the clip, so the loop is exercised too; paced, so it takes a while.
    let want = stream::FALLBACK.len() + 188 * 7 * 10;
    let t = Instant::now();
    let data = read_stream(&mut body, want, Duration::from_secs(20));
    assert!(data.len() >= want);
    assert!(data.chunks(188).all(|p| p[0] == 0x47));
    let rate = stream::clip_bitrate(stream::FALLBACK) as f64;
    let min = (want - 188 * 7) as f64 * 8.0 / rate * 0.8;
    assert!(
        t.elapsed().as_secs_f64() >= min,
        "paced: {:?} < {min}",
        t.elapsed()
    );
    drop(body);
    assert_eq!(sim.stats().streams_active, 0);

    // Percent-encoded and group refs are known too.
    let alt = sim
        .expected()
        .into_iter()
        .find(|c| c.sref.starts_with("1:134:"))
        .expect("alt");
    let path = format!("/{}", crate::http::percent_encode(&alt.sref));
    let Body::Stream(mut body) = call(&h, req("GET", &path, "", &[])).body else {
        panic!("stream body");
    };
    assert_eq!(
        read_stream(&mut body, 188, Duration::from_secs(5)).first(),
        Some(&0x47)
    );

    let resp = call(&h, req("GET", "/1:0:19:1:2:3:C00000:0:0:0:", "", &[]));
    assert_eq!(resp.status, 200);
    assert!(resp.close);
    assert_eq!(read_all(resp), b"HTTP/1.0 400 Bad Request\r\n\r\n");
    assert_eq!(sim.stats().requests["stream"], 3);
}

#[test]
fn stall_fault_stops_streams_without_closing() {
    let sim = Simulator::new(SimConfig {
        fault: Fault::Stall,
        ..cfg()
    });
    let mut body = first_stream(&sim);
    let data = read_stream(&mut body, 1 << 20, Duration::from_millis(800));
    assert!(
        !data.is_empty() && data.len() <= 188 * 7 * 5,
        "{}",
        data.len()
    );
    assert_eq!(data[0], 0x47);
    assert_eq!(sim.stats().streams_active, 1, "still open");
    // The API port is unaffected by `stall`.
    assert_eq!(
        call(&sim.api_handler(), req("GET", "/api/about", "", &[])).status,
        200
    );
}

#[test]
fn about_reports_the_configured_tuners() {
    for (asked, listed) in [(2, 2), (4, 4), (8, 8), (0, 1), (20, 8)] {
        let sim = Simulator::new(SimConfig {
            tuners: asked,
            ..cfg()
        });
        let v = get_json(&sim.api_handler(), "/api/about", "");
        let tuners = v["info"]["tuners"].as_array().expect("tuners");
        assert_eq!(tuners.len(), listed, "tuners={asked}");
        assert_eq!(tuners[0]["name"], "Tuner A");
        assert_eq!(
            tuners[listed - 1]["name"],
            format!("Tuner {}", (b'A' + listed as u8 - 1) as char)
        );
    }
}

#[test]
fn eof_fault_ends_paced_streams_after_about_a_second() {
    // 1000 packets per second makes "one second" an exact byte count.
    let sim = Simulator::new(SimConfig {
        fault: Fault::Eof,
        stream_bitrate: Some(1000 * 188 * 8),
        ..cfg()
    });
    let mut body = first_stream(&sim);
    let t = Instant::now();
    let data = read_stream(&mut body, usize::MAX, Duration::from_secs(5));
    let took = t.elapsed();
    assert_eq!(data.len(), 1000 * 188);
    assert!(data.chunks(188).all(|p| p[0] == 0x47));
    assert!(
        (Duration::from_millis(800)..Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
    drop(body);
    assert_eq!(sim.stats().streams_active, 0);
}

// ---- Real sockets: the streaming port through `crate::http`, the relay's own loop. ----

/// The streaming and relay ports of a simulator on loopback, served by an executor on a
/// background thread; stopped on drop.
struct Ports {
    stream: std::net::SocketAddr,
    relay: std::net::SocketAddr,
    stop: Option<smol::channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ports {
    fn start(sim: &Simulator) -> Ports {
        let ex = Arc::new(Executor::new());
        let (stop, stop_rx) = smol::channel::bounded::<()>(1);
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let stream = crate::http::bind(any).expect("bind stream");
        let relay = crate::http::bind(any).expect("bind relay");
        let addrs = (
            stream.get_ref().local_addr().expect("addr"),
            relay.get_ref().local_addr().expect("addr"),
        );
        ex.spawn(crate::http::serve(
            stream,
            crate::http::ServerLimits::default(),
            Arc::new(sim.stream_handler()),
            ex.clone(),
            sim.stream_server_stats(),
            stop_rx.clone(),
        ))
        .detach();
        let (sim2, ex2, rx2) = (sim.clone(), ex.clone(), stop_rx.clone());
        ex.spawn(async move { sim2.serve_relay(relay, ex2, rx2).await })
            .detach();
        let thread = std::thread::spawn(move || {
            smol::block_on(ex.run(stop_rx.recv())).ok();
        });
        Ports {
            stream: addrs.0,
            relay: addrs.1,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Sends `head` and reads until the peer closes (or `limit` bytes arrived).
fn exchange(addr: std::net::SocketAddr, head: &str, limit: usize) -> Vec<u8> {
    use std::io::Write;
    let mut s = connect(addr);
    s.write_all(head.as_bytes()).expect("send");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

const RELAY_HEAD: &[u8] = b"HTTP/1.0 200 OK\nContent-Type: video/mp2t\nConnection: close\n\n";

fn relay_refs(sim: &Simulator) -> (String, String) {
    let e = sim.expected();
    let on = e
        .iter()
        .find(|c| c.relay)
        .expect("whitelisted")
        .sref
        .clone();
    let off = e.iter().find(|c| !c.relay).expect("plain").sref.clone();
    (on, off)
}

fn get(sref: &str, extra: &str) -> String {
    format!(
        "GET /{} HTTP/1.1\r\nHost: sim\r\n{extra}\r\n",
        crate::http::percent_encode(sref)
    )
}

/// Polls `cond` for up to 5 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn relay_streams_whitelisted_refs_with_a_bare_lf_head() {
    let sim = Simulator::new(cfg());
    let ports = Ports::start(&sim);
    let (on, off) = relay_refs(&sim);
    let want = RELAY_HEAD.len() + 188 * 7 * 3;
    let data = exchange(ports.relay, &get(&on, ""), want);
    assert!(
        data.starts_with(RELAY_HEAD),
        "{:?}",
        String::from_utf8_lossy(&data)
    );
    let body = &data[RELAY_HEAD.len()..];
    assert!(body.len() >= 188 * 7 * 2);
    assert!(body.chunks(188).all(|p| p[0] == 0x47));
    let st = sim.stats();
    assert_eq!((st.relay_streams_total, st.streams_total), (1, 0));
    eventually("relay stream closed", || {
        sim.stats().relay_streams_active == 0
    });

    // Not whitelisted (or unknown): the failed-tune text as the body of a 200.
    for sref in [off.as_str(), "1:0:19:1:2:3:C00000:0:0:0:"] {
        let data = exchange(ports.relay, &get(sref, ""), 1 << 20);
        assert_eq!(data, [RELAY_HEAD, TUNE_FAILED].concat(), "{sref}");
    }
    assert_eq!(sim.stats().relay_streams_total, 1);
}

#[test]
fn relay_closes_other_methods_and_bad_heads_unanswered() {
    let sim = Simulator::new(cfg());
    let ports = Ports::start(&sim);
    let (on, _) = relay_refs(&sim);
    let target = crate::http::percent_encode(&on);
    for head in [
        format!("POST /{target} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        format!("HEAD /{target} HTTP/1.1\r\n\r\n"),
        format!("OPTIONS /{target} HTTP/1.0\r\n\r\n"),
        "\x01\x02 nonsense\r\n\r\n".to_string(),
        format!("GET /{target} HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)),
    ] {
        let data = exchange(ports.relay, &head, 1 << 20);
        assert!(
            data.is_empty(),
            "{head:.40}: {:?}",
            String::from_utf8_lossy(&data)
        );
    }
    let st = sim.stats();
    assert_eq!(st.relay_connections_total, 5);
    assert_eq!(st.relay_streams_total, 0);
}

#[test]
fn relay_demands_credentials_up_front() {
    let sim = Simulator::new(SimConfig {
        relay_auth: Some(("root".to_string(), "s3cret".to_string())),
        ..cfg()
    });
    let ports = Ports::start(&sim);
    let (on, _) = relay_refs(&sim);
    let wrong = crate::receiver::http_client::basic_auth("root", "nope");
    for extra in [String::new(), format!("Authorization: {wrong}\r\n")] {
        let data = exchange(ports.relay, &get(&on, &extra), 1 << 20);
        assert_eq!(data, b"HTTP/1.0 401 Unauthorized\n\n");
    }
    let good = crate::receiver::http_client::basic_auth("root", "s3cret");
    let data = exchange(
        ports.relay,
        &get(&on, &format!("Authorization: {good}\r\n")),
        RELAY_HEAD.len() + 188,
    );
    assert!(data.starts_with(RELAY_HEAD));
    assert_eq!(data.get(RELAY_HEAD.len()), Some(&0x47));
    assert_eq!(sim.stats().relay_streams_total, 1);
}

/// Reads `total` bytes of the body after the head (ending in `head_end`); returns the
/// bytes per second and checks packet alignment on the way.
fn measure(addr: std::net::SocketAddr, request: &str, head_end: &[u8], total: usize) -> f64 {
    use std::io::Write;
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).expect("send");
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let first = loop {
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "closed in the head");
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(head_end.len()).position(|w| w == head_end) {
            break head.split_off(i + head_end.len());
        }
    };
    let t = Instant::now();
    let mut got = first.len();
    let mut offset = got % 188;
    assert!(first.chunks(188).all(|p| p[0] == 0x47));
    while got < total {
        let n = s.read(&mut buf).expect("read body");
        assert!(n > 0, "body ended after {got} bytes");
        // Packet starts inside this read: alignment over the whole body.
        let mut i = (188 - offset) % 188;
        while i < n {
            assert_eq!(buf[i], 0x47, "sync byte at {}", got + i);
            i += 188;
        }
        got += n;
        offset = got % 188;
    }
    got as f64 / t.elapsed().as_secs_f64()
}

#[test]
fn unpaced_streams_run_at_full_speed_on_both_ports() {
    let sim = Simulator::new(SimConfig {
        stream_bitrate: Some(0),
        ..cfg()
    });
    let ports = Ports::start(&sim);
    let (on, _) = relay_refs(&sim);
    let total = 48 << 20;
    let relay = measure(ports.relay, &get(&on, ""), b"\n\n", total);
    let direct = measure(ports.stream, &get(&on, ""), b"\r\n\r\n", total);
    for (port, rate) in [("relay", relay), ("8001", direct)] {
        assert!(rate > 50e6, "{port}: {:.1} MB/s", rate / 1e6);
    }
}

#[test]
fn counters_count_per_port() {
    let sim = Simulator::new(cfg());
    let ports = Ports::start(&sim);
    let (on, off) = relay_refs(&sim);
    // 8001: one stream, one failed tune, one connection without a request.
    let data = exchange(ports.stream, &get(&on, ""), 4096);
    assert!(data.starts_with(b"HTTP/1.1 200"));
    let data = exchange(
        ports.stream,
        &get("1:0:19:1:2:3:C00000:0:0:0:", ""),
        1 << 20,
    );
    assert!(data.ends_with(TUNE_FAILED));
    drop(connect(ports.stream));
    // Relay: one stream, one failed tune, one refused method.
    assert!(exchange(ports.relay, &get(&on, ""), 4096).starts_with(RELAY_HEAD));
    assert!(exchange(ports.relay, &get(&off, ""), 1 << 20).ends_with(TUNE_FAILED));
    assert!(exchange(ports.relay, "PUT / HTTP/1.0\r\n\r\n", 4096).is_empty());
    eventually("connections counted and streams closed", || {
        let st = sim.stats();
        st.stream_connections_total == 3
            && st.relay_connections_total == 3
            && st.streams_active == 0
            && st.relay_streams_active == 0
    });
    let st = sim.stats();
    assert_eq!((st.streams_total, st.relay_streams_total), (1, 1));
    assert_eq!(st.requests["stream"], 2);
    let v = get_json(&sim.api_handler(), "/sim/stats", "");
    for (key, want) in [
        ("streams_total", 1),
        ("stream_connections_total", 3),
        ("relay_streams_active", 0),
        ("relay_streams_total", 1),
        ("relay_connections_total", 3),
    ] {
        assert_eq!(v[key], want, "{key}");
    }
    // The eof fault ends relay streams too: one second at the clip's rate.
    sim.set_fault(Fault::Eof);
    let data = exchange(ports.relay, &get(&on, ""), usize::MAX);
    let packets = stream::packets_in(
        stream::clip_bitrate(stream::FALLBACK),
        Duration::from_secs(1),
    );
    assert_eq!(data.len(), RELAY_HEAD.len() + packets as usize * 188);
}

/// The first two passes of the stream of the first channel, as bytes.
fn two_passes(sim: &Simulator) -> (Vec<u8>, Vec<u8>) {
    let mut body = first_stream(sim);
    let len = stream::FALLBACK.len();
    let mut data = read_stream(&mut body, 2 * len, Duration::from_secs(20));
    assert!(data.len() >= 2 * len, "only {} bytes", data.len());
    data.truncate(2 * len);
    let second = data.split_off(len);
    (data, second)
}

#[test]
fn paced_streams_loop_seamlessly_unpaced_ones_verbatim() {
    let paced = Simulator::new(SimConfig {
        stream_bitrate: Some(50_000_000),
        ..cfg()
    });
    let (first, second) = two_passes(&paced);
    assert_eq!(first, stream::FALLBACK);
    assert_ne!(second, stream::FALLBACK, "a paced pass is shifted");
    let unpaced = Simulator::new(SimConfig {
        stream_bitrate: Some(0),
        ..cfg()
    });
    let (first, second) = two_passes(&unpaced);
    assert_eq!(
        (first.as_slice(), second.as_slice()),
        (stream::FALLBACK, stream::FALLBACK)
    );
}
