//! A minimal HTTP/1.1 client on `async_io::Async<TcpStream>` + `httparse`: one `GET` per
//! connection, response head parsing and body framing, reusable for JSON answers and for
//! MPEG-TS upstream streams alike.
//!
//! Rules: every wait (resolve, connect, write, each read) is bounded by the caller's
//! timeout, which for reads is an *inactivity* timeout, so a long body that keeps
//! flowing is fine and a stalled one is not. The response head is at most
//! [`HEAD_LIMIT`] bytes, a chunk-size or trailer line at most [`LINE_LIMIT`]. Bodies are
//! returned as framed bytes (chunked framing removed, `Content-Length` honoured) but not
//! decoded: content encodings and charsets are the caller's business (see `body.rs`).
//! Nothing here blocks an executor thread: name resolution goes through `smol::unblock`.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Error;

/// Largest response head we accept, in bytes.
pub const HEAD_LIMIT: usize = 16 * 1024;
/// Largest chunk-size or trailer line we accept, in bytes.
pub const LINE_LIMIT: usize = 4 * 1024;
/// Most trailer lines after the last chunk we read before calling the answer malformed.
const TRAILER_LINES_LIMIT: usize = 64;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 64;

/// Where requests go: scheme-less `host`, `port` and a path prefix, parsed once from a
/// base URL like `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    host: String,
    port: u16,
    prefix: String,
}

impl Origin {
    /// Parses `http://host[:port][/prefix]` (the scheme may be left out; IPv6 literals go
    /// in brackets). Credentials in the URL, other schemes, queries and fragments are
    /// refused with a message saying what was wrong.
    pub fn parse(base: &str) -> Result<Origin, String> {
        let base = base.trim();
        let rest = match base.find("://") {
            Some(i) => {
                let scheme = base.get(..i).unwrap_or_default();
                if !scheme.eq_ignore_ascii_case("http") {
                    return Err(format!(
                        "base URL {base:?}: scheme {scheme:?} is not supported, use http://"
                    ));
                }
                base.get(i + 3..).unwrap_or_default()
            }
            None => base,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "base URL {base:?}: put credentials in the user/password settings, not the URL"
            ));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("base URL {base:?}: unclosed '[' in the host"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!(
                    "base URL {base:?}: {host:?} is not an IPv6 address"
                ));
            }
            if !after.is_empty() && !after.starts_with(':') {
                return Err(format!("base URL {base:?}: junk after the IPv6 address"));
            }
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("base URL {base:?}: bad port {p:?}")),
            },
        };
        let host_ok = !host.is_empty()
            && (host.contains(':')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
        if !host_ok {
            return Err(format!("base URL {base:?}: bad host {host:?}"));
        }
        if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "base URL {base:?}: the path may not hold spaces, a query or a fragment"
            ));
        }
        Ok(Origin {
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The same host with another port and no prefix, e.g. the streaming port 8001.
    pub fn with_port(&self, port: u16) -> Origin {
        Origin {
            host: self.host.clone(),
            port,
            prefix: String::new(),
        }
    }

    /// Host name or IP literal, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path prefix without a trailing `/` (empty when none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `host:port` as it goes into error messages (IPv6 in brackets).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host_for_url(), self.port)
    }

    /// The `Host` header value: the port is left out when it is 80.
    fn host_header(&self) -> String {
        if self.port == 80 {
            self.host_for_url()
        } else {
            self.authority()
        }
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// The value of an `Authorization` header for HTTP Basic authentication.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |v: u32| {
        let index = usize::try_from(v & 63).unwrap_or_default();
        ALPHABET.get(index).copied().map_or('=', char::from)
    };
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let b = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let v = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sextet(v >> 18));
        out.push(sextet(v >> 12));
        out.push(if group.len() > 1 { sextet(v >> 6) } else { '=' });
        out.push(if group.len() > 2 { sextet(v) } else { '=' });
    }
    out
}

/// How the end of a response body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n` (also 0 for statuses that never have a body).
    Length(u64),
    /// No length given: the body ends when the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: String,
    /// Header fields in arrival order; values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// First header value with this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// How the body is framed, or a description of contradicting length headers.
    pub fn framing(&self) -> Result<Framing, String> {
        if (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            return Ok(Framing::Length(0));
        }
        let codings: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if let Some(last) = codings.last() {
            // RFC 9112 §6.3: chunked must be the final coding, else read until close.
            return Ok(if last == "chunked" {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        let mut length: Option<u64> = None;
        for value in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .flat_map(|(_, v)| v.split(','))
        {
            let value = value.trim();
            let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                value.parse::<u64>().ok()
            } else {
                None
            };
            match (parsed, length) {
                (None, _) => return Err(format!("Content-Length {value:?}")),
                (Some(n), Some(prev)) if n != prev => {
                    return Err(format!("Content-Length {prev} and {n} disagree"));
                }
                (Some(n), _) => length = Some(n),
            }
        }
        Ok(length.map_or(Framing::UntilClose, Framing::Length))
    }

    /// The content coding, lower-cased (`gzip`, `x-gzip`, ...), `None` for identity.
    pub fn content_encoding(&self) -> Option<String> {
        let value = self.header("content-encoding")?.to_ascii_lowercase();
        (!value.is_empty() && value != "identity").then_some(value)
    }

    /// The `charset` parameter of `Content-Type`, lower-cased and unquoted.
    pub fn charset(&self) -> Option<String> {
        let content_type = self.header("content-type")?;
        content_type.split(';').skip(1).find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
        })
    }
}

/// A response whose head has been read; the body is still on the socket.
pub struct Response {
    /// Status line and headers.
    pub head: ResponseHead,
    /// The framed body, read on demand.
    pub body: BodyReader,
}

/// Sends `GET <prefix><path>` and reads the response head.
///
/// `path` starts with `/` and is already percent-encoded; `authorization` is a full
/// header value (see [`basic_auth`]). Sends `Host`, `User-Agent: xg2g/<version>`,
/// `Accept-Encoding: gzip` and `Connection: close`. `timeout` bounds resolving plus
/// connecting, sending, and then every single read. Errors name the request as
/// `GET <prefix><path>`; a non-2xx status is *not* an error here.
pub async fn get(
    origin: &Origin,
    path: &str,
    authorization: Option<&str>,
    timeout: Duration,
) -> Result<Response, Error> {
    let target = format!("{}{}", origin.prefix, path);
    let req = format!("GET {target}");
    let stream = connect(origin, timeout, &req).await?;
    let mut conn = Conn {
        stream,
        buf: vec![0; HEAD_LIMIT].into_boxed_slice(),
        start: 0,
        end: 0,
        timeout,
        req,
    };
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xg2g/{}\r\nAccept: */*\r\n\
         Accept-Encoding: gzip\r\nConnection: close\r\n",
        origin.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(value) = authorization {
        request.push_str("Authorization: ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let sent = timed(timeout, async {
        conn.stream.write_all(request.as_bytes()).await?;
        conn.stream.flush().await
    })
    .await;
    if let Err(e) = sent {
        return Err(conn.error(e));
    }
    let head = loop {
        let head = conn.read_head().await?;
        // Interim answers (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        break head;
    };
    let state = match head.framing() {
        Ok(Framing::Chunked) => State::ChunkSize,
        Ok(Framing::Length(n)) => State::Length(n),
        Ok(Framing::UntilClose) => State::Close,
        Err(detail) => return Err(conn.malformed(format!("response head: {detail}"))),
    };
    Ok(Response {
        head,
        body: BodyReader { conn, state },
    })
}

/// Resolves (unless `host` is an IP literal) and connects, all within `timeout`.
async fn connect(origin: &Origin, timeout: Duration, req: &str) -> Result<Async<TcpStream>, Error> {
    let deadline = Instant::now() + timeout;
    let timed_out = || Error::Timeout {
        req: req.to_owned(),
        after: timeout,
    };
    let connect_error = |cause: io::Error| Error::Connect {
        req: req.to_owned(),
        addr: origin.authority(),
        cause,
    };
    let addrs: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
        Err(_) => {
            let host = origin.host.clone();
            let port = origin.port;
            let resolve = smol::unblock(move || {
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|addrs| addrs.collect::<Vec<_>>())
            });
            match timed(timeout, resolve).await {
                Ok(addrs) => addrs,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out()),
                Err(e) => return Err(connect_error(e)),
            }
        }
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match timed(left, Async::<TcpStream>::connect(addr)).await {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out()),
            Err(e) => last = e,
        }
    }
    Err(connect_error(last))
}

/// Runs `fut`, failing with `ErrorKind::TimedOut` when it takes longer than `after`.
async fn timed<T>(after: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    fut.or(async {
        Timer::after(after).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

/// A connection with a read buffer: the head is parsed in place, leftover bytes are the
/// start of the body.
struct Conn {
    stream: Async<TcpStream>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    timeout: Duration,
    req: String,
}

impl Conn {
    fn error(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::TimedOut {
            Error::Timeout {
                req: self.req.clone(),
                after: self.timeout,
            }
        } else {
            Error::Io {
                req: self.req.clone(),
                cause: e,
            }
        }
    }

    fn malformed(&self, detail: String) -> Error {
        Error::Malformed {
            req: self.req.clone(),
            detail,
        }
    }

    fn closed_early(&self, what: &str) -> Error {
        Error::Io {
            req: self.req.clone(),
            cause: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed {what}"),
            ),
        }
    }

    fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Reads more bytes into the buffer (compacting it first); `Ok(0)` at end of stream.
    async fn fill(&mut self) -> Result<usize, Error> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(space) = self.buf.get_mut(self.end..).filter(|s| !s.is_empty()) else {
            return Err(self.malformed("line longer than the read buffer".into()));
        };
        match timed(self.timeout, self.stream.read(space)).await {
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Copies buffered bytes first, then reads the socket directly into `out`.
    async fn read_some(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), buffered.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.start += n;
            return Ok(n);
        }
        timed(self.timeout, self.stream.read(out))
            .await
            .map_err(|e| self.error(e))
    }

    async fn read_head(&mut self) -> Result<ResponseHead, Error> {
        loop {
            if self.start != self.end {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut headers);
                match parsed.parse(self.buffered()) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = ResponseHead {
                            status: parsed.code.unwrap_or(0),
                            reason: parsed.reason.unwrap_or_default().to_owned(),
                            headers: parsed
                                .headers
                                .iter()
                                .map(|h| {
                                    (
                                        h.name.to_owned(),
                                        String::from_utf8_lossy(h.value).into_owned(),
                                    )
                                })
                                .collect(),
                        };
                        self.start += len;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(self.malformed(format!("response head: {e}"))),
                }
            }
            if self.end - self.start >= HEAD_LIMIT {
                return Err(
                    self.malformed(format!("response head: larger than {HEAD_LIMIT} bytes"))
                );
            }
            if self.fill().await? == 0 {
                return Err(self.closed_early("before a complete response head"));
            }
        }
    }

    /// One line without its `\n` or `\r\n`, at most [`LINE_LIMIT`] bytes.
    async fn read_line(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            if let Some(pos) = self.buffered().iter().position(|&b| b == b'\n') {
                let mut line = self.buffered().get(..pos).unwrap_or_default().to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.start += pos + 1;
                return Ok(line);
            }
            if self.end - self.start >= LINE_LIMIT {
                return Err(
                    self.malformed(format!("chunked body: line longer than {LINE_LIMIT} bytes"))
                );
            }
            if self.fill().await? == 0 {
                return Err(self.closed_early("inside the chunked framing"));
            }
        }
    }
}

/// Where the body reader is in the framing.
#[derive(Debug, Clone, Copy)]
enum State {
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailer,
    Done,
}

/// The body of a [`Response`]: yields the payload bytes with the framing removed and
/// ends exactly where the framing says, without waiting for the server to close (except
/// for close-delimited bodies, which end when it does).
pub struct BodyReader {
    conn: Conn,
    state: State,
}

impl BodyReader {
    /// Reads payload bytes into `buf`; `Ok(0)` means the body is complete (or `buf` is
    /// empty). Fails with `Timeout` when no byte arrives within the timeout, `Io` when
    /// the connection ends before the framing does, `Malformed` for bad chunk framing.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done | State::Length(0) => {
                    self.state = State::Done;
                    return Ok(0);
                }
                State::Length(left) => {
                    let n = self.read_capped(buf, left).await?;
                    if n == 0 {
                        return Err(self
                            .conn
                            .closed_early(&format!("{left} bytes before the end of the body")));
                    }
                    self.state = State::Length(left - n as u64);
                    return Ok(n);
                }
                State::Close => {
                    let n = self.conn.read_some(buf).await?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::ChunkSize => {
                    let line = self.conn.read_line().await?;
                    let size = parse_chunk_size(&line).ok_or_else(|| {
                        self.conn.malformed(format!(
                            "chunked body: bad chunk size line {:?}",
                            String::from_utf8_lossy(&line)
                        ))
                    })?;
                    self.state = if size == 0 {
                        State::Trailer
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(left) => {
                    let n = self.read_capped(buf, left).await?;
                    if n == 0 {
                        return Err(self.conn.closed_early("inside a chunk"));
                    }
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok(n);
                }
                State::ChunkDataEnd => {
                    let line = self.conn.read_line().await?;
                    if !line.is_empty() {
                        return Err(self
                            .conn
                            .malformed("chunked body: chunk data longer than its size".into()));
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailer => {
                    for _ in 0..TRAILER_LINES_LIMIT {
                        if self.conn.read_line().await?.is_empty() {
                            self.state = State::Done;
                            return Ok(0);
                        }
                    }
                    return Err(self.conn.malformed(format!(
                        "chunked body: more than {TRAILER_LINES_LIMIT} trailer lines"
                    )));
                }
            }
        }
    }

    async fn read_capped(&mut self, buf: &mut [u8], left: u64) -> Result<usize, Error> {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        match buf.get_mut(..want) {
            Some(part) => self.conn.read_some(part).await,
            None => Ok(0),
        }
    }
}

/// Parses `1a2b[;ext]` (hex, optional extensions, surrounding blanks allowed).
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let size = text.split(';').next()?.trim_matches([' ', '\t']);
    if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse() {
        let o = Origin::parse("http://192.168.1.5").unwrap();
        assert_eq!((o.host(), o.port(), o.prefix()), ("192.168.1.5", 80, ""));
        assert_eq!(o.host_header(), "192.168.1.5");
        let o = Origin::parse("HTTP://box.lan:8080/owif/").unwrap();
        assert_eq!((o.host(), o.port(), o.prefix()), ("box.lan", 8080, "/owif"));
        assert_eq!(o.host_header(), "box.lan:8080");
        let o = Origin::parse("[::1]:81").unwrap();
        assert_eq!((o.host(), o.port()), ("::1", 81));
        assert_eq!(o.authority(), "[::1]:81");
        let o = Origin::parse("http://[fe80::1]").unwrap();
        assert_eq!((o.host(), o.port()), ("fe80::1", 80));
        assert_eq!(o.with_port(8001).authority(), "[fe80::1]:8001");
        for bad in [
            "",
            "https://box",
            "http://",
            "http://user:pw@box",
            "http://box:0",
            "http://box:99999",
            "http://box:x",
            "http://bo x",
            "http://box/a?b",
            "http://[::1",
            "http://[nothex]",
            "http://[::1]junk",
            "http://a:1:2",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(basic_auth("root", "dreambox"), "Basic cm9vdDpkcmVhbWJveA==");
    }

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            reason: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn framing_rules() {
        let te = head(200, &[("Transfer-Encoding", "gzip, Chunked")]);
        assert_eq!(te.framing(), Ok(Framing::Chunked));
        let both = head(
            200,
            &[("Content-Length", "5"), ("transfer-encoding", "chunked")],
        );
        assert_eq!(both.framing(), Ok(Framing::Chunked));
        let te_not_last = head(200, &[("Transfer-Encoding", "chunked, gzip")]);
        assert_eq!(te_not_last.framing(), Ok(Framing::UntilClose));
        assert_eq!(
            head(200, &[("Content-Length", " 42 ")]).framing(),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            head(200, &[("Content-Length", "42, 42")]).framing(),
            Ok(Framing::Length(42))
        );
        assert!(
            head(200, &[("Content-Length", "42, 43")])
                .framing()
                .is_err()
        );
        assert!(head(200, &[("Content-Length", "-1")]).framing().is_err());
        assert!(head(200, &[("Content-Length", "+1")]).framing().is_err());
        assert_eq!(head(200, &[]).framing(), Ok(Framing::UntilClose));
        assert_eq!(head(204, &[]).framing(), Ok(Framing::Length(0)));
    }

    #[test]
    fn content_type_and_encoding() {
        let h = head(
            200,
            &[
                ("Content-Type", "application/json; Charset=\"ISO-8859-1\""),
                ("Content-Encoding", "GZIP"),
            ],
        );
        assert_eq!(h.charset().as_deref(), Some("iso-8859-1"));
        assert_eq!(h.content_encoding().as_deref(), Some("gzip"));
        let h = head(200, &[("content-type", "application/json")]);
        assert_eq!(h.charset(), None);
        assert_eq!(h.content_encoding(), None);
        let h = head(200, &[("content-encoding", "identity")]);
        assert_eq!(h.content_encoding(), None);
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"FF ; name=value"), Some(255));
        assert_eq!(parse_chunk_size(b" 10\t"), Some(16));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"-1"), None);
        assert_eq!(parse_chunk_size(b"0x10"), None);
        assert_eq!(parse_chunk_size(b"11111111111111111"), None);
        assert_eq!(parse_chunk_size(b"\xff"), None);
    }

    #[test]
    fn httparse_accepts_bare_newlines() {
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut r = httparse::Response::new(&mut headers);
        let raw = b"HTTP/1.0 200 OK\nContent-Type: video/mpeg\n\nbody";
        assert_eq!(r.parse(raw), Ok(httparse::Status::Complete(raw.len() - 4)));
        assert_eq!(r.code, Some(200));
        assert_eq!(r.headers.len(), 1);
    }
}
