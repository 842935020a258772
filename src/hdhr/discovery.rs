//! The SiliconDust HDHomeRun UDP discovery codec (port 65001): decodes discover requests
//! and encodes discover replies, as libhdhomerun's `hdhomerun_pkt.c` and
//! `hdhomerun_discover.c` frame them.
//!
//! Rules:
//! - Pure functions over byte slices: no sockets, no I/O, no settings. The caller owns the
//!   UDP socket and decides whether to answer with [`DiscoverRequest::wants`].
//! - A frame is `type: u16 BE`, `payload length: u16 BE`, payload, `CRC32 (IEEE, zlib) LE`
//!   of everything before it; the payload is tag/length/value items whose length is one
//!   byte below 128, else two bytes (low 7 bits with the high bit set, then `len >> 7`).
//! - Decoding is strict where libhdhomerun is lenient about bytes no libhdhomerun writer
//!   produces (trailing bytes after the CRC, a dangling partial item): one datagram is
//!   exactly one frame, or it is rejected with a [`DecodeError`] and never answered.
//! - Nothing is bigger than [`MAX_PACKET`]; nothing panics on any input; encoding either
//!   appends a whole frame or leaves the output untouched.

use thiserror::Error;

/// Device type of a tuner (`HDHOMERUN_DEVICE_TYPE_TUNER`): what we are.
pub const DEVICE_TYPE_TUNER: u32 = 1;
/// Device type a request uses to ask for devices of any type.
pub const DEVICE_TYPE_WILDCARD: u32 = 0xFFFF_FFFF;
/// Device id a request uses to ask for every device; never a real device's id.
pub const DEVICE_ID_WILDCARD: u32 = 0xFFFF_FFFF;
/// Largest datagram we accept or produce: libhdhomerun's `HDHOMERUN_MAX_PACKET_SIZE`, a
/// frame that fits an Ethernet MTU without fragmenting.
pub const MAX_PACKET: usize = 1460;

/// Longest base URL that clients using libhdhomerun's legacy discover API
/// (`hdhomerun_discover_find_devices_custom_v2`/`_v3`, used by e.g. Debian's
/// `hdhomerun_config` 20220303) keep: a longer one is dropped whole and they fall back
/// to `http://<sender ip>:80`. [`encode_reply`] still sends longer ones (newer clients
/// read them); the caller may warn.
pub const LEGACY_MAX_BASE_URL: usize = 28;
/// Longest lineup URL the legacy discover API keeps (see [`LEGACY_MAX_BASE_URL`]).
pub const LEGACY_MAX_LINEUP_URL: usize = 127;
/// Longest device auth string the legacy discover API keeps (see [`LEGACY_MAX_BASE_URL`]).
pub const LEGACY_MAX_DEVICE_AUTH: usize = 24;

const TYPE_DISCOVER_REQ: u16 = 0x0002;
const TYPE_DISCOVER_RPY: u16 = 0x0003;

const TAG_DEVICE_TYPE: u8 = 0x01;
const TAG_DEVICE_ID: u8 = 0x02;
const TAG_TUNER_COUNT: u8 = 0x10;
const TAG_LINEUP_URL: u8 = 0x27;
const TAG_BASE_URL: u8 = 0x2A;
const TAG_DEVICE_AUTH_STR: u8 = 0x2B;
/// Several device types in one item (4 bytes each); libhdhomerun since 2022 sends it when
/// an application asks for more than one type at once (e.g. tuners and storage).
const TAG_MULTI_TYPE: u8 = 0x2D;

/// Frame header: packet type and payload length.
const HEADER_LEN: usize = 4;
const CRC_LEN: usize = 4;
const MIN_PACKET: usize = HEADER_LEN + CRC_LEN;
const MAX_PAYLOAD: usize = MAX_PACKET - MIN_PACKET;
/// Largest length the two-byte item length can carry (7 + 8 bits).
const MAX_TLV_VALUE: usize = 0x7FFF;

/// What a decoded discover request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverRequest {
    /// The device type asked for. A request naming several types (repeated device-type
    /// items or one multi-type item) is folded into one: [`DEVICE_TYPE_WILDCARD`] if any
    /// is the wildcard, else [`DEVICE_TYPE_TUNER`] if any is a tuner, else the first.
    pub device_type: u32,
    /// The device id asked for; [`DEVICE_ID_WILDCARD`] when the request named none.
    pub device_id: u32,
}

impl DiscoverRequest {
    /// True when a tuner with `our_id` must answer: device type tuner or wildcard, and
    /// device id wildcard or `our_id`. Nothing else is answered.
    pub fn wants(&self, our_id: u32) -> bool {
        let type_matches =
            self.device_type == DEVICE_TYPE_TUNER || self.device_type == DEVICE_TYPE_WILDCARD;
        let id_matches = self.device_id == DEVICE_ID_WILDCARD || self.device_id == our_id;
        type_matches && id_matches
    }
}

/// Why a datagram is not a discover request we can answer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than an empty frame (header and CRC, 8 bytes).
    #[error("discover packet too short: {len} bytes, need at least 8")]
    TooShort {
        /// Datagram length in bytes.
        len: usize,
    },
    /// Longer than [`MAX_PACKET`].
    #[error("discover packet too long: {len} bytes, at most 1460")]
    TooLong {
        /// Datagram length in bytes.
        len: usize,
    },
    /// The header's payload length does not account for the datagram exactly.
    #[error("discover packet payload length {declared} does not match the {actual} bytes received")]
    LengthMismatch {
        /// Payload length from the header.
        declared: usize,
        /// Payload bytes actually present between header and CRC.
        actual: usize,
    },
    /// The trailing CRC does not match the frame.
    #[error("discover packet CRC {found:#010x} does not match computed {computed:#010x}")]
    BadCrc {
        /// CRC computed over header and payload.
        computed: u32,
        /// CRC stored in the packet.
        found: u32,
    },
    /// A valid frame, but not a discover request.
    #[error("packet type {0:#06x} is not a discover request (0x0002)")]
    WrongType(u16),
    /// An item's tag or length runs past the end of the payload.
    #[error("discover packet item at payload offset {offset} is truncated")]
    TruncatedTlv {
        /// Offset of the item's tag within the payload.
        offset: usize,
    },
    /// A device-type, multi-type or device-id item has a length its value cannot have.
    #[error("discover packet item {tag:#04x} has invalid length {len}")]
    BadTagLength {
        /// The item's tag.
        tag: u8,
        /// The item's value length.
        len: usize,
    },
    /// No device-type (or multi-type) item; libhdhomerun always sends one.
    #[error("discover request names no device type")]
    MissingDeviceType,
    /// Two device-id items, so it is ambiguous which device is asked for.
    #[error("discover request names more than one device id")]
    DuplicateDeviceId,
}

impl DecodeError {
    /// A short, stable snake_case name for the error, fit for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::TooLong { .. } => "too_long",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::BadCrc { .. } => "bad_crc",
            DecodeError::WrongType(_) => "wrong_type",
            DecodeError::TruncatedTlv { .. } => "truncated_tlv",
            DecodeError::BadTagLength { .. } => "bad_tag_length",
            DecodeError::MissingDeviceType => "missing_device_type",
            DecodeError::DuplicateDeviceId => "duplicate_device_id",
        }
    }
}

/// Why a reply could not be encoded; the output buffer is left as it was.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The device id fails the HDHomeRun checksum or is the wildcard; clients would
    /// refuse to address the device by it.
    #[error("device id {0:08X} is not a valid HDHomeRun device id")]
    InvalidDeviceId(u32),
    /// A string contains a NUL byte, which clients read as its end.
    #[error("{field} contains a NUL byte")]
    ContainsNul {
        /// Which reply field.
        field: &'static str,
    },
    /// A string cannot fit a reply frame even on its own.
    #[error("{field} is {len} bytes, at most {max} fit a discover reply")]
    StringTooLong {
        /// Which reply field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most that fits next to the fixed items.
        max: usize,
    },
    /// The strings fit one by one but not together.
    #[error("discover reply would be {len} bytes, at most {max}")]
    PacketTooLarge {
        /// Size of the frame the reply would need.
        len: usize,
        /// [`MAX_PACKET`].
        max: usize,
    },
}

/// Why a text is not a usable device id.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeviceIdError {
    /// Not exactly 8 bytes long.
    #[error("device id must be exactly 8 hex digits, got {len} bytes")]
    WrongLength {
        /// Length of the text in bytes.
        len: usize,
    },
    /// Contains something other than `0-9`, `a-f`, `A-F`.
    #[error("device id must be 8 hex digits, found a non-hex character")]
    NotHex,
    /// Well-formed but fails the HDHomeRun checksum (a typo, as libhdhomerun sees it).
    #[error("device id {0:08X} fails the HDHomeRun checksum")]
    BadChecksum(u32),
    /// `FFFFFFFF` passes the checksum but means "every device".
    #[error("device id FFFFFFFF is the wildcard, not a device id")]
    Wildcard,
}

/// Decodes one datagram. Unknown items are skipped; a missing device-id item means
/// wildcard (libhdhomerun since 2022 leaves it out when asking for every device); a
/// missing device-type item is an error, because every libhdhomerun version sends one
/// (it refuses to send a request without a type).
pub fn decode_request(packet: &[u8]) -> Result<DiscoverRequest, DecodeError> {
    let len = packet.len();
    if len > MAX_PACKET {
        return Err(DecodeError::TooLong { len });
    }
    let too_short = DecodeError::TooShort { len };
    let (head, after_head) = packet.split_first_chunk::<HEADER_LEN>().ok_or(too_short)?;
    let (frame, crc_bytes) = packet
        .split_last_chunk::<CRC_LEN>()
        .ok_or(DecodeError::TooShort { len })?;
    let (payload, _) = after_head
        .split_last_chunk::<CRC_LEN>()
        .ok_or(DecodeError::TooShort { len })?;

    let [t0, t1, l0, l1] = *head;
    let packet_type = u16::from_be_bytes([t0, t1]);
    let declared = usize::from(u16::from_be_bytes([l0, l1]));
    if declared != payload.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let computed = crc32(frame);
    let found = u32::from_le_bytes(*crc_bytes);
    if computed != found {
        return Err(DecodeError::BadCrc { computed, found });
    }
    if packet_type != TYPE_DISCOVER_REQ {
        return Err(DecodeError::WrongType(packet_type));
    }

    let mut types = TypeFold::default();
    let mut device_id = None;
    let mut rest = payload;
    while !rest.is_empty() {
        let offset = payload.len() - rest.len();
        let (tag, value, next) = split_tlv(rest).ok_or(DecodeError::TruncatedTlv { offset })?;
        let bad_len = DecodeError::BadTagLength {
            tag,
            len: value.len(),
        };
        match tag {
            TAG_DEVICE_TYPE => types.add(be_u32(value).ok_or(bad_len)?),
            TAG_MULTI_TYPE => {
                if value.is_empty() || value.len() % 4 != 0 {
                    return Err(bad_len);
                }
                for chunk in value.chunks_exact(4) {
                    types.add(be_u32(chunk).ok_or(DecodeError::BadTagLength {
                        tag,
                        len: value.len(),
                    })?);
                }
            }
            TAG_DEVICE_ID => {
                let id = be_u32(value).ok_or(bad_len)?;
                if device_id.replace(id).is_some() {
                    return Err(DecodeError::DuplicateDeviceId);
                }
            }
            _ => {}
        }
        rest = next;
    }

    Ok(DiscoverRequest {
        device_type: types.result().ok_or(DecodeError::MissingDeviceType)?,
        device_id: device_id.unwrap_or(DEVICE_ID_WILDCARD),
    })
}

/// Folds every device type a request names into the one that decides whether we answer.
#[derive(Default)]
struct TypeFold {
    first: Option<u32>,
    wildcard: bool,
    tuner: bool,
}

impl TypeFold {
    fn add(&mut self, device_type: u32) {
        self.first.get_or_insert(device_type);
        self.wildcard |= device_type == DEVICE_TYPE_WILDCARD;
        self.tuner |= device_type == DEVICE_TYPE_TUNER;
    }

    fn result(&self) -> Option<u32> {
        if self.wildcard {
            Some(DEVICE_TYPE_WILDCARD)
        } else if self.tuner {
            Some(DEVICE_TYPE_TUNER)
        } else {
            self.first
        }
    }
}

/// Splits the first item off `buf`: `(tag, value, rest)`, or `None` if it is truncated.
fn split_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let (&second, rest) = rest.split_first()?;
        (usize::from(first & 0x7F) | usize::from(second) << 7, rest)
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

/// A 4-byte value as a big-endian u32; `None` for any other length.
fn be_u32(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

/// What a discover reply announces about this tuner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverReply<'a> {
    /// Our device id; must pass [`device_id_is_valid`] and not be the wildcard.
    pub device_id: u32,
    /// Number of tuners; libhdhomerun clients read 0 as "unknown".
    pub tuner_count: u8,
    /// Device auth string (tag 0x2B); empty = left out.
    pub device_auth: &'a str,
    /// Base URL of the HTTP API (tag 0x2A), e.g. `http://192.168.1.2:8080`; empty = left
    /// out, and clients then assume `http://<sender ip>:80`.
    pub base_url: &'a str,
    /// URL of `lineup.json` (tag 0x27); empty = left out.
    pub lineup_url: &'a str,
}

/// Appends the reply datagram (type 0x0003: device type tuner, device id, tuner count
/// tag 0x10, base URL, lineup URL, device auth, CRC32 LE) to `out`. Empty strings are left
/// out. Strings longer than a TLV or the packet allows, strings containing NUL and invalid
/// device ids are an error, never truncated silently into garbage; on error `out` is
/// unchanged. The appended frame is at most [`MAX_PACKET`] bytes.
pub fn encode_reply(reply: &DiscoverReply<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if reply.device_id == DEVICE_ID_WILDCARD || !device_id_is_valid(reply.device_id) {
        return Err(EncodeError::InvalidDeviceId(reply.device_id));
    }
    let strings = [
        (TAG_BASE_URL, "base URL", reply.base_url),
        (TAG_LINEUP_URL, "lineup URL", reply.lineup_url),
        (TAG_DEVICE_AUTH_STR, "device auth", reply.device_auth),
    ];
    // Device type (1+1+4), device id (1+1+4), tuner count (1+1+1).
    let fixed = 15;
    // What a single string may use: the payload minus the fixed items and its own tag and
    // two-byte length.
    let max_string = (MAX_PAYLOAD - fixed - 3).min(MAX_TLV_VALUE);
    let mut payload_len = fixed;
    for &(_, field, text) in &strings {
        if text.is_empty() {
            continue;
        }
        if text.bytes().any(|b| b == 0) {
            return Err(EncodeError::ContainsNul { field });
        }
        if text.len() > max_string {
            return Err(EncodeError::StringTooLong {
                field,
                len: text.len(),
                max: max_string,
            });
        }
        payload_len += 1 + var_length_size(text.len()) + text.len();
    }
    if payload_len > MAX_PAYLOAD {
        return Err(EncodeError::PacketTooLarge {
            len: payload_len + MIN_PACKET,
            max: MAX_PACKET,
        });
    }
    // Checked above: the payload fits MAX_PAYLOAD, far below u16::MAX.
    let declared = u16::try_from(payload_len).map_err(|_| EncodeError::PacketTooLarge {
        len: payload_len + MIN_PACKET,
        max: MAX_PACKET,
    })?;

    let start = out.len();
    out.reserve(payload_len + MIN_PACKET);
    out.extend_from_slice(&TYPE_DISCOVER_RPY.to_be_bytes());
    out.extend_from_slice(&declared.to_be_bytes());
    put_tlv(out, TAG_DEVICE_TYPE, &DEVICE_TYPE_TUNER.to_be_bytes());
    put_tlv(out, TAG_DEVICE_ID, &reply.device_id.to_be_bytes());
    put_tlv(out, TAG_TUNER_COUNT, &[reply.tuner_count]);
    for &(tag, _, text) in &strings {
        if !text.is_empty() {
            put_tlv(out, tag, text.as_bytes());
        }
    }
    let crc = crc32(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Bytes the variable-length encoding of `len` takes.
fn var_length_size(len: usize) -> usize {
    if len <= 0x7F { 1 } else { 2 }
}

/// Appends one item; the caller has checked `value.len() <= MAX_TLV_VALUE`.
fn put_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    // Truncating casts are the encoding: low 7 bits with the "two bytes" flag, then the
    // bits above them.
    if len <= 0x7F {
        out.push(len as u8);
    } else {
        out.push((len as u8 & 0x7F) | 0x80);
        out.push((len >> 7) as u8);
    }
    out.extend_from_slice(value);
}

/// The CRC-32 libhdhomerun frames carry: IEEE 802.3 polynomial, reflected, as zlib's
/// `crc32` computes it (`"123456789"` gives `0xCBF43926`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc = CRC_TABLE[usize::from(crc as u8 ^ byte)] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// libhdhomerun's substitution table for the even (counting from the top) nibbles.
const ID_CHECK_TABLE: [u8; 16] = [
    0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0,
];

/// XOR of the nibbles, every other one (from the top) passed through the table; zero for
/// a valid id.
fn device_id_checksum(id: u32) -> u8 {
    let mut check = 0u8;
    for index in 0..8u32 {
        let nibble = ((id >> (28 - 4 * index)) & 0xF) as u8;
        check ^= if index % 2 == 0 {
            ID_CHECK_TABLE[usize::from(nibble)]
        } else {
            nibble
        };
    }
    check
}

/// HDHomeRun device ids carry a checksum (libhdhomerun
/// `hdhomerun_discover_validate_device_id`): true when `id` passes it. It catches single
/// digit typos and swapped neighbours. Note the wildcard `FFFFFFFF` passes too; use
/// [`parse_device_id`] for user input.
pub fn device_id_is_valid(id: u32) -> bool {
    device_id_checksum(id) == 0
}

/// True for ids libhdhomerun classifies as legacy models (original HDHR, HDHR3, TECH
/// boxes): clients treat those as devices without the HTTP API, so an emulated tuner
/// should not use one. [`device_id_from_seed`] never returns one.
pub fn device_id_is_legacy(id: u32) -> bool {
    match id >> 20 {
        0x100 => id < 0x1004_0000,
        0x120 => id < 0x1203_0000,
        0x101 | 0x102 | 0x103 | 0x111 | 0x121 | 0x122 => true,
        _ => false,
    }
}

/// A valid device id built from `seed`'s bits (the top 28 bits chosen from the seed,
/// the last nibble fixed up so the checksum passes); never the wildcard and never a
/// legacy id ([`device_id_is_legacy`]). The same seed always gives the same id.
pub fn device_id_from_seed(seed: u64) -> u32 {
    // Fold both halves in so a seed that differs only in its high half still differs.
    let mut top = ((seed ^ (seed >> 32)) as u32) & 0xFFFF_FFF0;
    if top == DEVICE_ID_WILDCARD & 0xFFFF_FFF0 {
        // All ones would force the last nibble to F, i.e. the wildcard.
        top = 0xFFFF_FFE0;
    }
    if device_id_is_legacy(top) || device_id_is_legacy(top | 0xF) {
        // Legacy ranges all start with nibble 1; moving to 9 leaves every range.
        top ^= 0x8000_0000;
    }
    top | u32::from(device_id_checksum(top))
}

/// Parses exactly 8 hex digits (any case, no prefix, no spaces) that pass the checksum
/// and are not the wildcard.
pub fn parse_device_id(text: &str) -> Result<u32, DeviceIdError> {
    if text.len() != 8 {
        return Err(DeviceIdError::WrongLength { len: text.len() });
    }
    let mut id = 0u32;
    for byte in text.bytes() {
        let digit = char::from(byte).to_digit(16).ok_or(DeviceIdError::NotHex)?;
        id = id << 4 | digit;
    }
    if id == DEVICE_ID_WILDCARD {
        return Err(DeviceIdError::Wildcard);
    }
    if !device_id_is_valid(id) {
        return Err(DeviceIdError::BadChecksum(id));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `hdhomerun_config discover 127.0.0.1` (Debian 20220303) sent, captured here.
    const CAPTURED: &str = "0002000c0104ffffffff0204ffffffff73cc7d8f";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bitwise CRC, written separately from the table one so the tests check it.
    fn slow_crc(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        !crc
    }

    /// A test-side frame writer: type, items (tag, value), CRC.
    fn frame(packet_type: u16, items: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (tag, value) in items {
            payload.push(*tag);
            if value.len() < 128 {
                payload.push(value.len() as u8);
            } else {
                payload.push(0x80 | (value.len() & 0x7F) as u8);
                payload.push((value.len() >> 7) as u8);
            }
            payload.extend_from_slice(value);
        }
        let mut out = packet_type.to_be_bytes().to_vec();
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        let crc = slow_crc(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn request(device_type: Option<u32>, device_id: Option<u32>) -> Vec<u8> {
        let mut items = Vec::new();
        if let Some(t) = device_type {
            items.push((TAG_DEVICE_TYPE, t.to_be_bytes().to_vec()));
        }
        if let Some(id) = device_id {
            items.push((TAG_DEVICE_ID, id.to_be_bytes().to_vec()));
        }
        frame(TYPE_DISCOVER_REQ, &items)
    }

    /// A test-side reply reader: checks framing and CRC, returns type and items in order.
    fn read_frame(packet: &[u8]) -> (u16, Vec<(u8, Vec<u8>)>) {
        assert!(packet.len() >= 8 && packet.len() <= MAX_PACKET);
        let n = packet.len();
        let crc = u32::from_le_bytes(packet[n - 4..].try_into().unwrap());
        assert_eq!(crc, slow_crc(&packet[..n - 4]), "CRC");
        let packet_type = u16::from_be_bytes([packet[0], packet[1]]);
        let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        assert_eq!(len, n - 8, "payload length");
        let payload = &packet[4..n - 4];
        let mut items = Vec::new();
        let mut pos = 0;
        while pos < payload.len() {
            let tag = payload[pos];
            let mut value_len = usize::from(payload[pos + 1]);
            pos += 2;
            if value_len & 0x80 != 0 {
                value_len = (value_len & 0x7F) | usize::from(payload[pos]) << 7;
                pos += 1;
            }
            items.push((tag, payload[pos..pos + value_len].to_vec()));
            pos += value_len;
        }
        assert_eq!(pos, payload.len());
        (packet_type, items)
    }

    const REAL_IDS: [&str; 8] = [
        "103A9917", "103DA852", "101AE8FC", "10319F74", "1033FBCF", "1048EEE4", "10914695",
        "105404BE",
    ];

    #[test]
    fn crc_matches_the_standard_vector_and_the_capture() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let packet = hex(CAPTURED);
        assert_eq!(crc32(&packet[..16]), 0x8F7D_CC73);
        assert_eq!(slow_crc(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn captured_hdhomerun_config_packet_is_a_wildcard_request() {
        let req = decode_request(&hex(CAPTURED)).unwrap();
        assert_eq!(
            req,
            DiscoverRequest {
                device_type: DEVICE_TYPE_WILDCARD,
                device_id: DEVICE_ID_WILDCARD
            }
        );
        for id in [0x103A_9917, 0, 0x1234_5678, u32::MAX] {
            assert!(req.wants(id));
        }
        // The test writer produces the same bytes, so it speaks the same framing.
        assert_eq!(
            request(Some(DEVICE_TYPE_WILDCARD), Some(DEVICE_ID_WILDCARD)),
            hex(CAPTURED)
        );
    }

    #[test]
    fn requests_for_another_id_or_type_are_not_wanted() {
        let ours = 0x103A_9917;
        let other = decode_request(&request(Some(DEVICE_TYPE_TUNER), Some(0x103D_A852))).unwrap();
        assert!(!other.wants(ours));
        let mine = decode_request(&request(Some(DEVICE_TYPE_TUNER), Some(ours))).unwrap();
        assert!(mine.wants(ours));
        // Type 5 is HDHomeRun storage (DVR); type 0 is nothing.
        for device_type in [5, 0, 2] {
            let req = decode_request(&request(Some(device_type), None)).unwrap();
            assert_eq!(req.device_type, device_type);
            assert!(!req.wants(ours));
        }
    }

    #[test]
    fn newer_libhdhomerun_requests_are_understood() {
        // One type and no device id: libhdhomerun 2022+ asking for every tuner.
        let req = decode_request(&request(Some(DEVICE_TYPE_TUNER), None)).unwrap();
        assert_eq!(req.device_id, DEVICE_ID_WILDCARD);
        assert!(req.wants(0x103A_9917));
        // Several types in one multi-type item: storage and tuner.
        let mut types = 5u32.to_be_bytes().to_vec();
        types.extend_from_slice(&DEVICE_TYPE_TUNER.to_be_bytes());
        let req = decode_request(&frame(TYPE_DISCOVER_REQ, &[(TAG_MULTI_TYPE, types)])).unwrap();
        assert_eq!(req.device_type, DEVICE_TYPE_TUNER);
        assert!(req.wants(1));
        // Only storage: not for us.
        let req = decode_request(&frame(
            TYPE_DISCOVER_REQ,
            &[(TAG_MULTI_TYPE, 5u32.to_be_bytes().to_vec())],
        ))
        .unwrap();
        assert!(!req.wants(1));
        // Repeated device-type items fold the same way.
        let req = decode_request(&frame(
            TYPE_DISCOVER_REQ,
            &[
                (TAG_DEVICE_TYPE, 5u32.to_be_bytes().to_vec()),
                (TAG_DEVICE_TYPE, DEVICE_TYPE_WILDCARD.to_be_bytes().to_vec()),
            ],
        ))
        .unwrap();
        assert_eq!(req.device_type, DEVICE_TYPE_WILDCARD);
    }

    #[test]
    fn unknown_items_are_skipped_including_two_byte_lengths() {
        let packet = frame(
            TYPE_DISCOVER_REQ,
            &[
                (0x77, vec![1, 2, 3]),
                (TAG_DEVICE_TYPE, DEVICE_TYPE_TUNER.to_be_bytes().to_vec()),
                (0x2A, vec![b'x'; 300]),
                (0x00, vec![]),
                (TAG_DEVICE_ID, 0x103A_9917u32.to_be_bytes().to_vec()),
            ],
        );
        // The 300-byte item really used the two-byte length form.
        assert!(packet.windows(3).any(|w| w == [0x2A, 0x80 | 44, 2]));
        let req = decode_request(&packet).unwrap();
        assert_eq!(req.device_type, DEVICE_TYPE_TUNER);
        assert_eq!(req.device_id, 0x103A_9917);
    }

    #[test]
    fn malformed_requests_are_rejected_with_their_kind() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "too_short"),
            (hex(CAPTURED)[..7].to_vec(), "too_short"),
            (vec![0; MAX_PACKET + 1], "too_long"),
            (
                {
                    let mut p = hex(CAPTURED);
                    p.push(0);
                    p
                },
                "length_mismatch",
            ),
            (
                {
                    let mut p = hex(CAPTURED);
                    p[19] ^= 1;
                    p
                },
                "bad_crc",
            ),
            (frame(TYPE_DISCOVER_RPY, &[]), "wrong_type"),
            (frame(TYPE_DISCOVER_REQ, &[]), "missing_device_type"),
            (
                frame(TYPE_DISCOVER_REQ, &[(TAG_DEVICE_ID, vec![1, 2, 3, 4])]),
                "missing_device_type",
            ),
            (
                frame(TYPE_DISCOVER_REQ, &[(TAG_DEVICE_TYPE, vec![0, 0, 1])]),
                "bad_tag_length",
            ),
            (
                frame(TYPE_DISCOVER_REQ, &[(TAG_MULTI_TYPE, vec![])]),
                "bad_tag_length",
            ),
            (
                frame(TYPE_DISCOVER_REQ, &[(TAG_MULTI_TYPE, vec![0, 0, 0, 1, 0])]),
                "bad_tag_length",
            ),
            (
                request_with_tail(&[0x05]), // a lone tag byte
                "truncated_tlv",
            ),
            (
                request_with_tail(&[0x05, 0x81]), // two-byte length cut off
                "truncated_tlv",
            ),
            (
                request_with_tail(&[0x05, 0x03, 1, 2]), // value shorter than its length
                "truncated_tlv",
            ),
            (
                {
                    let id = 0x103A_9917u32.to_be_bytes().to_vec();
                    frame(
                        TYPE_DISCOVER_REQ,
                        &[
                            (TAG_DEVICE_TYPE, vec![0, 0, 0, 1]),
                            (TAG_DEVICE_ID, id.clone()),
                            (TAG_DEVICE_ID, id),
                        ],
                    )
                },
                "duplicate_device_id",
            ),
        ];
        for (packet, kind) in cases {
            let err = decode_request(&packet).unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    /// A valid wildcard request with raw bytes appended to its payload (header and CRC
    /// fixed up), to build broken items the test writer would not produce.
    fn request_with_tail(tail: &[u8]) -> Vec<u8> {
        let base = hex(CAPTURED);
        let mut out = base[..base.len() - 4].to_vec();
        out.extend_from_slice(tail);
        let len = (out.len() - 4) as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        let crc = slow_crc(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn reply<'a>(
        base_url: &'a str,
        lineup_url: &'a str,
        device_auth: &'a str,
    ) -> DiscoverReply<'a> {
        DiscoverReply {
            device_id: 0x103A_9917,
            tuner_count: 4,
            device_auth,
            base_url,
            lineup_url,
        }
    }

    #[test]
    fn reply_round_trips_with_every_field() {
        let r = reply(
            "http://192.168.1.20:8080",
            "http://192.168.1.20:8080/lineup.json",
            "abcdefghijklmnopqrstuvwx",
        );
        let mut out = b"prefix".to_vec();
        encode_reply(&r, &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        let (packet_type, items) = read_frame(&out[6..]);
        assert_eq!(packet_type, 0x0003);
        assert_eq!(
            items,
            vec![
                (0x01, vec![0, 0, 0, 1]),
                (0x02, vec![0x10, 0x3A, 0x99, 0x17]),
                (0x10, vec![4]),
                (0x2A, b"http://192.168.1.20:8080".to_vec()),
                (0x27, b"http://192.168.1.20:8080/lineup.json".to_vec()),
                (0x2B, b"abcdefghijklmnopqrstuvwx".to_vec()),
            ]
        );
    }

    #[test]
    fn reply_leaves_out_empty_strings_and_uses_two_byte_lengths() {
        let mut out = Vec::new();
        encode_reply(&reply("", "", ""), &mut out).unwrap();
        let (_, items) = read_frame(&out);
        assert_eq!(items.len(), 3);
        // Byte-exact minimal reply: type 3, 15 payload bytes, then the CRC.
        assert_eq!(
            out[..out.len() - 4],
            hex("0003000f0104000000010204103a9917100104")
        );

        let long = format!("http://192.168.1.20:8080/{}", "a".repeat(200));
        let mut out = Vec::new();
        encode_reply(&reply("", &long, ""), &mut out).unwrap();
        let (_, items) = read_frame(&out);
        assert_eq!(items[3], (0x27, long.as_bytes().to_vec()));
        let at = out.iter().position(|&b| b == 0x27).unwrap();
        assert_eq!(out[at + 1], 0x80 | (long.len() & 0x7F) as u8);
        assert_eq!(usize::from(out[at + 2]), long.len() >> 7);
    }

    #[test]
    fn reply_errors_leave_the_buffer_alone() {
        let big = "a".repeat(MAX_PACKET);
        let half = "a".repeat(800);
        let cases: Vec<(DiscoverReply<'_>, EncodeError)> = vec![
            (
                DiscoverReply {
                    device_id: 0x1234_5678,
                    ..reply("", "", "")
                },
                EncodeError::InvalidDeviceId(0x1234_5678),
            ),
            (
                DiscoverReply {
                    device_id: DEVICE_ID_WILDCARD,
                    ..reply("", "", "")
                },
                EncodeError::InvalidDeviceId(DEVICE_ID_WILDCARD),
            ),
            (
                reply("http://a\0b", "", ""),
                EncodeError::ContainsNul { field: "base URL" },
            ),
            (
                reply("", &big, ""),
                EncodeError::StringTooLong {
                    field: "lineup URL",
                    len: MAX_PACKET,
                    max: MAX_PAYLOAD - 18,
                },
            ),
            (
                reply(&half, &half, ""),
                EncodeError::PacketTooLarge {
                    len: 8 + 15 + 2 * (3 + 800),
                    max: MAX_PACKET,
                },
            ),
        ];
        for (r, expected) in cases {
            let mut out = vec![1, 2, 3];
            assert_eq!(encode_reply(&r, &mut out), Err(expected));
            assert_eq!(out, [1, 2, 3]);
        }
        // The largest single string that fits makes exactly a MAX_PACKET frame.
        let most = "a".repeat(MAX_PAYLOAD - 18);
        let mut out = Vec::new();
        encode_reply(&reply(&most, "", ""), &mut out).unwrap();
        assert_eq!(out.len(), MAX_PACKET);
        read_frame(&out);
    }

    #[test]
    fn our_reply_is_not_taken_for_a_request() {
        let mut out = Vec::new();
        encode_reply(&reply("http://10.0.0.1:80", "", ""), &mut out).unwrap();
        assert_eq!(decode_request(&out), Err(DecodeError::WrongType(3)));
    }

    #[test]
    fn device_id_checksum_agrees_with_real_devices() {
        for text in REAL_IDS {
            let id = parse_device_id(text).unwrap();
            assert!(device_id_is_valid(id), "{text}");
            assert_eq!(format!("{id:08X}"), text);
            assert_eq!(parse_device_id(&text.to_lowercase()), Ok(id));
        }
        // The documentation-style placeholder fails, as a typo would.
        assert!(!device_id_is_valid(0x1234_5678));
        // Every single-digit change and neighbour swap of a real id is caught.
        let id = 0x103A_9917u32;
        for shift in (0..32).step_by(4) {
            for delta in 1..16u32 {
                let nibble = (id >> shift) & 0xF;
                let changed = id & !(0xF << shift) | ((nibble + delta) & 0xF) << shift;
                assert!(!device_id_is_valid(changed), "{changed:08X}");
            }
        }
        for shift in (0..28).step_by(4) {
            let low = (id >> shift) & 0xF;
            let high = (id >> (shift + 4)) & 0xF;
            if low != high {
                let swapped = id & !(0xFF << shift) | low << (shift + 4) | high << shift;
                assert!(!device_id_is_valid(swapped), "{swapped:08X}");
            }
        }
    }

    #[test]
    fn device_id_parse_errors() {
        assert_eq!(
            parse_device_id("103A991"),
            Err(DeviceIdError::WrongLength { len: 7 })
        );
        assert_eq!(
            parse_device_id(" 103A9917"),
            Err(DeviceIdError::WrongLength { len: 9 })
        );
        assert_eq!(parse_device_id("+03A9917"), Err(DeviceIdError::NotHex));
        assert_eq!(parse_device_id("103A991G"), Err(DeviceIdError::NotHex));
        assert_eq!(parse_device_id("0x3A9917"), Err(DeviceIdError::NotHex));
        assert_eq!(
            parse_device_id("ééé9917"),
            Err(DeviceIdError::WrongLength { len: 10 })
        );
        assert_eq!(parse_device_id("ffffffff"), Err(DeviceIdError::Wildcard));
        assert_eq!(
            parse_device_id("12345678"),
            Err(DeviceIdError::BadChecksum(0x1234_5678))
        );
    }

    #[test]
    fn legacy_ids_follow_libhdhomerun() {
        assert!(device_id_is_legacy(0x101A_E8FC)); // HDHR-US
        assert!(device_id_is_legacy(0x1003_FFFF));
        assert!(!device_id_is_legacy(0x1004_0000));
        assert!(!device_id_is_legacy(0x103A_9917 + 0x0050_0000));
        assert!(!device_id_is_legacy(0x1048_EEE4));
        // Seeds that land in a legacy range or on the wildcard are moved off it.
        assert!(!device_id_is_legacy(device_id_from_seed(0x1010_0000)));
        assert_ne!(device_id_from_seed(0xFFFF_FFFF), DEVICE_ID_WILDCARD);
        assert_ne!(device_id_from_seed(u64::MAX >> 32), DEVICE_ID_WILDCARD);
        assert_eq!(device_id_from_seed(42), device_id_from_seed(42));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            prop_assert!(decode_request(&bytes).is_err());
        }

        #[test]
        fn arbitrary_frames_with_good_crc_never_panic(
            packet_type in prop_oneof![Just(TYPE_DISCOVER_REQ), any::<u16>()],
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            // Valid framing, random items: exercises the item walker, never panics, and
            // anything accepted really named a type.
            let mut packet = packet_type.to_be_bytes().to_vec();
            packet.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            packet.extend_from_slice(&payload);
            let crc = slow_crc(&packet);
            packet.extend_from_slice(&crc.to_le_bytes());
            if let Ok(req) = decode_request(&packet) {
                prop_assert_eq!(packet_type, TYPE_DISCOVER_REQ);
                prop_assert!(payload.contains(&TAG_DEVICE_TYPE) || payload.contains(&TAG_MULTI_TYPE));
                let _ = req.wants(1);
            }
        }

        #[test]
        fn valid_requests_decode_and_single_byte_corruption_is_caught(
            device_type in prop_oneof![Just(DEVICE_TYPE_TUNER), Just(DEVICE_TYPE_WILDCARD), any::<u32>()],
            device_id in proptest::option::of(any::<u32>()),
            junk in proptest::collection::vec((0x30u8..0xFF, proptest::collection::vec(any::<u8>(), 0..200)), 0..3),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut items: Vec<(u8, Vec<u8>)> = junk;
            items.push((TAG_DEVICE_TYPE, device_type.to_be_bytes().to_vec()));
            if let Some(id) = device_id {
                items.push((TAG_DEVICE_ID, id.to_be_bytes().to_vec()));
            }
            items.rotate_right(1);
            let mut packet = frame(TYPE_DISCOVER_REQ, &items);
            let req = decode_request(&packet).unwrap();
            prop_assert_eq!(req.device_type, device_type);
            prop_assert_eq!(req.device_id, device_id.unwrap_or(DEVICE_ID_WILDCARD));

            let i = at.index(packet.len());
            packet[i] ^= flip;
            prop_assert!(decode_request(&packet).is_err());
        }

        #[test]
        fn truncated_requests_are_rejected(
            device_id in proptest::option::of(any::<u32>()),
            cut in any::<prop::sample::Index>(),
        ) {
            let packet = request(Some(DEVICE_TYPE_TUNER), device_id);
            let cut = cut.index(packet.len());
            prop_assert!(decode_request(&packet[..cut]).is_err());
        }

        #[test]
        fn replies_round_trip_or_fail_cleanly(
            device_id in prop_oneof![any::<u32>(), any::<u64>().prop_map(device_id_from_seed)],
            tuner_count in any::<u8>(),
            base_url in "[ -~]{0,700}",
            lineup_url in "[ -~]{0,700}",
            device_auth in "\\PC{0,40}",
        ) {
            let r = DiscoverReply { device_id, tuner_count, device_auth: &device_auth, base_url: &base_url, lineup_url: &lineup_url };
            let mut out = vec![9];
            match encode_reply(&r, &mut out) {
                Ok(()) => {
                    prop_assert!(device_id_is_valid(device_id) && device_id != DEVICE_ID_WILDCARD);
                    let (packet_type, items) = read_frame(&out[1..]);
                    prop_assert_eq!(packet_type, 3);
                    let mut expected = vec![
                        (0x01, vec![0, 0, 0, 1]),
                        (0x02, device_id.to_be_bytes().to_vec()),
                        (0x10, vec![tuner_count]),
                    ];
                    for (tag, text) in [(0x2A, &base_url), (0x27, &lineup_url), (0x2B, &device_auth)] {
                        if !text.is_empty() {
                            expected.push((tag, text.as_bytes().to_vec()));
                        }
                    }
                    prop_assert_eq!(items, expected);
                }
                Err(_) => prop_assert_eq!(out, vec![9]),
            }
        }

        #[test]
        fn ids_from_seeds_are_always_valid(seed in any::<u64>()) {
            let id = device_id_from_seed(seed);
            prop_assert!(device_id_is_valid(id));
            prop_assert_ne!(id, DEVICE_ID_WILDCARD);
            prop_assert!(!device_id_is_legacy(id));
            prop_assert_eq!(parse_device_id(&format!("{id:08X}")), Ok(id));
            prop_assert_eq!(parse_device_id(&format!("{id:08x}")), Ok(id));
        }

        #[test]
        fn parse_accepts_exactly_the_valid_ids(id in any::<u32>()) {
            let parsed = parse_device_id(&format!("{id:08X}"));
            if device_id_is_valid(id) && id != DEVICE_ID_WILDCARD {
                prop_assert_eq!(parsed, Ok(id));
            } else {
                prop_assert!(parsed.is_err());
            }
        }
    }
}
