//! The stable error codes of the HTTP API: every error response is JSON
//! `{"error": "<message>", "code": "E0NN"}` with one of these codes (listed in the README).

use super::message::Response;

/// Every error the HTTP edge answers with. Codes never change meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// E001 (429): rate limit exceeded — reserved for the limiter.
    RateLimited,
    /// E002 (401): the endpoint needs `Authorization: Bearer <XG2G_API_TOKEN>`.
    Unauthorized,
    /// E003 (403): the bearer token is wrong.
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
}

impl ErrorCode {
    /// Every code, in code order (the README table and its test use this).
    pub const ALL: [ErrorCode; 14] = [
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
        }
    }

    /// The HTTP status sent with it.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::RateLimited => 429,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::TokenNotConfigured => 403,
            ErrorCode::NotFound | ErrorCode::GuideDisabled => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::NotReady | ErrorCode::ServerBusy => 503,
            ErrorCode::BadRequest => 400,
            ErrorCode::HeadTooLarge => 431,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::UnsupportedTransferEncoding => 501,
        }
    }

    /// The human message.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::RateLimited => "rate limit exceeded",
            ErrorCode::Unauthorized => "missing bearer token",
            ErrorCode::Forbidden => "invalid bearer token",
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
