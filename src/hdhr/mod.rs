//! HDHomeRun emulation: Plex, Jellyfin, Emby and Channels see the receiver as a
//! SiliconDust network tuner (HTTP discover/lineup, UPnP device description, SSDP and
//! the SiliconDust UDP discovery protocol).
//!
//! Rules:
//! - The HTTP answers are built here from one settings snapshot; the router serves them.
//! - The two UDP services run on the smol core. A port that cannot be bound is logged and
//!   shown in the status, never fatal. Garbage is counted and never answered; answers
//!   are limited by one token bucket ([`REPLIES_PER_SECOND`]) so spoofed requests cannot
//!   turn the daemon into a traffic amplifier.
//! - URLs handed out: `XG2G_HDHR_BASE_URL`, else `XG2G_PUBLIC_URL`, else for HTTP the
//!   request's `Host`, for UDP the local address that routes to the asker (the interface
//!   the request came in on), with the HTTP listen port.

pub mod discovery;
mod identity;
pub mod ssdp;
mod udp;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::config::{LiveSettings, Settings};
use crate::limit::TokenBucket;
use crate::lineup::Lineup;
use crate::metrics::{DiscoveryLabels, Metrics};
use crate::stream::StreamService;

pub use identity::{DEVICE_ID_FILE, Identity};

/// Discovery answers (SSDP and HDHomeRun together) sent per second at most.
pub const REPLIES_PER_SECOND: u32 = 20;
/// Manufacturer shown to clients: what SiliconDust tuners report, which clients expect.
const MANUFACTURER: &str = "Silicondust";
/// `FirmwareVersion` in discover.json.
const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What became of one UDP service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// Turned off by settings.
    Off,
    /// Bound and serving on this address.
    Listening(SocketAddr),
    /// Could not be started (port in use, no multicast, ...): why.
    Failed(String),
}

impl ServiceState {
    fn to_json(&self) -> Value {
        match self {
            ServiceState::Off => json!({"state": "off"}),
            ServiceState::Listening(addr) => {
                json!({"state": "listening", "addr": addr.to_string()})
            }
            ServiceState::Failed(error) => json!({"state": "failed", "error": error}),
        }
    }
}

/// The emulated tuner: identity, URL rules, the UDP services' state.
pub struct Hdhr {
    identity: Identity,
    settings: Arc<LiveSettings>,
    /// The port the HTTP listener is bound to (URLs handed out over UDP use it).
    http_port: u16,
    metrics: Arc<Metrics>,
    /// For the tuner limit (`TunerCount`).
    streams: Arc<StreamService>,
    replies: TokenBucket,
    /// Changes at every start (UPnP 1.1 `BOOTID.UPNP.ORG`).
    boot_id: u32,
    ssdp: Mutex<ServiceState>,
    discovery: Mutex<ServiceState>,
    /// The bound SSDP socket, kept to say goodbye at shutdown.
    ssdp_socket: Mutex<Option<Arc<udp::SsdpSocket>>>,
}

impl std::fmt::Debug for Hdhr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hdhr")
            .field("identity", &self.identity)
            .field("http_port", &self.http_port)
            .finish_non_exhaustive()
    }
}

impl Hdhr {
    /// The tuner for these settings, answering on HTTP port `http_port`. Blocking (the
    /// identity may be read from or written to the data folder): call it at start.
    pub fn new(
        settings: Arc<LiveSettings>,
        http_port: u16,
        metrics: Arc<Metrics>,
        streams: Arc<StreamService>,
    ) -> Arc<Hdhr> {
        let identity = Identity::load(&settings.get());
        log::info!(
            "event=hdhr_identity device_id={} uuid={}",
            identity.device_id_text(),
            identity.uuid
        );
        let rate = NonZeroU32::new(REPLIES_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        // Two seconds' worth: a client that asks every interface at once is answered.
        let burst = NonZeroU32::new(2 * REPLIES_PER_SECOND).unwrap_or(rate);
        let boot_id = u32::try_from(crate::refresh::unix_now() & 0x7FFF_FFFF).unwrap_or(1);
        Arc::new(Hdhr {
            identity,
            settings,
            http_port,
            metrics,
            streams,
            replies: TokenBucket::new(rate, burst),
            boot_id,
            ssdp: Mutex::new(ServiceState::Off),
            discovery: Mutex::new(ServiceState::Off),
            ssdp_socket: Mutex::new(None),
        })
    }

    /// The tuner's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The base URL for an HTTP request that named `host` (its `Host` header); see the
    /// module rules. A `Host` that is not a plain `host[:port]` is not trusted.
    pub fn base_url_for_request(s: &Settings, host: Option<&str>) -> String {
        if let Some(url) = configured_base(s) {
            return url.to_string();
        }
        match host.filter(|h| is_plain_host(h)) {
            Some(host) => format!("http://{host}"),
            None => crate::refresh::public_base(s),
        }
    }

    /// The base URL for an answer to `peer` over UDP; see the module rules.
    fn base_url_for_peer(&self, s: &Settings, peer: SocketAddr) -> String {
        if let Some(url) = configured_base(s) {
            return url.to_string();
        }
        let ip = if s.listen.ip().is_unspecified() {
            crate::refresh::local_ip_for(peer).unwrap_or(s.listen.ip())
        } else {
            s.listen.ip()
        };
        crate::refresh::http_base(ip, self.http_port)
    }

    /// `TunerCount`: `XG2G_HDHR_TUNER_COUNT`, else the stream proxy's tuner limit.
    pub fn tuner_count(&self, s: &Settings) -> u32 {
        tuner_count(s, self.streams.tuner_limit())
    }

    /// `/discover.json`.
    pub fn discover_json(&self, s: &Settings, base: &str) -> Value {
        let tuners = self.tuner_count(s);
        json!({
            "FriendlyName": s.hdhr_friendly_name,
            "Manufacturer": MANUFACTURER,
            "ModelNumber": s.hdhr_model,
            "FirmwareName": s.hdhr_firmware,
            "FirmwareVersion": FIRMWARE_VERSION,
            "DeviceID": self.identity.device_id_text(),
            "DeviceAuth": device_auth(self.identity.device_id),
            "BaseURL": base,
            "LineupURL": format!("{base}/lineup.json"),
            "TunerCount": tuners,
        })
    }

    /// `/device.xml`: the UPnP root device description.
    pub fn device_xml(&self, s: &Settings, base: &str) -> String {
        let esc = |t: &str| quick_xml::escape::escape(t).into_owned();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <root xmlns=\"urn:schemas-upnp-org:device-1-0\">\n\
             \x20 <specVersion><major>1</major><minor>0</minor></specVersion>\n\
             \x20 <URLBase>{base}</URLBase>\n\
             \x20 <device>\n\
             \x20   <deviceType>{device_type}</deviceType>\n\
             \x20   <friendlyName>{name}</friendlyName>\n\
             \x20   <manufacturer>{MANUFACTURER}</manufacturer>\n\
             \x20   <modelName>{model}</modelName>\n\
             \x20   <modelNumber>{model}</modelNumber>\n\
             \x20   <serialNumber>{serial}</serialNumber>\n\
             \x20   <UDN>uuid:{uuid}</UDN>\n\
             \x20 </device>\n\
             </root>\n",
            base = esc(base),
            device_type = ssdp::DEVICE_TYPE,
            name = esc(&s.hdhr_friendly_name),
            model = esc(&s.hdhr_model),
            serial = self.identity.device_id_text(),
            uuid = self.identity.uuid,
        )
    }

    /// `/lineup.json`: the channels in playlist order, each pointing at this proxy's
    /// stream URL (with `token_query`, `?token=…` or empty, appended).
    pub fn lineup_json(lineup: &Lineup, base: &str, token_query: &str) -> Value {
        let entries: Vec<Value> = lineup
            .channels
            .iter()
            .map(|c| {
                json!({
                    "GuideNumber": c.number.to_string(),
                    "GuideName": c.name,
                    "URL": format!(
                        "{base}/stream/{}{token_query}",
                        crate::http::percent_encode(&c.sref)
                    ),
                    "HD": u8::from(is_hd(&c.sref)),
                })
            })
            .collect();
        Value::Array(entries)
    }

    /// `/lineup_status.json`: never scanning, a scan is always possible.
    pub fn lineup_status_json() -> Value {
        json!({
            "ScanInProgress": 0,
            "ScanPossible": 1,
            "Source": "Cable",
            "SourceList": ["Cable"],
        })
    }

    /// The UDP services' state, for `/api/v1/status`.
    pub fn status(&self) -> Value {
        json!({
            "device_id": self.identity.device_id_text(),
            "ssdp": lock(&self.ssdp).to_json(),
            "discovery": lock(&self.discovery).to_json(),
        })
    }

    /// Counts one datagram of `protocol` by what became of it.
    fn count(&self, protocol: &str, result: &str) {
        self.metrics
            .discovery_datagrams
            .get_or_create(&DiscoveryLabels {
                protocol: protocol.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Whether one more answer may be sent now (the shared reply budget).
    fn may_reply(&self) -> bool {
        self.replies.check().allowed
    }
}

/// The base URL the settings fix: `XG2G_HDHR_BASE_URL`, else `XG2G_PUBLIC_URL`.
fn configured_base(s: &Settings) -> Option<&str> {
    s.hdhr_base_url.as_deref().or(s.public_url.as_deref())
}

/// `XG2G_HDHR_TUNER_COUNT`, else `stream_limit`.
fn tuner_count(s: &Settings, stream_limit: usize) -> u32 {
    s.hdhr_tuner_count
        .unwrap_or_else(|| u32::try_from(stream_limit).unwrap_or(u32::MAX))
}

/// True for `host[:port]` made of letters, digits, `.`, `-`, `:`, `[`, `]` only.
fn is_plain_host(host: &str) -> bool {
    (1..=255).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Whether the service type field of a ref (the third) is an HD one: MPEG-2 HD (0x11),
/// H.264 HD (0x19), HEVC (0x1F) or HEVC UHD (0x20).
fn is_hd(sref: &str) -> bool {
    sref.split(':')
        .nth(2)
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .is_some_and(|t| matches!(t, 0x11 | 0x19 | 0x1F | 0x20))
}

/// A `DeviceAuth` value: real tuners hand out a token for their cloud guide; ours only
/// has to be stable and not empty.
fn device_auth(device_id: u32) -> String {
    format!("xg2g{device_id:08x}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineup::LineupChannel;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        crate::config::test_settings(pairs)
    }

    #[test]
    fn base_url_prefers_settings_then_a_plain_host() {
        let plain = settings(&[("XG2G_LISTEN", "192.168.1.5:8080")]);
        assert_eq!(
            Hdhr::base_url_for_request(&plain, Some("tv.lan:8080")),
            "http://tv.lan:8080"
        );
        // A hostile Host is not echoed into URLs.
        assert_eq!(
            Hdhr::base_url_for_request(&plain, Some("evil/\"><x")),
            "http://192.168.1.5:8080"
        );
        assert_eq!(
            Hdhr::base_url_for_request(&plain, None),
            "http://192.168.1.5:8080"
        );
        let public = settings(&[("XG2G_PUBLIC_URL", "http://tv.example:80")]);
        assert_eq!(
            Hdhr::base_url_for_request(&public, Some("x")),
            "http://tv.example:80"
        );
        let both = settings(&[
            ("XG2G_PUBLIC_URL", "http://tv.example:80"),
            ("XG2G_HDHR_BASE_URL", "http://10.0.0.2:8080/"),
        ]);
        assert_eq!(
            Hdhr::base_url_for_request(&both, Some("x")),
            "http://10.0.0.2:8080"
        );
    }

    #[test]
    fn lineup_entries_have_string_numbers_stream_urls_and_hd_flags() {
        let lineup = Lineup::new(
            Some(2),
            vec![
                LineupChannel {
                    number: 1,
                    name: "Das Erste HD".into(),
                    sref: "1:0:19:283D:3FB:1:C00000:0:0:0:".into(),
                    relay: false,
                },
                LineupChannel {
                    number: 2,
                    name: "Radio & <Co>".into(),
                    sref: "1:0:2:6F:3:1:C00000:0:0:0:".into(),
                    relay: true,
                },
            ],
        );
        let v = Hdhr::lineup_json(&lineup, "http://h:1", "?token=t");
        assert_eq!(
            v,
            json!([
                {"GuideNumber": "1", "GuideName": "Das Erste HD",
                 "URL": "http://h:1/stream/1:0:19:283D:3FB:1:C00000:0:0:0:?token=t",
                 "HD": 1},
                {"GuideNumber": "2", "GuideName": "Radio & <Co>",
                 "URL": "http://h:1/stream/1:0:2:6F:3:1:C00000:0:0:0:?token=t",
                 "HD": 0},
            ])
        );
    }

    #[test]
    fn tuner_count_follows_the_setting_else_the_stream_limit() {
        assert_eq!(tuner_count(&settings(&[]), 3), 3);
        let set = settings(&[("XG2G_HDHR_TUNER_COUNT", "2")]);
        assert_eq!(tuner_count(&set, 3), 2);
    }

    #[test]
    fn hd_is_read_from_the_service_type() {
        assert!(is_hd("1:0:19:283D:3FB:1:C00000:0:0:0:"));
        assert!(is_hd("1:0:1F:1:1:1:C00000:0:0:0:"));
        assert!(!is_hd("1:0:1:283D:3FB:1:C00000:0:0:0:"));
        assert!(!is_hd("garbage"));
    }
}
