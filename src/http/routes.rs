//! The daemon's routes: files, health, status, refresh, reload, metrics, streams and
//! picons, behind the rate limiter and the token checks.
//!
//! Rules: every request on the main listener is rate limited by its route class before
//! anything else (so tokens cannot be guessed at speed), then its token is checked,
//! then it is served; files are served from disk as they are (never held in memory),
//! with ETag and Last-Modified taken from the opened file, so a rename by a refresh
//! mid-request can never mix two versions; every answer is counted by route and status
//! and carries an `X-Request-Id`; a request uses one settings snapshot throughout.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::json;

use super::auth::{TokenCheck, check_api_token, check_stream_token};
use super::error::ErrorCode;
use super::message::{Body, Handler, Request, Response};
use crate::audit::{self, Actor, AuditEvent, AuditKind};
use crate::config::{Live, LiveSettings, Settings};
use crate::hdhr::Hdhr;
use crate::hls::{HlsError, HlsService};
use crate::limit::{Decision, RateLimiter, RouteClass, Verdict, client_ip};
use crate::metrics::{Metrics, RateLimitLabels, ReasonLabel};
use crate::picon::PiconCache;
use crate::refresh::{Refresher, Triggered, wait_for_completion};
use crate::reload::{ReloadSource, reload};
use crate::stream::{StreamError, StreamService};
use crate::transcode::profile::{Profile, from_transcode_param};

/// The state the routes need; built once in `main`.
pub struct App {
    /// The settings in force (replaced whole by a reload).
    pub settings: Arc<LiveSettings>,
    /// The settings file given with `--config`, re-read by a reload.
    pub config_file: Option<PathBuf>,
    /// The HTTP rate limiter (rebuilt when its settings change).
    pub limiter: Arc<Live<RateLimiter>>,
    /// The refresh job.
    pub refresher: Arc<Refresher>,
    /// The metric families.
    pub metrics: Arc<Metrics>,
    /// The stream proxy.
    pub streams: Arc<StreamService>,
    /// HLS sessions for Safari and iOS.
    pub hls: Arc<HlsService>,
    /// The picon cache; `None` when logos cannot be proxied (an https `XG2G_PICON_BASE`).
    pub picons: Option<Arc<PiconCache>>,
    /// The HDHomeRun emulation; `None` when `XG2G_HDHR_ENABLED` is off.
    pub hdhr: Option<Arc<Hdhr>>,
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

/// Which token a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// None.
    Open,
    /// `XG2G_STREAM_TOKEN`, when one is set.
    StreamToken,
    /// `XG2G_API_TOKEN`; the route is off without one.
    ApiToken,
}

/// One matched route: its metric name, methods, limiter class and token.
struct Route {
    name: &'static str,
    allowed: &'static str,
    class: Option<RouteClass>,
    guard: Guard,
}

/// What one request is, for the limiter, the audit log and the logs.
struct Ctx<'a> {
    settings: Arc<Settings>,
    client: IpAddr,
    request_id: &'a str,
}

/// The router: a `Handler` over `App`.
pub struct Router {
    app: Arc<App>,
    routes: Routes,
    /// Request ids are `<prefix>-<n>`: the prefix (start time) keeps them unique across
    /// restarts.
    id_prefix: String,
    next_id: AtomicU64,
}

impl Router {
    /// A router serving `routes` from `app`.
    pub fn new(app: Arc<App>, routes: Routes) -> Router {
        let started = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Router {
            app,
            routes,
            id_prefix: format!("{started:x}"),
            next_id: AtomicU64::new(1),
        }
    }

    /// Matches the path to a route.
    fn find(&self, path: &str) -> Option<Route> {
        let main = matches!(self.routes, Routes::Main { .. });
        let metrics_here = matches!(
            self.routes,
            Routes::Main { metrics: true } | Routes::MetricsOnly
        );
        let files = Some(RouteClass::Files);
        let api = Some(RouteClass::Api);
        let (name, allowed, class, guard) = match path {
            "/playlist.m3u" if main => ("playlist", "GET, HEAD", files, Guard::StreamToken),
            "/xmltv.xml" if main => ("xmltv", "GET, HEAD", files, Guard::StreamToken),
            "/xmltv.xml.gz" if main => ("xmltv_gz", "GET, HEAD", files, Guard::StreamToken),
            "/healthz" => ("healthz", "GET, HEAD", None, Guard::Open),
            "/readyz" if main => ("readyz", "GET, HEAD", None, Guard::Open),
            "/api/v1/status" if main => ("status", "GET, HEAD", api, Guard::Open),
            "/api/v1/encoders" if main => ("encoders", "GET, HEAD", api, Guard::Open),
            "/api/v1/refresh" if main => ("refresh", "POST", api, Guard::ApiToken),
            "/api/v1/config/reload" if main => ("reload", "POST", api, Guard::ApiToken),
            "/metrics" if metrics_here => ("metrics", "GET, HEAD", None, Guard::Open),
            "/discover.json" if main => ("hdhr_discover", "GET, HEAD", files, Guard::StreamToken),
            "/lineup.json" if main => ("hdhr_lineup", "GET, HEAD", files, Guard::StreamToken),
            "/lineup_status.json" if main => {
                ("hdhr_lineup_status", "GET, HEAD", files, Guard::StreamToken)
            }
            "/lineup.post" if main => ("hdhr_scan", "POST", api, Guard::StreamToken),
            "/device.xml" | "/" if main => ("hdhr_device", "GET, HEAD", files, Guard::StreamToken),
            p if main && p.starts_with("/stream/") => (
                "stream",
                "GET, HEAD",
                Some(RouteClass::Stream),
                Guard::StreamToken,
            ),
            p if main && p.starts_with("/hls/") => (
                "hls",
                "GET, HEAD",
                Some(RouteClass::Stream),
                Guard::StreamToken,
            ),
            p if main && p.starts_with("/snapshot/") => (
                "snapshot",
                "GET, HEAD",
                Some(RouteClass::Stream),
                Guard::StreamToken,
            ),
            p if main && p.starts_with("/picon/") => {
                ("picon", "GET, HEAD", files, Guard::StreamToken)
            }
            _ => return None,
        };
        Some(Route {
            name,
            allowed,
            class,
            guard,
        })
    }

    /// The request's id: the client's `X-Request-Id` when it is short and plain (so a
    /// proxy's id carries through), else a new one.
    fn request_id(&self, req: &Request) -> String {
        if let Some(given) = req.header("x-request-id") {
            let plain = given
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if plain && (1..=64).contains(&given.len()) {
                return given.to_string();
            }
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    async fn route(&self, req: &Request, ctx: &Ctx<'_>) -> (&'static str, Response) {
        let path = req.path.as_str();
        let Some(route) = self.find(path) else {
            return ("not_found", ErrorCode::NotFound.response());
        };
        let method_ok = if route.allowed == "POST" {
            req.method == "POST"
        } else {
            req.method == "GET" || req.method == "HEAD"
        };
        if !method_ok {
            return (
                route.name,
                ErrorCode::MethodNotAllowed
                    .response()
                    .with_header("Allow", route.allowed),
            );
        }
        let mut limit_headers = None;
        if let Some(class) = route.class {
            match self.app.limiter.get().check(ctx.client, class) {
                Verdict::Exempt => {}
                Verdict::Allowed(decision) => limit_headers = Some(decision),
                Verdict::Limited {
                    decision,
                    scope,
                    first,
                } => {
                    self.app
                        .metrics
                        .rate_limited
                        .get_or_create(&RateLimitLabels {
                            class: class.as_str().to_string(),
                            scope: scope.as_str().to_string(),
                        })
                        .inc();
                    if first {
                        self.audit(
                            ctx,
                            AuditKind::RateLimited,
                            path,
                            "limited",
                            json!({"class": class.as_str(), "scope": scope.as_str()}),
                        );
                    }
                    let retry = ceil_secs(decision.retry_after).max(1);
                    let resp = with_limit_headers(ErrorCode::RateLimited.response(), &decision)
                        .with_header("Retry-After", retry.to_string());
                    return (route.name, resp);
                }
            }
        }
        let resp = match self.check_token(req, ctx, &route) {
            Some(refused) => refused,
            None => self.serve(route.name, req, ctx).await,
        };
        let resp = match &limit_headers {
            Some(d) => with_limit_headers(resp, d),
            None => resp,
        };
        (route.name, resp)
    }

    /// The refusal for a request without the token its route needs, if any; audits
    /// every refusal and every API success (stream-token successes are too many to
    /// audit: one per picon).
    fn check_token(&self, req: &Request, ctx: &Ctx<'_>, route: &Route) -> Option<Response> {
        let s = &ctx.settings;
        let check = match route.guard {
            Guard::Open => return None,
            Guard::StreamToken => check_stream_token(req, s.stream_token.as_deref()),
            Guard::ApiToken => check_api_token(req, s.api_token.as_deref()),
        };
        let (kind, result, refusal) = match (check, route.guard) {
            (TokenCheck::NotConfigured, Guard::ApiToken) => {
                return Some(ErrorCode::TokenNotConfigured.response());
            }
            (TokenCheck::NotConfigured, _) => return None,
            (TokenCheck::Valid, Guard::ApiToken) => (AuditKind::AuthSuccess, "allowed", None),
            (TokenCheck::Valid, _) => return None,
            (TokenCheck::Missing, _) => {
                let resp = ErrorCode::Unauthorized.response();
                let resp = if route.guard == Guard::ApiToken {
                    resp.with_header("WWW-Authenticate", "Bearer")
                } else {
                    resp
                };
                (AuditKind::AuthMissing, "denied", Some(resp))
            }
            (TokenCheck::Wrong, _) => (
                AuditKind::AuthFailure,
                "denied",
                Some(ErrorCode::Forbidden.response()),
            ),
        };
        if refusal.is_some() {
            let reason = if kind == AuditKind::AuthMissing {
                "missing"
            } else {
                "wrong"
            };
            self.app
                .metrics
                .auth_failures
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc();
        }
        let token = if route.guard == Guard::ApiToken {
            "api"
        } else {
            "stream"
        };
        self.audit(ctx, kind, &req.path, result, json!({ "token": token }));
        refusal
    }

    fn audit(
        &self,
        ctx: &Ctx<'_>,
        kind: AuditKind,
        resource: &str,
        result: &str,
        details: serde_json::Value,
    ) {
        audit::record(&AuditEvent {
            kind,
            actor: Actor::Client(ctx.client),
            resource,
            result,
            request_id: Some(ctx.request_id),
            details,
        });
    }

    /// Serves an admitted request.
    async fn serve(&self, route: &'static str, req: &Request, ctx: &Ctx<'_>) -> Response {
        let path = req.path.as_str();
        match route {
            "playlist" => self.file(
                req,
                ctx,
                "playlist.m3u",
                "audio/x-mpegurl; charset=utf-8",
                false,
            ),
            "xmltv" => self.file(
                req,
                ctx,
                "xmltv.xml",
                "application/xml; charset=utf-8",
                true,
            ),
            "xmltv_gz" => self.file(req, ctx, "xmltv.xml.gz", "application/gzip", true),
            "healthz" => json_response(200, &json!({"status": "ok"})),
            "readyz" => self.readyz(req, ctx),
            "status" => self.status(ctx),
            "refresh" => self.refresh(req).await,
            "reload" => self.reload(ctx).await,
            "stream" => {
                self.stream(req, ctx, path.get("/stream/".len()..).unwrap_or_default())
                    .await
            }
            "snapshot" => {
                self.snapshot(req, path.get("/snapshot/".len()..).unwrap_or_default())
                    .await
            }
            "encoders" => json_response(200, &self.app.streams.encoders()),
            "hls" => {
                self.hls(req, ctx, path.get("/hls/".len()..).unwrap_or_default())
                    .await
            }
            "hdhr_discover" | "hdhr_lineup" | "hdhr_lineup_status" | "hdhr_scan"
            | "hdhr_device" => self.hdhr(route, req, ctx),
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
        }
    }

    /// The HDHomeRun endpoints; 404 when the emulation is off.
    fn hdhr(&self, route: &'static str, req: &Request, ctx: &Ctx<'_>) -> Response {
        let s = &ctx.settings;
        // `XG2G_HDHR_ENABLED` needs a restart: the app has a tuner exactly when it is on.
        let Some(hdhr) = &self.app.hdhr else {
            return ErrorCode::NotFound.response();
        };
        let base = Hdhr::base_url_for_request(s, req.header("host"));
        match route {
            "hdhr_discover" => json_response(200, &hdhr.discover_json(s, &base)),
            "hdhr_lineup" => {
                let lineup = self.app.streams.lineup();
                let token = crate::refresh::token_query(s);
                json_response(200, &Hdhr::lineup_json(&lineup, &base, &token))
            }
            "hdhr_lineup_status" => json_response(200, &Hdhr::lineup_status_json()),
            "hdhr_scan" => match req.query_param("scan").as_deref() {
                Some("start") => {
                    // Tuner clients cannot send the API token: the limiter and the
                    // refresher's coalescing are what keep this cheap.
                    let triggered = self.app.refresher.trigger();
                    log::info!("event=hdhr_scan action=start refresh={triggered:?}");
                    Response::empty(200)
                }
                Some("abort") => Response::empty(200),
                _ => ErrorCode::BadRequest.response_with_detail("scan must be start or abort"),
            },
            _ => Response::bytes(
                200,
                "application/xml; charset=utf-8",
                hdhr.device_xml(s, &base).into_bytes(),
            ),
        }
    }

    /// `POST /api/v1/config/reload`: 200 with what changed, or 422 `E022` naming the
    /// bad key and value (the running settings stay).
    async fn reload(&self, ctx: &Ctx<'_>) -> Response {
        let source = ReloadSource::Api {
            client: ctx.client,
            request_id: ctx.request_id.to_string(),
        };
        match reload(&self.app, source).await {
            Ok(report) => json_response(200, &report.to_json()),
            Err(e) => ErrorCode::ConfigInvalid.response_with_detail(&e.to_string()),
        }
    }

    /// `/stream/<ref>[?profile=NAME]`: HEAD answers here; GET answers once the upstream
    /// (or its transcode) delivers, with the head written by us and the body
    /// close-delimited and unbuffered.
    async fn stream(&self, req: &Request, ctx: &Ctx<'_>, tail: &str) -> Response {
        let streams = &self.app.streams;
        let channel = match streams.resolve(tail) {
            Ok(c) => c,
            Err(e) => return stream_error(&e),
        };
        let profile = match requested_profile(req, &ctx.settings) {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        let head = Response::empty(200)
            .with_header("Content-Type", "video/mp2t")
            .with_header("Cache-Control", "no-store");
        if req.method == "HEAD" {
            // No length: an empty stream body makes the server send neither
            // Content-Length nor chunking for HEAD.
            return head.with_body(Body::Stream(Box::pin(smol::io::empty())));
        }
        match streams.open(&channel, &profile).await {
            Ok(opened) => {
                let mut resp = head.with_body(Body::Stream(Box::pin(opened.body)));
                resp.close = true;
                resp.abort = Some(opened.abort);
                resp
            }
            Err(e) => stream_error(&e),
        }
    }

    /// `/hls/<ref>/index.m3u8[?profile=NAME]`: the live playlist (starting the session);
    /// `/hls/<ref>/<profile>/seg<N>.ts`: one of its segments.
    async fn hls(&self, req: &Request, ctx: &Ctx<'_>, tail: &str) -> Response {
        let mut parts = tail.splitn(3, '/');
        let (sref, second, third) = (parts.next(), parts.next(), parts.next());
        let Some(sref) = sref else {
            return ErrorCode::NotFound.response();
        };
        let channel = match self.app.streams.resolve(sref) {
            Ok(c) => c,
            Err(e) => return stream_error(&e),
        };
        match (second, third) {
            (Some("index.m3u8"), None) => {
                let profile = match requested_profile(req, &ctx.settings) {
                    Ok(p) => p,
                    Err(refused) => return refused,
                };
                let query = crate::refresh::token_query(&ctx.settings);
                match self.app.hls.playlist(&channel, &profile, &query).await {
                    Ok(text) => {
                        Response::bytes(200, "application/vnd.apple.mpegurl", text.into_bytes())
                            .with_header("Cache-Control", "no-cache")
                    }
                    Err(e) => hls_error(&e),
                }
            }
            (Some(profile), Some(segment)) => {
                match self.app.hls.segment(&channel, profile, segment) {
                    Ok(path) if path.is_file() => serve_file(req, &path, "video/mp2t"),
                    Ok(_) | Err(_) => ErrorCode::NotFound.response(),
                }
            }
            _ => ErrorCode::NotFound.response(),
        }
    }

    /// `/snapshot/<ref>.jpg`: one JPEG frame of the channel, made at preview priority.
    async fn snapshot(&self, req: &Request, tail: &str) -> Response {
        let Some(sref) = tail.strip_suffix(".jpg") else {
            return ErrorCode::InvalidRef.response();
        };
        let streams = &self.app.streams;
        let channel = match streams.resolve(sref) {
            Ok(c) => c,
            Err(e) => return stream_error(&e),
        };
        if req.method == "HEAD" {
            return Response::empty(200)
                .with_header("Content-Type", "image/jpeg")
                .with_header("Cache-Control", "no-store");
        }
        match streams.snapshot(&channel).await {
            Ok(jpeg) => {
                Response::bytes(200, "image/jpeg", jpeg).with_header("Cache-Control", "no-store")
            }
            Err(e) => stream_error(&e),
        }
    }

    fn file(
        &self,
        req: &Request,
        ctx: &Ctx<'_>,
        name: &str,
        content_type: &str,
        guide: bool,
    ) -> Response {
        if guide && !ctx.settings.epg_enabled {
            return ErrorCode::GuideDisabled.response();
        }
        let path = ctx.settings.data_dir.join(name);
        serve_file(req, &path, content_type)
    }

    fn readyz(&self, req: &Request, ctx: &Ctx<'_>) -> Response {
        let dir = &ctx.settings.data_dir;
        let playlist = dir.join("playlist.m3u").is_file();
        let guide_needed = ctx.settings.epg_enabled;
        let guide = !guide_needed || dir.join("xmltv.xml").is_file();
        let ready = playlist && guide;
        let status = if ready { 200 } else { 503 };
        if req.query_param("verbose").as_deref() != Some("true") {
            let word = if ready { "ready" } else { "not ready" };
            return json_response(status, &json!({ "status": word }));
        }
        let st = self.app.refresher.status();
        let breaker = self.app.refresher.receiver_gate().breaker().state();
        // An open breaker means the receiver is failing even before the next refresh.
        let receiver_ok =
            st.receiver_reachable.unwrap_or(false) && breaker != crate::limit::BreakerState::Open;
        let body = json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": {
                "playlist": { "ok": playlist },
                "guide": { "ok": guide, "enabled": guide_needed },
                "receiver": {
                    "ok": receiver_ok,
                    "breaker": breaker.as_str(),
                    "last_result": st.last_result,
                    "error": st.last_error,
                },
            }
        });
        json_response(status, &body)
    }

    fn status(&self, ctx: &Ctx<'_>) -> Response {
        let st = self.app.refresher.status();
        let breaker = self.app.refresher.receiver_gate().breaker();
        let s = &ctx.settings;
        let body = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.app.started.elapsed().as_secs(),
            "receiver": {
                "base": s.owi_base,
                "reachable": st.receiver_reachable,
                "model": st.receiver_model,
                "tuners": st.receiver_tuners,
                "breaker": {
                    "state": breaker.state().as_str(),
                    "consecutive_failures": breaker.consecutive_failures(),
                },
            },
            "rate_limit": {
                "enabled": s.ratelimit_enabled,
                "tracked_clients": self.app.limiter.get().tracked(),
            },
            "settings_generation": self.app.settings.generation(),
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
            "hdhr": self.app.hdhr.as_ref().map_or_else(
                || json!({"state": "off"}),
                |h| h.status(),
            ),
        });
        json_response(200, &body)
    }

    async fn refresh(&self, req: &Request) -> Response {
        let refresher = &self.app.refresher;
        // Asked for by a user who probably just edited bouquets: fetch them anew.
        refresher.clear_cache();
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
            let settings = self.app.settings.get();
            let request_id = self.request_id(&req);
            let client = client_ip(
                req.peer.ip(),
                req.header("x-forwarded-for"),
                &settings.trusted_proxies,
            );
            let ctx = Ctx {
                settings,
                client,
                request_id: &request_id,
            };
            let (route, resp) = self.route(&req, &ctx).await;
            self.app.metrics.count_http(route, resp.status);
            // Never the query: it may hold the stream token.
            log::debug!(
                "event=http method={} route={} status={} client={} request_id={}",
                req.method,
                route,
                resp.status,
                client,
                request_id
            );
            resp.with_header("X-Request-Id", request_id)
        })
    }
}

/// `X-RateLimit-*` from the client's bucket: its size, what is left, and whole seconds
/// until it is full again.
fn with_limit_headers(resp: Response, d: &Decision) -> Response {
    resp.with_header("X-RateLimit-Limit", d.limit.to_string())
        .with_header("X-RateLimit-Remaining", d.remaining.to_string())
        .with_header("X-RateLimit-Reset", ceil_secs(d.reset).to_string())
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The profile a stream request asks for: `?profile=NAME`, else a known Jellyfin-style
/// `?transcode=` value, else `copy`. An unknown name is 400 `E023` listing the names.
fn requested_profile(req: &Request, settings: &Settings) -> Result<Profile, Response> {
    let asked = req.query_param("profile").or_else(|| {
        req.query_param("transcode")
            .and_then(|t| from_transcode_param(&t).map(str::to_string))
    });
    let profiles = settings.profiles();
    let name = asked.as_deref().unwrap_or("copy");
    profiles.get(name).cloned().ok_or_else(|| {
        ErrorCode::UnknownProfile
            .response_with_detail(&format!("profiles are {}", profiles.names().join(", ")))
    })
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
        StreamError::NoEncoder(rejected) => {
            let code = e.code();
            let body = json!({
                "error": code.message(),
                "code": code.code(),
                "reason": rejected.reason(),
                "detail": e.to_string(),
            });
            json_response(code.status(), &body)
        }
        StreamError::TranscodeFailed(_) => e.code().response_with_detail(&e.to_string()),
        _ => resp,
    }
}

/// The error answer for an HLS request.
fn hls_error(e: &HlsError) -> Response {
    match e {
        HlsError::Stream(e) => stream_error(e),
        HlsError::TooManySessions(_) => {
            ErrorCode::HlsSessionsFull.response_with_detail(&e.to_string())
        }
        HlsError::Segmenter(_) => ErrorCode::TranscodeFailed.response_with_detail(&e.to_string()),
        HlsError::NotFound => ErrorCode::NotFound.response(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_rfc_9110() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
