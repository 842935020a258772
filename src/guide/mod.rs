//! Playlist and guide files: the M3U writer, the streaming XMLTV writer (plain and gzip)
//! and the atomic file writes both use.
//!
//! Rules: every file in the data folder is replaced atomically (old or new content, never
//! torn, no temp file left after success, failure or drop); hostile text from the receiver
//! can never break an M3U line or attribute, or make the XML invalid (all text passes
//! through one cleaner, [`text`]); channel ids are the same in both files and stable across
//! refreshes ([`tvg_id`]); the guide is streamed, so memory does not grow with the number
//! of programmes. All functions do blocking file I/O: async callers use `smol::unblock`.

mod atomic;
mod ids;
mod m3u;
pub mod text;
mod time;
mod xmltv;

use std::io;
use std::path::PathBuf;

pub use atomic::{AtomicFile, remove_stale_temp_files, write_atomic};
pub use ids::{fnv1a32, tvg_id};
pub use m3u::write_playlist;
pub use time::{civil_from_unix, xmltv_time};
pub use xmltv::{GuideStats, GuideWriter};

/// File name of the playlist in the data folder.
pub const PLAYLIST_FILE: &str = "playlist.m3u";
/// File name of the XMLTV guide in the data folder.
pub const XMLTV_FILE: &str = "xmltv.xml";
/// File name of the gzip-compressed XMLTV guide in the data folder.
pub const XMLTV_GZ_FILE: &str = "xmltv.xml.gz";

/// One channel as both files show it; the caller (refresh) builds one per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    /// Channel id: `tvg-id` in the playlist, `<channel id>` in the guide; normally
    /// [`tvg_id`]`(name, sref)`.
    pub id: String,
    /// Channel number (`tvg-chno`, second `<display-name>`).
    pub number: u32,
    /// Display name.
    pub name: String,
    /// Playlist group (`group-title`), usually the bouquet name.
    pub group: String,
    /// Logo URL (`tvg-logo`, `<icon src>`), if there is one.
    pub logo: Option<String>,
    /// URL the player opens (already percent-encoded by the caller).
    pub stream_url: String,
}

/// What went wrong in this module. It travels inside an [`io::Error`] (same kind as the
/// cause, or `InvalidInput`), so callers that only want `io::Result` lose nothing and
/// callers that care can `downcast_ref::<GuideError>()` on `get_ref()`.
#[derive(Debug, thiserror::Error)]
pub enum GuideError {
    /// A file operation failed; names the file.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file being written, renamed or created.
        path: PathBuf,
        /// The operating system's error.
        cause: io::Error,
    },
    /// [`GuideWriter::add`] got a channel index that is not an entry.
    #[error("channel index {index} out of range (guide has {count} channels)")]
    ChannelOutOfRange {
        /// The index given.
        index: usize,
        /// Number of channels the writer was created with.
        count: usize,
    },
    /// The spool file read back shorter or longer than written (changed underneath us).
    #[error("guide spool {} has {found} bytes, expected {expected}", path.display())]
    SpoolLength {
        /// The spool file.
        path: PathBuf,
        /// Bytes written to it.
        expected: u64,
        /// Bytes read back.
        found: u64,
    },
    /// A file was used after it was committed or finished (a bug in this module).
    #[error("file already closed")]
    Closed,
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    /// A fresh folder under the system temp folder, removed (with content) when dropped.
    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("xg2g-guide-{}-{}", name, std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("create test dir");
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        /// Sorted names of the entries in the folder.
        pub(crate) fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .expect("read test dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let e = super::GuideError::ChannelOutOfRange { index: 7, count: 3 };
        assert_eq!(
            e.to_string(),
            "channel index 7 out of range (guide has 3 channels)"
        );
        let e = super::atomic::io_context(
            Path::new("/data/xmltv.xml"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(e.to_string().starts_with("/data/xmltv.xml: "), "{e}");
        let inner = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<super::GuideError>());
        assert!(matches!(inner, Some(super::GuideError::Io { .. })));
    }
}
