//! The stable error codes of the HTTP API: every error response is JSON
//! `{"error": "<message>", "code": "E0NN"}` with one of these codes (listed in the README).

use super::message::Response;

/// Every error the HTTP edge answers with. Codes never change meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// E001 (429): rate limit exceeded — reserved for the limiter.
    RateLimited,
    /// E002 (401): the request carries no token: `Authorization: Bearer` or
    /// `X-API-Token` for the API, `?token=` for files, streams and picons.
    Unauthorized,
    /// E003 (403): the token is wrong.
    Forbidden,
    /// E004 (403): no `XG2G_API_TOKEN` is configured, so the endpoint is disabled.
    TokenNotConfigured,
    /// E005 (404): no such path.
    NotFound,
    /// E006 (405): the path exists but not for this method.
    MethodNotAllowed,
    /// E007 (503): no playlist/guide has been written yet (first refresh pending or failed).
    NotReady,
    /// E008 (400): the request could not be parsed.
    BadRequest,
    /// E009 (431): the request head is larger than `XG2G_HTTP_MAX_HEADER_BYTES`.
    HeadTooLarge,
    /// E010 (413): the request body is too large.
    BodyTooLarge,
    /// E011 (503): `XG2G_HTTP_MAX_CONNECTIONS` connections are open.
    ServerBusy,
    /// E012 (500): a file could not be read.
    Internal,
    /// E013 (501): chunked (or other transfer-coded) request bodies are not accepted.
    UnsupportedTransferEncoding,
    /// E014 (404): the guide is disabled (`XG2G_EPG_ENABLED=false`).
    GuideDisabled,
    /// E015 (400): the path does not hold a valid service reference (or picon name).
    InvalidRef,
    /// E016 (404): the service reference is not a channel of the lineup.
    UnknownChannel,
    /// E017 (502): the receiver did not deliver an MPEG-TS stream for the channel.
    StreamOpenFailed,
    /// E018 (503): every tuner is busy (`XG2G_MAX_STREAMS` channels are streaming).
    TunerLimit,
    /// E019 (503): the receiver's stream ports are failing; the circuit breaker is open.
    ReceiverUnavailable,
    /// E020 (404): the receiver has no picon for this channel.
    PiconNotFound,
    /// E021 (502): the picon could not be fetched from the receiver.
    PiconFetchFailed,
    /// E022 (422): reloaded settings are invalid; the running settings stay in force.
    ConfigInvalid,
    /// E023 (400): `?profile=` names no transcode profile.
    UnknownProfile,
    /// E024 (503): the transcode queue is full (`XG2G_GPU_QUEUE_SIZE` waiting).
    EncoderQueueFull,
    /// E025 (503): no encoder slot freed up within `XG2G_GPU_QUEUE_MAX_WAIT`.
    EncoderQueueTimeout,
    /// E026 (503): no encoder device can run this profile (or all have capacity 0).
    NoEncoder,
    /// E027 (502): ffmpeg failed to start or delivered no stream.
    TranscodeFailed,
    /// E028 (503): `XG2G_HLS_MAX_SESSIONS` HLS sessions are running.
    HlsSessionsFull,
}

impl ErrorCode {
    /// Every code, in code order (the README table and its test use this).
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TokenNotConfigured,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NotReady,
        ErrorCode::BadRequest,
        ErrorCode::HeadTooLarge,
        ErrorCode::BodyTooLarge,
        ErrorCode::ServerBusy,
        ErrorCode::Internal,
        ErrorCode::UnsupportedTransferEncoding,
        ErrorCode::GuideDisabled,
        ErrorCode::InvalidRef,
        ErrorCode::UnknownChannel,
        ErrorCode::StreamOpenFailed,
        ErrorCode::TunerLimit,
        ErrorCode::ReceiverUnavailable,
        ErrorCode::PiconNotFound,
        ErrorCode::PiconFetchFailed,
        ErrorCode::ConfigInvalid,
        ErrorCode::UnknownProfile,
        ErrorCode::EncoderQueueFull,
        ErrorCode::EncoderQueueTimeout,
        ErrorCode::NoEncoder,
        ErrorCode::TranscodeFailed,
        ErrorCode::HlsSessionsFull,
    ];

    /// The stable code, e.g. `E005`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::RateLimited => "E001",
            ErrorCode::Unauthorized => "E002",
            ErrorCode::Forbidden => "E003",
            ErrorCode::TokenNotConfigured => "E004",
            ErrorCode::NotFound => "E005",
            ErrorCode::MethodNotAllowed => "E006",
            ErrorCode::NotReady => "E007",
            ErrorCode::BadRequest => "E008",
            ErrorCode::HeadTooLarge => "E009",
            ErrorCode::BodyTooLarge => "E010",
            ErrorCode::ServerBusy => "E011",
            ErrorCode::Internal => "E012",
            ErrorCode::UnsupportedTransferEncoding => "E013",
            ErrorCode::GuideDisabled => "E014",
            ErrorCode::InvalidRef => "E015",
            ErrorCode::UnknownChannel => "E016",
            ErrorCode::StreamOpenFailed => "E017",
            ErrorCode::TunerLimit => "E018",
            ErrorCode::ReceiverUnavailable => "E019",
            ErrorCode::PiconNotFound => "E020",
            ErrorCode::PiconFetchFailed => "E021",
            ErrorCode::ConfigInvalid => "E022",
            ErrorCode::UnknownProfile => "E023",
            ErrorCode::EncoderQueueFull => "E024",
            ErrorCode::EncoderQueueTimeout => "E025",
            ErrorCode::NoEncoder => "E026",
            ErrorCode::TranscodeFailed => "E027",
            ErrorCode::HlsSessionsFull => "E028",
        }
    }

    /// The HTTP status sent with it.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::RateLimited => 429,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::TokenNotConfigured => 403,
            ErrorCode::NotFound
            | ErrorCode::GuideDisabled
            | ErrorCode::UnknownChannel
            | ErrorCode::PiconNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::NotReady
            | ErrorCode::ServerBusy
            | ErrorCode::TunerLimit
            | ErrorCode::ReceiverUnavailable
            | ErrorCode::EncoderQueueFull
            | ErrorCode::EncoderQueueTimeout
            | ErrorCode::NoEncoder
            | ErrorCode::HlsSessionsFull => 503,
            ErrorCode::BadRequest | ErrorCode::InvalidRef | ErrorCode::UnknownProfile => 400,
            ErrorCode::StreamOpenFailed
            | ErrorCode::PiconFetchFailed
            | ErrorCode::TranscodeFailed => 502,
            ErrorCode::HeadTooLarge => 431,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::ConfigInvalid => 422,
            ErrorCode::UnsupportedTransferEncoding => 501,
        }
    }

    /// The human message.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::RateLimited => "rate limit exceeded",
            ErrorCode::Unauthorized => "missing token",
            ErrorCode::Forbidden => "invalid token",
            ErrorCode::TokenNotConfigured => "endpoint disabled: set XG2G_API_TOKEN to enable it",
            ErrorCode::NotFound => "not found",
            ErrorCode::MethodNotAllowed => "method not allowed",
            ErrorCode::NotReady => "no playlist yet: the first refresh has not succeeded",
            ErrorCode::BadRequest => "malformed request",
            ErrorCode::HeadTooLarge => "request head too large",
            ErrorCode::BodyTooLarge => "request body too large",
            ErrorCode::ServerBusy => "too many connections",
            ErrorCode::Internal => "internal error",
            ErrorCode::UnsupportedTransferEncoding => {
                "transfer-encoded request bodies are not supported"
            }
            ErrorCode::GuideDisabled => "the guide is disabled (XG2G_EPG_ENABLED=false)",
            ErrorCode::InvalidRef => "not a valid service reference",
            ErrorCode::UnknownChannel => "no such channel in the lineup",
            ErrorCode::StreamOpenFailed => "the receiver did not deliver a stream for this channel",
            ErrorCode::TunerLimit => "all tuners are busy",
            ErrorCode::ReceiverUnavailable => {
                "the receiver's stream ports are failing (circuit breaker open)"
            }
            ErrorCode::PiconNotFound => "no picon for this channel",
            ErrorCode::PiconFetchFailed => "the picon could not be fetched from the receiver",
            ErrorCode::ConfigInvalid => "invalid settings; the running settings are kept",
            ErrorCode::UnknownProfile => "no such transcode profile",
            ErrorCode::EncoderQueueFull => "transcode queue is full",
            ErrorCode::EncoderQueueTimeout => "no encoder slot freed up in time",
            ErrorCode::NoEncoder => "no encoder can run this profile",
            ErrorCode::TranscodeFailed => "the transcoder failed",
            ErrorCode::HlsSessionsFull => "all HLS sessions are in use",
        }
    }

    /// `{"error": ..., "code": ...}` as bytes.
    pub fn json_body(self) -> Vec<u8> {
        serde_json::json!({ "error": self.message(), "code": self.code() })
            .to_string()
            .into_bytes()
    }

    /// The complete error response.
    pub fn response(self) -> Response {
        Response::bytes(self.status(), "application/json", self.json_body())
    }

    /// The error response with a `detail` field saying exactly what was wrong.
    pub fn response_with_detail(self, detail: &str) -> Response {
        let body = serde_json::json!({
            "error": self.message(),
            "code": self.code(),
            "detail": detail,
        });
        Response::bytes(
            self.status(),
            "application/json",
            body.to_string().into_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_code_with_its_status() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.code(), code.status());
            assert!(readme.contains(&row), "README lacks {row}");
        }
        let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        codes.dedup();
        assert_eq!(
            codes.len(),
            ErrorCode::ALL.len(),
            "codes are unique and ordered"
        );
    }
}
