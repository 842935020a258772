//! Who the emulated tuner is: its HDHomeRun device id and its UPnP uuid, stable across
//! restarts.
//!
//! Rules: `XG2G_HDHR_DEVICE_ID` wins; else the id kept in `<XG2G_DATA>/hdhr-device-id`;
//! else a new random one, written there atomically. When that file cannot be written
//! the id is derived from the receiver address and the listen address instead, so it is
//! still the same at the next start (logged). The uuid is derived from the device id.

use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Read as _;
use std::path::Path;

use super::discovery;
use crate::config::Settings;
use crate::guide::fnv1a32;

/// The device id file inside `XG2G_DATA`: 8 hex digits and a newline.
pub const DEVICE_ID_FILE: &str = "hdhr-device-id";

/// Bytes read from the device id file at most (it holds 9).
const MAX_FILE_BYTES: u64 = 64;

/// The tuner's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A device id that passes the HDHomeRun checksum.
    pub device_id: u32,
    /// The UPnP device uuid (without `uuid:`), derived from the device id.
    pub uuid: String,
}

impl Identity {
    /// The identity for these settings; see the module rules. Blocking (reads and may
    /// write the data folder): call it at start.
    pub fn load(s: &Settings) -> Identity {
        let device_id = match s.hdhr_device_id {
            Some(id) => id,
            None => kept_or_new(&s.data_dir, || derived(s)),
        };
        Identity::of(device_id)
    }

    /// The identity of `device_id`.
    pub fn of(device_id: u32) -> Identity {
        // A fixed namespace and the id, shaped as an RFC 4122 version 4 uuid.
        let uuid = format!(
            "{device_id:08x}-7832-4767-8000-7867{:08x}",
            fnv1a32(&device_id.to_be_bytes())
        );
        Identity { device_id, uuid }
    }

    /// The device id as HDHomeRun clients show it: 8 upper-case hex digits.
    pub fn device_id_text(&self) -> String {
        format!("{:08X}", self.device_id)
    }
}

/// The id in `dir/hdhr-device-id`, or a new random one saved there, or `fallback()`.
fn kept_or_new(dir: &Path, fallback: impl FnOnce() -> u32) -> u32 {
    let path = dir.join(DEVICE_ID_FILE);
    let mut text = String::new();
    let read =
        std::fs::File::open(&path).and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text));
    match read {
        Ok(_) => match discovery::parse_device_id(text.trim()) {
            Ok(id) => return id,
            Err(e) => log::warn!(
                "event=hdhr_device_id_invalid path={} error=\"{e}\" action=replaced",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!(
            "event=hdhr_device_id_unreadable path={} error=\"{e}\"",
            path.display()
        ),
    }
    let id = discovery::device_id_from_seed(random_seed());
    let text = format!("{id:08X}\n");
    match crate::guide::write_atomic(&path, |w| w.write_all(text.as_bytes())) {
        Ok(_) => {
            log::info!("event=hdhr_device_id_created id={id:08X}");
            id
        }
        Err(e) => {
            let id = fallback();
            log::warn!(
                "event=hdhr_device_id_not_saved path={} error=\"{e}\" id={id:08X} source=settings",
                path.display()
            );
            id
        }
    }
}

/// A device id that depends only on where the receiver and this daemon are.
fn derived(s: &Settings) -> u32 {
    let key = format!("{}|{}", s.owi_base, s.listen);
    discovery::device_id_from_seed(u64::from(fnv1a32(key.as_bytes())))
}

/// 64 random bits from the standard library's randomly keyed hasher (no RNG crate).
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xg2g-hdhr-id-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_new_id_is_valid_kept_and_reused() {
        let dir = temp_dir("kept");
        let first = kept_or_new(&dir, || panic!("the folder is writable"));
        assert!(discovery::device_id_is_valid(first));
        let text = std::fs::read_to_string(dir.join(DEVICE_ID_FILE)).unwrap();
        assert_eq!(text, format!("{first:08X}\n"));
        assert_eq!(kept_or_new(&dir, || panic!("kept")), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_replaced() {
        let dir = temp_dir("damaged");
        std::fs::write(dir.join(DEVICE_ID_FILE), "12345678\n").unwrap();
        let id = kept_or_new(&dir, || panic!("writable"));
        assert!(discovery::device_id_is_valid(id));
        assert_ne!(id, 0x1234_5678);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_folder_falls_back_to_the_stable_derived_id() {
        let dir = temp_dir("unwritable");
        // A file where the folder should be: nothing can be created inside it.
        let blocked = dir.join("blocked");
        std::fs::write(&blocked, "").unwrap();
        assert_eq!(kept_or_new(&blocked, || 0x103A_9917), 0x103A_9917);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_uuid_is_stable_and_well_formed() {
        let a = Identity::of(0x103A_9917);
        assert_eq!(a, Identity::of(0x103A_9917));
        assert_ne!(a.uuid, Identity::of(0x103A_9918).uuid);
        let parts: Vec<usize> = a.uuid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(a.uuid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert_eq!(a.device_id_text(), "103A9917");
    }
}
