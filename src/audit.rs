//! The audit log: security-relevant events as one JSON line each, on the log target
//! `xg2g::audit` so they can be routed apart from the operational log
//! (`RUST_LOG=xg2g::audit=info` shows only them).
//!
//! Rules: every line has the same fields (`ts`, `type`, `actor`, `resource`, `result`,
//! `request_id`, `details`); resources are paths without their query string, and no
//! caller ever passes a token, so secrets cannot reach the log; user-supplied text is
//! JSON-escaped by serde, so a hostile value cannot forge a line.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The log target audit lines are written to.
pub const TARGET: &str = "xg2g::audit";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A request carried the right token.
    AuthSuccess,
    /// A request carried a wrong token.
    AuthFailure,
    /// A request to a protected route carried no token.
    AuthMissing,
    /// A client (or all clients together) hit a rate limit; once per episode.
    RateLimited,
    /// New settings were applied.
    ConfigReloadOk,
    /// A reload was refused (invalid settings); the old ones keep running.
    ConfigReloadError,
    /// A refresh started.
    RefreshStart,
    /// A refresh finished and wrote new files.
    RefreshSuccess,
    /// A refresh failed; the last good files stay.
    RefreshError,
}

impl AuditKind {
    /// The stable `type` value, e.g. `auth.failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::AuthSuccess => "auth.success",
            AuditKind::AuthFailure => "auth.failure",
            AuditKind::AuthMissing => "auth.missing",
            AuditKind::RateLimited => "ratelimit.exceeded",
            AuditKind::ConfigReloadOk => "config.reload.ok",
            AuditKind::ConfigReloadError => "config.reload.error",
            AuditKind::RefreshStart => "refresh.start",
            AuditKind::RefreshSuccess => "refresh.success",
            AuditKind::RefreshError => "refresh.error",
        }
    }
}

/// Who caused an event: a client address, or the daemon itself (schedule, signal,
/// file watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// An HTTP client (after trusted-proxy resolution).
    Client(IpAddr),
    /// The daemon: `refresher`, `signal`, `file-watch`.
    System(&'static str),
}

/// One audit event.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// What happened.
    pub kind: AuditKind,
    /// Who did it.
    pub actor: Actor,
    /// What it was done to: a route path (no query) or `config`, `refresh`.
    pub resource: &'a str,
    /// `allowed`, `denied`, `limited`, `ok` or `error`.
    pub result: &'a str,
    /// The request's id (`X-Request-Id`), when a request caused it.
    pub request_id: Option<&'a str>,
    /// Event-specific facts (never secrets).
    pub details: Value,
}

impl AuditEvent<'_> {
    /// The event as its JSON line, stamped with `unix_ms`.
    pub fn to_line(&self, unix_ms: i64) -> String {
        let actor = match self.actor {
            Actor::Client(ip) => ip.to_string(),
            Actor::System(who) => who.to_string(),
        };
        json!({
            "ts": rfc3339_millis(unix_ms),
            "type": self.kind.as_str(),
            "actor": actor,
            "resource": self.resource,
            "result": self.result,
            "request_id": self.request_id,
            "details": self.details,
        })
        .to_string()
    }
}

/// Writes `event` to the audit target.
pub fn record(event: &AuditEvent<'_>) {
    if log::log_enabled!(target: TARGET, log::Level::Info) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        log::info!(target: TARGET, "{}", event.to_line(now));
    }
}

/// `2026-11-23T10:04:05.123Z`.
fn rfc3339_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (y, mo, d, h, mi, s) = crate::guide::civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_every_field_and_escape_hostile_text() {
        let event = AuditEvent {
            kind: AuditKind::AuthFailure,
            actor: Actor::Client("192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            resource: "/api/v1/refresh\n{\"forged\":1}",
            result: "denied",
            request_id: Some("abc-1"),
            details: json!({"scheme": "bearer"}),
        };
        let line = event.to_line(1_795_000_000_123);
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        assert_eq!(v["ts"], "2026-11-18T11:06:40.123Z");
        assert_eq!(v["type"], "auth.failure");
        assert_eq!(v["actor"], "192.0.2.7");
        assert_eq!(v["result"], "denied");
        assert_eq!(v["request_id"], "abc-1");
        assert_eq!(v["details"]["scheme"], "bearer");
        let system = AuditEvent {
            kind: AuditKind::RefreshStart,
            actor: Actor::System("schedule"),
            resource: "refresh",
            result: "ok",
            request_id: None,
            details: Value::Null,
        };
        let v: Value = serde_json::from_str(&system.to_line(0)).unwrap_or(Value::Null);
        assert_eq!(v["actor"], "schedule");
        assert_eq!(v["request_id"], Value::Null);
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
    }
}
