//! Hot reload: SIGHUP, a changed settings file and `POST /api/v1/config/reload` all come
//! here, re-read the settings, and swap them in whole.
//!
//! Rules: new settings are validated completely before anything changes; an invalid
//! file changes nothing (counted, audited, logged with the key and value at fault);
//! settings that only a restart can apply keep their running values and are reported;
//! open streams and in-flight requests keep the snapshot they started with.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::audit::{self, Actor, AuditEvent, AuditKind};
use crate::config::{ConfigError, Settings};
use crate::http::routes::App;
use crate::limit::{RateLimitConfig, RateLimiter};
use crate::metrics::ResultLabel;

/// Who asked for a reload.
#[derive(Debug, Clone)]
pub enum ReloadSource {
    /// SIGHUP.
    Signal,
    /// The settings file changed on disk.
    FileWatch,
    /// `POST /api/v1/config/reload`.
    Api {
        /// The client (after trusted-proxy resolution).
        client: IpAddr,
        /// The request's id.
        request_id: String,
    },
}

impl ReloadSource {
    fn actor(&self) -> Actor {
        match self {
            ReloadSource::Signal => Actor::System("signal"),
            ReloadSource::FileWatch => Actor::System("file-watch"),
            ReloadSource::Api { client, .. } => Actor::Client(*client),
        }
    }

    fn request_id(&self) -> Option<&str> {
        match self {
            ReloadSource::Api { request_id, .. } => Some(request_id),
            _ => None,
        }
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings now in force with new values.
    pub applied: Vec<&'static str>,
    /// Settings with new values that wait for a restart.
    pub restart_required: Vec<&'static str>,
    /// Whether a refresh was started so the files follow the new settings.
    pub refresh_triggered: bool,
}

impl ReloadReport {
    /// The JSON answer of the reload endpoint.
    pub fn to_json(&self) -> Value {
        json!({
            "status": if self.applied.is_empty() { "unchanged" } else { "applied" },
            "applied": self.applied,
            "restart_required": self.restart_required,
            "refresh_triggered": self.refresh_triggered,
        })
    }
}

/// Re-reads the settings (the `--config` file and the environment) and applies them.
pub async fn reload(app: &App, source: ReloadSource) -> Result<ReloadReport, ConfigError> {
    let file = app.config_file.clone();
    let loaded = smol::unblock(move || Settings::from_process(file.as_deref())).await;
    let outcome = loaded.map(|new| apply(app, new));
    let (result, details) = match &outcome {
        Ok(report) => ("ok", report.to_json()),
        Err(e) => ("error", json!({ "error": e.to_string() })),
    };
    app.metrics
        .config_reloads
        .get_or_create(&ResultLabel {
            result: result.to_string(),
        })
        .inc();
    audit::record(&AuditEvent {
        kind: if outcome.is_ok() {
            AuditKind::ConfigReloadOk
        } else {
            AuditKind::ConfigReloadError
        },
        actor: source.actor(),
        resource: "config",
        result,
        request_id: source.request_id(),
        details,
    });
    match &outcome {
        Ok(report) => log::info!(
            "event=config_reloaded applied={:?} restart_required={:?} refresh={}",
            report.applied,
            report.restart_required,
            report.refresh_triggered
        ),
        Err(e) => log::warn!("event=config_reload_refused error=\"{e}\""),
    }
    outcome
}

/// Installs `new` (minus what needs a restart) and tells the parts that hold derived
/// state.
fn apply(app: &App, mut new: Settings) -> ReloadReport {
    let running = app.settings.get();
    let changed = running.changed_keys(&new);
    let restart_required: Vec<&'static str> = changed
        .iter()
        .filter(|k| k.needs_restart())
        .map(|k| k.env)
        .collect();
    new.keep_restart_settings(&running);
    let live: Vec<_> = changed.into_iter().filter(|k| !k.needs_restart()).collect();
    let report_only = ReloadReport {
        applied: live.iter().map(|k| k.env).collect(),
        restart_required,
        refresh_triggered: false,
    };
    if live.is_empty() {
        return report_only;
    }
    let new = Arc::new(new);
    app.settings.replace(new.clone());
    // A new limiter starts with full buckets: only when its configuration changed.
    let limits = RateLimitConfig::from_settings(&new);
    if *app.limiter.get().config() != limits {
        app.limiter.replace(Arc::new(RateLimiter::new(limits)));
    }
    app.refresher.reconfigure(&new);
    app.streams.reconfigure(&new);
    let refresh_triggered = live.iter().any(|k| k.changes_output());
    if refresh_triggered {
        app.refresher.trigger();
    }
    ReloadReport {
        refresh_triggered,
        ..report_only
    }
}
