//! Encoder hardware: which devices exist, which of them encode, and how busy they are,
//! read from /dev, sysfs and debugfs, asked through libva or V4L2 ioctls (cargo
//! features `vaapi`, `v4l2`) or a one-frame ffmpeg test encode.

#[cfg(test)]
pub(crate) mod fake;
pub mod load;
pub mod probe;
pub mod spec;
#[cfg(feature = "v4l2")]
pub mod v4l2;
#[cfg(feature = "vaapi")]
pub mod vaapi;

/// Why a device node could not be opened for a probe.
#[cfg(any(feature = "vaapi", feature = "v4l2"))]
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The path is missing or is not a character device.
    #[error("{path} is not a character device")]
    NotADevice {
        /// The path probed.
        path: std::path::PathBuf,
    },
    /// `open` failed (permissions: the daemon's user needs the `render` or `video` group).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path probed.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Opens the character device at `path` read-write and non-blocking, as the libva and
/// V4L2 probes need; anything else (a regular file, a FIFO, nothing) is refused unopened.
#[cfg(any(feature = "vaapi", feature = "v4l2"))]
fn open_char_device(path: &std::path::Path) -> Result<std::fs::File, NodeError> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let is_char = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device());
    if !is_char {
        return Err(NodeError::NotADevice {
            path: path.to_owned(),
        });
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| NodeError::Open {
            path: path.to_owned(),
            source,
        })
}
