//! What a running daemon swaps whole on reload: the settings, and what is built from
//! them (the rate limiter).
//!
//! Rules: readers take a snapshot (`Arc<T>`) and use it for one whole operation (a
//! request, a refresh), so no operation ever mixes old and new values; a reload
//! replaces the snapshot atomically and never blocks readers for longer than a pointer
//! copy.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use super::Settings;

/// A value replaced whole on reload; shared by everything that must follow it.
#[derive(Debug)]
pub struct Live<T> {
    current: RwLock<Arc<T>>,
    generation: AtomicU64,
}

/// The current settings.
pub type LiveSettings = Live<Settings>;

impl<T> Live<T> {
    /// A store holding `value` (generation 0).
    pub fn new(value: Arc<T>) -> Arc<Live<T>> {
        Arc::new(Live {
            current: RwLock::new(value),
            generation: AtomicU64::new(0),
        })
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Installs `value`; returns the previous snapshot. Bumps the generation.
    pub fn replace(&self, value: Arc<T>) -> Arc<T> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *current, value);
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// How many times the value was replaced since start.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// What identifies one version of the settings file: a change of any part means the
/// file was edited or replaced (editors often write a new file and rename it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of `path` now; `None` when it cannot be read (missing or no access),
    /// which is itself a state the watcher compares.
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_their_snapshot_across_a_swap() {
        let s = Settings::defaults();
        let live = LiveSettings::new(Arc::new(s.clone()));
        let before = live.get();
        let mut next = s;
        next.epg_days = 3;
        let old = live.replace(Arc::new(next));
        assert_eq!(old.epg_days, 7);
        assert_eq!(before.epg_days, 7);
        assert_eq!(live.get().epg_days, 3);
        assert_eq!(live.generation(), 1);
    }

    #[test]
    fn stamps_change_with_the_file() {
        let dir = std::env::temp_dir().join(format!("xg2g-stamp-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("c.toml");
        assert_eq!(FileStamp::of(&path), None);
        let _ = std::fs::write(&path, "a = 1\n");
        let first = FileStamp::of(&path);
        assert!(first.is_some());
        let _ = std::fs::write(&path, "a = 12\n");
        assert_ne!(FileStamp::of(&path), first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
