//! HLS for Safari and iOS: a live playlist of short MPEG-TS segments on disk, cut by an
//! ffmpeg that reads the channel in its profile like any other viewer.
//!
//! Rules:
//! - One session per (channel, profile), in its own folder under `XG2G_DATA/hls`; the
//!   segmenter copies streams (no encoder slot: the profile's transcode, if any, is the
//!   shared one every viewer of that profile reads), keeps at most
//!   `XG2G_HLS_LIST_SIZE` + 1 segments and writes each under a temporary name first.
//! - At most `XG2G_HLS_MAX_SESSIONS` sessions; a session no client asked anything of for
//!   `XG2G_HLS_IDLE_TIMEOUT` ends, and so does one whose stream ended: its ffmpeg is
//!   killed and its folder removed. The whole `hls` folder is emptied at start.
//! - Only names ffmpeg wrote (`seg<N>.ts`) are served from a session's folder; a client
//!   never names a path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::Executor;
use smol::future::FutureExt as _;

use crate::config::LiveSettings;
use crate::metrics::Metrics;
use crate::stream::{Channel, StreamError, StreamService};
use crate::transcode::profile::Profile;

/// Largest playlist read back from ffmpeg (a live list of 20 segments is ~1 KiB).
const MAX_PLAYLIST_BYTES: u64 = 64 * 1024;
/// How often a new session's folder is checked for its first playlist.
const FIRST_PLAYLIST_POLL: Duration = Duration::from_millis(100);

/// Why an HLS request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// The channel or its transcode could not be opened.
    #[error("{0}")]
    Stream(#[from] StreamError),
    /// `XG2G_HLS_MAX_SESSIONS` sessions are running.
    #[error("all {0} HLS sessions are in use")]
    TooManySessions(usize),
    /// The segmenter wrote no playlist in time or failed.
    #[error("HLS segmenter failed: {0}")]
    Segmenter(String),
    /// No such session or segment (it expired, or never existed).
    #[error("no such HLS segment")]
    NotFound,
}

/// One running segmenter.
struct Session {
    /// `<channel key>?<profile>`.
    key: String,
    /// Its own folder.
    dir: PathBuf,
    last_access: Mutex<Instant>,
    /// Dropped (or sent to) to stop the segmenter task.
    stop: smol::channel::Sender<()>,
    /// Why the segmenter ended early, for requests waiting for the first playlist.
    failed: Mutex<Option<String>>,
}

impl Session {
    fn touch(&self) {
        *lock(&self.last_access) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        lock(&self.last_access).elapsed()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HLS sessions of the daemon.
pub struct HlsService {
    root: PathBuf,
    streams: Arc<StreamService>,
    settings: Arc<LiveSettings>,
    metrics: Arc<Metrics>,
    ex: Arc<Executor<'static>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    next_id: AtomicU64,
    me: Weak<HlsService>,
}

impl HlsService {
    /// The service with its folder `data/hls`, emptied now (blocking: call it at start,
    /// through the blocking pool).
    pub fn new(
        data: &Path,
        streams: Arc<StreamService>,
        settings: Arc<LiveSettings>,
        metrics: Arc<Metrics>,
        ex: Arc<Executor<'static>>,
    ) -> Arc<HlsService> {
        let root = data.join("hls");
        let _ = std::fs::remove_dir_all(&root);
        if let Err(e) = std::fs::create_dir_all(&root) {
            log::warn!(
                "event=hls_folder_failed dir={} error=\"{e}\"",
                root.display()
            );
        }
        Arc::new_cyclic(|me| HlsService {
            root,
            streams,
            settings,
            metrics,
            ex,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            me: me.clone(),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        lock(&self.sessions)
    }

    /// The live playlist of `channel` in `profile`, starting its segmenter if needed and
    /// waiting for the first segment; segment URIs become `<profile>/seg<N>.ts` plus
    /// `query` (the stream token, when one is needed).
    pub async fn playlist(
        &self,
        channel: &Channel,
        profile: &Profile,
        query: &str,
    ) -> Result<String, HlsError> {
        let session = self.session(channel, profile)?;
        session.touch();
        let index = session.dir.join("index.m3u8");
        let s = self.settings.get();
        // Long enough for the channel to open, ffmpeg to probe and one segment to fill.
        let wait = s.stream_timeout + Duration::from_secs(u64::from(s.hls_segment_seconds) * 3);
        let deadline = Instant::now() + wait;
        loop {
            if let Some(text) = read_playlist(&index).await {
                return Ok(rewrite(&text, &profile.name, query));
            }
            if let Some(why) = lock(&session.failed).clone() {
                return Err(HlsError::Segmenter(why));
            }
            if Instant::now() >= deadline {
                return Err(HlsError::Segmenter(format!(
                    "no segment within {} s",
                    wait.as_secs()
                )));
            }
            Timer::after(FIRST_PLAYLIST_POLL).await;
        }
    }

    /// The path of segment `name` of the session for (`channel`, `profile`), if it is a
    /// segment name and the session runs; counts as activity.
    pub fn segment(
        &self,
        channel: &Channel,
        profile: &str,
        name: &str,
    ) -> Result<PathBuf, HlsError> {
        if !is_segment_name(name) {
            return Err(HlsError::NotFound);
        }
        let key = format!("{}?{profile}", channel.key);
        let session = self
            .sessions()
            .get(&key)
            .cloned()
            .ok_or(HlsError::NotFound)?;
        session.touch();
        Ok(session.dir.join(name))
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.sessions().len()
    }

    /// Ends every session (at shutdown).
    pub fn shutdown(&self) {
        let all: Vec<Arc<Session>> = self.sessions().drain().map(|(_, s)| s).collect();
        for session in all {
            let _ = session.stop.try_send(());
        }
        self.publish();
    }

    fn publish(&self) {
        let n = i64::try_from(self.active()).unwrap_or(i64::MAX);
        self.metrics.transcode.mode("hls").set(n);
    }

    /// The running session for (`channel`, `profile`), or a new one.
    fn session(&self, channel: &Channel, profile: &Profile) -> Result<Arc<Session>, HlsError> {
        let key = format!("{}?{}", channel.key, profile.name);
        let mut sessions = self.sessions();
        if let Some(s) = sessions.get(&key) {
            return Ok(Arc::clone(s));
        }
        let max = self.settings.get().hls_max_sessions;
        if sessions.len() >= max {
            return Err(HlsError::TooManySessions(max));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(id.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| HlsError::Segmenter(format!("cannot create {}: {e}", dir.display())))?;
        let (stop, stopped) = smol::channel::bounded(1);
        let session = Arc::new(Session {
            key: key.clone(),
            dir,
            last_access: Mutex::new(Instant::now()),
            stop,
            failed: Mutex::new(None),
        });
        sessions.insert(key, Arc::clone(&session));
        drop(sessions);
        self.publish();
        if let Some(me) = self.me.upgrade() {
            let (channel, profile, s) = (channel.clone(), profile.clone(), Arc::clone(&session));
            self.ex
                .spawn(async move { me.run(s, channel, profile, stopped).await })
                .detach();
        }
        Ok(session)
    }

    /// Runs a session until its stream ends, it idles out or it is stopped; then kills
    /// its segmenter and removes its folder.
    async fn run(
        self: Arc<Self>,
        session: Arc<Session>,
        channel: Channel,
        profile: Profile,
        stopped: smol::channel::Receiver<()>,
    ) {
        log::info!("event=hls_session_start key=\"{}\"", session.key);
        let work = async {
            let opened = self.streams.open_feed(&channel, &profile).await?;
            let s = self.settings.get();
            let mut segmenter = self
                .streams
                .segmenter(
                    Box::new(opened.body),
                    session.dir.clone(),
                    s.hls_segment_seconds,
                    s.hls_list_size,
                )
                .await?;
            let mut sink = vec![0u8; 4096];
            loop {
                match segmenter.read(&mut sink).await {
                    Ok(0) => return Ok::<&'static str, HlsError>("ended"),
                    Ok(_) => {}
                    Err(e) => return Err(HlsError::Segmenter(e.to_string())),
                }
            }
        };
        let idle = async {
            loop {
                let limit = self.settings.get().hls_idle_timeout;
                let idle = session.idle_for();
                if idle >= limit {
                    return Ok("idle");
                }
                Timer::after(limit - idle).await;
            }
        };
        let stop = async {
            let _ = stopped.recv().await;
            Ok("stopped")
        };
        let how = match work.or(idle).or(stop).await {
            Ok(how) => how.to_string(),
            Err(e) => {
                *lock(&session.failed) = Some(e.to_string());
                log::warn!(
                    "event=hls_session_failed key=\"{}\" error=\"{e}\"",
                    session.key
                );
                format!("failed: {e}")
            }
        };
        {
            let mut sessions = self.sessions();
            if sessions
                .get(&session.key)
                .is_some_and(|s| Arc::ptr_eq(s, &session))
            {
                sessions.remove(&session.key);
            }
        }
        self.publish();
        let dir = session.dir.clone();
        smol::unblock(move || std::fs::remove_dir_all(dir))
            .await
            .ok();
        log::info!(
            "event=hls_session_end key=\"{}\" how=\"{how}\"",
            session.key
        );
    }
}

/// `seg<digits>.ts`, the only names the segmenter writes.
fn is_segment_name(name: &str) -> bool {
    name.strip_prefix("seg")
        .and_then(|n| n.strip_suffix(".ts"))
        .is_some_and(|n| (1..=10).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The playlist text once it lists a segment; `None` before (or if unreadable).
async fn read_playlist(index: &Path) -> Option<String> {
    let index = index.to_path_buf();
    smol::unblock(move || {
        use std::io::Read as _;
        let file = std::fs::File::open(&index).ok()?;
        let mut text = String::new();
        file.take(MAX_PLAYLIST_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        text.lines().any(is_uri_line).then_some(text)
    })
    .await
}

fn is_uri_line(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

/// The playlist with every segment URI made `<profile>/<file name><query>`.
fn rewrite(text: &str, profile: &str, query: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        if is_uri_line(line) {
            let name = line.trim().rsplit('/').next().unwrap_or_default();
            out.push_str(profile);
            out.push('/');
            out.push_str(name);
            out.push_str(query);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_names_pass() {
        for good in ["seg0.ts", "seg123.ts", "seg1234567890.ts"] {
            assert!(is_segment_name(good), "{good}");
        }
        for bad in [
            "",
            "seg.ts",
            "seg1.ts/",
            "../seg1.ts",
            "seg1.m3u8",
            "index.m3u8",
            "seg-1.ts",
            "seg12345678901.ts",
            "SEG1.ts",
            "seg1.ts\0",
            "seg１.ts",
        ] {
            assert!(!is_segment_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn playlists_point_segments_at_the_profile_path_with_the_token() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:2.000000,\nseg4.ts\n#EXTINF:2.000000,\n/tmp/x/seg5.ts\n";
        let out = rewrite(text, "aac", "?token=t%20x");
        assert!(out.contains("\naac/seg4.ts?token=t%20x\n"), "{out}");
        assert!(out.contains("\naac/seg5.ts?token=t%20x\n"), "{out}");
        assert!(out.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n"), "{out}");
        assert_eq!(rewrite("#EXTM3U\n", "copy", ""), "#EXTM3U\n");
    }
}
