//! SSDP (UPnP 1.0 discovery) messages: parsing M-SEARCH datagrams, writing search
//! responses and NOTIFY announcements for our one MediaServer root device.
//!
//! Rules: pure code, no sockets, no clock, no settings; the caller owns the UDP socket
//! on 239.255.255.250:1900, the MX delay and the announce schedule. Parsing reads at
//! most [`MAX_DATAGRAM`] bytes, lines of at most [`MAX_LINE`] bytes and at most
//! [`MAX_HEADERS`] headers, never panics and never echoes client text into a message we
//! send. Written messages are complete datagrams with CRLF line ends and a blank line.

use std::net::Ipv4Addr;

/// The SSDP multicast group every announcement and multicast search goes to.
pub const MULTICAST_ADDR: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);

/// The SSDP UDP port, for searches, responses' source and announcements.
pub const PORT: u16 = 1900;

/// The UPnP device type we announce and answer for; Plex and Jellyfin look for it.
pub const DEVICE_TYPE: &str = "urn:schemas-upnp-org:device:MediaServer:1";

/// Longest datagram parsed; longer ones are rejected unread.
pub const MAX_DATAGRAM: usize = 4096;

/// Longest request or header line (without its line end) that is accepted.
pub const MAX_LINE: usize = 1024;

/// Most header lines a datagram may carry.
pub const MAX_HEADERS: usize = 32;

/// Largest MX (seconds) [`parse`] reports: UDA 1.1 says to treat anything above as 5,
/// and it keeps a caller's random response delay short.
pub const MX_MAX: u32 = 5;

const ST_ALL: &str = "ssdp:all";
const ST_ROOT: &str = "upnp:rootdevice";
const UUID_PREFIX: &str = "uuid:";

/// What an M-SEARCH asks for (its `ST` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchTarget {
    /// `ssdp:all`: every device and service.
    All,
    /// `upnp:rootdevice`: root devices.
    RootDevice,
    /// Exactly [`DEVICE_TYPE`] (compared ignoring ASCII case).
    DeviceType,
    /// `uuid:<id>`; holds `<id>` without the prefix, as sent (never empty).
    Uuid(String),
    /// Any other target (other device or service types, `uuid:` with nothing after it),
    /// as sent; we never answer it.
    Other(String),
}

/// One parsed M-SEARCH request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// What is searched for.
    pub target: SearchTarget,
    /// The `MX` header in seconds, capped at [`MX_MAX`]; `None` when absent (unicast
    /// searches). UDA says a multicast search without MX is to be ignored: the caller,
    /// which knows where the datagram went, decides.
    pub mx: Option<u32>,
}

/// Why a datagram is not SSDP we can read. Display is one line naming what was wrong and
/// never contains text from the datagram.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The datagram is longer than [`MAX_DATAGRAM`]; it was not read.
    #[error("datagram of {len} bytes is longer than the {MAX_DATAGRAM}-byte limit")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The head is not UTF-8 text or has control characters other than tab and line ends.
    #[error("datagram is not text (invalid UTF-8 or control characters)")]
    NotText,
    /// The first line is not `M-SEARCH * HTTP/1.1`, `NOTIFY * HTTP/1.1` or an HTTP/1.x
    /// status line (e.g. a GET, or nothing at all).
    #[error("request line is not M-SEARCH, NOTIFY or an HTTP status line")]
    BadRequestLine,
    /// A request or header line is longer than [`MAX_LINE`].
    #[error("a line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The head has more than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// A header line has no colon, an empty name, or whitespace in its name (this
    /// includes obsolete folded continuation lines).
    #[error("a header line is not `name: value`")]
    BadHeader,
    /// An M-SEARCH names `ST`, `MAN` or `MX` more than once, so it is ambiguous.
    #[error("an M-SEARCH repeats its ST, MAN or MX header")]
    DuplicateHeader,
    /// An M-SEARCH has no `ST` header, or an empty one.
    #[error("an M-SEARCH has no ST header")]
    MissingSt,
    /// An M-SEARCH has no `MAN` header or one other than `"ssdp:discover"`.
    #[error("an M-SEARCH has no MAN: \"ssdp:discover\" header")]
    BadMan,
    /// An M-SEARCH has an `MX` that is not a whole number of seconds.
    #[error("an M-SEARCH has an MX that is not a whole number of seconds")]
    BadMx,
}

impl ParseError {
    /// A stable label for this error, for a metric: `too_long`, `not_text`,
    /// `bad_request_line`, `line_too_long`, `too_many_headers`, `bad_header`,
    /// `duplicate_header`, `missing_st`, `bad_man` or `bad_mx`.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::TooLong { .. } => "too_long",
            ParseError::NotText => "not_text",
            ParseError::BadRequestLine => "bad_request_line",
            ParseError::LineTooLong => "line_too_long",
            ParseError::TooManyHeaders => "too_many_headers",
            ParseError::BadHeader => "bad_header",
            ParseError::DuplicateHeader => "duplicate_header",
            ParseError::MissingSt => "missing_st",
            ParseError::BadMan => "bad_man",
            ParseError::BadMx => "bad_mx",
        }
    }
}

/// What the first line says the datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    /// NOTIFY from another device or an HTTP response to someone's search.
    Ignored,
}

/// Parses one datagram. `Ok(Some)` for an M-SEARCH we should consider answering;
/// `Ok(None)` for well-formed SSDP we do not answer (NOTIFY from other devices, HTTP
/// responses); `Err` for anything else.
///
/// A search needs the request line `M-SEARCH * HTTP/1.1`, `MAN: "ssdp:discover"`
/// (quotes are required by the spec but accepted without, and the value ignores ASCII
/// case) and a non-empty `ST`; `MX` is optional. Header names ignore ASCII case, lines
/// may end in CRLF or a bare LF, the head ends at the first empty line or at the end of
/// the datagram, and anything after the head is ignored. Other headers (HOST,
/// USER-AGENT, ...) are checked for syntax only.
pub fn parse(datagram: &[u8]) -> Result<Option<Search>, ParseError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(ParseError::TooLong {
            len: datagram.len(),
        });
    }
    let text = std::str::from_utf8(datagram).map_err(|_| ParseError::NotText)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = check_line(lines.next().unwrap_or(""))?;
    let kind = request_kind(first)?;

    let mut st = None;
    let mut man = None;
    let mut mx = None;
    let mut headers = 0usize;
    for line in lines {
        let line = check_line(line)?;
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeader)?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(ParseError::BadHeader);
        }
        if kind != Kind::Search {
            continue;
        }
        let value = value.trim_matches([' ', '\t']);
        let slot = if name.eq_ignore_ascii_case("ST") {
            &mut st
        } else if name.eq_ignore_ascii_case("MAN") {
            &mut man
        } else if name.eq_ignore_ascii_case("MX") {
            &mut mx
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(ParseError::DuplicateHeader);
        }
    }
    if kind != Kind::Search {
        return Ok(None);
    }

    let man = man.ok_or(ParseError::BadMan)?;
    let man = man
        .strip_prefix('"')
        .and_then(|m| m.strip_suffix('"'))
        .unwrap_or(man);
    if !man.eq_ignore_ascii_case("ssdp:discover") {
        return Err(ParseError::BadMan);
    }
    let st = st.filter(|s| !s.is_empty()).ok_or(ParseError::MissingSt)?;
    let mx = match mx {
        Some(v) => Some(parse_mx(v)?),
        None => None,
    };
    Ok(Some(Search {
        target: target(st),
        mx,
    }))
}

/// Bounds a line and rejects control characters in it, so nothing downstream (logs, a
/// target we keep) ever holds them.
fn check_line(line: &str) -> Result<&str, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::LineTooLong);
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::NotText);
    }
    Ok(line)
}

fn request_kind(line: &str) -> Result<Kind, ParseError> {
    let mut parts = line.split(' ');
    let (first, second, third) = (parts.next(), parts.next(), parts.next());
    if let (Some(version), Some(code)) = (first, second) {
        // A status line: its reason phrase may have spaces, so only the code is checked.
        if version.starts_with("HTTP/1.")
            && code.len() == 3
            && code.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(Kind::Ignored);
        }
    }
    if parts.next().is_some() || second != Some("*") || third != Some("HTTP/1.1") {
        return Err(ParseError::BadRequestLine);
    }
    match first {
        Some("M-SEARCH") => Ok(Kind::Search),
        Some("NOTIFY") => Ok(Kind::Ignored),
        _ => Err(ParseError::BadRequestLine),
    }
}

/// Reads MX leniently about size (huge values just mean "the cap") but not about form.
fn parse_mx(value: &str) -> Result<u32, ParseError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadMx);
    }
    let secs = value.bytes().fold(0u32, |acc, b| {
        acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    });
    Ok(secs.min(MX_MAX))
}

fn target(st: &str) -> SearchTarget {
    if st.eq_ignore_ascii_case(ST_ALL) {
        SearchTarget::All
    } else if st.eq_ignore_ascii_case(ST_ROOT) {
        SearchTarget::RootDevice
    } else if st.eq_ignore_ascii_case(DEVICE_TYPE) {
        SearchTarget::DeviceType
    } else {
        match strip_prefix_ignore_case(st, UUID_PREFIX) {
            Some(id) if !id.is_empty() => SearchTarget::Uuid(id.to_owned()),
            _ => SearchTarget::Other(st.to_owned()),
        }
    }
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// The device we announce, borrowed from the caller's settings. Control characters in
/// these strings are dropped when written, so a bad setting cannot split a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device<'a> {
    /// The device UUID without the `uuid:` prefix, stable across restarts.
    pub uuid: &'a str,
    /// Where the device description lives, e.g. `http://192.168.1.5:8080/device.xml`.
    pub location: &'a str,
    /// The SERVER header, e.g. `Linux/6 UPnP/1.0 xg2g/0.1`.
    pub server: &'a str,
    /// Seconds an announcement stays valid (CACHE-CONTROL max-age); UDA asks for 1800 or
    /// more.
    pub max_age: u32,
    /// BOOTID.UPNP.ORG (UPnP 1.1; UPnP 1.0 control points ignore it): the same value in
    /// every message until the device restarts.
    pub boot_id: u32,
}

/// The three notification types of a root device without embedded devices or services,
/// in the order they are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nt {
    RootDevice,
    Uuid,
    DeviceType,
}

const ALL_NTS: [Nt; 3] = [Nt::RootDevice, Nt::Uuid, Nt::DeviceType];

impl Nt {
    /// The NT (or ST) value.
    fn value(self, device: &Device<'_>) -> String {
        match self {
            Nt::RootDevice => ST_ROOT.to_owned(),
            Nt::Uuid => format!("{UUID_PREFIX}{}", device.uuid),
            Nt::DeviceType => DEVICE_TYPE.to_owned(),
        }
    }

    fn usn(self, device: &Device<'_>) -> String {
        match self {
            Nt::RootDevice => format!("{UUID_PREFIX}{}::{ST_ROOT}", device.uuid),
            Nt::Uuid => format!("{UUID_PREFIX}{}", device.uuid),
            Nt::DeviceType => format!("{UUID_PREFIX}{}::{DEVICE_TYPE}", device.uuid),
        }
    }
}

/// Builds one datagram: start line, headers, blank line, all with CRLF.
struct Message(String);

impl Message {
    fn new(start: &str) -> Self {
        let mut s = String::with_capacity(384);
        s.push_str(start);
        s.push_str("\r\n");
        Message(s)
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.0.push_str(name);
        self.0.push(':');
        if !value.is_empty() {
            self.0.push(' ');
            self.0.extend(value.chars().filter(|c| !c.is_control()));
        }
        self.0.push_str("\r\n");
        self
    }

    fn finish(mut self) -> String {
        self.0.push_str("\r\n");
        self.0
    }
}

/// The responses to send (unicast, to the searcher) for `search`, each a complete
/// datagram: `HTTP/1.1 200 OK` with CACHE-CONTROL `max-age=N`, an empty EXT, LOCATION,
/// SERVER, ST, USN and BOOTID.UPNP.ORG, CRLF line ends and a final blank line.
///
/// `All` gets three (ST/USN: `upnp:rootdevice`/`uuid:X::upnp:rootdevice`,
/// `uuid:X`/`uuid:X`, [`DEVICE_TYPE`]/`uuid:X::`[`DEVICE_TYPE`]); `RootDevice`,
/// `DeviceType` and a `Uuid` equal to ours (ignoring ASCII case) get the matching one;
/// anything else gets none. ST values are ours, never the searcher's text.
pub fn responses(search: &Search, device: &Device<'_>) -> Vec<String> {
    let nts: &[Nt] = match &search.target {
        SearchTarget::All => &ALL_NTS,
        SearchTarget::RootDevice => &[Nt::RootDevice],
        SearchTarget::DeviceType => &[Nt::DeviceType],
        SearchTarget::Uuid(id) if id.eq_ignore_ascii_case(device.uuid) => &[Nt::Uuid],
        SearchTarget::Uuid(_) | SearchTarget::Other(_) => &[],
    };
    nts.iter()
        .map(|&nt| {
            Message::new("HTTP/1.1 200 OK")
                .header("CACHE-CONTROL", &format!("max-age={}", device.max_age))
                .header("EXT", "")
                .header("LOCATION", device.location)
                .header("SERVER", device.server)
                .header("ST", &nt.value(device))
                .header("USN", &nt.usn(device))
                .header("BOOTID.UPNP.ORG", &device.boot_id.to_string())
                .finish()
        })
        .collect()
}

/// Which announcement to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// `ssdp:alive`: we are here (at start-up and before max-age runs out).
    Alive,
    /// `ssdp:byebye`: we are leaving (at shutdown).
    ByeBye,
}

/// The three NOTIFY datagrams to multicast for `announce`, NT = `upnp:rootdevice`,
/// `uuid:X`, [`DEVICE_TYPE`] in that order, with USNs as in [`responses`]. Each is
/// `NOTIFY * HTTP/1.1` with HOST `239.255.255.250:1900`, NT, NTS `ssdp:alive` or
/// `ssdp:byebye`, USN and BOOTID.UPNP.ORG; alive ones also carry CACHE-CONTROL,
/// LOCATION and SERVER. CRLF line ends and a final blank line.
pub fn notifications(announce: Announce, device: &Device<'_>) -> Vec<String> {
    let host = format!("{MULTICAST_ADDR}:{PORT}");
    let max_age = format!("max-age={}", device.max_age);
    let boot_id = device.boot_id.to_string();
    ALL_NTS
        .iter()
        .map(|&nt| {
            let msg = Message::new("NOTIFY * HTTP/1.1").header("HOST", &host);
            let msg = match announce {
                Announce::Alive => msg
                    .header("CACHE-CONTROL", &max_age)
                    .header("LOCATION", device.location)
                    .header("SERVER", device.server)
                    .header("NT", &nt.value(device))
                    .header("NTS", "ssdp:alive"),
                Announce::ByeBye => msg
                    .header("NT", &nt.value(device))
                    .header("NTS", "ssdp:byebye"),
            };
            msg.header("USN", &nt.usn(device))
                .header("BOOTID.UPNP.ORG", &boot_id)
                .finish()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "9f2c1a3e-5b7d-4c1e-8a2f-0123456789ab";

    fn device() -> Device<'static> {
        Device {
            uuid: UUID,
            location: "http://192.168.1.5:8080/device.xml",
            server: "Linux/6 UPnP/1.0 xg2g/0.1",
            max_age: 1800,
            boot_id: 7,
        }
    }

    fn search(st: &str) -> Search {
        Search {
            target: target(st),
            mx: Some(2),
        }
    }

    /// Parses a written message with httparse and returns its start line parts and
    /// headers; fails unless the head is complete and is the whole datagram.
    fn http_headers(msg: &str) -> (String, Vec<(String, String)>) {
        assert!(msg.ends_with("\r\n\r\n"), "no CRLFCRLF end: {msg:?}");
        let mut buf = [httparse::EMPTY_HEADER; 16];
        let (start, len, headers) = if msg.starts_with("HTTP/") {
            let mut resp = httparse::Response::new(&mut buf);
            let status = resp.parse(msg.as_bytes()).expect("response parses");
            let len = match status {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("partial response {msg:?}"),
            };
            let start = format!(
                "{} {}",
                resp.code.unwrap_or(0),
                resp.reason.unwrap_or_default()
            );
            (start, len, resp.headers.to_vec())
        } else {
            let mut req = httparse::Request::new(&mut buf);
            let status = req.parse(msg.as_bytes()).expect("request parses");
            let len = match status {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("partial request {msg:?}"),
            };
            let start = format!(
                "{} {}",
                req.method.unwrap_or_default(),
                req.path.unwrap_or_default()
            );
            (start, len, req.headers.to_vec())
        };
        assert_eq!(len, msg.len(), "bytes after the head: {msg:?}");
        let headers = headers
            .iter()
            .map(|h| {
                let v = std::str::from_utf8(h.value).expect("utf-8 value");
                (h.name.to_owned(), v.to_owned())
            })
            .collect();
        (start, headers)
    }

    fn get<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        let mut found = headers.iter().filter(|(n, _)| n == name);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} repeated");
        first
    }

    // Real-looking searches, shaped like those of the clients that look for tuners.

    const PLEX: &str = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
        MAN: \"ssdp:discover\"\r\nMX: 3\r\nST: urn:schemas-upnp-org:device:MediaServer:1\r\n\r\n";
    const JELLYFIN: &str = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
        MAN: \"ssdp:discover\"\r\nMX: 3\r\nST: ssdp:all\r\n\
        USER-AGENT: Linux/6.1 UPnP/1.0 Jellyfin/10.9.11\r\n\r\n";
    const GSSDP: &str = "M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\n\
        Man: \"ssdp:discover\"\r\nST: upnp:rootdevice\r\nMX: 3\r\n\
        User-Agent: Linux/6.1 GSSDP/1.6.3\r\n\r\n";
    const UNICAST: &str = "M-SEARCH * HTTP/1.1\r\nHOST: 192.168.1.5:1900\r\n\
        MAN: \"ssdp:discover\"\r\nST: uuid:9f2c1a3e-5b7d-4c1e-8a2f-0123456789ab\r\n\r\n";

    #[test]
    fn real_searches_parse() {
        let cases = [
            (PLEX, SearchTarget::DeviceType, Some(3)),
            (JELLYFIN, SearchTarget::All, Some(3)),
            (GSSDP, SearchTarget::RootDevice, Some(3)),
            (UNICAST, SearchTarget::Uuid(UUID.to_owned()), None),
        ];
        for (datagram, target, mx) in cases {
            assert_eq!(
                parse(datagram.as_bytes()),
                Ok(Some(Search { target, mx })),
                "{datagram:?}"
            );
        }
    }

    #[test]
    fn bare_lf_unquoted_man_and_missing_blank_line_are_accepted() {
        let datagram =
            "M-SEARCH * HTTP/1.1\nhost:239.255.255.250:1900\nman:ssdp:discover\nst:ssdp:all\nmx:1";
        assert_eq!(
            parse(datagram.as_bytes()),
            Ok(Some(Search {
                target: SearchTarget::All,
                mx: Some(1)
            }))
        );
    }

    #[test]
    fn mx_is_capped_and_must_be_a_number() {
        let with_mx = |mx: &str| {
            let d = format!(
                "M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nMX: {mx}\r\n\r\n"
            );
            parse(d.as_bytes()).map(|s| s.and_then(|s| s.mx))
        };
        assert_eq!(with_mx("0"), Ok(Some(0)));
        assert_eq!(with_mx("5"), Ok(Some(5)));
        assert_eq!(with_mx("120"), Ok(Some(MX_MAX)));
        assert_eq!(with_mx("99999999999999999999"), Ok(Some(MX_MAX)));
        assert_eq!(with_mx(""), Err(ParseError::BadMx));
        assert_eq!(with_mx("-1"), Err(ParseError::BadMx));
        assert_eq!(with_mx("3s"), Err(ParseError::BadMx));
    }

    #[test]
    fn st_variants_map_to_targets() {
        let cases = [
            ("ssdp:all", SearchTarget::All),
            ("SSDP:ALL", SearchTarget::All),
            ("upnp:rootdevice", SearchTarget::RootDevice),
            (DEVICE_TYPE, SearchTarget::DeviceType),
            ("uuid:abc", SearchTarget::Uuid("abc".to_owned())),
            ("UUID:ABC", SearchTarget::Uuid("ABC".to_owned())),
            ("uuid:", SearchTarget::Other("uuid:".to_owned())),
            (
                "urn:schemas-upnp-org:device:MediaServer:2",
                SearchTarget::Other("urn:schemas-upnp-org:device:MediaServer:2".to_owned()),
            ),
            (
                "urn:schemas-upnp-org:service:ContentDirectory:1",
                SearchTarget::Other("urn:schemas-upnp-org:service:ContentDirectory:1".to_owned()),
            ),
            (
                "urn:dial-multiscreen-org:service:dial:1",
                SearchTarget::Other("urn:dial-multiscreen-org:service:dial:1".to_owned()),
            ),
        ];
        for (st, want) in cases {
            let d = format!("M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: {st}\r\n\r\n");
            assert_eq!(
                parse(d.as_bytes()),
                Ok(Some(Search {
                    target: want,
                    mx: None
                })),
                "{st}"
            );
        }
    }

    #[test]
    fn notify_and_responses_from_others_are_ignored() {
        let notify = "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n\
            LOCATION: http://192.168.1.1:49152/rootDesc.xml\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\
            SERVER: Linux UPnP/1.0 MiniUPnPd/2.3\r\nUSN: uuid:0000::upnp:rootdevice\r\n\r\n";
        let response = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\n\
            LOCATION: http://192.168.1.1:49152/rootDesc.xml\r\nST: upnp:rootdevice\r\n\
            USN: uuid:0000::upnp:rootdevice\r\n\r\n";
        assert_eq!(parse(notify.as_bytes()), Ok(None));
        assert_eq!(parse(response.as_bytes()), Ok(None));
        for ours in notifications(Announce::Alive, &device())
            .iter()
            .chain(&notifications(Announce::ByeBye, &device()))
            .chain(&responses(&search(ST_ALL), &device()))
        {
            assert_eq!(parse(ours.as_bytes()), Ok(None), "{ours:?}");
        }
    }

    #[test]
    fn garbage_is_rejected() {
        let long_line = format!(
            "M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nX-PAD: {}\r\n\r\n",
            "a".repeat(MAX_LINE)
        );
        let many_headers = format!(
            "M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS)
        );
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (vec![0xff, 0xfe, 0x00, 0x01, 0x80], ParseError::NotText),
            (b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\0\r\n".to_vec(), ParseError::NotText),
            (
                b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\rMAN: \"ssdp:discover\"\r\n\r\n".to_vec(),
                ParseError::NotText,
            ),
            (vec![b'a'; MAX_DATAGRAM + 1], ParseError::TooLong { len: MAX_DATAGRAM + 1 }),
            (Vec::new(), ParseError::BadRequestLine),
            (b"\r\n\r\n".to_vec(), ParseError::BadRequestLine),
            (
                b"GET / HTTP/1.1\r\nHost: 192.168.1.5:1900\r\n\r\n".to_vec(),
                ParseError::BadRequestLine,
            ),
            (
                b"GET /description.xml HTTP/1.1\r\n\r\n".to_vec(),
                ParseError::BadRequestLine,
            ),
            (
                b"m-search * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadRequestLine,
            ),
            (
                b"M-SEARCH / HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadRequestLine,
            ),
            (
                b"M-SEARCH * HTTP/1.1 extra\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadRequestLine,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n".to_vec(),
                ParseError::MissingSt,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST:   \r\n\r\n".to_vec(),
                ParseError::MissingSt,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMX: 2\r\n\r\n".to_vec(),
                ParseError::BadMan,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:alive\"\r\nST: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadMan,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\r\nST: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadMan,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nST: upnp:rootdevice\r\n\r\n"
                    .to_vec(),
                ParseError::DuplicateHeader,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n ST: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadHeader,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadHeader,
            ),
            (
                b"M-SEARCH * HTTP/1.1\r\n: ssdp:all\r\n\r\n".to_vec(),
                ParseError::BadHeader,
            ),
            (long_line.into_bytes(), ParseError::LineTooLong),
            (many_headers.into_bytes(), ParseError::TooManyHeaders),
        ];
        for (datagram, want) in cases {
            let got = parse(&datagram);
            assert_eq!(got, Err(want), "{:?}", String::from_utf8_lossy(&datagram));
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let pad = "a".repeat(MAX_LINE - "X-PAD: ".len());
        let d = format!(
            "M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\nX-PAD: {pad}\r\n\r\n"
        );
        assert!(matches!(parse(d.as_bytes()), Ok(Some(_))));
        let d = format!(
            "M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS - 2)
        );
        assert!(matches!(parse(d.as_bytes()), Ok(Some(_))));
        let mut d = PLEX.as_bytes().to_vec();
        d.resize(MAX_DATAGRAM, b'z');
        assert!(
            matches!(parse(&d), Ok(Some(_))),
            "a body after the head is ignored"
        );
    }

    #[test]
    fn errors_have_distinct_kinds_and_one_line_messages() {
        let all = [
            ParseError::TooLong { len: 5000 },
            ParseError::NotText,
            ParseError::BadRequestLine,
            ParseError::LineTooLong,
            ParseError::TooManyHeaders,
            ParseError::BadHeader,
            ParseError::DuplicateHeader,
            ParseError::MissingSt,
            ParseError::BadMan,
            ParseError::BadMx,
        ];
        let mut kinds: Vec<_> = all.iter().map(ParseError::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
        for e in &all {
            assert!(!e.to_string().contains('\n'));
        }
        assert_eq!(
            ParseError::TooLong { len: 5000 }.to_string(),
            "datagram of 5000 bytes is longer than the 4096-byte limit"
        );
    }

    #[test]
    fn ssdp_all_gets_three_responses_with_the_right_usns() {
        let dev = device();
        let out = responses(&parse(JELLYFIN.as_bytes()).unwrap().unwrap(), &dev);
        assert_eq!(out.len(), 3);
        let want = [
            ("upnp:rootdevice", format!("uuid:{UUID}::upnp:rootdevice")),
            (&format!("uuid:{UUID}")[..], format!("uuid:{UUID}")),
            (DEVICE_TYPE, format!("uuid:{UUID}::{DEVICE_TYPE}")),
        ];
        for (msg, (st, usn)) in out.iter().zip(&want) {
            let (start, headers) = http_headers(msg);
            assert_eq!(start, "200 OK");
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "CACHE-CONTROL",
                    "EXT",
                    "LOCATION",
                    "SERVER",
                    "ST",
                    "USN",
                    "BOOTID.UPNP.ORG"
                ]
            );
            assert_eq!(get(&headers, "CACHE-CONTROL"), Some("max-age=1800"));
            assert_eq!(get(&headers, "EXT"), Some(""));
            assert_eq!(
                get(&headers, "LOCATION"),
                Some("http://192.168.1.5:8080/device.xml")
            );
            assert_eq!(get(&headers, "SERVER"), Some("Linux/6 UPnP/1.0 xg2g/0.1"));
            assert_eq!(get(&headers, "ST"), Some(*st));
            assert_eq!(get(&headers, "USN"), Some(usn.as_str()));
            assert_eq!(get(&headers, "BOOTID.UPNP.ORG"), Some("7"));
        }
        assert!(
            out[1].contains("\r\nEXT:\r\n"),
            "EXT has no value and no space"
        );
    }

    #[test]
    fn specific_targets_get_one_response_and_others_none() {
        let dev = device();
        let one = |st: &str| {
            let out = responses(&search(st), &dev);
            assert_eq!(out.len(), 1, "{st}");
            let (_, headers) = http_headers(&out[0]);
            (
                get(&headers, "ST").map(str::to_owned),
                get(&headers, "USN").map(str::to_owned),
            )
        };
        assert_eq!(
            one("upnp:rootdevice"),
            (
                Some(ST_ROOT.to_owned()),
                Some(format!("uuid:{UUID}::upnp:rootdevice"))
            )
        );
        assert_eq!(
            one(DEVICE_TYPE),
            (
                Some(DEVICE_TYPE.to_owned()),
                Some(format!("uuid:{UUID}::{DEVICE_TYPE}"))
            )
        );
        let ours = (Some(format!("uuid:{UUID}")), Some(format!("uuid:{UUID}")));
        assert_eq!(one(&format!("uuid:{UUID}")), ours);
        assert_eq!(
            one(&format!("uuid:{}", UUID.to_uppercase())),
            ours,
            "ST is ours, not echoed"
        );

        let unicast = parse(UNICAST.as_bytes()).unwrap().unwrap();
        assert_eq!(responses(&unicast, &dev).len(), 1);
        for st in [
            "uuid:00000000-0000-0000-0000-000000000000",
            "uuid:",
            "urn:schemas-upnp-org:device:MediaServer:2",
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
            "urn:schemas-upnp-org:service:ContentDirectory:1",
            "",
        ] {
            assert!(responses(&search(st), &dev).is_empty(), "{st}");
        }
    }

    #[test]
    fn notifications_are_documented_datagrams() {
        let dev = device();
        let nts = [
            (
                "upnp:rootdevice".to_owned(),
                format!("uuid:{UUID}::upnp:rootdevice"),
            ),
            (format!("uuid:{UUID}"), format!("uuid:{UUID}")),
            (
                DEVICE_TYPE.to_owned(),
                format!("uuid:{UUID}::{DEVICE_TYPE}"),
            ),
        ];

        let alive = notifications(Announce::Alive, &dev);
        assert_eq!(alive.len(), 3);
        for (msg, (nt, usn)) in alive.iter().zip(&nts) {
            let (start, headers) = http_headers(msg);
            assert!(msg.starts_with("NOTIFY * HTTP/1.1\r\n"));
            assert_eq!(start, "NOTIFY *");
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "HOST",
                    "CACHE-CONTROL",
                    "LOCATION",
                    "SERVER",
                    "NT",
                    "NTS",
                    "USN",
                    "BOOTID.UPNP.ORG"
                ]
            );
            assert_eq!(get(&headers, "HOST"), Some("239.255.255.250:1900"));
            assert_eq!(get(&headers, "CACHE-CONTROL"), Some("max-age=1800"));
            assert_eq!(
                get(&headers, "LOCATION"),
                Some("http://192.168.1.5:8080/device.xml")
            );
            assert_eq!(get(&headers, "SERVER"), Some("Linux/6 UPnP/1.0 xg2g/0.1"));
            assert_eq!(get(&headers, "NT"), Some(nt.as_str()));
            assert_eq!(get(&headers, "NTS"), Some("ssdp:alive"));
            assert_eq!(get(&headers, "USN"), Some(usn.as_str()));
            assert_eq!(get(&headers, "BOOTID.UPNP.ORG"), Some("7"));
        }

        let bye = notifications(Announce::ByeBye, &dev);
        assert_eq!(bye.len(), 3);
        for (msg, (nt, usn)) in bye.iter().zip(&nts) {
            let (start, headers) = http_headers(msg);
            assert_eq!(start, "NOTIFY *");
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["HOST", "NT", "NTS", "USN", "BOOTID.UPNP.ORG"]);
            assert_eq!(get(&headers, "HOST"), Some("239.255.255.250:1900"));
            assert_eq!(get(&headers, "NT"), Some(nt.as_str()));
            assert_eq!(get(&headers, "NTS"), Some("ssdp:byebye"));
            assert_eq!(get(&headers, "USN"), Some(usn.as_str()));
            assert_eq!(get(&headers, "BOOTID.UPNP.ORG"), Some("7"));
        }
    }

    #[test]
    fn control_characters_in_settings_cannot_split_a_message() {
        let dev = Device {
            location: "http://x/\r\nEVIL: 1\r\n\r\ndevice.xml",
            server: "a\nb",
            ..device()
        };
        for msg in responses(&search(ST_ALL), &dev)
            .iter()
            .chain(&notifications(Announce::Alive, &dev))
        {
            let (_, headers) = http_headers(msg);
            assert_eq!(get(&headers, "EVIL"), None);
            assert_eq!(
                get(&headers, "LOCATION"),
                Some("http://x/EVIL: 1device.xml")
            );
            assert_eq!(get(&headers, "SERVER"), Some("ab"));
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        /// A header name in random ASCII case.
        fn cased(name: &'static str) -> impl Strategy<Value = String> {
            proptest::collection::vec(any::<bool>(), name.len()).prop_map(move |upper| {
                name.chars()
                    .zip(upper)
                    .map(|(c, u)| {
                        if u {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect()
            })
        }

        fn st() -> impl Strategy<Value = (String, SearchTarget)> {
            prop_oneof![
                Just(("ssdp:all".to_owned(), SearchTarget::All)),
                Just(("upnp:rootdevice".to_owned(), SearchTarget::RootDevice)),
                Just((DEVICE_TYPE.to_owned(), SearchTarget::DeviceType)),
                "[0-9a-f-]{1,36}".prop_map(|id| (format!("uuid:{id}"), SearchTarget::Uuid(id))),
                "urn:[a-z-]{1,12}:service:[A-Za-z]{1,12}:[0-9]"
                    .prop_map(|s| (s.clone(), SearchTarget::Other(s))),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
                let _ = parse(&bytes);
            }

            #[test]
            fn mutated_searches_never_panic(
                edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
                cut in any::<proptest::sample::Index>(),
            ) {
                let mut bytes = super::JELLYFIN.as_bytes().to_vec();
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    if let Some(b) = bytes.get_mut(i) {
                        *b = byte;
                    }
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                if let Ok(Some(s)) = parse(&bytes) {
                    prop_assert!(s.mx.is_none_or(|mx| mx <= MX_MAX));
                }
            }

            #[test]
            fn arbitrary_text_never_panics_and_never_searches_without_st(
                text in "(M-SEARCH \\* HTTP/1.1\r?\n)?([A-Za-z:\" ]{0,20}\r?\n){0,8}"
            ) {
                if let Ok(Some(_)) = parse(text.as_bytes()) {
                    prop_assert!(text.to_ascii_lowercase().contains("st:"));
                }
            }

            #[test]
            fn header_order_case_and_line_ends_do_not_change_the_target(
                (st_value, want) in st(),
                mx in proptest::option::of(0u32..200),
                quoted in any::<bool>(),
                crlf in any::<bool>(),
                blank_end in any::<bool>(),
                names in (cased("st"), cased("man"), cased("mx"), cased("host"), cased("user-agent")),
                spaces in ("[ \t]{0,2}", "[ \t]{0,2}"),
                order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
            ) {
                let (st_n, man_n, mx_n, host_n, ua_n) = names;
                let (pre, post) = spaces;
                let man = if quoted { "\"ssdp:discover\"" } else { "ssdp:discover" };
                let mut headers = [
                    Some(format!("{st_n}:{pre}{st_value}{post}")),
                    Some(format!("{man_n}:{pre}{man}{post}")),
                    mx.map(|mx| format!("{mx_n}:{pre}{mx}{post}")),
                    Some(format!("{host_n}: 239.255.255.250:1900")),
                    Some(format!("{ua_n}: Linux/6.1 UPnP/1.0 test/1")),
                ];
                let eol = if crlf { "\r\n" } else { "\n" };
                let mut datagram = format!("M-SEARCH * HTTP/1.1{eol}");
                for i in order {
                    if let Some(Some(h)) = headers.get_mut(i).map(Option::take) {
                        datagram.push_str(&h);
                        datagram.push_str(eol);
                    }
                }
                if blank_end {
                    datagram.push_str(eol);
                }
                let got = parse(datagram.as_bytes());
                prop_assert_eq!(
                    got,
                    Ok(Some(Search { target: want, mx: mx.map(|m| m.min(MX_MAX)) }))
                );
            }
        }
    }
}
