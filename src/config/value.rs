//! Text parsers for setting values, shared by the environment and the TOML file.
//!
//! Rules: each parser takes already-trimmed text and returns the value or a one-line
//! problem that says what is allowed (the caller adds the key and the value). No parser
//! panics or allocates in proportion to anything but its input, and inputs are short
//! settings, so nothing here needs its own bound beyond the length checks below.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::EpgSource;

/// Longer numbers or durations than this are typos, not settings; refusing them early
/// keeps every arithmetic step below in range.
const MAX_NUMBER_TEXT: usize = 64;

/// An inclusive integer range and how to say it to a user.
#[derive(Debug, Clone, Copy)]
pub(super) struct IntRange {
    pub lo: u64,
    pub hi: u64,
}

impl IntRange {
    /// "must be a whole number from LO to HI".
    pub fn allowed(self) -> String {
        format!("must be a whole number from {} to {}", self.lo, self.hi)
    }

    /// `Some(v)` when `v` lies inside the range.
    pub fn check(self, v: u64) -> Option<u64> {
        (self.lo..=self.hi).contains(&v).then_some(v)
    }
}

/// `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off`, any case.
pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    const YES: [&str; 4] = ["true", "1", "yes", "on"];
    const NO: [&str; 4] = ["false", "0", "no", "off"];
    if YES.iter().any(|w| w.eq_ignore_ascii_case(s)) {
        Ok(true)
    } else if NO.iter().any(|w| w.eq_ignore_ascii_case(s)) {
        Ok(false)
    } else {
        Err(BOOL_ALLOWED.to_string())
    }
}

/// What a boolean may be, for error messages.
pub(super) const BOOL_ALLOWED: &str = "must be true or false (also 1/0, yes/no, on/off)";

/// Plain decimal digits only (no sign, no spaces), or `None`.
pub(super) fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A byte count: plain bytes, or a whole number of `KiB`, `MiB` or `GiB` (any case).
pub(super) fn parse_bytes(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at_checked(digits)?;
    let n = parse_uint(num)?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Bytes as the largest binary unit that divides them exactly (`256MiB`, `8192` stays
/// `8KiB`), so printed sizes read back through [`parse_bytes`].
pub(super) fn format_bytes(n: u64) -> String {
    for (shift, unit) in [(30u32, "GiB"), (20, "MiB"), (10, "KiB")] {
        let size = 1u64 << shift;
        if n != 0 && n % size == 0 {
            return format!("{}{unit}", n / size);
        }
    }
    n.to_string()
}

/// A Go-style duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`
/// (`6h`, `1h30m`, `500ms`, `1.5h`), kept to millisecond precision.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    const SHAPE: &str = "must be a duration like 30s, 10m, 6h, 1h30m or 1d (units ms, s, m, h, d)";
    if s.is_empty() {
        return Err(SHAPE.to_string());
    }
    if s.len() > MAX_NUMBER_TEXT {
        return Err(format!("is too long; {SHAPE}"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let example = if s.len() <= 12 { s } else { "30" };
        return Err(format!("add a unit, e.g. {example}s"));
    }
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at_checked(num_len).ok_or(SHAPE)?;
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at_checked(unit_len).ok_or(SHAPE)?;
        rest = next;
        if num.is_empty() {
            return Err(SHAPE.to_string());
        }
        let unit_ns: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" if rest.is_empty() => return Err(format!("add a unit after {num}, e.g. {num}s")),
            "" => return Err(format!("has a space or stray character; {SHAPE}")),
            other => {
                return Err(format!(
                    "has unknown unit {other:?}; {SHAPE}",
                    other = shorten(other)
                ));
            }
        };
        total_ns = total_ns
            .checked_add(number_times(num, unit_ns).ok_or(SHAPE)?)
            .ok_or(SHAPE)?;
    }
    let ms = u64::try_from(total_ns / 1_000_000).map_err(|_| format!("is too large; {SHAPE}"))?;
    Ok(Duration::from_millis(ms))
}

/// `num` (digits with at most one `.`) times `unit_ns`, in nanoseconds, or `None` when
/// malformed or too large.
fn number_times(num: &str, unit_ns: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_val.checked_mul(unit_ns)?;
    // Nanoseconds are the finest unit, so digits past the ninth cannot matter.
    let frac = frac.get(..frac.len().min(9)).unwrap_or("");
    if !frac.is_empty() {
        let frac_val: u128 = frac.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        value = value.checked_add(frac_val.checked_mul(unit_ns)? / scale)?;
    }
    Some(value)
}

/// A duration as its non-zero `d`, `h`, `m`, `s`, `ms` parts (`6h`, `1h30m`, `500ms`,
/// `0s`), so printed durations read back as settings.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (size, unit) in [
        (86_400_000u128, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ] {
        let n = ms / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms %= size;
        }
    }
    out
}

/// What a listen address may look like, for error messages.
pub(super) const LISTEN_ALLOWED: &str =
    "must be an address like :8080, 0.0.0.0:8080, 127.0.0.1:8080, [::]:8080 or localhost:8080";

/// A listen address: `:PORT` (all IPv4 interfaces), `IPv4:PORT`, `[IPv6]:PORT` or
/// `localhost:PORT` (127.0.0.1). Port 0 asks the OS for a free port.
/// An IPv4 address (`192.168.1.5`).
pub(super) fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address like 192.168.1.5"))
}

pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port = parse_port(port).ok_or_else(|| format!("has a bad port; {LISTEN_ALLOWED}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if host.eq_ignore_ascii_case("localhost") {
            let port =
                parse_port(port).ok_or_else(|| format!("has a bad port; {LISTEN_ALLOWED}"))?;
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if parse_uint(s).is_some() {
        return Err(format!(
            "{LISTEN_ALLOWED}; write :{s} to listen on all interfaces"
        ));
    }
    Err(format!(
        "{LISTEN_ALLOWED} (host names other than localhost are not resolved)"
    ))
}

/// A port number 0..=65535 in plain digits.
fn parse_port(s: &str) -> Option<u16> {
    if s.len() > 5 {
        return None;
    }
    parse_uint(s).and_then(|p| u16::try_from(p).ok())
}

/// Strips an ASCII prefix ignoring case.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Checks `host[:port]` (host a name, an IPv4 address or a bracketed IPv6 address).
fn check_authority(auth: &str) -> Result<(), String> {
    if auth.is_empty() {
        return Err("has no host".to_string());
    }
    let port = if let Some(inner) = auth.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or("has an unclosed [ in the host")?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err("has a bad IPv6 address in [ ]".to_string());
        }
        match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("has text after the ] of the host".to_string()),
        }
    } else {
        let (host, port) = match auth.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        };
        if host.is_empty() {
            return Err("has no host".to_string());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err("has a bad host name (letters, digits, '.', '-' only)".to_string());
        }
        port
    };
    if let Some(port) = port {
        match parse_port(port) {
            Some(p) if p != 0 => {}
            _ => return Err("has a bad port (1 to 65535)".to_string()),
        }
    }
    Ok(())
}

/// The receiver base URL: `http://host[:port][/prefix]`, trailing `/` removed.
pub(super) fn parse_owi_base(s: &str) -> Result<String, String> {
    const EXAMPLE: &str = "e.g. http://192.168.1.10";
    if strip_prefix_ci(s, "https://").is_some() {
        return Err(format!(
            "https is not supported: the receiver client speaks plain HTTP only; use http://, {EXAMPLE}"
        ));
    }
    let rest = strip_prefix_ci(s, "http://")
        .ok_or_else(|| format!("must start with http://, {EXAMPLE}"))?;
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain spaces, {EXAMPLE}"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "must not have a query (?...) or fragment (#...), {EXAMPLE}"
        ));
    }
    let (auth, path) = match rest.find('/') {
        Some(i) => rest.split_at_checked(i).unwrap_or((rest, "")),
        None => (rest, ""),
    };
    if auth.contains('@') {
        return Err(
            "must not contain user:password@; put credentials in XG2G_OWI_USER/XG2G_OWI_PASS"
                .to_string(),
        );
    }
    check_authority(auth).map_err(|p| format!("{p}, {EXAMPLE}"))?;
    Ok(format!("http://{auth}{}", path.trim_end_matches('/')))
}

/// An `http://` or `https://` URL with a host; a trailing `/` is removed when there is no
/// query or fragment.
pub(super) fn parse_http_url(s: &str) -> Result<String, String> {
    const EXAMPLE: &str = "e.g. http://192.168.1.20:8080";
    let (scheme, rest) = if let Some(r) = strip_prefix_ci(s, "http://") {
        ("http://", r)
    } else if let Some(r) = strip_prefix_ci(s, "https://") {
        ("https://", r)
    } else {
        return Err(format!("must start with http:// or https://, {EXAMPLE}"));
    };
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain spaces, {EXAMPLE}"));
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at_checked(auth_end).unwrap_or((rest, ""));
    let host_port = auth.rsplit_once('@').map_or(auth, |(_, hp)| hp);
    check_authority(host_port).map_err(|p| format!("{p}, {EXAMPLE}"))?;
    let tail = if tail.contains('?') || tail.contains('#') {
        tail
    } else {
        tail.trim_end_matches('/')
    };
    Ok(format!("{scheme}{auth}{tail}"))
}

/// A comma list of bouquets. Items are trimmed and empty ones dropped; an item that
/// starts with `"` runs to the closing `"` and may hold commas, with `""` standing for a
/// literal quote.
pub(super) fn parse_bouquets(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut item = String::new();
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "has an unterminated quote; end a quoted name with \"".to_string()
                        );
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    Some('"') => break,
                    Some(c) => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            match chars.next() {
                None | Some(',') => {}
                Some(_) => {
                    return Err(
                        "has text after a closing quote; separate names with commas".to_string()
                    );
                }
            }
            if !item.trim().is_empty() {
                out.push(item);
            }
        } else {
            let mut item = String::new();
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
                item.push(c);
            }
            let item = item.trim();
            if !item.is_empty() {
                out.push(item.to_string());
            }
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
    }
}

/// Bouquets as a comma list that [`parse_bouquets`] reads back: names with a comma, a
/// quote or outer spaces are quoted.
pub(super) fn format_bouquets(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|b| {
            if b.contains([',', '"']) || b.trim() != b || b.starts_with('"') {
                format!("\"{}\"", b.replace('"', "\"\""))
            } else {
                b.clone()
            }
        })
        .collect();
    quoted.join(",")
}

/// What an EPG source may be, for error messages.
pub(super) const EPG_SOURCE_ALLOWED: &str = "must be bouquet or per-service";

/// `bouquet` or `per-service` (also `per_service`, `service`), any case.
pub(super) fn parse_epg_source(s: &str) -> Result<EpgSource, String> {
    match s.to_ascii_lowercase().as_str() {
        "bouquet" => Ok(EpgSource::Bouquet),
        "per-service" | "per_service" | "service" => Ok(EpgSource::PerService),
        _ => Err(EPG_SOURCE_ALLOWED.to_string()),
    }
}

/// What a log level may be, for error messages.
pub(super) const LOG_LEVEL_ALLOWED: &str = "must be one of error, warn, info, debug, trace";

/// A log level, returned lower case.
pub(super) fn parse_log_level(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(lower),
        _ => Err(LOG_LEVEL_ALLOWED.to_string()),
    }
}

/// At most 40 characters of `s`, for quoting user text inside a problem.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "False", "0", "NO", "off"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "y", "2", "truee", "ja"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("512KiB"), Some(512 * 1024));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("1gib"), Some(1 << 30));
        assert_eq!(parse_bytes("10B"), Some(10));
        for bad in [
            "",
            "MiB",
            "64MB",
            "1.5MiB",
            "-1",
            "64 MiB",
            "99999999999999GiB",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        assert_eq!(format_bytes(256 << 20), "256MiB");
        assert_eq!(format_bytes(8192), "8KiB");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
    }

    #[test]
    fn durations() {
        let cases: [(&str, u64); 9] = [
            ("6h", 6 * 3_600_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1d", 86_400_000),
            ("30s", 30_000),
            ("1.5h", 5_400_000),
            ("1m0.5s", 60_500),
            ("2d12h", 216_000_000),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        let bad = [
            ("30", "add a unit, e.g. 30s"),
            ("1h30", "add a unit after 30"),
            ("5x", "unknown unit \"x\""),
            ("10us", "unknown unit \"us\""),
            ("", "must be a duration"),
            ("h", "must be a duration"),
            ("-5s", "must be a duration"),
            ("1..5s", "must be a duration"),
            ("1h 30m", "must be a duration"),
            ("99999999999999999999999999999d", "must be a duration"),
            ("999999999999999d", "too large"),
        ];
        for (text, want) in bad {
            let got = parse_duration(text).expect_err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn durations_print_and_read_back() {
        for (ms, text) in [
            (6 * 3_600_000_u64, "6h"),
            (10_000, "10s"),
            (5_400_000, "1h30m"),
            (60_000, "1m"),
            (500, "500ms"),
            (7 * 86_400_000, "7d"),
            (0, "0s"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn listen_addresses() {
        let ok = [
            (":8080", "0.0.0.0:8080"),
            ("0.0.0.0:8080", "0.0.0.0:8080"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("[::]:8080", "[::]:8080"),
            ("[::1]:0", "[::1]:0"),
            ("localhost:8080", "127.0.0.1:8080"),
            ("LOCALHOST:1", "127.0.0.1:1"),
            (":0", "0.0.0.0:0"),
        ];
        for (text, want) in ok {
            assert_eq!(parse_listen(text).map(|a| a.to_string()), Ok(want.into()));
        }
        let bad = [
            ("8080", "write :8080"),
            (":65536", "bad port"),
            (":", "bad port"),
            ("localhost:x", "bad port"),
            ("example.com:80", "not resolved"),
            ("1.2.3.4", "must be an address"),
            ("[::]", "must be an address"),
            (":-1", "bad port"),
        ];
        for (text, want) in bad {
            let got = parse_listen(text).expect_err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn owi_base() {
        let ok = [
            ("http://192.168.1.10", "http://192.168.1.10"),
            ("http://192.168.1.10/", "http://192.168.1.10"),
            ("HTTP://box:8080/owi//", "http://box:8080/owi"),
            ("http://[fe80::1]:80", "http://[fe80::1]:80"),
            ("http://vu-plus.local", "http://vu-plus.local"),
        ];
        for (text, want) in ok {
            assert_eq!(parse_owi_base(text), Ok(want.to_string()), "{text}");
        }
        let bad = [
            ("https://box", "https is not supported"),
            ("192.168.1.10", "must start with http://"),
            ("http://", "has no host"),
            ("http:///x", "has no host"),
            ("http://root:pw@box", "XG2G_OWI_USER/XG2G_OWI_PASS"),
            ("http://box/?a=1", "query"),
            ("http://box:0", "bad port"),
            ("http://box:99999", "bad port"),
            ("http://bo x", "spaces"),
            ("http://[zz]", "IPv6"),
            ("http://[::1", "unclosed"),
            ("http://b%x", "bad host"),
        ];
        for (text, want) in bad {
            let got = parse_owi_base(text).expect_err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn http_urls() {
        let ok = [
            ("http://h:8080/", "http://h:8080"),
            (
                "HTTPS://tv.example.org/xg2g/",
                "https://tv.example.org/xg2g",
            ),
            ("http://h/xmltv.xml?x=/", "http://h/xmltv.xml?x=/"),
            ("https://u:p@h/picon", "https://u:p@h/picon"),
        ];
        for (text, want) in ok {
            assert_eq!(parse_http_url(text), Ok(want.to_string()), "{text}");
        }
        for (text, want) in [
            ("ftp://h", "http:// or https://"),
            ("h:8080", "http:// or https://"),
            ("https://", "no host"),
            ("http://a b", "spaces"),
        ] {
            let got = parse_http_url(text).expect_err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn bouquets() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok: [(&str, Vec<String>); 8] = [
            ("", v(&[])),
            ("Favourites", v(&["Favourites"])),
            (" A , B ,, ", v(&["A", "B"])),
            (
                "\"Österreich, Schweiz\",Favourites",
                v(&["Österreich, Schweiz", "Favourites"]),
            ),
            ("\"say \"\"hi\"\"\" , x", v(&["say \"hi\"", "x"])),
            ("\"\",a", v(&["a"])),
            ("a\"b", v(&["a\"b"])),
            ("\" spaced \"", v(&[" spaced "])),
        ];
        for (text, want) in ok {
            assert_eq!(parse_bouquets(text), Ok(want.clone()), "{text}");
            assert_eq!(parse_bouquets(&format_bouquets(&want)), Ok(want), "{text}");
        }
        for (text, want) in [
            ("\"open", "unterminated quote"),
            ("a,\"b,c", "unterminated quote"),
            ("\"a\"b", "text after a closing quote"),
        ] {
            let got = parse_bouquets(text).expect_err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn enums() {
        assert_eq!(parse_epg_source("Bouquet"), Ok(EpgSource::Bouquet));
        for s in ["per-service", "PER_SERVICE", "service"] {
            assert_eq!(parse_epg_source(s), Ok(EpgSource::PerService));
        }
        assert!(parse_epg_source("channel").is_err());
        assert_eq!(parse_log_level("DEBUG"), Ok("debug".to_string()));
        assert!(parse_log_level("verbose").is_err());
    }
}
