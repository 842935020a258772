//! The encoder list a user writes in a setting, so configuration can always name devices
//! (when probing is impossible, wrong, or a discovered device must be switched off):
//! `vaapi:/dev/dri/renderD128=4, v4l2m2m:/dev/video11=1, software=2`.
//!
//! Grammar: entries separated by `,`, each `BACKEND[:PATH][=CAPACITY]`, ASCII
//! whitespace around entries and their parts ignored.
//! - `BACKEND` is one of the [`Backend::as_str`] names: `software`, `vaapi`, `v4l2m2m`.
//! - `PATH` is required for `vaapi` and `v4l2m2m` and refused for `software`: absolute,
//!   at most [`MAX_PATH`] bytes, no `..` component, no `,`, `=`, whitespace or control
//!   characters (the text is a `&str`, so it is valid UTF-8).
//! - `CAPACITY` is the number of concurrent sessions, decimal digits in
//!   0..=[`MAX_CAPACITY`]; 0 switches the device off. Absent means "the backend's
//!   default" ([`super::probe::default_capacity`]).
//! - An entry's id (`BACKEND` or `BACKEND:PATH`, as [`EncoderSpec::id`] prints it) may
//!   appear once.
//!
//! Rules: at most [`MAX_TEXT`] bytes and [`MAX_ENTRIES`] entries; an empty or
//! all-whitespace text is an empty list. Every error is one line that names the bad
//! entry by position and shows it escaped (control characters and quotes as `\n`,
//! `\"`, ...) and cut to 64 characters. Never panics (property-tested).

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::transcode::args::Backend;

/// Longest accepted setting text, in bytes.
pub const MAX_TEXT: usize = 4096;

/// Most entries in one setting; no box has more encoders than this.
pub const MAX_ENTRIES: usize = 16;

/// Highest accepted capacity; more sessions than this on one device is a typo.
pub const MAX_CAPACITY: u32 = 64;

/// Longest accepted device path, in bytes (Linux's `PATH_MAX` is far above any `/dev`
/// path).
pub const MAX_PATH: usize = 256;

/// Characters of a bad entry shown in an error message.
const SHOWN: usize = 64;

/// One device named by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSpec {
    /// The backend and, for hardware, its device path (checked as the module says).
    pub backend: Backend,
    /// Concurrent sessions, in 0..=[`MAX_CAPACITY`]; `None` = the backend's default.
    pub capacity: Option<u32>,
}

impl EncoderSpec {
    /// The entry's id, the same text an [`super::probe::Encoder`] of that device has as
    /// its id: `software`, `vaapi:/dev/dri/renderD128`, `v4l2m2m:/dev/video11`.
    pub fn id(&self) -> String {
        backend_id(&self.backend)
    }
}

/// The stable id of a backend: its name, then `:path` for hardware.
pub fn backend_id(backend: &Backend) -> String {
    match backend {
        Backend::Software => "software".to_owned(),
        Backend::Vaapi { render_node: p } | Backend::V4l2m2m { device: p } => {
            format!("{}:{}", backend.as_str(), p.to_string_lossy())
        }
    }
}

/// Parses an encoder list (grammar and bounds in the module docs).
///
/// Guarantees: `Ok` holds at most [`MAX_ENTRIES`] specs in the order written, with
/// distinct ids, hardware paths valid as described and capacities in range; `Err` is
/// one line of text naming the first bad entry. Never panics.
pub fn parse_encoders(text: &str) -> Result<Vec<EncoderSpec>, String> {
    if text.len() > MAX_TEXT {
        return Err(format!(
            "encoders: the setting is {} bytes, at most {MAX_TEXT} are accepted",
            text.len()
        ));
    }
    if text.trim_ascii().is_empty() {
        return Ok(Vec::new());
    }
    let mut specs: Vec<EncoderSpec> = Vec::new();
    for (i, raw) in text.split(',').enumerate() {
        let n = i + 1;
        if n > MAX_ENTRIES {
            return Err(format!(
                "encoders: more than {MAX_ENTRIES} entries (entry {n} {})",
                show(raw)
            ));
        }
        let spec =
            parse_entry(raw).map_err(|why| format!("encoders entry {n} {}: {why}", show(raw)))?;
        if specs.iter().any(|s| s.backend == spec.backend) {
            return Err(format!(
                "encoders entry {n} {}: {} is named twice",
                show(raw),
                show(&spec.id())
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn parse_entry(raw: &str) -> Result<EncoderSpec, String> {
    let entry = raw.trim_ascii();
    if entry.is_empty() {
        return Err("empty entry (two commas in a row, or one at an end?)".to_owned());
    }
    let (head, capacity) = match entry.split_once('=') {
        Some((h, c)) => (h.trim_ascii(), Some(parse_capacity(c.trim_ascii())?)),
        None => (entry, None),
    };
    let (name, path) = match head.split_once(':') {
        Some((n, p)) => (n.trim_ascii(), Some(p.trim_ascii())),
        None => (head, None),
    };
    let backend = match (name, path) {
        ("software", None) => Backend::Software,
        ("software", Some(_)) => {
            return Err("software takes no device path".to_owned());
        }
        ("vaapi", Some(p)) => Backend::Vaapi {
            render_node: parse_path(p)?,
        },
        ("v4l2m2m", Some(p)) => Backend::V4l2m2m {
            device: parse_path(p)?,
        },
        ("vaapi" | "v4l2m2m", None) => {
            return Err(format!(
                "{name} needs a device path, e.g. {name}:/dev/{}",
                if name == "vaapi" {
                    "dri/renderD128"
                } else {
                    "video11"
                }
            ));
        }
        _ => {
            return Err(format!(
                "unknown backend {}, expected software, vaapi or v4l2m2m",
                show(name)
            ));
        }
    };
    Ok(EncoderSpec { backend, capacity })
}

fn parse_capacity(s: &str) -> Result<u32, String> {
    // Digits only: `+4`, `-1`, `4.0` and `0x4` are not what anyone means by a count.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "capacity {} is not a number in 0..={MAX_CAPACITY}",
            show(s)
        ));
    }
    match s.parse::<u32>() {
        Ok(c) if c <= MAX_CAPACITY => Ok(c),
        _ => Err(format!(
            "capacity {} is above the maximum {MAX_CAPACITY}",
            show(s)
        )),
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty device path".to_owned());
    }
    if s.len() > MAX_PATH {
        return Err(format!(
            "device path is {} bytes, at most {MAX_PATH}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == ',' || *c == '=')
    {
        return Err(format!(
            "device path {} contains {}",
            show(s),
            show(&c.to_string())
        ));
    }
    let path = Path::new(s);
    if !path.is_absolute() {
        return Err(format!("device path {} is not absolute", show(s)));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("device path {} contains ..", show(s)));
    }
    Ok(path.to_owned())
}

/// `s` quoted, escaped for one log line, at most [`SHOWN`] characters of it.
fn show(s: &str) -> String {
    let mut out = String::from("\"");
    for (count, c) in s.chars().enumerate() {
        if count == SHOWN {
            out.push_str("...");
            break;
        }
        // escape_debug leaves printable non-ASCII as it is and escapes the rest.
        let _ = write!(out, "{}", c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
