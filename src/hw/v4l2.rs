//! The V4L2 probe (cargo feature `v4l2`): asks a video node, by `VIDIOC_QUERYCAP` and
//! `VIDIOC_ENUM_FMT`, whether it is a memory-to-memory H.264 encoder, without encoding
//! anything.
//!
//! Rules:
//! - Only character devices are opened (checked before `open`, so a FIFO or a regular
//!   file in a device's place is refused without blocking); opened read-write,
//!   non-blocking and close-on-exec; closed when the probe returns.
//! - An encoder is a node whose device capabilities include `VIDEO_M2M` or
//!   `VIDEO_M2M_MPLANE` and whose CAPTURE queue (the encoder's output: compressed
//!   frames come back to userspace there) lists `H264`. A decoder lists H264 on its
//!   OUTPUT queue instead, so it is not mistaken for an encoder.
//! - At most [`MAX_FORMATS`] formats are read per node; every failure is a
//!   [`V4l2Error`], never a panic.
//! - Uses v4l2r 0.0.6 (0.0.7 and 0.0.8 do not build against Debian 12's kernel
//!   headers). Untested on a real encoder: the build machines have no `/dev/video*`, so
//!   tests run the failure paths (`/dev/null`, files) and the decision on made-up
//!   capabilities.

use std::path::{Path, PathBuf};

use v4l2r::ioctl::{Capabilities, Capability, FmtDesc};
use v4l2r::{PixelFormat, QueueType};

/// Formats read from one queue; M2M encoders list a handful.
pub const MAX_FORMATS: u32 = 64;

/// What a video node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Caps {
    /// The driver name from QUERYCAP (e.g. `bcm2835-codec`).
    pub driver: String,
    /// The card name from QUERYCAP (e.g. `bcm2835-codec-encode`).
    pub card: String,
    /// The node is memory-to-memory (single- or multi-planar).
    pub m2m: bool,
    /// The CAPTURE queue lists H.264.
    pub h264: bool,
    /// The CAPTURE queue lists HEVC. Logged only: xg2g never encodes HEVC on V4L2 M2M
    /// (`transcode::args::backend_supports`).
    pub hevc: bool,
}

impl V4l2Caps {
    /// Whether this node is what `h264_v4l2m2m` encodes on: M2M with H.264 out.
    pub fn is_h264_encoder(&self) -> bool {
        self.m2m && self.h264
    }
}

/// Why a video node could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum V4l2Error {
    /// The node is not a character device, or could not be opened.
    #[error(transparent)]
    Node(#[from] super::NodeError),
    /// `VIDIOC_QUERYCAP` failed: not a V4L2 device.
    #[error("VIDIOC_QUERYCAP failed on {path}: {source}")]
    QueryCap {
        /// The path probed.
        path: PathBuf,
        /// The ioctl error.
        source: v4l2r::ioctl::QueryCapError,
    },
    /// `VIDIOC_ENUM_FMT` failed with something other than the end of the list.
    #[error("VIDIOC_ENUM_FMT failed on {path}: {source}")]
    EnumFmt {
        /// The path probed.
        path: PathBuf,
        /// The ioctl error.
        source: v4l2r::ioctl::EnumFmtError,
    },
}

/// Asks the video node at `path` what it is.
///
/// Guarantees: a few ioctls, no streaming, no buffers allocated; the node is closed when
/// this returns; never panics.
pub fn probe(path: &Path) -> Result<V4l2Caps, V4l2Error> {
    let file = super::open_char_device(path)?;
    let cap: Capability = v4l2r::ioctl::querycap(&file).map_err(|source| V4l2Error::QueryCap {
        path: path.to_owned(),
        source,
    })?;
    let device = cap.device_caps();
    let queue = capture_queue(device);
    let mut formats = Vec::new();
    if let Some(queue) = queue {
        for index in 0..MAX_FORMATS {
            match v4l2r::ioctl::enum_fmt::<FmtDesc>(&file, queue, index) {
                Ok(desc) => formats.push(desc.pixelformat),
                // EINVAL is how V4L2 says "no format at this index": the list ended.
                Err(v4l2r::ioctl::EnumFmtError::IoctlError(v4l2r::nix::errno::Errno::EINVAL)) => {
                    break;
                }
                Err(source) => {
                    return Err(V4l2Error::EnumFmt {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
    }
    Ok(decide(cap.driver, cap.card, queue.is_some(), &formats))
}

/// The CAPTURE queue of an M2M node (multi-planar first: drivers that have both
/// prefer it), `None` for a node that is not M2M.
fn capture_queue(device: Capabilities) -> Option<QueueType> {
    if device.contains(Capabilities::VIDEO_M2M_MPLANE) {
        Some(QueueType::VideoCaptureMplane)
    } else if device.contains(Capabilities::VIDEO_M2M) {
        Some(QueueType::VideoCapture)
    } else {
        None
    }
}

fn decide(driver: String, card: String, m2m: bool, capture: &[PixelFormat]) -> V4l2Caps {
    let has = |fourcc: &[u8; 4]| capture.contains(&PixelFormat::from_fourcc(fourcc));
    V4l2Caps {
        driver: printable(&driver),
        card: printable(&card),
        m2m,
        h264: m2m && has(b"H264"),
        hevc: m2m && has(b"HEVC"),
    }
}

/// Driver text for logs: control characters blanked, at most 32 characters (QUERYCAP's
/// fields are 16 and 32 bytes).
fn printable(s: &str) -> String {
    let blanked: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(32)
        .collect();
    blanked.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_no_v4l2_device() {
        let e = probe(Path::new("/dev/null")).expect_err("/dev/null is no encoder");
        assert!(matches!(e, V4l2Error::QueryCap { .. }), "{e}");
    }

    #[test]
    fn files_and_missing_paths_are_not_devices() {
        let file = std::env::temp_dir().join(format!("xg2g-v4l2-{}", std::process::id()));
        std::fs::write(&file, b"not a camera").unwrap();
        let e = probe(&file).expect_err("a file is no encoder");
        std::fs::remove_file(&file).unwrap();
        assert!(
            matches!(e, V4l2Error::Node(crate::hw::NodeError::NotADevice { .. })),
            "{e}"
        );
        let e = probe(Path::new("/nonexistent/video11")).expect_err("missing");
        assert!(
            matches!(e, V4l2Error::Node(crate::hw::NodeError::NotADevice { .. })),
            "{e}"
        );
    }

    #[test]
    fn the_capture_queue_decides() {
        assert_eq!(
            capture_queue(Capabilities::VIDEO_M2M_MPLANE | Capabilities::STREAMING),
            Some(QueueType::VideoCaptureMplane)
        );
        assert_eq!(
            capture_queue(Capabilities::VIDEO_M2M),
            Some(QueueType::VideoCapture)
        );
        // A webcam captures but is not memory-to-memory.
        assert_eq!(
            capture_queue(Capabilities::VIDEO_CAPTURE | Capabilities::STREAMING),
            None
        );

        let h264 = PixelFormat::from_fourcc(b"H264");
        let hevc = PixelFormat::from_fourcc(b"HEVC");
        let nv12 = PixelFormat::from_fourcc(b"NV12");
        let enc = decide(
            "bcm2835-codec".into(),
            "enc\u{7}".into(),
            true,
            &[h264, hevc],
        );
        assert!(enc.is_h264_encoder());
        assert!(enc.hevc);
        assert_eq!(enc.card, "enc");
        // A decoder's CAPTURE queue holds raw frames.
        assert!(!decide(String::new(), String::new(), true, &[nv12]).is_h264_encoder());
        // Not M2M: whatever formats, no encoder.
        assert!(!decide(String::new(), String::new(), false, &[h264]).is_h264_encoder());
    }
}
