//! Request and response values passed between the server and its handlers.

use std::net::SocketAddr;
use std::pin::Pin;

use smol::io::AsyncRead;

/// A parsed request head plus its (small, bounded) body.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method as sent, upper case (`GET`, `HEAD`, `POST`, ...).
    pub method: String,
    /// Path part of the target, percent-decoding NOT applied (e.g. `/stream/1:0:19:...`).
    pub path: String,
    /// Raw query string without the `?`, empty when absent.
    pub query: String,
    /// Header fields in arrival order; names as sent.
    pub headers: Vec<(String, String)>,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The body, at most the server's body limit (empty for GET/HEAD).
    pub body: Vec<u8>,
}

impl Request {
    /// First header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First query parameter with this key, percent-decoded (`+` is a space).
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are, invalid UTF-8 is
/// replaced, so hostile input never fails here.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but unreserved characters and `:` (which service
/// references are full of and which is legal in a path segment and a query value).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response body.
pub enum Body {
    /// No body (also what HEAD responses send).
    Empty,
    /// A body held in memory (small: JSON, errors, metrics).
    Bytes(Vec<u8>),
    /// A regular file, sent in chunks from its current position; `len` bytes.
    File { file: std::fs::File, len: u64 },
    /// A body produced as it goes (streams, generated documents). Sent chunked to
    /// HTTP/1.1 clients, close-delimited otherwise or when `Response::close` is set.
    Stream(Pin<Box<dyn AsyncRead + Send>>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Body::File { len, .. } => write!(f, "File({len})"),
            Body::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// Completes when the server must stop sending a response body and close the
/// connection (a stream client that fell too far behind), even mid-write.
pub struct Abort(pub Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Abort")
    }
}

/// A response a handler returns; the server adds `Content-Length`/`Transfer-Encoding`,
/// `Date`-less minimal framing and `Connection`.
#[derive(Debug)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header fields to send as they are.
    pub headers: Vec<(String, String)>,
    /// What follows the head (not sent for HEAD requests or 204/304).
    pub body: Body,
    /// Close the connection after this response; a `Stream` body is then sent
    /// close-delimited, unbuffered (what MPEG-TS clients expect).
    pub close: bool,
    /// Cuts a `Stream` body off when it completes.
    pub abort: Option<Abort>,
}

impl Response {
    /// A response with a status and no body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
            close: false,
            abort: None,
        }
    }

    /// A response with an in-memory body and its content type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response::empty(status)
            .with_header("Content-Type", content_type)
            .with_body(Body::Bytes(body))
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// What serves requests: the daemon's router, or the simulator.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Never panics on input; errors are responses.
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_tolerates_garbage() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%C3%BC"), "ü");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        let sref = "1:134:1:0:0:0:0:0:0:0:FROM BOUQUET \"alternatives.x.tv\" ORDER BY bouquet";
        assert_eq!(percent_decode(&percent_encode(sref)), sref);
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
