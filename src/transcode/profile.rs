//! Transcode profiles: what a client gets when it asks `/stream/<ref>?profile=NAME`, the
//! built-ins, and the parser for user profiles from one setting value.
//!
//! Rules:
//! - Pure data and parsing: no processes, no I/O. The ffmpeg command for a profile is
//!   built in [`super::args`].
//! - The setting text is bounded ([`MAX_TEXT_LEN`] bytes, [`MAX_PROFILES`] profiles); every
//!   parse error is one line naming the profile and the key, with long or odd values
//!   shortened and escaped.
//! - `copy` is the plain proxy and can never be replaced; every other built-in may be
//!   replaced by a user profile of the same name.

use std::fmt;

/// Longest accepted setting value, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Most user profiles in one setting value.
pub const MAX_PROFILES: usize = 32;
/// Longest profile name, in bytes (names are ASCII `[a-z0-9_-]`).
pub const MAX_NAME_LEN: usize = 32;

/// Smallest and largest accepted `height` (lines); a height must also be even because
/// 4:2:0 chroma needs even dimensions.
const HEIGHT_RANGE: (u32, u32) = (144, 4320);
/// Accepted video bitrate range in kbit/s (100k .. 100M).
const VIDEO_KBPS_RANGE: (u32, u32) = (100, 100_000);
/// Accepted AAC bitrate range in kbit/s; ffmpeg's AAC encoder tops out around 512k.
const AUDIO_KBPS_RANGE: (u32, u32) = (32, 512);
/// AAC channel counts ffmpeg's native encoder handles (mono .. 7.1).
const CHANNELS_RANGE: (u32, u32) = (1, 8);

/// Defaults for a user profile that names a codec but not every parameter. H.264 at
/// 720p/3000k matches the built-in `h264`; HEVC is about 40% more efficient, so 1080p
/// fits in a similar budget.
const H264_DEFAULT: (u32, u32) = (720, 3000);
const HEVC_DEFAULT: (u32, u32) = (1080, 4000);
/// AAC-LC stereo at 192k: transparent for broadcast MP2/AC3 stereo sources and
/// accepted by every player; 5.1 sources are downmixed.
const AAC_DEFAULT: (u32, u8) = (192, 2);

/// What happens to the video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoMode {
    /// The broadcast video is passed through unchanged.
    Copy,
    /// Re-encoded to H.264, scaled down (never up) to at most `max_height` lines.
    H264 {
        /// Upper bound on output height; smaller sources keep their height.
        max_height: u32,
        /// Target (and cap) bitrate in kbit/s.
        bitrate_kbps: u32,
    },
    /// Re-encoded to HEVC, scaled down (never up) to at most `max_height` lines.
    Hevc {
        /// Upper bound on output height; smaller sources keep their height.
        max_height: u32,
        /// Target (and cap) bitrate in kbit/s.
        bitrate_kbps: u32,
    },
}

/// What happens to the (first) audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioMode {
    /// The broadcast audio (MP2, AC3, AAC) is passed through unchanged.
    Copy,
    /// Re-encoded to AAC-LC.
    Aac {
        /// Bitrate in kbit/s.
        bitrate_kbps: u32,
        /// Output channel count (2 downmixes 5.1 to stereo).
        channels: u8,
    },
}

/// A named transcode profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The name clients pass as `?profile=`; `[a-z0-9_-]{1,32}`.
    pub name: String,
    /// Video handling.
    pub video: VideoMode,
    /// Audio handling.
    pub audio: AudioMode,
}

impl Profile {
    /// `copy`: no transcode (the plain proxy, no ffmpeg at all). True exactly when both
    /// video and audio are copied.
    pub fn is_passthrough(&self) -> bool {
        self.video == VideoMode::Copy && self.audio == AudioMode::Copy
    }

    /// Needs a video encoder (takes an encoder slot); `aac` only needs the CPU.
    pub fn encodes_video(&self) -> bool {
        self.video != VideoMode::Copy
    }
}

/// The built-ins: copy (copy/copy), aac (copy video, AAC-LC stereo 192k), h264 (H.264
/// max 720p at 3000 kbps, AAC stereo 192k).
///
/// Why these values: 720p at 3 Mbit/s is what mobile and web players decode everywhere
/// and what a typical home upload sustains, while broadcast SD (576 lines) is kept at its
/// own height; AAC-LC stereo 192k is what browsers and TVs that cannot play MP2/AC3 do
/// play. Order: copy, aac, h264.
pub fn builtin() -> Vec<Profile> {
    let aac = AudioMode::Aac {
        bitrate_kbps: AAC_DEFAULT.0,
        channels: AAC_DEFAULT.1,
    };
    vec![
        Profile {
            name: "copy".to_owned(),
            video: VideoMode::Copy,
            audio: AudioMode::Copy,
        },
        Profile {
            name: "aac".to_owned(),
            video: VideoMode::Copy,
            audio: aac.clone(),
        },
        Profile {
            name: "h264".to_owned(),
            video: VideoMode::H264 {
                max_height: H264_DEFAULT.0,
                bitrate_kbps: H264_DEFAULT.1,
            },
            audio: aac,
        },
    ]
}

/// Why a profile setting value was refused; each message is one line naming the profile
/// and, where there is one, the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The whole value is longer than [`MAX_TEXT_LEN`].
    #[error("transcode profiles: setting is {len} bytes, more than {max}")]
    TooLong {
        /// Length of the value in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_PROFILES`] profiles.
    #[error("transcode profiles: more than {max} profiles")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// A profile without the `name:` prefix.
    #[error("transcode profile {profile}: expected name:key=value,...")]
    MissingColon {
        /// The start of the offending entry.
        profile: Shown,
    },
    /// A name outside `[a-z0-9_-]{1,32}`.
    #[error("transcode profile {profile}: name must be 1-32 of a-z 0-9 _ -")]
    BadName {
        /// The offending name.
        profile: Shown,
    },
    /// The same name twice in one value.
    #[error("transcode profile {profile}: defined twice")]
    Duplicate {
        /// The repeated name.
        profile: String,
    },
    /// An attempt to replace the built-in `copy`.
    #[error("transcode profile copy: built in and cannot be replaced")]
    CopyOverride,
    /// A key this parser does not know.
    #[error(
        "transcode profile {profile}: unknown key {key} (known: video, height, bitrate, audio, audio_bitrate, channels)"
    )]
    UnknownKey {
        /// The profile name.
        profile: String,
        /// The unknown key.
        key: Shown,
    },
    /// The same key twice in one profile.
    #[error("transcode profile {profile}: key {key} given twice")]
    DuplicateKey {
        /// The profile name.
        profile: String,
        /// The repeated key.
        key: &'static str,
    },
    /// `key` without `=value`.
    #[error("transcode profile {profile}: key {key} needs =value")]
    MissingValue {
        /// The profile name.
        profile: String,
        /// The key.
        key: &'static str,
    },
    /// A value that is not one of the allowed words or not a number.
    #[error("transcode profile {profile}: {key}={value} is not {expected}")]
    BadValue {
        /// The profile name.
        profile: String,
        /// The key.
        key: &'static str,
        /// The offending value.
        value: Shown,
        /// What was expected, e.g. "copy, h264 or hevc".
        expected: &'static str,
    },
    /// A bitrate with a missing or unknown unit.
    #[error("transcode profile {profile}: {key}={value} needs a unit k or M (e.g. 3000k, 1.5M)")]
    BadUnit {
        /// The profile name.
        profile: String,
        /// The key.
        key: &'static str,
        /// The offending value.
        value: Shown,
    },
    /// A number outside its range.
    #[error("transcode profile {profile}: {key}={value} is out of range {min}..={max}{unit}")]
    OutOfRange {
        /// The profile name.
        profile: String,
        /// The key.
        key: &'static str,
        /// The offending value.
        value: Shown,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
        /// Unit of min/max ("k" for bitrates, "" otherwise).
        unit: &'static str,
    },
    /// A key that only applies to another mode (e.g. `height` with `video=copy`).
    #[error("transcode profile {profile}: key {key} needs {needs}")]
    NotApplicable {
        /// The profile name.
        profile: String,
        /// The key.
        key: &'static str,
        /// The mode the key needs.
        needs: &'static str,
    },
}

/// A piece of user input made safe for a one-line message: escaped (no control
/// characters or newlines) and shortened to at most 40 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown(String);

impl Shown {
    fn new(s: &str) -> Shown {
        const MAX_CHARS: usize = 40;
        let mut out: String = s.chars().take(MAX_CHARS).collect();
        if s.chars().nth(MAX_CHARS).is_some() {
            out.push('…');
        }
        Shown(format!("{out:?}"))
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keys a user profile may set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Video,
    Height,
    Bitrate,
    Audio,
    AudioBitrate,
    Channels,
}

impl Key {
    const ALL: [Key; 6] = [
        Key::Video,
        Key::Height,
        Key::Bitrate,
        Key::Audio,
        Key::AudioBitrate,
        Key::Channels,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Key::Video => "video",
            Key::Height => "height",
            Key::Bitrate => "bitrate",
            Key::Audio => "audio",
            Key::AudioBitrate => "audio_bitrate",
            Key::Channels => "channels",
        }
    }

    fn index(self) -> usize {
        match self {
            Key::Video => 0,
            Key::Height => 1,
            Key::Bitrate => 2,
            Key::Audio => 3,
            Key::AudioBitrate => 4,
            Key::Channels => 5,
        }
    }
}

/// User profiles from one setting value, e.g.
/// `mobile:video=h264,height=480,bitrate=1200k,audio=aac,audio_bitrate=128k;hevc4k:video=hevc,height=2160,bitrate=12M,audio=copy`.
///
/// Syntax: `;` between profiles (empty entries and surrounding whitespace are ignored),
/// `name:` then comma-separated `key=value`. Keys: `video=copy|h264|hevc` (default
/// copy), `height=N` or `Np` (even, 144..=4320; default 720 for h264, 1080 for hevc),
/// `bitrate=` with unit `k` or `M` (`3000k`, `1.5M`; 100k..=100M; default 3000k/4000k),
/// `audio=copy|aac` (default aac), `audio_bitrate=` (`k`/`M`, 32k..=512k, default 192k),
/// `channels=1..=8` (default 2). `height`/`bitrate` need an encoded video,
/// `audio_bitrate`/`channels` need `audio=aac`. Names are `[a-z0-9_-]{1,32}`, unique,
/// and not `copy`. Guarantees: at most [`MAX_PROFILES`] profiles out, in input order;
/// never panics.
pub fn parse_profiles(text: &str) -> Result<Vec<Profile>, ProfileError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(ProfileError::TooLong {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    let mut out: Vec<Profile> = Vec::new();
    for entry in text.split(';') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if out.len() == MAX_PROFILES {
            return Err(ProfileError::TooMany { max: MAX_PROFILES });
        }
        let profile = parse_one(entry)?;
        if out.iter().any(|p| p.name == profile.name) {
            return Err(ProfileError::Duplicate {
                profile: profile.name,
            });
        }
        out.push(profile);
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn parse_one(entry: &str) -> Result<Profile, ProfileError> {
    let Some((name, rest)) = entry.split_once(':') else {
        return Err(ProfileError::MissingColon {
            profile: Shown::new(entry),
        });
    };
    let name = name.trim();
    if !valid_name(name) {
        return Err(ProfileError::BadName {
            profile: Shown::new(name),
        });
    }
    if name == "copy" {
        return Err(ProfileError::CopyOverride);
    }
    let profile = name.to_owned();

    let mut values: [Option<&str>; 6] = [None; 6];
    for item in rest.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (raw_key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        let Some(key) = Key::ALL.iter().copied().find(|k| k.as_str() == raw_key) else {
            return Err(ProfileError::UnknownKey {
                profile,
                key: Shown::new(raw_key),
            });
        };
        let Some(value) = value else {
            return Err(ProfileError::MissingValue {
                profile,
                key: key.as_str(),
            });
        };
        let slot = values.get_mut(key.index());
        match slot {
            Some(Some(_)) => {
                return Err(ProfileError::DuplicateKey {
                    profile,
                    key: key.as_str(),
                });
            }
            Some(slot) => *slot = Some(value),
            None => {}
        }
    }
    let get = |k: Key| values.get(k.index()).copied().flatten();

    let video = match get(Key::Video) {
        None | Some("copy") => {
            for k in [Key::Height, Key::Bitrate] {
                if get(k).is_some() {
                    return Err(ProfileError::NotApplicable {
                        profile,
                        key: k.as_str(),
                        needs: "video=h264 or video=hevc",
                    });
                }
            }
            VideoMode::Copy
        }
        Some(codec @ ("h264" | "hevc")) => {
            let (def_h, def_b) = if codec == "h264" {
                H264_DEFAULT
            } else {
                HEVC_DEFAULT
            };
            let max_height = match get(Key::Height) {
                Some(v) => parse_height(&profile, v)?,
                None => def_h,
            };
            let bitrate_kbps = match get(Key::Bitrate) {
                Some(v) => parse_kbps(&profile, Key::Bitrate, v, VIDEO_KBPS_RANGE)?,
                None => def_b,
            };
            if codec == "h264" {
                VideoMode::H264 {
                    max_height,
                    bitrate_kbps,
                }
            } else {
                VideoMode::Hevc {
                    max_height,
                    bitrate_kbps,
                }
            }
        }
        Some(other) => {
            return Err(ProfileError::BadValue {
                profile,
                key: Key::Video.as_str(),
                value: Shown::new(other),
                expected: "copy, h264 or hevc",
            });
        }
    };

    let audio = match get(Key::Audio) {
        Some("copy") => {
            for k in [Key::AudioBitrate, Key::Channels] {
                if get(k).is_some() {
                    return Err(ProfileError::NotApplicable {
                        profile,
                        key: k.as_str(),
                        needs: "audio=aac",
                    });
                }
            }
            AudioMode::Copy
        }
        None | Some("aac") => {
            let bitrate_kbps = match get(Key::AudioBitrate) {
                Some(v) => parse_kbps(&profile, Key::AudioBitrate, v, AUDIO_KBPS_RANGE)?,
                None => AAC_DEFAULT.0,
            };
            let channels = match get(Key::Channels) {
                Some(v) => parse_channels(&profile, v)?,
                None => AAC_DEFAULT.1,
            };
            AudioMode::Aac {
                bitrate_kbps,
                channels,
            }
        }
        Some(other) => {
            return Err(ProfileError::BadValue {
                profile,
                key: Key::Audio.as_str(),
                value: Shown::new(other),
                expected: "copy or aac",
            });
        }
    };

    Ok(Profile {
        name: profile,
        video,
        audio,
    })
}

/// A plain decimal `u32` of at most 9 digits (so it never overflows).
fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_height(profile: &str, value: &str) -> Result<u32, ProfileError> {
    let key = Key::Height.as_str();
    let digits = value.strip_suffix('p').unwrap_or(value);
    let Some(h) = parse_digits(digits) else {
        return Err(ProfileError::BadValue {
            profile: profile.to_owned(),
            key,
            value: Shown::new(value),
            expected: "a number of lines like 720 or 720p",
        });
    };
    if h < HEIGHT_RANGE.0 || h > HEIGHT_RANGE.1 {
        return Err(ProfileError::OutOfRange {
            profile: profile.to_owned(),
            key,
            value: Shown::new(value),
            min: HEIGHT_RANGE.0,
            max: HEIGHT_RANGE.1,
            unit: "",
        });
    }
    if h % 2 != 0 {
        return Err(ProfileError::BadValue {
            profile: profile.to_owned(),
            key,
            value: Shown::new(value),
            expected: "an even number of lines",
        });
    }
    Ok(h)
}

fn parse_channels(profile: &str, value: &str) -> Result<u8, ProfileError> {
    let key = Key::Channels.as_str();
    let Some(n) = parse_digits(value) else {
        return Err(ProfileError::BadValue {
            profile: profile.to_owned(),
            key,
            value: Shown::new(value),
            expected: "a channel count",
        });
    };
    match u8::try_from(n) {
        Ok(c) if n >= CHANNELS_RANGE.0 && n <= CHANNELS_RANGE.1 => Ok(c),
        _ => Err(ProfileError::OutOfRange {
            profile: profile.to_owned(),
            key,
            value: Shown::new(value),
            min: CHANNELS_RANGE.0,
            max: CHANNELS_RANGE.1,
            unit: "",
        }),
    }
}

/// A bitrate in kbit/s from `N k`/`N K` or `N M`/`N.F M` (up to three decimals with M).
/// A bare number is refused: ffmpeg reads it as bit/s, people mean kbit/s, so neither
/// guess is safe.
fn parse_kbps(
    profile: &str,
    key: Key,
    value: &str,
    range: (u32, u32),
) -> Result<u32, ProfileError> {
    let bad_number = || ProfileError::BadValue {
        profile: profile.to_owned(),
        key: key.as_str(),
        value: Shown::new(value),
        expected: "a bitrate like 3000k or 1.5M",
    };
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at_checked(split).ok_or_else(bad_number)?;
    if number.is_empty() {
        return Err(bad_number());
    }
    let kbps = match unit {
        "k" | "K" => parse_digits(number).ok_or_else(bad_number)?,
        "M" => {
            let (int, frac) = number.split_once('.').unwrap_or((number, ""));
            if int.is_empty() || frac.len() > 3 || (number.contains('.') && frac.is_empty()) {
                return Err(bad_number());
            }
            let int = parse_digits(int).ok_or_else(bad_number)?;
            let frac = if frac.is_empty() {
                0
            } else {
                let digits = parse_digits(frac).ok_or_else(bad_number)?;
                // Scale "5" → 500, "25" → 250, "125" → 125 (thousandths of a megabit).
                digits * 10u32.pow(3 - frac.len() as u32)
            };
            int.checked_mul(1000)
                .and_then(|k| k.checked_add(frac))
                .ok_or_else(bad_number)?
        }
        _ => {
            if number.contains('.') && unit.is_empty() {
                return Err(bad_number());
            }
            return Err(ProfileError::BadUnit {
                profile: profile.to_owned(),
                key: key.as_str(),
                value: Shown::new(value),
            });
        }
    };
    if kbps < range.0 || kbps > range.1 {
        return Err(ProfileError::OutOfRange {
            profile: profile.to_owned(),
            key: key.as_str(),
            value: Shown::new(value),
            min: range.0,
            max: range.1,
            unit: "k",
        });
    }
    Ok(kbps)
}

/// Built-ins overlaid with user profiles; lookup by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    /// Built-ins first (in [`builtin`] order, replaced in place), then new user names in
    /// their given order.
    list: Vec<Profile>,
}

impl Profiles {
    /// The built-ins overlaid with `user`: a user profile replaces the built-in of the
    /// same name in place, except `copy`, which is never replaced (such an entry is
    /// ignored). When `user` repeats a name the later one wins. Order: built-ins, then
    /// new names in order.
    pub fn new(user: Vec<Profile>) -> Profiles {
        let mut list = builtin();
        for profile in user {
            if profile.name == "copy" {
                continue;
            }
            match list.iter_mut().find(|p| p.name == profile.name) {
                Some(slot) => *slot = profile,
                None => list.push(profile),
            }
        }
        Profiles { list }
    }

    /// The profile called exactly `name` (names are case-sensitive lower case).
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.list.iter().find(|p| p.name == name)
    }

    /// All names, built-ins first; each name once.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|p| p.name.as_str()).collect()
    }
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles::new(Vec::new())
    }
}

/// Jellyfin/Emby/Plex style `?transcode=` values mapped to a profile name, or None to
/// ignore the parameter (then `?profile=` or the plain proxy applies).
///
/// Case-insensitive, surrounding whitespace ignored. The table follows what HDHomeRun
/// EXTEND tuners accept (`transcode=heavy|mobile|internet720|internet540|internet480|
/// internet360|internet240|none`), which is what those servers send to a tuner they
/// believe is an EXTEND:
///
/// | value | profile | why |
/// |---|---|---|
/// | `none`, `native`, `copy` | `copy` | the client plays the broadcast as is |
/// | `heavy` | `h264` | EXTEND: AVC at source resolution; our h264 caps at 720p, which keeps SD as is |
/// | `mobile` | `h264` | EXTEND: AVC up to 720p |
/// | `internet` + digits (`internet720` … `internet240`) | `h264` | lower-bitrate AVC; define a user profile `h264` to tune it |
/// | `aac` | `aac` | audio-only transcode |
///
/// Anything else is None.
pub fn from_transcode_param(value: &str) -> Option<&'static str> {
    let v = value.trim();
    let is = |word: &str| v.eq_ignore_ascii_case(word);
    if is("none") || is("native") || is("copy") {
        return Some("copy");
    }
    if is("heavy") || is("mobile") {
        return Some("h264");
    }
    if is("aac") {
        return Some("aac");
    }
    let lower = v.to_ascii_lowercase();
    if let Some(res) = lower.strip_prefix("internet") {
        if !res.is_empty() && res.len() <= 4 && res.bytes().all(|b| b.is_ascii_digit()) {
            return Some("h264");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h264(h: u32, b: u32) -> VideoMode {
        VideoMode::H264 {
            max_height: h,
            bitrate_kbps: b,
        }
    }

    fn aac(b: u32, c: u8) -> AudioMode {
        AudioMode::Aac {
            bitrate_kbps: b,
            channels: c,
        }
    }

    #[test]
    fn builtins_are_as_documented() {
        let b = builtin();
        let names: Vec<&str> = b.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["copy", "aac", "h264"]);
        assert!(b[0].is_passthrough() && !b[0].encodes_video());
        assert!(!b[1].is_passthrough() && !b[1].encodes_video());
        assert_eq!(b[1].audio, aac(192, 2));
        assert!(!b[2].is_passthrough() && b[2].encodes_video());
        assert_eq!(b[2].video, h264(720, 3000));
        assert_eq!(b[2].audio, aac(192, 2));
    }

    #[test]
    fn parses_the_documented_example() {
        let got = parse_profiles(
            "mobile:video=h264,height=480,bitrate=1200k,audio=aac,audio_bitrate=128k;hevc4k:video=hevc,height=2160,bitrate=12M,audio=copy",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Profile {
                    name: "mobile".into(),
                    video: h264(480, 1200),
                    audio: aac(128, 2),
                },
                Profile {
                    name: "hevc4k".into(),
                    video: VideoMode::Hevc {
                        max_height: 2160,
                        bitrate_kbps: 12_000
                    },
                    audio: AudioMode::Copy,
                },
            ]
        );
    }

    #[test]
    fn parses_defaults_whitespace_and_units() {
        let got = parse_profiles(
            " ; radio: ;\n h264 : video = h264 , height=576p, bitrate=1.5M ; x_1-y:video=hevc,channels=6,audio_bitrate=0.384M;",
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name, "radio");
        assert_eq!(got[0].video, VideoMode::Copy);
        assert_eq!(got[0].audio, aac(192, 2));
        assert_eq!(got[1].video, h264(576, 1500));
        assert_eq!(
            got[2].video,
            VideoMode::Hevc {
                max_height: 1080,
                bitrate_kbps: 4000
            }
        );
        assert_eq!(got[2].audio, aac(384, 6));
        assert_eq!(parse_profiles("").unwrap(), vec![]);
        assert_eq!(
            parse_profiles("a:video=h264,bitrate=2500K").unwrap()[0].video,
            h264(720, 2500)
        );
        assert_eq!(
            parse_profiles("a:video=h264").unwrap()[0].video,
            h264(720, 3000)
        );
    }

    fn err(text: &str) -> String {
        match parse_profiles(text) {
            Ok(p) => panic!("{text:?} parsed: {p:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line: {msg}");
                msg
            }
        }
    }

    #[test]
    fn every_error_names_profile_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "m:video=h264,size=3",
                "transcode profile m: unknown key \"size\" (known: video, height, bitrate, audio, audio_bitrate, channels)",
            ),
            (
                "m:video=h264,height=abc",
                "transcode profile m: height=\"abc\" is not a number of lines like 720 or 720p",
            ),
            (
                "m:video=h264,height=481",
                "transcode profile m: height=\"481\" is not an even number of lines",
            ),
            (
                "m:video=h264,height=8000",
                "transcode profile m: height=\"8000\" is out of range 144..=4320",
            ),
            (
                "m:video=h264,bitrate=3000",
                "transcode profile m: bitrate=\"3000\" needs a unit k or M (e.g. 3000k, 1.5M)",
            ),
            (
                "m:video=h264,bitrate=3000kb",
                "transcode profile m: bitrate=\"3000kb\" needs a unit k or M (e.g. 3000k, 1.5M)",
            ),
            (
                "m:video=h264,bitrate=3G",
                "transcode profile m: bitrate=\"3G\" needs a unit k or M (e.g. 3000k, 1.5M)",
            ),
            (
                "m:video=h264,bitrate=1.5k",
                "transcode profile m: bitrate=\"1.5k\" is not a bitrate like 3000k or 1.5M",
            ),
            (
                "m:video=h264,bitrate=1.2345M",
                "transcode profile m: bitrate=\"1.2345M\" is not a bitrate like 3000k or 1.5M",
            ),
            (
                "m:video=h264,bitrate=k",
                "transcode profile m: bitrate=\"k\" is not a bitrate like 3000k or 1.5M",
            ),
            (
                "m:video=h264,bitrate=1.5",
                "transcode profile m: bitrate=\"1.5\" is not a bitrate like 3000k or 1.5M",
            ),
            (
                "m:video=h264,bitrate=99999999999k",
                "transcode profile m: bitrate=\"99999999999k\" is not a bitrate like 3000k or 1.5M",
            ),
            (
                "m:video=h264,bitrate=50k",
                "transcode profile m: bitrate=\"50k\" is out of range 100..=100000k",
            ),
            (
                "m:audio_bitrate=1M",
                "transcode profile m: audio_bitrate=\"1M\" is out of range 32..=512k",
            ),
            (
                "m:channels=9",
                "transcode profile m: channels=\"9\" is out of range 1..=8",
            ),
            (
                "m:channels=two",
                "transcode profile m: channels=\"two\" is not a channel count",
            ),
            (
                "m:video=vp9",
                "transcode profile m: video=\"vp9\" is not copy, h264 or hevc",
            ),
            (
                "m:audio=mp3",
                "transcode profile m: audio=\"mp3\" is not copy or aac",
            ),
            ("m:video", "transcode profile m: key video needs =value"),
            (
                "m:video=h264,video=hevc",
                "transcode profile m: key video given twice",
            ),
            (
                "m:height=480",
                "transcode profile m: key height needs video=h264 or video=hevc",
            ),
            (
                "m:video=copy,bitrate=1M",
                "transcode profile m: key bitrate needs video=h264 or video=hevc",
            ),
            (
                "m:audio=copy,channels=2",
                "transcode profile m: key channels needs audio=aac",
            ),
            (
                "Mobile:video=h264",
                "transcode profile \"Mobile\": name must be 1-32 of a-z 0-9 _ -",
            ),
            (
                ":video=h264",
                "transcode profile \"\": name must be 1-32 of a-z 0-9 _ -",
            ),
            (
                "abcdefghijabcdefghijabcdefghijabc:video=h264",
                "transcode profile \"abcdefghijabcdefghijabcdefghijabc\": name must be 1-32 of a-z 0-9 _ -",
            ),
            (
                "mobile",
                "transcode profile \"mobile\": expected name:key=value,...",
            ),
            (
                "a:video=h264;a:video=hevc",
                "transcode profile a: defined twice",
            ),
            (
                "copy:video=h264",
                "transcode profile copy: built in and cannot be replaced",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), *want, "input {text:?}");
        }
    }

    #[test]
    fn bounds_on_count_and_length() {
        let many: Vec<String> = (0..=MAX_PROFILES).map(|i| format!("p{i}:")).collect();
        assert_eq!(
            err(&many.join(";")),
            "transcode profiles: more than 32 profiles"
        );
        assert_eq!(
            parse_profiles(&many[..MAX_PROFILES].join(";"))
                .unwrap()
                .len(),
            32
        );
        let long = format!("a:{}", ",".repeat(MAX_TEXT_LEN));
        assert_eq!(
            err(&long),
            "transcode profiles: setting is 4098 bytes, more than 4096"
        );
        // Long or control-laden values are shortened and escaped in messages.
        let msg = err(&format!("m:video={}\n", "x\u{7}".repeat(50)));
        assert!(msg.contains('…') && msg.contains("\\u{7}"), "{msg}");
    }

    #[test]
    fn overlay_replaces_builtins_but_never_copy() {
        let user =
            parse_profiles("h264:video=h264,height=480,bitrate=1M;mobile:video=hevc").unwrap();
        let mut user2 = user.clone();
        user2.push(Profile {
            name: "copy".into(),
            video: h264(480, 1000),
            audio: AudioMode::Copy,
        });
        let p = Profiles::new(user2);
        assert_eq!(p.names(), ["copy", "aac", "h264", "mobile"]);
        assert!(p.get("copy").unwrap().is_passthrough());
        assert_eq!(p.get("h264").unwrap().video, h264(480, 1000));
        assert!(p.get("mobile").unwrap().encodes_video());
        assert!(p.get("nope").is_none());
        assert_eq!(Profiles::default().names(), ["copy", "aac", "h264"]);
    }

    #[test]
    fn transcode_param_table() {
        for (v, want) in [
            ("none", Some("copy")),
            ("Native", Some("copy")),
            ("copy", Some("copy")),
            ("heavy", Some("h264")),
            (" mobile ", Some("h264")),
            ("internet720", Some("h264")),
            ("internet540", Some("h264")),
            ("internet480", Some("h264")),
            ("internet360", Some("h264")),
            ("INTERNET240", Some("h264")),
            ("aac", Some("aac")),
            ("internet", None),
            ("internetx", None),
            ("h265", None),
            ("", None),
        ] {
            assert_eq!(from_transcode_param(v), want, "{v:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_profiles(&s);
            let _ = from_transcode_param(&s);
        }

        #[test]
        fn never_panics_on_near_miss(s in "([a-z_]{0,6}(:|=|,|;)?[0-9a-zM.kp]{0,6}(,|;|=)?){0,12}") {
            if let Ok(list) = parse_profiles(&s) {
                prop_assert!(list.len() <= MAX_PROFILES);
                for p in &list {
                    prop_assert!(valid_name(&p.name) && p.name != "copy");
                }
            }
        }
    }
}
