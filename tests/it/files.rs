//! The playlist and the guide, end to end: simulator → daemon → files → HTTP → validators.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{Daemon, Sim, TOKEN, TempDir, gunzip, http, run_tool};

/// One `#EXTINF` entry of the playlist.
#[derive(Debug)]
struct Entry {
    attrs: Vec<(String, String)>,
    name: String,
    url: String,
}

impl Entry {
    fn attr(&self, key: &str) -> &str {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("attribute {key} missing in {self:?}"))
    }
}

/// Parses the M3U strictly: every entry is exactly two lines and attributes are closed.
fn parse_m3u(text: &str) -> (String, Vec<Entry>) {
    let mut lines = text.lines();
    let header = lines.next().expect("header").to_string();
    assert!(header.starts_with("#EXTM3U"), "{header}");
    let mut entries = Vec::new();
    while let Some(extinf) = lines.next() {
        let rest = extinf
            .strip_prefix("#EXTINF:-1 ")
            .unwrap_or_else(|| panic!("not an EXTINF line: {extinf:?}"));
        let mut attrs = Vec::new();
        let mut s = rest;
        loop {
            if let Some(name) = s.strip_prefix(',') {
                let url = lines.next().expect("url line").to_string();
                assert!(url.starts_with("http://"), "url line: {url:?}");
                assert!(!url.contains(char::is_whitespace));
                entries.push(Entry {
                    attrs,
                    name: name.to_string(),
                    url,
                });
                break;
            }
            s = s.trim_start();
            let (key, after) = s
                .split_once("=\"")
                .unwrap_or_else(|| panic!("attr in {rest:?}"));
            let (value, after) = after.split_once('"').expect("closed attribute");
            attrs.push((key.to_string(), value.to_string()));
            s = after;
        }
    }
    (header, entries)
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn playlist_and_guide_match_the_receiver_and_validate() {
    let sim = Sim::start(&["--channels", "60", "--days", "2", "--events-per-day", "24"]);
    let data = TempDir::new("files");
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[("XG2G_PUBLIC_URL", "http://tv.example:8080")],
    );
    let st = daemon.wait_refreshed(Duration::from_secs(60));
    assert_eq!(st["refresh"]["last_result"], "ok", "{st}");

    // Playlist: every playable channel once, in order, right group, readable name.
    let expected = sim.json("/sim/expected");
    let expected = expected["channels"].as_array().expect("expected channels");
    let playlist = daemon.get("/playlist.m3u");
    assert_eq!(playlist.status, 200);
    assert!(playlist.header("content-type").unwrap().contains("mpegurl"));
    let (header, entries) = parse_m3u(&playlist.text());
    assert!(
        header.contains("x-tvg-url=\"http://tv.example:8080/xmltv.xml\""),
        "{header}"
    );
    assert_eq!(entries.len(), expected.len(), "channel count");
    let mut ids = HashSet::new();
    for (i, (entry, want)) in entries.iter().zip(expected).enumerate() {
        assert_eq!(
            entry.attr("group-title"),
            want["group"].as_str().unwrap().replace('"', "'")
        );
        assert_eq!(
            entry.name,
            want["name"].as_str().unwrap().replace('\n', " ")
        );
        assert_eq!(entry.attr("tvg-chno"), (i + 1).to_string());
        assert!(
            entry.url.starts_with("http://tv.example:8080/stream/"),
            "{}",
            entry.url
        );
        let id = entry.attr("tvg-id");
        assert!(is_xmltv_id(id), "tvg-id {id:?}");
        assert!(ids.insert(id.to_string()), "duplicate tvg-id {id}");
    }
    // Hostile names from the simulator stayed inside their lines.
    assert!(entries.iter().any(|e| e.name.contains('&')));
    assert!(entries.iter().any(|e| e.name.contains("#EXTINF")));

    // Guide: well-formed, DTD-valid, validated by the XMLTV project's own tool.
    let xml_path = data.path().join("xmltv.xml");
    let xml_arg = xml_path.to_str().unwrap();
    let (ok, out) = run_tool("xmllint", &["--noout", "--nonet", xml_arg], "libxml2-utils");
    assert!(ok, "xmllint: {out}");
    let dtd = "/usr/share/xmltv/xmltv.dtd";
    let (ok, out) = run_tool(
        "xmllint",
        &["--noout", "--nonet", "--dtdvalid", dtd, xml_arg],
        "libxml2-utils",
    );
    assert!(ok, "xmllint --dtdvalid: {out}");
    let (ok, out) = run_tool(
        "tv_validate_file",
        &["--dtd-file", dtd, xml_arg],
        "xmltv-util",
    );
    assert!(ok, "tv_validate_file: {out}");

    let xml = String::from_utf8(daemon.file("xmltv.xml")).expect("utf-8 guide");
    // Channel ids are the playlist's tvg-ids; every programme points at one of them.
    let guide_ids: HashSet<String> = xml
        .split("<channel id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    assert!(!guide_ids.is_empty());
    assert!(guide_ids.is_subset(&ids), "guide ids not in playlist");
    // Programme count: every event the simulator generated for the listed channels,
    // minus the ones without a title (which a client must drop), each exactly once.
    let want: u64 = expected
        .iter()
        .map(|c| c["kept_events"].as_u64().unwrap())
        .sum();
    let programmes = count(&xml, "<programme ");
    assert_eq!(programmes as u64, want);
    assert_eq!(
        daemon.status()["programmes"].as_u64().unwrap(),
        programmes as u64
    );
    assert!(!xml.contains("<desc/>") && !xml.contains("<desc></desc>"));
    assert!(
        xml.contains("Tom &amp; Jerry"),
        "entities decoded exactly once"
    );

    // The gzip variant is the same document.
    let gz = daemon.get("/xmltv.xml.gz");
    assert_eq!(gz.status, 200);
    assert!(
        gunzip(&gz.body) == xml.as_bytes(),
        "gzip differs from the xml"
    );
    let served = daemon.get("/xmltv.xml");
    assert!(
        served.body == xml.as_bytes(),
        "served guide differs from the file"
    );
    assert!(served.header("content-type").unwrap().contains("xml"));
}

fn is_xmltv_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

#[test]
fn conditional_get_readiness_and_refresh_auth() {
    let sim = Sim::start(&["--channels", "10", "--days", "1"]);
    let data = TempDir::new("ready");
    let daemon = Daemon::start(&sim, data.path(), &[("XG2G_INITIAL_REFRESH", "false")]);
    // Not ready before the first refresh; the files answer 503 with a code.
    assert_eq!(daemon.get("/readyz").status, 503);
    let r = daemon.get("/playlist.m3u");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "E007");
    assert_eq!(daemon.get("/healthz").status, 200);

    // Refresh auth: fail-closed.
    let a = daemon.addr;
    let r = http(a, "POST", "/api/v1/refresh", &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("E002")));
    let r = http(
        a,
        "POST",
        "/api/v1/refresh",
        &[("Authorization", "Bearer nope")],
    );
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("E003")));
    let r = http(a, "GET", "/api/v1/refresh", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let auth = format!("Bearer {TOKEN}");
    let r = http(a, "POST", "/api/v1/refresh", &[("Authorization", &auth)]);
    assert_eq!(r.status, 202, "{}", r.text());
    daemon.wait_refreshed(Duration::from_secs(60));
    assert_eq!(daemon.get("/readyz").status, 200);

    // ETag / 304 / HEAD.
    let r = daemon.get("/playlist.m3u");
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("etag").to_string();
    let last_modified = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let r = http(a, "GET", "/playlist.m3u", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = http(
        a,
        "GET",
        "/playlist.m3u",
        &[("If-Modified-Since", &last_modified)],
    );
    assert_eq!(r.status, 304);
    let r = http(a, "GET", "/playlist.m3u", &[("If-None-Match", "\"other\"")]);
    assert_eq!(r.status, 200);
    let r = http(a, "HEAD", "/xmltv.xml", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let len: u64 = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, daemon.file("xmltv.xml").len() as u64);

    // Unknown path / wrong method.
    let r = daemon.get("/nope");
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("E005")));
    let r = http(a, "DELETE", "/playlist.m3u", &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (405, Some("E006")));

    // Metrics pass Debian's promtool.
    let metrics = daemon.get("/metrics");
    assert_eq!(metrics.status, 200);
    let file = data.path().join("metrics.txt");
    std::fs::write(&file, &metrics.body).unwrap();
    let (ok, out) = run_tool(
        "sh",
        &[
            "-c",
            &format!("promtool check metrics < {}", file.display()),
        ],
        "prometheus",
    );
    assert!(ok, "promtool: {out}\n{}", metrics.text());
    let text = metrics.text();
    for name in [
        "xg2g_refresh_duration_seconds",
        "xg2g_last_refresh_success_timestamp_seconds",
        "xg2g_channels",
        "xg2g_programmes",
        "xg2g_receiver_requests_total",
        "xg2g_http_requests_total",
    ] {
        assert!(text.contains(name), "metric {name} missing");
    }
}

#[test]
fn direct_receiver_urls_and_selected_bouquets() {
    let sim = Sim::start(&["--channels", "30", "--days", "1"]);
    let data = TempDir::new("direct");
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_USE_PROXY_URLS", "false"),
            ("XG2G_BOUQUET", "\"österreich, schweiz\",News & Sport"),
            ("XG2G_STREAM_PORT", "8001"),
            ("XG2G_EPG_SOURCE", "per-service"),
        ],
    );
    let st = daemon.wait_refreshed(Duration::from_secs(60));
    assert_eq!(st["refresh"]["last_result"], "ok", "{st}");
    let (_, entries) = parse_m3u(&daemon.get("/playlist.m3u").text());
    assert!(!entries.is_empty());
    let groups: HashSet<&str> = entries.iter().map(|e| e.attr("group-title")).collect();
    assert_eq!(
        groups,
        HashSet::from(["Österreich, Schweiz", "News & Sport"])
    );
    for e in &entries {
        assert!(e.url.starts_with("http://127.0.0.1:8001/1:"), "{}", e.url);
    }
    // Per-service EPG gives the same guide as the bouquet EPG would: valid and non-empty.
    let xml = String::from_utf8(daemon.file("xmltv.xml")).unwrap();
    assert!(xml.contains("<programme "));
}

#[test]
fn latin1_receiver_gives_the_same_names() {
    let sim = Sim::start(&["--channels", "25", "--days", "1", "--latin1"]);
    let data = TempDir::new("latin1");
    let daemon = Daemon::start(&sim, data.path(), &[]);
    let st = daemon.wait_refreshed(Duration::from_secs(60));
    assert_eq!(st["refresh"]["last_result"], "ok", "{st}");
    let expected = sim.json("/sim/expected");
    let expected = expected["channels"].as_array().unwrap();
    let (_, entries) = parse_m3u(&daemon.get("/playlist.m3u").text());
    assert_eq!(entries.len(), expected.len());
    for (entry, want) in entries.iter().zip(expected) {
        assert_eq!(entry.name, want["name"].as_str().unwrap());
    }
    assert!(
        entries
            .iter()
            .any(|e| e.name.contains('ö') || e.name.contains('ü'))
    );
    let xml = data.path().join("xmltv.xml");
    let (ok, out) = run_tool(
        "xmllint",
        &["--noout", "--nonet", xml.to_str().unwrap()],
        "libxml2-utils",
    );
    assert!(ok, "{out}");
}

#[test]
fn demo_serves_a_playlist() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = TempDir::new("demo");
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.arg("demo")
        .env("XG2G_LISTEN", format!("127.0.0.1:{port}"))
        .env("XG2G_DATA", data.path());
    let demo = crate::common::Proc::spawn(cmd);
    let line = demo.wait_line("playlist:", Duration::from_secs(60));
    assert!(
        line.contains(&format!("http://127.0.0.1:{port}/playlist.m3u")),
        "{line}"
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    // The banner comes out just before the daemon binds: connect only once it listens.
    crate::common::eventually(Duration::from_secs(60), "demo playlist", || {
        std::net::TcpStream::connect(addr).is_ok()
            && http(addr, "GET", "/playlist.m3u", &[]).status == 200
    });
    let text = http(addr, "GET", "/playlist.m3u", &[]).text();
    assert!(text.starts_with("#EXTM3U"));
}

#[test]
fn metrics_on_their_own_listener() {
    let sim = Sim::start(&["--channels", "5", "--days", "1"]);
    let data = TempDir::new("mlisten");
    let daemon = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_METRICS_LISTEN", "127.0.0.1:0"),
            ("XG2G_INITIAL_REFRESH", "false"),
        ],
    );
    let line = daemon
        .proc
        .wait_line("event=listening_metrics addr=", Duration::from_secs(10));
    let addr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
    assert_eq!(daemon.get("/metrics").status, 404);
    let r = http(addr, "GET", "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("xg2g_build_info"));
    assert_eq!(http(addr, "GET", "/playlist.m3u", &[]).status, 404);
}
