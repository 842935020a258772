//! Atomic file replacement: write a temp file next to the target, make it durable, rename
//! it over the target, make the rename durable.
//!
//! Rules: a crash at any moment leaves either the old or the new target, never a torn one;
//! temp files live in the target's folder (rename must not cross file systems), are named
//! `.<target name>.<pid>.<n>.tmp` and are removed when not committed; writes go through a
//! 64 KiB buffer. Blocking I/O: async callers run this through `smol::unblock`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::GuideError;

/// Buffer size of every file this module writes.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// Attempts at finding an unused temp name before giving up.
const MAX_NAME_ATTEMPTS: u32 = 1000;

/// Wraps `e` so its message names `path`, keeping its kind.
pub(crate) fn io_context(path: &Path, e: io::Error) -> io::Error {
    // Already wrapped further down: don't name the path twice.
    if e.get_ref().is_some_and(|inner| inner.is::<GuideError>()) {
        return e;
    }
    let kind = e.kind();
    io::Error::new(
        kind,
        GuideError::Io {
            path: path.to_path_buf(),
            cause: e,
        },
    )
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a new temp file in `dir` named `.<stem>.<pid>.<n>.tmp` with the first free `n`.
/// Guarantees: the file did not exist before (`O_EXCL`), so two writers never share one.
pub(crate) fn create_temp(dir: &Path, stem: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last = None;
    for n in 0..MAX_NAME_ATTEMPTS {
        let path = dir.join(format!(".{stem}.{pid}.{n}.tmp"));
        match File::create_new(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_context(&path, e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(io_context(&dir.join(format!(".{stem}.{pid}.*.tmp")), e))
}

/// Makes a rename or creation inside `dir` durable. Errors are only logged: by now the
/// rename has happened, and some file systems refuse to sync a folder.
fn sync_folder(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!("event=fsync_dir_failed dir={} error={e}", dir.display());
    }
}

/// A file being written that replaces its target only on [`commit`](AtomicFile::commit).
///
/// Guarantees: until `commit` returns `Ok`, the target is untouched; dropping it without
/// commit removes the temp file.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl AtomicFile {
    /// Starts replacing `target` with a new temp file in the same folder.
    /// Errors name the temp file (folder missing, not writable, …).
    pub fn create(target: &Path) -> io::Result<Self> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let (temp, file) = create_temp(folder_of(target), &name)?;
        Ok(Self {
            target: target.to_path_buf(),
            temp,
            out: Some(BufWriter::with_capacity(BUF_SIZE, file)),
            written: 0,
        })
    }

    /// The path this file will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn out(&mut self) -> io::Result<&mut BufWriter<File>> {
        match self.out.as_mut() {
            Some(out) => Ok(out),
            None => Err(io::Error::other(GuideError::Closed)),
        }
    }

    /// Flushes, syncs the data to disk, renames the temp file over the target and syncs
    /// the folder. Returns the number of bytes in the new target.
    /// Guarantees: on `Ok` the target has the new content (durably, where the file system
    /// allows); on `Err` the target is untouched and the temp file is removed.
    pub fn commit(mut self) -> io::Result<u64> {
        let temp = self.temp.clone();
        let out = self.out.take();
        let result = (|| {
            let out = out.ok_or_else(|| io::Error::other(GuideError::Closed))?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &self.target)
        })();
        match result {
            Ok(()) => {
                // Nothing left for Drop to remove.
                self.temp = PathBuf::new();
                sync_folder(folder_of(&self.target));
                Ok(self.written)
            }
            Err(e) => Err(io_context(&self.target, e)),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.out()?.write(buf) {
            Ok(n) => n,
            Err(e) => return Err(io_context(&self.temp, e)),
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.out()?.flush();
        result.map_err(|e| io_context(&self.temp, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            // Discard the buffer: the content is being thrown away anyway.
            drop(out.into_parts());
        }
        if !self.temp.as_os_str().is_empty() {
            if let Err(e) = fs::remove_file(&self.temp) {
                log::warn!(
                    "event=temp_remove_failed path={} error={e}",
                    self.temp.display()
                );
            }
        }
    }
}

/// Writes `path` atomically with what `fill` writes (see [`AtomicFile`]). Returns the
/// number of bytes written. Guarantees: if `fill` or any write fails, `path` keeps its old
/// content and no temp file is left behind.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    let mut file = AtomicFile::create(path)?;
    fill(&mut file)?;
    file.commit()
}

/// Removes leftovers of a killed process from `dir`: regular files (or links) whose name
/// starts with `.` and ends with `.tmp`. Call it at start, before any writer runs.
/// Returns how many were removed; problems are logged, never fatal.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("event=temp_scan_failed dir={} error={e}", dir.display());
            }
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".tmp") && name.len() > ".tmp".len()) {
            continue;
        }
        // A folder with that name is not ours to delete.
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(true);
        if is_dir {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {
                log::info!("event=stale_temp_removed path={}", entry.path().display());
                removed += 1;
            }
            Err(e) => log::warn!(
                "event=temp_remove_failed path={} error={e}",
                entry.path().display()
            ),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDir;
    use super::*;

    #[test]
    fn commit_replaces_target_and_leaves_no_temp() {
        let dir = TestDir::new("atomic-commit");
        let target = dir.path().join("a.txt");
        fs::write(&target, "old").expect("test setup");
        let n = write_atomic(&target, |w| w.write_all(b"new content")).expect("write");
        assert_eq!(n, 11);
        assert_eq!(fs::read_to_string(&target).expect("read"), "new content");
        assert_eq!(dir.names(), vec!["a.txt".to_owned()]);
    }

    #[test]
    fn failed_fill_keeps_old_content() {
        let dir = TestDir::new("atomic-fail");
        let target = dir.path().join("a.txt");
        fs::write(&target, "old").expect("test setup");
        let r = write_atomic(&target, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read_to_string(&target).expect("read"), "old");
        assert_eq!(dir.names(), vec!["a.txt".to_owned()]);
    }

    #[test]
    fn dropped_file_is_removed_and_target_untouched() {
        let dir = TestDir::new("atomic-drop");
        let target = dir.path().join("b.txt");
        let mut f = AtomicFile::create(&target).expect("create");
        assert!(f.write_all(&[b'x'; 200_000]).is_ok());
        assert_eq!(f.written(), 200_000);
        assert_eq!(dir.names().len(), 1);
        assert!(dir.names()[0].starts_with(".b.txt."));
        drop(f);
        assert!(dir.names().is_empty());
    }

    #[test]
    fn two_writers_get_distinct_temp_files() {
        let dir = TestDir::new("atomic-two");
        let target = dir.path().join("c.txt");
        let mut a = AtomicFile::create(&target).expect("create a");
        let mut b = AtomicFile::create(&target).expect("create b");
        assert_eq!(dir.names().len(), 2);
        a.write_all(b"A").expect("write a");
        b.write_all(b"B").expect("write b");
        assert_eq!(a.commit().expect("commit a"), 1);
        assert_eq!(b.commit().expect("commit b"), 1);
        assert_eq!(fs::read_to_string(&target).expect("read"), "B");
        assert_eq!(dir.names(), vec!["c.txt".to_owned()]);
    }

    #[test]
    fn missing_folder_error_names_the_path() {
        let dir = TestDir::new("atomic-missing");
        let target = dir.path().join("nope").join("d.txt");
        let msg = AtomicFile::create(&target)
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn stale_temp_files_are_removed_others_kept() {
        let dir = TestDir::new("atomic-stale");
        for name in [
            ".xmltv.xml.123.0.tmp",
            ".spool.9.tmp",
            "keep.tmp",
            ".keep",
            "x.m3u",
        ] {
            fs::write(dir.path().join(name), "x").expect("test setup");
        }
        fs::create_dir(dir.path().join(".dir.tmp")).expect("test setup");
        assert_eq!(remove_stale_temp_files(dir.path()), 2);
        assert_eq!(dir.names(), vec![".dir.tmp", ".keep", "keep.tmp", "x.m3u"]);
        assert_eq!(remove_stale_temp_files(&dir.path().join("missing")), 0);
    }
}
