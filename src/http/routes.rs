//! The daemon's routes: files, health, status, refresh, metrics.
//!
//! Rules: files are served from disk as they are (never held in memory), with ETag and
//! Last-Modified taken from the opened file, so a rename by a refresh mid-request can
//! never mix two versions; every answer is counted by route and status.

use std::fs::File;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::json;

use super::error::ErrorCode;
use super::message::{Body, Handler, Request, Response};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::picon::PiconCache;
use crate::refresh::{Refresher, Triggered, wait_for_completion};
use crate::stream::{StreamError, StreamService};

/// The state the routes need; built once in `main`.
pub struct App {
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// The refresh job.
    pub refresher: Arc<Refresher>,
    /// The metric families.
    pub metrics: Arc<Metrics>,
    /// The stream proxy.
    pub streams: Arc<StreamService>,
    /// The picon cache; `None` when logos cannot be proxied (an https `XG2G_PICON_BASE`).
    pub picons: Option<Arc<PiconCache>>,
    /// When the daemon started (for uptime).
    pub started: Instant,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Everything (metrics too when `XG2G_METRICS_LISTEN` is unset).
    Main {
        /// Whether `/metrics` is served here.
        metrics: bool,
    },
    /// Only `/metrics` and `/healthz` (the separate metrics listener).
    MetricsOnly,
}

/// The router: a `Handler` over `App`.
pub struct Router {
    app: Arc<App>,
    routes: Routes,
}

impl Router {
    /// A router serving `routes` from `app`.
    pub fn new(app: Arc<App>, routes: Routes) -> Router {
        Router { app, routes }
    }

    async fn route(&self, req: &Request) -> (&'static str, Response) {
        let path = req.path.as_str();
        let main = matches!(self.routes, Routes::Main { .. });
        let metrics_here = matches!(
            self.routes,
            Routes::Main { metrics: true } | Routes::MetricsOnly
        );
        let get = req.method == "GET" || req.method == "HEAD";
        let (route, allowed): (&'static str, &'static str) = match path {
            "/playlist.m3u" if main => ("playlist", "GET, HEAD"),
            "/xmltv.xml" if main => ("xmltv", "GET, HEAD"),
            "/xmltv.xml.gz" if main => ("xmltv_gz", "GET, HEAD"),
            "/healthz" => ("healthz", "GET, HEAD"),
            "/readyz" if main => ("readyz", "GET, HEAD"),
            "/api/v1/status" if main => ("status", "GET, HEAD"),
            "/api/v1/refresh" if main => ("refresh", "POST"),
            "/metrics" if metrics_here => ("metrics", "GET, HEAD"),
            p if main && p.starts_with("/stream/") => ("stream", "GET, HEAD"),
            p if main && p.starts_with("/picon/") => ("picon", "GET, HEAD"),
            _ => return ("not_found", ErrorCode::NotFound.response()),
        };
        let method_ok = if allowed == "POST" {
            req.method == "POST"
        } else {
            get
        };
        if !method_ok {
            return (
                route,
                ErrorCode::MethodNotAllowed
                    .response()
                    .with_header("Allow", allowed),
            );
        }
        let resp = match route {
            "playlist" => self.file(req, "playlist.m3u", "audio/x-mpegurl; charset=utf-8", false),
            "xmltv" => self.file(req, "xmltv.xml", "application/xml; charset=utf-8", true),
            "xmltv_gz" => self.file(req, "xmltv.xml.gz", "application/gzip", true),
            "healthz" => json_response(200, &json!({"status": "ok"})),
            "readyz" => self.readyz(req),
            "status" => self.status(),
            "refresh" => self.refresh(req).await,
            "stream" => {
                self.stream(req, path.get("/stream/".len()..).unwrap_or_default())
                    .await
            }
            "picon" => {
                let tail = path.get("/picon/".len()..).unwrap_or_default();
                match &self.app.picons {
                    Some(picons) => picons.respond(req, tail).await,
                    None => ErrorCode::PiconNotFound.response(),
                }
            }
            _ => Response::bytes(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.app.metrics.encode().into_bytes(),
            ),
        };
        (route, resp)
    }

    /// `/stream/<ref>`: HEAD answers here; GET answers once the upstream delivers, with
    /// the head written by us and the body close-delimited and unbuffered.
    async fn stream(&self, req: &Request, tail: &str) -> Response {
        let streams = &self.app.streams;
        let channel = match streams.resolve(tail) {
            Ok(c) => c,
            Err(e) => return stream_error(&e),
        };
        let head = Response::empty(200)
            .with_header("Content-Type", "video/mp2t")
            .with_header("Cache-Control", "no-store");
        if req.method == "HEAD" {
            // No length: an empty stream body makes the server send neither
            // Content-Length nor chunking for HEAD.
            return head.with_body(Body::Stream(Box::pin(smol::io::empty())));
        }
        match streams.open(&channel).await {
            Ok(opened) => {
                let mut resp = head.with_body(Body::Stream(Box::pin(opened.body)));
                resp.close = true;
                resp.abort = Some(opened.abort);
                resp
            }
            Err(e) => stream_error(&e),
        }
    }

    fn file(&self, req: &Request, name: &str, content_type: &str, guide: bool) -> Response {
        if guide && !self.app.settings.epg_enabled {
            return ErrorCode::GuideDisabled.response();
        }
        let path = self.app.settings.data_dir.join(name);
        serve_file(req, &path, content_type)
    }

    fn readyz(&self, req: &Request) -> Response {
        let dir = &self.app.settings.data_dir;
        let playlist = dir.join("playlist.m3u").is_file();
        let guide_needed = self.app.settings.epg_enabled;
        let guide = !guide_needed || dir.join("xmltv.xml").is_file();
        let ready = playlist && guide;
        let status = if ready { 200 } else { 503 };
        if req.query_param("verbose").as_deref() != Some("true") {
            let word = if ready { "ready" } else { "not ready" };
            return json_response(status, &json!({ "status": word }));
        }
        let st = self.app.refresher.status();
        let receiver_ok = st.receiver_reachable.unwrap_or(false);
        let body = json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": {
                "playlist": { "ok": playlist },
                "guide": { "ok": guide, "enabled": guide_needed },
                "receiver": {
                    "ok": receiver_ok,
                    "last_result": st.last_result,
                    "error": st.last_error,
                },
            }
        });
        json_response(status, &body)
    }

    fn status(&self) -> Response {
        let st = self.app.refresher.status();
        let s = &self.app.settings;
        let body = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.app.started.elapsed().as_secs(),
            "receiver": {
                "base": s.owi_base,
                "reachable": st.receiver_reachable,
                "model": st.receiver_model,
                "tuners": st.receiver_tuners,
            },
            "refresh": {
                "running": st.running,
                "completed": st.completed,
                "last_attempt": st.last_attempt,
                "last_success": st.last_success,
                "last_result": st.last_result,
                "last_error": st.last_error,
                "last_duration_seconds": st.last_duration_seconds,
                "interval_seconds": s.refresh_interval.as_secs(),
            },
            "channels": st.channels,
            "programmes": st.programmes,
            "epg_enabled": s.epg_enabled,
            "streams": self.app.streams.status(),
        });
        json_response(200, &body)
    }

    async fn refresh(&self, req: &Request) -> Response {
        let Some(token) = &self.app.settings.api_token else {
            return ErrorCode::TokenNotConfigured.response();
        };
        let given = req.header("authorization").and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
        let Some(given) = given else {
            return ErrorCode::Unauthorized
                .response()
                .with_header("WWW-Authenticate", "Bearer");
        };
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            return ErrorCode::Forbidden.response();
        }
        let refresher = &self.app.refresher;
        let before = refresher.status();
        let triggered = refresher.trigger();
        let word = match triggered {
            Triggered::Queued => "queued",
            Triggered::Coalesced => "coalesced",
        };
        if req.query_param("wait").as_deref() != Some("true") {
            return json_response(202, &json!({ "status": word }));
        }
        // The refresh that serves this request is the next one to start: after the
        // running one, if any.
        let target = before.completed + u64::from(before.running);
        if !wait_for_completion(refresher, target, Duration::from_secs(600)).await {
            return json_response(202, &json!({ "status": "still running" }));
        }
        let st = refresher.status();
        json_response(
            200,
            &json!({
                "status": "done",
                "result": st.last_result,
                "error": st.last_error,
                "channels": st.channels,
                "programmes": st.programmes,
            }),
        )
    }
}

impl Handler for Router {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move {
            let (route, resp) = self.route(&req).await;
            self.app.metrics.count_http(route, resp.status);
            log::debug!(
                "event=http method={} path={} status={} peer={}",
                req.method,
                route,
                resp.status,
                req.peer
            );
            resp
        })
    }
}

/// The error answer for a stream that cannot be served.
fn stream_error(e: &StreamError) -> Response {
    let resp = e.code().response();
    match e {
        // What HDHomeRun tuners answer when all tuners are in use; Plex shows it.
        StreamError::TunerLimit { .. } => resp.with_header("X-HDHomeRun-Error", "805"),
        StreamError::Unavailable { retry_after } => {
            resp.with_header("Retry-After", retry_after.as_secs().max(1).to_string())
        }
        _ => resp,
    }
}

/// A JSON response.
pub fn json_response(status: u16, value: &serde_json::Value) -> Response {
    Response::bytes(status, "application/json", value.to_string().into_bytes())
}

/// Serves one file with ETag/Last-Modified and conditional GET; a missing file means the
/// first refresh has not produced it yet (503).
pub(crate) fn serve_file(req: &Request, path: &Path, content_type: &str) -> Response {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ErrorCode::NotReady
                .response()
                .with_header("Retry-After", "10");
        }
        Err(e) => {
            log::error!(
                "event=file_open_failed path={} error=\"{e}\"",
                path.display()
            );
            return ErrorCode::Internal.response();
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            log::error!(
                "event=file_stat_failed path={} error=\"{e}\"",
                path.display()
            );
            return ErrorCode::Internal.response();
        }
    };
    let len = meta.len();
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!("\"{len:x}-{:x}\"", modified.as_nanos());
    let last_modified = http_date(i64::try_from(modified.as_secs()).unwrap_or(0));
    let not_modified = match req.header("if-none-match") {
        Some(inm) => inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str())
        }),
        None => req.header("if-modified-since") == Some(last_modified.as_str()),
    };
    let resp = Response::empty(if not_modified { 304 } else { 200 })
        .with_header("ETag", etag)
        .with_header("Last-Modified", last_modified)
        .with_header("Cache-Control", "no-cache");
    if not_modified {
        return resp;
    }
    resp.with_header("Content-Type", content_type)
        .with_body(Body::File { file, len })
}

/// An RFC 9110 HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::guide::civil_from_unix(unix);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
        [usize::try_from(unix.div_euclid(86_400).rem_euclid(7)).unwrap_or(0)];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][usize::try_from(mo.saturating_sub(1)).unwrap_or(0).min(11)];
    format!("{weekday}, {d:02} {month} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_rfc_9110() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
