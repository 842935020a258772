//! Test helper: a temp folder laid out like `/` (fake `/dev`, sysfs and debugfs), one
//! per test, removed on drop. The hw tests add their own tree builders to it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A temp folder laid out like `/`, removed on drop.
pub(crate) struct Fake {
    pub(crate) root: PathBuf,
}

impl Fake {
    pub(crate) fn new(tag: &str) -> Fake {
        let root = std::env::temp_dir().join(format!(
            "xg2g-hw-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("temp root");
        Fake { root }
    }

    /// `rel` (as seen from the fake root) as a real path.
    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// A file holding `text` (replacing a directory of that name).
    pub(crate) fn file(&self, rel: &str, text: impl AsRef<[u8]>) -> &Fake {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let _ = fs::remove_dir_all(&p);
        fs::write(&p, text).expect("write");
        self
    }

    pub(crate) fn dir(&self, rel: &str) -> &Fake {
        fs::create_dir_all(self.p(rel)).expect("mkdir");
        self
    }

    pub(crate) fn rm(&self, rel: &str) {
        let p = self.p(rel);
        let _ = fs::remove_file(&p);
        let _ = fs::remove_dir_all(&p);
    }

    /// A relative symlink at `at` to `target` (both as seen from root), as sysfs has.
    pub(crate) fn link(&self, at: &str, target: &str) -> &Fake {
        let at = at.trim_start_matches('/');
        let depth = Path::new(at).components().count().saturating_sub(1);
        let rel = format!("{}{}", "../".repeat(depth), target.trim_start_matches('/'));
        self.link_to(at, Path::new(&rel))
    }

    /// A symlink at `at` (as seen from root) to the real path `target` (e.g. `/dev/null`
    /// where a character device is needed).
    pub(crate) fn link_to(&self, at: &str, target: &Path) -> &Fake {
        let p = self.p(at);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
