//! The receiver client's one error type: every failure names the request it belongs to
//! and maps to one stable `kind()` label for metrics.

use std::io;
use std::time::Duration;

/// Why a receiver request (or building the client) failed. Display is one line that
/// starts with the request, e.g. `GET /api/bouquets: timed out after 10s`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings cannot work (bad base URL, zero timeout, ...); no request was made.
    #[error("invalid receiver settings: {0}")]
    Config(String),
    /// Connecting, sending, or waiting for the next bytes took longer than the timeout.
    #[error("{req}: timed out after {}", fmt_duration(*.after))]
    Timeout {
        /// The request, e.g. `GET /api/bouquets`.
        req: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The host name did not resolve or no address accepted the connection.
    #[error("{req}: cannot connect to {addr}: {cause}")]
    Connect {
        /// The request.
        req: String,
        /// `host:port` we tried.
        addr: String,
        /// What the resolver or the socket said.
        cause: io::Error,
    },
    /// The receiver answered with a status other than 2xx.
    #[error("{req}: HTTP {status}")]
    Status {
        /// The request.
        req: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The answer could not be understood: bad response head, bad chunk framing, bad
    /// gzip data or bad JSON; `detail` says which and where.
    #[error("{req}: malformed {detail}")]
    Malformed {
        /// The request.
        req: String,
        /// E.g. `JSON at line 1 column 40: expected value`.
        detail: String,
    },
    /// The answer (decoded) was larger than the configured cap; nothing of it is used.
    #[error("{req}: answer larger than {limit} bytes")]
    TooLarge {
        /// The request.
        req: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// Any other socket failure, e.g. the connection closed in the middle of the answer.
    #[error("{req}: {cause}")]
    Io {
        /// The request.
        req: String,
        /// The underlying error.
        cause: io::Error,
    },
    /// The circuit breaker is open after repeated failures: the request never left the
    /// daemon. Not retried; asking again after `retry_after` may let a probe through.
    #[error("{req}: receiver circuit open, retry in {}", fmt_duration(*.retry_after))]
    CircuitOpen {
        /// The request that was not sent.
        req: String,
        /// When the breaker may let a request through again (never zero).
        retry_after: Duration,
    },
}

impl Error {
    /// The stable label of this failure, as used in [`RequestOutcome::result`]:
    /// `timeout`, `connect`, `http_4xx` (every non-2xx status below 500), `http_5xx`,
    /// `malformed`, `too_large`, `io`, `circuit_open` (the breaker refused to send it),
    /// or `config` for settings errors.
    ///
    /// [`RequestOutcome::result`]: super::RequestOutcome::result
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Timeout { .. } => "timeout",
            Error::Connect { .. } => "connect",
            Error::Status { status, .. } if *status >= 500 => "http_5xx",
            Error::Status { .. } => "http_4xx",
            Error::Malformed { .. } => "malformed",
            Error::TooLarge { .. } => "too_large",
            Error::Io { .. } => "io",
            Error::CircuitOpen { .. } => "circuit_open",
        }
    }

    /// Whether another attempt may succeed: connect errors, timeouts and 5xx answers.
    /// Exactly these also count as failures for the circuit breaker (the box did not
    /// answer usefully); everything else, `circuit_open` included, is not transient.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), "connect" | "timeout" | "http_5xx")
    }

    /// Wraps this error so it can travel through `std::io::Read` adapters and be
    /// recovered unchanged by [`Error::from_io`].
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Recovers an error made by [`Error::into_io`]; other I/O errors become
    /// `Malformed` (corrupt or truncated gzip data) or `Io`.
    pub(crate) fn from_io(req: &str, e: io::Error) -> Error {
        let kind = e.kind();
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(ours) = inner.downcast::<Error>() {
                    return *ours;
                }
            }
            // Unreachable in practice: the check above saw our type.
            return Error::Io {
                req: req.to_owned(),
                cause: io::Error::other("lost error"),
            };
        }
        match kind {
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof => Error::Malformed {
                req: req.to_owned(),
                detail: format!("body: {e}"),
            },
            _ => Error::Io {
                req: req.to_owned(),
                cause: e,
            },
        }
    }

    /// Maps a JSON parse failure: I/O errors from the body pipeline keep their own kind,
    /// everything else is `Malformed` with the position.
    pub(crate) fn from_json(req: &str, e: serde_json::Error) -> Error {
        if e.is_io() {
            return Error::from_io(req, e.into());
        }
        let (line, column) = (e.line(), e.column());
        let text = e.to_string();
        // serde_json appends the position; we put it first, so drop its copy.
        let suffix = format!(" at line {line} column {column}");
        let message = text.strip_suffix(suffix.as_str()).unwrap_or(&text);
        Error::Malformed {
            req: req.to_owned(),
            detail: format!("JSON at line {line} column {column}: {message}"),
        }
    }
}

/// `10s` for whole seconds, `250ms` otherwise.
fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_and_names_the_request() {
        let req = "GET /api/bouquets".to_owned();
        let e = Error::Timeout {
            req: req.clone(),
            after: Duration::from_secs(10),
        };
        assert_eq!(e.to_string(), "GET /api/bouquets: timed out after 10s");
        assert_eq!(e.kind(), "timeout");
        let e = Error::Timeout {
            req: req.clone(),
            after: Duration::from_millis(250),
        };
        assert_eq!(e.to_string(), "GET /api/bouquets: timed out after 250ms");
        let e = Error::Status {
            req: req.clone(),
            status: 500,
        };
        assert_eq!(e.to_string(), "GET /api/bouquets: HTTP 500");
        assert_eq!(e.kind(), "http_5xx");
        assert!(e.is_transient());
        let e = Error::Status {
            req: req.clone(),
            status: 404,
        };
        assert_eq!(e.kind(), "http_4xx");
        assert!(!e.is_transient());
        let e = Error::TooLarge {
            req: req.clone(),
            limit: 268435456,
        };
        assert_eq!(
            e.to_string(),
            "GET /api/bouquets: answer larger than 268435456 bytes"
        );
        let json = serde_json::from_str::<serde_json::Value>("{\"a\": }").unwrap_err();
        let e = Error::from_json(&req, json);
        assert_eq!(
            e.to_string(),
            "GET /api/bouquets: malformed JSON at line 1 column 7: expected value"
        );
        assert_eq!(e.kind(), "malformed");
    }

    #[test]
    fn errors_survive_a_trip_through_io() {
        let e = Error::TooLarge {
            req: "GET /x".into(),
            limit: 5,
        };
        let back = Error::from_io("GET /y", e.into_io());
        assert_eq!(back.to_string(), "GET /x: answer larger than 5 bytes");
        let plain = io::Error::new(io::ErrorKind::InvalidInput, "corrupt deflate stream");
        assert_eq!(Error::from_io("GET /y", plain).kind(), "malformed");
        let open = Error::CircuitOpen {
            req: "GET /api/bouquets".into(),
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            open.to_string(),
            "GET /api/bouquets: receiver circuit open, retry in 1500ms"
        );
        assert_eq!(open.kind(), "circuit_open");
        assert!(!open.is_transient());
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Error::from_io("GET /y", reset).kind(), "io");
    }
}
