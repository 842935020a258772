//! The libva probe (cargo feature `vaapi`): asks a DRM render node's VA driver whether
//! it encodes H.264 and HEVC, by its profiles and entrypoints, without encoding anything.
//!
//! Rules:
//! - Only character devices are opened (checked before `open`, so a FIFO or a regular
//!   file in a device's place is refused without blocking); opened read-write,
//!   non-blocking and close-on-exec, as libva itself opens render nodes.
//! - Every libva call is checked; every failure is a [`VaapiError`], never a panic. The
//!   display is always terminated (`vaTerminate`, also after a failed `vaInitialize`,
//!   which is what frees libva's context) before the descriptor is closed, on every
//!   return path (drop guards).
//! - libva's own messages ("libva info: ...") go to `log` at debug level instead of
//!   stderr.
//! - Never calls the libva-utils helpers that libva-sys also builds
//!   (`va_open_display` and friends call `exit()` on failure).
//! - Lists are bounded: at most [`MAX_LIST`] profiles or entrypoints are read, whatever
//!   the driver claims.
//! - No timeout: a driver that hangs in `vaInitialize` hangs this call (see
//!   `hw::probe` for what the caller does about it).
//! - libva-sys 0.1.2 carries VA-API 1.12 bindings generated on x86_64. The calls used
//!   here have kept their ABI since VA-API 1.0 and pass only integers, pointers and a
//!   callback, no struct whose layout could differ on 32-bit ARM. Untested on a real
//!   GPU: the build machines have none, so only the failure paths (`/dev/null`, files)
//!   run in tests.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libva_sys::va_display_drm as va;

/// Most profiles or entrypoints read from a driver (VA-API 1.12 defines 37 profiles and
/// 11 entrypoints); a driver claiming more is cut here, not trusted with a big buffer.
pub const MAX_LIST: usize = 128;

/// What a render node's VA driver says it can encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaCaps {
    /// The VA-API version libva reports, `(major, minor)`.
    pub version: (i32, i32),
    /// The driver's vendor string (e.g. "Intel iHD driver ..."), printable, at most 128
    /// characters.
    pub vendor: String,
    /// Some H.264 profile (constrained baseline, main or high) has `VAEntrypointEncSlice`
    /// or `VAEntrypointEncSliceLP` (ffmpeg 5.1's `h264_vaapi` takes either).
    pub h264: bool,
    /// `VAProfileHEVCMain` has one of those entrypoints.
    pub hevc: bool,
}

/// Why a render node could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum VaapiError {
    /// The node is not a character device, or could not be opened.
    #[error(transparent)]
    Node(#[from] super::NodeError),
    /// `vaGetDisplayDRM` returned no display (the descriptor is not a DRM device).
    #[error("vaGetDisplayDRM refused {path}")]
    NoDisplay {
        /// The path probed.
        path: PathBuf,
    },
    /// A libva call returned an error status.
    #[error("{call} failed on {path}: {message} (status {status})")]
    Call {
        /// The libva function.
        call: &'static str,
        /// The path probed.
        path: PathBuf,
        /// libva's status code.
        status: i32,
        /// `vaErrorStr` of the status.
        message: String,
    },
}

/// Asks the VA driver of the render node at `path` what it encodes.
///
/// Guarantees: blocking for as long as the driver takes to initialise (milliseconds on
/// working hardware); the node is closed and the display terminated when this returns;
/// never panics.
pub fn probe(path: &Path) -> Result<VaCaps, VaapiError> {
    // Declared before the display so it is dropped after it: libva may still use the
    // descriptor inside vaTerminate.
    let file = super::open_char_device(path)?;
    let display = Display::open(&file).ok_or_else(|| VaapiError::NoDisplay {
        path: path.to_owned(),
    })?;
    let call = |call: &'static str, status: va::VAStatus| check(call, path, status);

    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: `display.0` is a live display (non-null, not yet terminated); the two
    // out-pointers are to locals that outlive the call.
    call("vaInitialize", unsafe {
        va::vaInitialize(display.0, &mut major, &mut minor)
    })?;

    // SAFETY: an initialised display; the string belongs to the driver and stays valid
    // until vaTerminate, and it is copied before `display` is dropped.
    let vendor = unsafe { text(va::vaQueryVendorString(display.0), 128) };

    let profiles = display.profiles(path)?;
    let encodes = |profile: va::VAProfile| -> Result<bool, VaapiError> {
        Ok(display.entrypoints(path, profile)?.iter().any(|&e| {
            e == va::VAEntrypoint_VAEntrypointEncSlice
                || e == va::VAEntrypoint_VAEntrypointEncSliceLP
        }))
    };
    let mut h264 = false;
    let mut hevc = false;
    for &p in &profiles {
        if !h264
            && (p == va::VAProfile_VAProfileH264ConstrainedBaseline
                || p == va::VAProfile_VAProfileH264Main
                || p == va::VAProfile_VAProfileH264High)
        {
            h264 = encodes(p)?;
        } else if !hevc && p == va::VAProfile_VAProfileHEVCMain {
            hevc = encodes(p)?;
        }
    }
    Ok(VaCaps {
        version: (major, minor),
        vendor,
        h264,
        hevc,
    })
}

/// A VA display; terminated on drop.
struct Display(va::VADisplay);

impl Display {
    /// The display of an open DRM descriptor, libva's messages routed to `log`.
    fn open(file: &File) -> Option<Display> {
        // SAFETY: the descriptor is open and owned by `file`, which the caller keeps
        // alive until after this display is dropped (see `probe`). libva returns NULL
        // for a descriptor that is not a DRM device.
        let dpy = unsafe { va::vaGetDisplayDRM(file.as_raw_fd()) };
        if dpy.is_null() {
            return None;
        }
        // SAFETY: a live display; the callbacks are plain functions that live forever
        // and take no context (null user pointer). The previous callbacks returned are
        // libva's defaults, which need no cleanup.
        unsafe {
            va::vaSetErrorCallback(dpy, Some(log_error), std::ptr::null_mut());
            va::vaSetInfoCallback(dpy, Some(log_info), std::ptr::null_mut());
        }
        Some(Display(dpy))
    }

    fn profiles(&self, path: &Path) -> Result<Vec<va::VAProfile>, VaapiError> {
        // SAFETY: an initialised display.
        let max = bounded(unsafe { va::vaMaxNumProfiles(self.0) });
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut list: Vec<va::VAProfile> = vec![va::VAProfile_VAProfileNone; max];
        let mut n: c_int = 0;
        // SAFETY: libva writes at most vaMaxNumProfiles() entries, which is at least
        // `list.len()` unless it was cut to MAX_LIST, and into `n`.
        let status = unsafe { va::vaQueryConfigProfiles(self.0, list.as_mut_ptr(), &mut n) };
        check("vaQueryConfigProfiles", path, status)?;
        list.truncate(bounded(n).min(max));
        Ok(list)
    }

    fn entrypoints(
        &self,
        path: &Path,
        profile: va::VAProfile,
    ) -> Result<Vec<va::VAEntrypoint>, VaapiError> {
        // SAFETY: an initialised display.
        let max = bounded(unsafe { va::vaMaxNumEntrypoints(self.0) });
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut list: Vec<va::VAEntrypoint> = vec![0; max];
        let mut n: c_int = 0;
        // SAFETY: as in `profiles`, with vaMaxNumEntrypoints().
        let status =
            unsafe { va::vaQueryConfigEntrypoints(self.0, profile, list.as_mut_ptr(), &mut n) };
        check("vaQueryConfigEntrypoints", path, status)?;
        list.truncate(bounded(n).min(max));
        Ok(list)
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // SAFETY: the display came from vaGetDisplayDRM and is terminated only here,
        // once; the descriptor behind it is still open (dropped after us).
        let status = unsafe { va::vaTerminate(self.0) };
        if status != va::VA_STATUS_SUCCESS as va::VAStatus {
            log::debug!("event=libva_terminate_failed status={status}");
        }
    }
}

/// A count from libva as a buffer length: negative is 0, above [`MAX_LIST`] is cut.
/// libva's maxima are small, so cutting only happens with a broken driver.
fn bounded(n: c_int) -> usize {
    usize::try_from(n).unwrap_or(0).min(MAX_LIST)
}

fn check(call: &'static str, path: &Path, status: va::VAStatus) -> Result<(), VaapiError> {
    if status == va::VA_STATUS_SUCCESS as va::VAStatus {
        return Ok(());
    }
    // SAFETY: vaErrorStr returns a static string for every status (a generic one for
    // unknown codes), and `text` copies it.
    let message = unsafe { text(va::vaErrorStr(status), 128) };
    Err(VaapiError::Call {
        call,
        path: path.to_owned(),
        status,
        message,
    })
}

/// A C string copied into printable text of at most `max` characters (`""` for NULL).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text(ptr: *const c_char, max: usize) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) }.to_string_lossy();
    let blanked: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    blanked.trim().to_owned()
}

/// libva error messages, to `log`. Must not unwind: a panic in `log` would abort here
/// (Rust aborts on unwinding out of an `extern "C"` function), never cross into C.
unsafe extern "C" fn log_error(_ctx: *mut c_void, message: *const c_char) {
    // SAFETY: libva passes a NUL-terminated message valid for the call.
    let m = unsafe { text(message, 256) };
    log::debug!(
        "event=libva_message level=error text=\"{}\"",
        m.escape_debug()
    );
}

/// libva info messages, to `log` (see [`log_error`]).
unsafe extern "C" fn log_info(_ctx: *mut c_void, message: *const c_char) {
    // SAFETY: as in `log_error`.
    let m = unsafe { text(message, 256) };
    log::debug!(
        "event=libva_message level=info text=\"{}\"",
        m.escape_debug()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_refused_cleanly() {
        // A character device that is not DRM: libva must refuse it, and we must return.
        let e = probe(Path::new("/dev/null")).expect_err("/dev/null is no GPU");
        assert!(
            matches!(e, VaapiError::NoDisplay { .. } | VaapiError::Call { .. }),
            "{e}"
        );
    }

    #[test]
    fn files_and_missing_paths_are_not_devices() {
        let file = std::env::temp_dir().join(format!("xg2g-vaapi-{}", std::process::id()));
        std::fs::write(&file, b"not a gpu").unwrap();
        let e = probe(&file).expect_err("a file is no GPU");
        std::fs::remove_file(&file).unwrap();
        assert!(
            matches!(e, VaapiError::Node(crate::hw::NodeError::NotADevice { .. })),
            "{e}"
        );
        let e = probe(Path::new("/nonexistent/renderD128")).expect_err("missing");
        assert!(
            matches!(e, VaapiError::Node(crate::hw::NodeError::NotADevice { .. })),
            "{e}"
        );
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(bounded(-1), 0);
        assert_eq!(bounded(5), 5);
        assert_eq!(bounded(c_int::MAX), MAX_LIST);
    }
}
