//! Transcoding: who gets the scarce encoders, and the ffmpeg sessions that use them.
//!
//! Rules: every encoder device (each hardware encoder found or configured, and the CPU,
//! always listed last) has a capacity in concurrent sessions; a session reserves a slot
//! on the least-loaded device that can encode its profile, through the bounded priority
//! queue, and holds it until it ends, however it ends. A device whose load (sampled from
//! sysfs/debugfs) is above `XG2G_GPU_MAX_LOAD` takes no new session. Settings that shape
//! a new session (ffmpeg path, profiles, restarts) are read from the live settings when
//! it starts; the devices and the queue are fixed at start.

pub mod args;
pub mod ffmpeg_log;
pub mod profile;
pub mod queue;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_io::Timer;
use serde_json::json;

use crate::config::LiveSettings;
use crate::hw::load::read_load;
pub use crate::hw::probe::Encoder;
use crate::hw::probe::software_capacity;
use crate::metrics::{DeviceLabel, Metrics, PriorityLabel, ReasonLabel};
use args::{Backend, backend_supports};
use profile::{Profile, VideoMode};
use queue::{DeviceSlots, Eligible, Pool, Priority, Rejected};
pub use session::{Children, Input, Session, SessionError};

/// The CPU device's id in snapshots, metrics and `/api/v1/encoders`.
pub const SOFTWARE_ID: &str = "software";
/// Largest snapshot JPEG accepted from ffmpeg.
const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// Height a snapshot is scaled down to at most (a preview, not a screenshot).
const SNAPSHOT_MAX_HEIGHT: u32 = 360;

/// The CPU with `capacity` software sessions (it encodes HEVC too, with libx265).
pub fn software(capacity: u32) -> Encoder {
    Encoder {
        id: SOFTWARE_ID.to_string(),
        backend: Backend::Software,
        capacity,
        hevc: true,
        node: None,
        probed_by: "cpu",
    }
}

/// Longest one probe encode may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the whole start-up discovery may take (libva and V4L2 calls cannot be timed
/// out one by one; a hung driver must not keep the daemon from serving).
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(60);

/// The encoders `settings` ask for: `XG2G_TRANSCODE_ENCODERS` as given (no probing), else
/// what probing `/dev` finds, with `XG2G_GPU_QUEUE_WORKERS` as their capacity when set.
/// The CPU is added by [`Transcoder::new`]. The future owns what it needs, so start-up
/// can spawn it first and do its other work meanwhile.
pub fn find_encoders(
    settings: &crate::config::Settings,
) -> impl std::future::Future<Output = Vec<Encoder>> + Send + 'static {
    let root = PathBuf::from("/");
    let named = settings.transcode_encoders.clone();
    let ffmpeg = settings.ffmpeg_path.clone();
    let workers = settings.gpu_queue_workers;
    async move {
        if let Some(specs) = named {
            return smol::unblock(move || {
                let nodes = crate::hw::load::find_nodes(&root);
                specs
                    .iter()
                    .map(|spec| Encoder::from_spec(spec, &root, &nodes))
                    .collect()
            })
            .await;
        }
        let discovery =
            smol::unblock(move || crate::hw::probe::discover(&root, &ffmpeg, PROBE_TIMEOUT));
        let deadline = async {
            Timer::after(DISCOVERY_DEADLINE).await;
            log::warn!(
                "event=encoder_discovery_timeout seconds={} fallback=software",
                DISCOVERY_DEADLINE.as_secs()
            );
            Vec::new()
        };
        let mut found = smol::future::or(discovery, deadline).await;
        if let Some(n) = workers {
            for e in &mut found {
                e.capacity = n;
            }
        }
        found
    }
}

/// Whether `device` can run `profile`.
fn can_run(device: &Encoder, profile: &Profile) -> bool {
    let hevc = matches!(profile.video, VideoMode::Hevc { .. });
    backend_supports(&device.backend, profile) && (!hevc || device.hevc)
}

/// Why a transcode could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TranscodeError {
    /// No slot was had: queue full, wait too long, or no device can encode it.
    #[error("{0}")]
    Rejected(Rejected),
    /// ffmpeg failed.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The snapshot was not a JPEG or was too large.
    #[error("snapshot failed: {0}")]
    Snapshot(String),
}

struct Device {
    spec: Encoder,
    /// The last load sampled, percent.
    load: Mutex<Option<f64>>,
}

/// The encoder devices, their slot pool, and session start-up.
pub struct Transcoder {
    pool: Arc<Pool>,
    devices: Vec<Device>,
    settings: Arc<LiveSettings>,
    metrics: Arc<Metrics>,
    children: Arc<Children>,
}

impl Transcoder {
    /// The transcoder over `hardware` plus the CPU (a `software` entry of `hardware`,
    /// else `XG2G_TRANSCODE_CPU_SLOTS`), with the queue bounds from `settings`.
    pub fn new(
        settings: Arc<LiveSettings>,
        metrics: Arc<Metrics>,
        hardware: Vec<Encoder>,
    ) -> Arc<Transcoder> {
        let s = settings.get();
        let (mut specs, named_cpu): (Vec<Encoder>, Vec<Encoder>) = hardware
            .into_iter()
            .partition(|e| e.backend != Backend::Software);
        let cpu = named_cpu
            .first()
            .map(|e| e.capacity)
            .or(s.transcode_cpu_slots)
            .unwrap_or_else(software_capacity);
        // Last: the least-loaded rule prefers the lowest index on a tie, and the CPU is
        // the last resort.
        specs.push(software(cpu));
        let pool = Pool::new(
            specs
                .iter()
                .map(|d| DeviceSlots {
                    id: d.id.clone(),
                    capacity: d.capacity,
                })
                .collect(),
            s.gpu_queue_size,
            s.gpu_queue_max_wait,
        );
        for d in &specs {
            log::info!(
                "event=encoder_device id=\"{}\" backend={} capacity={} hevc={} probed_by={}",
                d.id,
                d.backend.as_str(),
                d.capacity,
                d.hevc,
                d.probed_by
            );
        }
        let devices = specs
            .into_iter()
            .map(|spec| Device {
                spec,
                load: Mutex::new(None),
            })
            .collect();
        let transcoder = Arc::new(Transcoder {
            pool,
            devices,
            settings,
            metrics,
            children: Arc::default(),
        });
        let weak = Arc::downgrade(&transcoder);
        transcoder.metrics.on_scrape(Box::new(move || {
            if let Some(t) = weak.upgrade() {
                t.publish_queue();
            }
        }));
        transcoder
    }

    /// Which devices may run `profile`.
    fn eligible(&self, profile: &Profile) -> Eligible {
        let mut mask = 0u64;
        for (i, d) in self.devices.iter().enumerate().take(64) {
            if can_run(&d.spec, profile) {
                mask |= 1 << i;
            }
        }
        Eligible(mask)
    }

    /// Whether a session of `profile` (`None`: a snapshot) would get a slot at once.
    pub fn slot_free(&self, profile: Option<&Profile>) -> bool {
        let eligible = match profile {
            Some(p) => self.eligible(p),
            None => Eligible::only(self.cpu_index()),
        };
        let snap = self.pool.snapshot();
        snap.devices
            .iter()
            .enumerate()
            .any(|(i, d)| eligible.contains(i) && d.accepting && d.reserved < d.capacity)
    }

    /// The CPU device's index: always the last.
    fn cpu_index(&self) -> usize {
        self.devices.len().saturating_sub(1)
    }

    /// Waits for a slot at `priority` (counting waits and refusals).
    async fn acquire(
        &self,
        eligible: Eligible,
        priority: Priority,
    ) -> Result<queue::Lease, Rejected> {
        let m = &self.metrics.transcode;
        match self.pool.acquire(eligible, priority).await {
            Ok(lease) => {
                m.queue_wait
                    .get_or_create(&PriorityLabel {
                        priority: priority.as_str().to_string(),
                    })
                    .observe(lease.waited().as_secs_f64());
                Ok(lease)
            }
            Err(rejected) => {
                m.queue_rejections
                    .get_or_create(&ReasonLabel {
                        reason: rejected.reason().to_string(),
                    })
                    .inc();
                log::warn!(
                    "event=transcode_refused reason={} priority={}",
                    rejected.reason(),
                    priority.as_str()
                );
                Err(rejected)
            }
        }
    }

    /// Starts a session encoding `input` with `profile`: waits for a slot at `priority`
    /// on a device that can run it, then starts ffmpeg there.
    pub async fn start(
        &self,
        input: Input,
        profile: &Profile,
        priority: Priority,
    ) -> Result<Session, TranscodeError> {
        let lease = self
            .acquire(self.eligible(profile), priority)
            .await
            .map_err(TranscodeError::Rejected)?;
        // The pool only grants indices of its own devices; the CPU stands in otherwise.
        let device = self.devices.get(lease.device()).map(|d| &d.spec);
        let backend = device.map_or(Backend::Software, |d| d.backend.clone());
        log::info!(
            "event=transcode_start profile={} device=\"{}\" priority={} waited_ms={}",
            profile.name,
            device.map_or(SOFTWARE_ID, |d| d.id.as_str()),
            priority.as_str(),
            lease.waited().as_millis()
        );
        let job = session::Job::Encode {
            profile: profile.clone(),
            backend,
        };
        self.session(job, input, Some(lease), true).await
    }

    /// Starts `job` reading `input` with the live settings' ffmpeg, on `lease`'s slot
    /// (if it needs one); `watched`: restarts and the stall check apply (a job that
    /// writes files has no stdout to watch).
    async fn session(
        &self,
        job: session::Job,
        input: Input,
        lease: Option<queue::Lease>,
        watched: bool,
    ) -> Result<Session, TranscodeError> {
        let s = self.settings.get();
        // One frame within a short deadline is not worth a restart.
        let one_shot = matches!(job, session::Job::Snapshot { .. });
        let recipe = session::Recipe {
            children: Arc::clone(&self.children),
            program: s.ffmpeg_path.clone(),
            job,
            max_restarts: if one_shot {
                0
            } else {
                s.transcode_max_restarts
            },
            stall: watched.then_some(s.stream_timeout),
        };
        Ok(Session::start(recipe, input, lease, Arc::clone(&self.metrics)).await?)
    }

    /// A segmenter cutting `input` into HLS segments in `dir` (no encoder slot: it only
    /// copies streams).
    pub async fn segmenter(
        &self,
        input: Input,
        dir: PathBuf,
        segment_seconds: u32,
        list_size: u32,
    ) -> Result<Session, TranscodeError> {
        let job = session::Job::Hls {
            dir,
            segment_seconds,
            list_size,
        };
        self.session(job, input, None, false).await
    }

    /// One JPEG frame of `input` (at preview priority, on the CPU): scaled to at most
    /// 360 lines, within `XG2G_STREAM_TIMEOUT`.
    pub async fn snapshot(&self, input: Input) -> Result<Vec<u8>, TranscodeError> {
        let lease = self
            .acquire(Eligible::only(self.cpu_index()), Priority::Preview)
            .await
            .map_err(TranscodeError::Rejected)?;
        let timeout = self.settings.get().stream_timeout;
        let job = session::Job::Snapshot {
            max_height: SNAPSHOT_MAX_HEIGHT,
        };
        let mut session = self.session(job, input, Some(lease), true).await?;
        let read = async {
            let mut jpeg = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = session.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(jpeg);
                }
                if jpeg.len() + n > MAX_SNAPSHOT_BYTES {
                    return Err(TranscodeError::Snapshot("image larger than 4 MiB".into()));
                }
                jpeg.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        };
        let deadline = async {
            Timer::after(timeout).await;
            Err(TranscodeError::Snapshot(format!(
                "no frame within {} s",
                timeout.as_secs()
            )))
        };
        let jpeg = smol::future::or(read, deadline).await?;
        if !jpeg.starts_with(&[0xFF, 0xD8]) {
            self.metrics.transcode.count_error(SOFTWARE_ID, "snapshot");
            return Err(TranscodeError::Snapshot("ffmpeg wrote no JPEG".into()));
        }
        Ok(jpeg)
    }

    /// Waits (at shutdown) until every ffmpeg child has been reaped, at most `limit`;
    /// returns how many are left.
    pub async fn wait_children(&self, limit: Duration) -> usize {
        self.children.reaped(limit).await;
        self.children.live()
    }

    /// Publishes queue lengths and held slots to the metrics.
    fn publish_queue(&self) {
        let snap = self.pool.snapshot();
        let m = &self.metrics.transcode;
        for p in Priority::ALL {
            let waiting = snap.waiting.get(p as usize).copied().unwrap_or(0);
            m.queue_size
                .get_or_create(&PriorityLabel {
                    priority: p.as_str().to_string(),
                })
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
        let held: u32 = snap.devices.iter().map(|d| d.reserved).sum();
        m.active_workers.set(i64::from(held));
    }

    /// Reads every device's load once, publishes it, and switches devices above
    /// `XG2G_GPU_MAX_LOAD` off for new sessions (and back on below it).
    pub fn sample_load(&self, root: &Path) {
        let max = f64::from(self.settings.get().gpu_max_load);
        for (i, d) in self.devices.iter().enumerate() {
            let Some(node) = &d.spec.node else {
                continue;
            };
            let load = read_load(root, node).percent();
            *d.load.lock().unwrap_or_else(|e| e.into_inner()) = load;
            if let Some(percent) = load {
                self.metrics
                    .transcode
                    .utilization
                    .get_or_create(&DeviceLabel {
                        device: d.spec.id.clone(),
                    })
                    .set(percent);
            }
            self.pool.set_accepting(i, load.is_none_or(|p| p <= max));
        }
    }

    /// Samples load every `interval` for ever (run it on the core); reads go through the
    /// blocking pool because sysfs and debugfs reads can block.
    pub async fn run_sampler(self: Arc<Self>, root: PathBuf, interval: Duration) {
        if interval.is_zero() || self.devices.iter().all(|d| d.spec.node.is_none()) {
            return;
        }
        loop {
            let me = Arc::clone(&self);
            let root = root.clone();
            smol::unblock(move || me.sample_load(&root)).await;
            Timer::after(interval).await;
        }
    }

    /// `/api/v1/encoders`: devices with capacity, slots held, load and profiles; queue.
    pub fn status(&self) -> serde_json::Value {
        let snap = self.pool.snapshot();
        let settings = self.settings.get();
        let profiles = settings.profiles();
        let devices: Vec<serde_json::Value> = self
            .devices
            .iter()
            .zip(&snap.devices)
            .map(|(d, s)| {
                let can: Vec<&str> = profiles
                    .names()
                    .into_iter()
                    .filter(|name| profiles.get(name).is_some_and(|p| can_run(&d.spec, p)))
                    .collect();
                json!({
                    "id": d.spec.id,
                    "backend": d.spec.backend.as_str(),
                    "path": device_path(&d.spec.backend),
                    "capacity": s.capacity,
                    "reserved": s.reserved,
                    "accepting": s.accepting,
                    "load_percent": *d.load.lock().unwrap_or_else(|e| e.into_inner()),
                    "probed_by": d.spec.probed_by,
                    "profiles": can,
                })
            })
            .collect();
        json!({
            "devices": devices,
            "queue": {
                "size": {
                    "preview": snap.waiting[0],
                    "normal": snap.waiting[1],
                    "active": snap.waiting[2],
                },
                "max": snap.max_queue,
                "max_wait_seconds": snap.max_wait.as_secs_f64(),
            },
        })
    }
}

fn device_path(backend: &Backend) -> Option<String> {
    match backend {
        Backend::Software => None,
        Backend::Vaapi { render_node } => Some(render_node.to_string_lossy().into_owned()),
        Backend::V4l2m2m { device } => Some(device.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_settings;
    use crate::http::ServerStats;
    use crate::hw::load::{Node, NodeKind};

    fn transcoder(pairs: &[(&str, &str)], hardware: Vec<Encoder>) -> Arc<Transcoder> {
        let settings = LiveSettings::new(Arc::new(test_settings(pairs)));
        let metrics = Arc::new(Metrics::new(&ServerStats::default()));
        Transcoder::new(settings, metrics, hardware)
    }

    fn vaapi(n: u32, hevc: bool, sysfs: Option<&str>) -> Encoder {
        let path = PathBuf::from(format!("/dev/dri/renderD{n}"));
        Encoder {
            id: format!("vaapi:{}", path.display()),
            backend: Backend::Vaapi {
                render_node: path.clone(),
            },
            capacity: 2,
            hevc,
            node: Some(Node {
                kind: NodeKind::Render,
                path,
                driver: Some("amdgpu".into()),
                name: None,
                sysfs: sysfs.map(PathBuf::from),
            }),
            probed_by: "config",
        }
    }

    fn profile(name: &str) -> Profile {
        test_settings(&[]).profiles().get(name).cloned().unwrap()
    }

    #[test]
    fn profiles_go_to_devices_that_can_run_them_and_the_cpu_is_last() {
        let hevc = Profile {
            name: "hevc".into(),
            video: VideoMode::Hevc {
                max_height: 1080,
                bitrate_kbps: 4000,
            },
            audio: profile::AudioMode::Copy,
        };
        let t = transcoder(
            &[("XG2G_TRANSCODE_CPU_SLOTS", "3")],
            vec![vaapi(128, false, None), vaapi(129, true, None)],
        );
        // aac is audio-only: the CPU (last) alone; h264 everywhere; HEVC not on 128.
        assert_eq!(t.eligible(&profile("aac")), Eligible(0b100));
        assert_eq!(t.eligible(&profile("h264")), Eligible(0b111));
        assert_eq!(t.eligible(&hevc), Eligible(0b110));
        assert_eq!(t.eligible(&profile("copy")), Eligible(0));
        let status = t.status();
        let ids: Vec<&str> = status["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["id"].as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "vaapi:/dev/dri/renderD128",
                "vaapi:/dev/dri/renderD129",
                SOFTWARE_ID
            ]
        );
        assert_eq!(status["devices"][2]["capacity"], 3);
        assert_eq!(
            status["devices"][2]["profiles"],
            serde_json::json!(["aac", "h264"])
        );
        assert_eq!(
            status["devices"][0]["profiles"],
            serde_json::json!(["h264"])
        );
        assert_eq!(status["devices"][0]["path"], "/dev/dri/renderD128");
        assert_eq!(status["queue"]["max"], 100);
        assert_eq!(status["queue"]["max_wait_seconds"], 30.0);
    }

    #[test]
    fn a_device_above_the_load_limit_takes_no_new_session_until_it_cools_down() {
        let fake = crate::hw::fake::Fake::new("tc-load");
        fake.dir("/sys/devices/gpu0");
        let t = transcoder(
            &[
                ("XG2G_GPU_MAX_LOAD", "80"),
                ("XG2G_TRANSCODE_CPU_SLOTS", "0"),
            ],
            vec![vaapi(128, false, Some("/sys/devices/gpu0"))],
        );
        let h264 = profile("h264");
        fake.file("/sys/devices/gpu0/gpu_busy_percent", "93\n");
        t.sample_load(&fake.root);
        assert!(!t.slot_free(Some(&h264)), "busy GPU refuses");
        assert_eq!(t.status()["devices"][0]["load_percent"], 93.0);
        assert_eq!(t.status()["devices"][0]["accepting"], false);
        fake.file("/sys/devices/gpu0/gpu_busy_percent", "garbage");
        t.sample_load(&fake.root);
        assert!(
            t.slot_free(Some(&h264)),
            "unknown load does not lock the GPU out"
        );
        fake.file("/sys/devices/gpu0/gpu_busy_percent", "12");
        t.sample_load(&fake.root);
        assert!(t.slot_free(Some(&h264)));
        assert!(
            t.metrics
                .encode()
                .contains("xg2g_gpu_utilization_percent{device=\"vaapi:/dev/dri/renderD128\"} 12"),
            "{}",
            t.metrics.encode()
        );
        // No CPU slots: audio-only profiles have no device at all.
        let refused = smol::block_on(t.acquire(t.eligible(&profile("aac")), Priority::Normal));
        assert_eq!(refused.err(), Some(Rejected::NoDevice));
    }
}
