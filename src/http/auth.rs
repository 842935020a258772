//! Token checks: `XG2G_API_TOKEN` for the API's write endpoints and `XG2G_STREAM_TOKEN`
//! for playlist, guide, streams and picons.
//!
//! Rules: a token is compared in time that depends only on the configured token's
//! length, never on how many leading bytes match; the API token comes in a header
//! (`Authorization: Bearer` or `X-API-Token`), the stream token also as `?token=`
//! because IPTV apps cannot send headers.

use super::message::Request;

/// What a request's token amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// No token is configured: for the API, the endpoint is off; elsewhere, open.
    NotConfigured,
    /// A token is configured and the request has none.
    Missing,
    /// The request's token is wrong.
    Wrong,
    /// The request's token is right.
    Valid,
}

/// Checks the API token: `Authorization: Bearer <t>` or `X-API-Token: <t>`.
pub fn check_api_token(req: &Request, configured: Option<&str>) -> TokenCheck {
    let Some(secret) = configured else {
        return TokenCheck::NotConfigured;
    };
    judge(header_token(req).as_deref(), secret)
}

/// Checks the stream token: `?token=<t>`, or the API token's headers.
pub fn check_stream_token(req: &Request, configured: Option<&str>) -> TokenCheck {
    let Some(secret) = configured else {
        return TokenCheck::NotConfigured;
    };
    let given = req.query_param("token").or_else(|| header_token(req));
    judge(given.as_deref(), secret)
}

fn judge(given: Option<&str>, secret: &str) -> TokenCheck {
    match given {
        None | Some("") => TokenCheck::Missing,
        Some(given) if secret_matches(given.as_bytes(), secret.as_bytes()) => TokenCheck::Valid,
        Some(_) => TokenCheck::Wrong,
    }
}

/// The token in `Authorization: Bearer` (scheme case-insensitive) or `X-API-Token`.
fn header_token(req: &Request) -> Option<String> {
    if let Some(value) = req.header("authorization") {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.trim().to_string());
        }
    }
    req.header("x-api-token").map(|v| v.trim().to_string())
}

/// Compares `given` with `secret` touching every byte of `secret` whatever `given`
/// holds, so the time taken reveals neither how much of a guess was right nor (beyond
/// the secret's length) anything else.
pub fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = given.len() ^ secret.len();
    for (i, s) in secret.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(g ^ s);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            body: Vec::new(),
        }
    }

    #[test]
    fn api_token_from_either_header() {
        let t = Some("s3cret");
        assert_eq!(
            check_api_token(&req("", &[("Authorization", "Bearer s3cret")]), t),
            TokenCheck::Valid
        );
        assert_eq!(
            check_api_token(&req("", &[("authorization", "bearer  s3cret ")]), t),
            TokenCheck::Valid
        );
        assert_eq!(
            check_api_token(&req("", &[("X-API-Token", "s3cret")]), t),
            TokenCheck::Valid
        );
        assert_eq!(
            check_api_token(&req("", &[("X-API-Token", "s3cre")]), t),
            TokenCheck::Wrong
        );
        assert_eq!(
            check_api_token(&req("", &[("Authorization", "Basic abc")]), t),
            TokenCheck::Missing
        );
        // The API token never comes from the query (it would end up in access logs).
        assert_eq!(
            check_api_token(&req("token=s3cret", &[]), t),
            TokenCheck::Missing
        );
        assert_eq!(
            check_api_token(&req("", &[]), None),
            TokenCheck::NotConfigured
        );
    }

    #[test]
    fn stream_token_from_the_query() {
        let t = Some("tv pass");
        assert_eq!(
            check_stream_token(&req("a=1&token=tv%20pass", &[]), t),
            TokenCheck::Valid
        );
        assert_eq!(
            check_stream_token(&req("token=", &[]), t),
            TokenCheck::Missing
        );
        assert_eq!(
            check_stream_token(&req("token=tv", &[]), t),
            TokenCheck::Wrong
        );
        assert_eq!(check_stream_token(&req("", &[]), t), TokenCheck::Missing);
        assert_eq!(
            check_stream_token(&req("", &[("X-API-Token", "tv pass")]), t),
            TokenCheck::Valid
        );
        assert_eq!(
            check_stream_token(&req("", &[]), None),
            TokenCheck::NotConfigured
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abc", b"abd"));
        assert!(!secret_matches(b"abc", b"ab"));
        assert!(!secret_matches(b"ab", b"abc"));
        assert!(!secret_matches(b"abc\0", b"abc"));
        assert!(!secret_matches(b"", b"abc"));
    }
}
