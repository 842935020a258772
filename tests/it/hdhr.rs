//! HDHomeRun emulation: the HTTP endpoints' exact shapes, the device id across restarts,
//! the real `hdhomerun_config discover` against the UDP service, SSDP search and byebye.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// The libhdhomerun device id check, written here from its description (independent of
/// the daemon's code): nibbles alternately through a table and plain, XORed, give 0.
fn device_id_checksum_ok(id: u32) -> bool {
    const TABLE: [u32; 16] = [
        0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0,
    ];
    let nibble = |shift: u32| (id >> shift) & 0xF;
    let sum = TABLE[nibble(28) as usize]
        ^ nibble(24)
        ^ TABLE[nibble(20) as usize]
        ^ nibble(16)
        ^ TABLE[nibble(12) as usize]
        ^ nibble(8)
        ^ TABLE[nibble(4) as usize]
        ^ nibble(0);
    sum == 0
}

/// CRC-32 (IEEE), bit by bit: the check the discovery packets carry.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A discover request packet: type 2, device type and id tags, CRC little-endian.
fn discover_request(device_type: u32, device_id: u32) -> Vec<u8> {
    let mut p = vec![0x00, 0x02, 0x00, 0x0C, 0x01, 0x04];
    p.extend_from_slice(&device_type.to_be_bytes());
    p.extend_from_slice(&[0x02, 0x04]);
    p.extend_from_slice(&device_id.to_be_bytes());
    let crc = crc32(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// Decodes a discover reply (type 3) into its tags, checking length and CRC.
fn decode_reply(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert!(p.len() >= 8, "reply too short: {p:02x?}");
    let (body, crc) = p.split_at(p.len() - 4);
    assert_eq!(crc32(body).to_le_bytes(), crc, "reply CRC");
    assert_eq!(&body[..2], &[0x00, 0x03], "reply type");
    let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
    assert_eq!(len, body.len() - 4, "reply payload length");
    let mut tags = Vec::new();
    let mut rest = &body[4..];
    while !rest.is_empty() {
        let tag = rest[0];
        let (n, skip) = if rest[1] & 0x80 == 0 {
            (usize::from(rest[1]), 2)
        } else {
            (usize::from(rest[1] & 0x7F) | (usize::from(rest[2]) << 7), 3)
        };
        tags.push((tag, rest[skip..skip + n].to_vec()));
        rest = &rest[skip + n..];
    }
    tags
}

fn tag(tags: &[(u8, Vec<u8>)], t: u8) -> &[u8] {
    &tags
        .iter()
        .find(|(k, _)| *k == t)
        .unwrap_or_else(|| panic!("tag {t:#x} missing in {tags:?}"))
        .1
}

/// A UDP port free on every address right now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    s
}

#[test]
fn endpoints_have_the_exact_shapes_clients_expect_and_the_id_survives_restarts() {
    let sim = Sim::start(&[]);
    let data = TempDir::new("hdhr-http");
    // One tuner, so the lineup's second channel meets the tuner limit.
    let d = Daemon::start(&sim, data.path(), &[("XG2G_MAX_STREAMS", "1")]);
    d.refresh();
    let base = format!("http://{}", d.addr);

    let discover = d.get("/discover.json");
    assert_eq!(discover.status, 200);
    assert_eq!(discover.header("content-type"), Some("application/json"));
    let v = discover.json();
    assert!(
        v["TunerCount"].is_u64(),
        "TunerCount must be an integer: {v}"
    );
    assert_eq!(v["TunerCount"], 1);
    assert_eq!(v["TunerCount"], d.status()["streams"]["limit"]);
    let id_text = v["DeviceID"].as_str().expect("DeviceID string");
    assert_eq!(id_text.len(), 8);
    let id = u32::from_str_radix(id_text, 16).expect("hex DeviceID");
    assert!(device_id_checksum_ok(id), "{id_text} fails the checksum");
    assert_eq!(v["BaseURL"], base);
    assert_eq!(v["LineupURL"], format!("{base}/lineup.json"));
    for key in [
        "FriendlyName",
        "Manufacturer",
        "ModelNumber",
        "FirmwareName",
        "FirmwareVersion",
        "DeviceAuth",
    ] {
        assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {v}");
    }
    assert_eq!(v["FriendlyName"], "xg2g");

    // The lineup follows the playlist: same numbers (as strings), same order, same refs.
    let playlist = String::from_utf8(d.file("playlist.m3u")).unwrap();
    let numbers: Vec<String> = playlist
        .lines()
        .filter_map(|l| l.split("tvg-chno=\"").nth(1))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    let paths: Vec<String> = playlist
        .lines()
        .filter(|l| l.starts_with("http"))
        .map(|l| l[l.find("/stream/").unwrap()..].to_string())
        .collect();
    let lineup = d.get("/lineup.json").json();
    let entries = lineup.as_array().expect("array");
    assert_eq!(entries.len(), numbers.len());
    for ((e, number), path) in entries.iter().zip(&numbers).zip(&paths) {
        assert_eq!(e["GuideNumber"], Value::String(number.clone()), "{e}");
        assert!(e["GuideName"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(e["URL"], format!("{base}{path}"));
        assert!(e["HD"] == 0 || e["HD"] == 1, "{e}");
        assert_eq!(e.as_object().unwrap().len(), 4, "{e}");
    }
    assert_eq!(d.get("/lineup.json?show=found").json(), lineup);
    // The guide lets Plex match by number.
    let guide = String::from_utf8(d.file("xmltv.xml")).unwrap();
    assert!(guide.contains(&format!("<display-name>{}</display-name>", numbers[0])));

    // A lineup URL streams.
    let url = entries[0]["URL"].as_str().unwrap();
    let path = &url[base.len()..];
    let mut sock = std::net::TcpStream::connect(d.addr).unwrap();
    use std::io::Write as _;
    write!(sock, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, status, first) = read_head(&mut sock, 8192, "lineup stream");
    assert_eq!(status, 200);
    if let Some(b) = first.first() {
        assert_eq!(*b, 0x47);
    }
    // The one tuner is taken: another channel gets what a busy HDHomeRun answers.
    let other = entries[1]["URL"].as_str().unwrap();
    let busy = d.get(&other[base.len()..]);
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("x-hdhomerun-error"), Some("805"));
    drop(sock);

    assert_eq!(
        d.get("/lineup_status.json").json(),
        serde_json::json!({"ScanInProgress": 0, "ScanPossible": 1, "Source": "Cable",
                           "SourceList": ["Cable"]})
    );

    // A scan starts a refresh, without a token.
    let before = d.status()["refresh"]["completed"].as_u64().unwrap_or(0);
    let scan = http(d.addr, "POST", "/lineup.post?scan=start", &[]);
    assert_eq!(scan.status, 200);
    eventually(Duration::from_secs(20), "the scan's refresh", || {
        d.status()["refresh"]["completed"].as_u64().unwrap_or(0) > before
    });
    assert_eq!(
        http(d.addr, "POST", "/lineup.post?scan=abort", &[]).status,
        200
    );
    assert_eq!(http(d.addr, "POST", "/lineup.post?scan=x", &[]).status, 400);

    // device.xml (also at /) is well-formed XML naming the same device.
    let xml = d.get("/device.xml");
    assert_eq!(xml.status, 200);
    assert_eq!(d.get("/").body, xml.body);
    let file = data.path().join("device.xml");
    std::fs::write(&file, &xml.body).unwrap();
    let (ok, out) = run_tool(
        "xmllint",
        &["--noout", file.to_str().unwrap()],
        "libxml2-utils",
    );
    assert!(ok, "xmllint: {out}");
    let text = xml.text();
    assert!(text.contains("<deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>"));
    assert!(text.contains(&format!("<URLBase>{base}</URLBase>")));
    assert!(text.contains(&format!("<serialNumber>{id_text}</serialNumber>")));
    let udn = text
        .split("<UDN>")
        .nth(1)
        .unwrap()
        .split("</UDN>")
        .next()
        .unwrap();
    assert!(udn.starts_with("uuid:"), "{udn}");

    // The same data folder, the same tuner.
    drop(d);
    let d = Daemon::start(&sim, data.path(), &[]);
    let again = d.get("/discover.json").json();
    assert_eq!(again["DeviceID"], id_text);
    assert!(d.get("/device.xml").text().contains(udn));

    // Settings win, and a wrong one stops the start with a clear message.
    drop(d);
    let d = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_HDHR_DEVICE_ID", "103A9917"),
            ("XG2G_HDHR_TUNER_COUNT", "2"),
            ("XG2G_HDHR_FRIENDLY_NAME", "Wohnzimmer"),
            ("XG2G_PUBLIC_URL", "http://tv.lan:8080"),
        ],
    );
    let v = d.get("/discover.json").json();
    assert_eq!(v["DeviceID"], "103A9917");
    assert_eq!(v["TunerCount"], 2);
    assert_eq!(v["FriendlyName"], "Wohnzimmer");
    assert_eq!(v["BaseURL"], "http://tv.lan:8080");
    drop(d);

    // Off: the endpoints are gone.
    let d = Daemon::start(&sim, data.path(), &[("XG2G_HDHR_ENABLED", "false")]);
    assert_eq!(d.get("/discover.json").status, 404);
    assert_eq!(d.get("/lineup.json").status, 404);
}

#[test]
fn a_bad_device_id_setting_is_refused_at_start() {
    let sim = Sim::start(&[]);
    let data = TempDir::new("hdhr-bad-id");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xg2g"));
    cmd.arg("serve")
        .env("XG2G_OWI_BASE", sim.base())
        .env("XG2G_DATA", data.path())
        .env("XG2G_HDHR_DEVICE_ID", "12345678");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("XG2G_HDHR_DEVICE_ID"), "{err}");
}

#[test]
fn hdhomerun_config_discovers_the_tuner_and_garbage_gets_no_answer() {
    let sim = Sim::start(&[]);
    let data = TempDir::new("hdhr-udp");
    // The real client sends to port 65001 only: this is the one test that uses it.
    let d = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_HDHR_DISCOVERY_PORT", "65001"),
            ("XG2G_HDHR_DEVICE_ID", "103A9917"),
            ("XG2G_HDHR_TUNER_COUNT", "3"),
        ],
    );
    eventually(Duration::from_secs(10), "discovery listening", || {
        d.status()["hdhr"]["discovery"]["state"] == "listening"
    });

    let (ok, out) = run_tool(
        "hdhomerun_config",
        &["discover", "127.0.0.1"],
        "hdhomerun-config",
    );
    assert!(ok, "hdhomerun_config discover: {out}");
    assert!(
        out.contains("hdhomerun device 103A9917 found at 127.0.0.1"),
        "{out}"
    );

    // The same question by hand, the answer checked by this test's own decoder.
    let target: SocketAddr = "127.0.0.1:65001".parse().unwrap();
    let client = udp_client();
    client
        .send_to(&discover_request(0xFFFF_FFFF, 0xFFFF_FFFF), target)
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = client.recv_from(&mut buf).expect("a discover reply");
    let tags = decode_reply(&buf[..n]);
    assert_eq!(tag(&tags, 0x01), 1u32.to_be_bytes(), "device type tuner");
    assert_eq!(tag(&tags, 0x02), 0x103A_9917u32.to_be_bytes(), "device id");
    assert_eq!(tag(&tags, 0x10), [3], "tuner count");
    let base = format!("http://{}", d.addr);
    assert_eq!(tag(&tags, 0x2A), base.as_bytes(), "base URL");
    assert_eq!(
        tag(&tags, 0x27),
        format!("{base}/lineup.json").as_bytes(),
        "lineup URL"
    );
    // Asked for by id and type: answered; another id or type: silence.
    client
        .send_to(&discover_request(1, 0x103A_9917), target)
        .unwrap();
    assert!(client.recv_from(&mut buf).is_ok(), "asked by our id");
    // The daemon counts an answer after sending it and handles datagrams one at a time:
    // once a malformed datagram sent after the reply is counted, so is the reply.
    let malformed_name =
        "xg2g_discovery_datagrams_total{protocol=\"hdhomerun\",result=\"malformed\"}";
    let mut truncated = discover_request(0xFFFF_FFFF, 0xFFFF_FFFF);
    truncated.truncate(9);
    client.send_to(&truncated, target).unwrap();
    let first_malformed = format!("{malformed_name} 1");
    eventually(
        Duration::from_secs(5),
        "the first malformed datagram counted",
        || {
            d.get("/metrics")
                .text()
                .lines()
                .any(|l| l == first_malformed)
        },
    );
    let answered =
        d.metric("xg2g_discovery_datagrams_total{protocol=\"hdhomerun\",result=\"answered\"}");

    let mut garbage = discover_request(0xFFFF_FFFF, 0xFFFF_FFFF);
    let last = garbage.len() - 1;
    garbage[last] ^= 0xFF; // bad CRC
    let silent: Vec<Vec<u8>> = vec![
        discover_request(1, 0x103A_9918),
        discover_request(5, 0xFFFF_FFFF),
        garbage,
        truncated,
        vec![0xFF; 3000],
        Vec::new(),
        b"M-SEARCH * HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for packet in &silent {
        client.send_to(packet, target).unwrap();
        assert!(
            client.recv_from(&mut buf).is_err(),
            "answered {packet:02x?}"
        );
    }
    // The barrier's one and at least 4 of the 5 malformed ones above.
    let malformed = d.metric(malformed_name);
    assert!(malformed >= 1.0 + 4.0, "malformed counted: {malformed}");
    assert_eq!(
        d.metric("xg2g_discovery_datagrams_total{protocol=\"hdhomerun\",result=\"answered\"}"),
        answered
    );
    // Still serving after all that.
    let (ok, out) = run_tool(
        "hdhomerun_config",
        &["discover", "127.0.0.1"],
        "hdhomerun-config",
    );
    assert!(ok && out.contains("103A9917"), "{out}");
}

#[test]
fn a_taken_port_is_reported_not_fatal() {
    let sim = Sim::start(&[]);
    let data = TempDir::new("hdhr-taken");
    let taken = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let d = Daemon::start(&sim, data.path(), &[("XG2G_HDHR_DISCOVERY_PORT", &port)]);
    let status = d.status();
    assert_eq!(status["hdhr"]["discovery"]["state"], "failed", "{status}");
    assert!(
        status["hdhr"]["discovery"]["error"]
            .as_str()
            .unwrap()
            .contains(&port)
    );
    assert_eq!(d.get("/discover.json").status, 200);
}

#[test]
fn ssdp_answers_searches_and_says_goodbye() {
    let sim = Sim::start(&[]);
    let data = TempDir::new("hdhr-ssdp");
    let port = free_udp_port();
    let port_text = port.to_string();
    // Listens to the group on loopback, as a UPnP control point would.
    let group = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    group.set_reuse_address(true).unwrap();
    group
        .bind(&SocketAddr::from((Ipv4Addr::new(239, 255, 255, 250), port)).into())
        .unwrap();
    group
        .join_multicast_v4(&Ipv4Addr::new(239, 255, 255, 250), &Ipv4Addr::LOCALHOST)
        .unwrap();
    let group: UdpSocket = group.into();
    group
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let mut d = Daemon::start(
        &sim,
        data.path(),
        &[
            ("XG2G_SSDP_ENABLED", "true"),
            ("XG2G_SSDP_PORT", &port_text),
            ("XG2G_SSDP_INTERFACE", "127.0.0.1"),
        ],
    );
    let base = format!("http://{}", d.addr);
    let mut buf = [0u8; 4096];
    // The start announces the tuner.
    let (n, _) = group.recv_from(&mut buf).expect("NOTIFY alive");
    let alive = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(alive.starts_with("NOTIFY * HTTP/1.1\r\n"), "{alive}");
    assert!(alive.contains("ssdp:alive"), "{alive}");

    let client = udp_client();
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let search = |st: &str| {
        format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n"
        )
    };
    client
        .send_to(
            search("urn:schemas-upnp-org:device:MediaServer:1").as_bytes(),
            target,
        )
        .unwrap();
    let (n, _) = client.recv_from(&mut buf).expect("an M-SEARCH response");
    let response = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let header = |name: &str| {
        response
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{name} missing in {response}"))
    };
    assert_eq!(header("LOCATION"), format!("{base}/device.xml"));
    assert_eq!(header("CACHE-CONTROL"), "max-age=1800");
    assert_eq!(header("ST"), "urn:schemas-upnp-org:device:MediaServer:1");
    let usn = header("USN");
    assert!(
        usn.starts_with("uuid:") && usn.ends_with("::urn:schemas-upnp-org:device:MediaServer:1"),
        "{usn}"
    );
    // LOCATION serves a parseable device description of the same device.
    let xml = d.get("/device.xml");
    assert_eq!(xml.status, 200);
    let uuid = usn.split("::").next().unwrap();
    assert!(xml.text().contains(&format!("<UDN>{uuid}</UDN>")));

    // ssdp:all gets one answer per type; another device's type gets none; garbage none.
    client
        .send_to(search("ssdp:all").as_bytes(), target)
        .unwrap();
    for _ in 0..3 {
        client.recv_from(&mut buf).expect("ssdp:all responses");
    }
    for silent in [
        search("urn:schemas-upnp-org:device:Printer:1"),
        "GET / HTTP/1.1\r\n\r\n".to_string(),
        "\u{0}\u{1}garbage".to_string(),
    ] {
        client.send_to(silent.as_bytes(), target).unwrap();
        assert!(client.recv_from(&mut buf).is_err(), "answered {silent:?}");
    }
    assert!(
        d.metric("xg2g_discovery_datagrams_total{protocol=\"ssdp\",result=\"malformed\"}") >= 1.0
    );

    // Shutdown says goodbye to the group.
    d.proc.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut byebye = false;
    while std::time::Instant::now() < deadline && !byebye {
        if let Ok((n, _)) = group.recv_from(&mut buf) {
            byebye = String::from_utf8_lossy(&buf[..n]).contains("ssdp:byebye");
        }
    }
    assert!(byebye, "no ssdp:byebye at shutdown");
    eventually(Duration::from_secs(10), "daemon exit", || !d.proc.alive());
}
