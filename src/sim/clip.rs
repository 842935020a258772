//! The simulator's clip as a seamless loop: every pass after the first is rewritten so the
//! stream goes on as a receiver's does, instead of jumping back to the clip's start.
//!
//! Rules: pass `k` adds `k` clip periods to every PCR, PTS and DTS (33-bit, wrapping like
//! a real stream) and continues each PID's continuity counter from where pass `k - 1`
//! left it; nothing else changes, and the first pass is the clip byte for byte. The
//! period is the longest span of any PID's timestamps plus its frame interval, so no
//! PID's timestamps go backwards at a seam (a shorter stream gets a small gap). Packets
//! are read with bounds checks only: a malformed packet is left as it is.

use super::stream::PACKET;

/// PTS, DTS and PCR bases are 33-bit counts of a 90 kHz clock.
const TS_MODULO: u64 = 1 << 33;
/// The null packet's PID: no counter, no timestamps.
const NULL_PID: u16 = 0x1FFF;
/// PIDs are 13 bits.
const PIDS: usize = 1 << 13;

/// A valid clip (see `stream::is_valid_clip`) and what looping it seamlessly needs.
pub(crate) struct Clip {
    bytes: Box<[u8]>,
    /// One pass in 90 kHz ticks.
    period: u64,
    /// What a pass changes in each packet, found once so the loop parses nothing.
    edits: Box<[Edits]>,
}

/// The fields of one packet that a pass after the first rewrites.
#[derive(Debug, Clone, Copy, Default)]
struct Edits {
    /// The counter's advance per pass: its PID's payload packets per pass, modulo 16.
    /// Packets without payload repeat the counter, so they move with their PID too.
    cc_step: u8,
    /// The adaptation field carries a PCR.
    pcr: bool,
    /// Where a PES header's PTS and DTS are in the packet (0: none).
    pts_at: u8,
    dts_at: u8,
}

impl Clip {
    pub(crate) fn new(bytes: Vec<u8>) -> Clip {
        let mut steps = vec![0u8; PIDS];
        for p in bytes.chunks_exact(PACKET) {
            if has_payload(p) {
                if let Some(step) = steps.get_mut(usize::from(pid(p))) {
                    *step = (*step + 1) % 16;
                }
            }
        }
        let mut stamps: Vec<(u16, u64)> = Vec::new();
        let edits = bytes
            .chunks_exact(PACKET)
            .map(|p| {
                let pid = pid(p);
                if pid == NULL_PID {
                    return Edits::default();
                }
                let pes = pes_timestamps(p);
                if let Some(t) = &pes {
                    stamps.push((pid, t.pts));
                }
                // Offsets inside a 188-byte packet fit a u8.
                let at = |o: usize| u8::try_from(o).unwrap_or(0);
                Edits {
                    cc_step: steps.get(usize::from(pid)).copied().unwrap_or(0),
                    pcr: pcr_base(p).is_some(),
                    pts_at: pes.as_ref().map_or(0, |t| at(t.pts_at)),
                    dts_at: pes.and_then(|t| t.dts).map_or(0, |(o, _)| at(o)),
                }
            })
            .collect();
        Clip {
            period: period(stamps),
            bytes: bytes.into_boxed_slice(),
            edits,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Copies `dst.len()` bytes of pass `pass` starting at clip offset `pos` (the range
    /// must lie inside the clip) into `dst`, rewritten for that pass.
    pub(crate) fn copy_pass(&self, pass: u64, pos: usize, dst: &mut [u8]) {
        let Some(src) = self.bytes.get(pos..pos + dst.len()) else {
            return;
        };
        dst.copy_from_slice(src);
        if pass == 0 {
            return;
        }
        let pass = Pass {
            advance: (pass % 16) as u8,
            shift: self.period.wrapping_mul(pass) % TS_MODULO,
        };
        let end = pos + dst.len();
        let mut start = pos - pos % PACKET;
        while start < end {
            let stop = start + PACKET;
            // The part of this packet inside [pos, end), in packet and in dst coordinates.
            let (from, to) = (start.max(pos), stop.min(end));
            let (Some(out), Some(e)) = (
                dst.get_mut(from - pos..to - pos),
                self.edits.get(start / PACKET),
            ) else {
                return;
            };
            if from == start && to == stop {
                rewrite(&pass, e, out);
            } else if let Some(whole) = self.bytes.get(start..stop) {
                // A packet cut by the read: rewrite a copy, hand out the part asked for.
                let mut packet = [0u8; PACKET];
                packet.copy_from_slice(whole);
                rewrite(&pass, e, &mut packet);
                out.copy_from_slice(&packet[from - start..to - start]);
            }
            start = stop;
        }
    }

    #[cfg(test)]
    pub(crate) fn period(&self) -> u64 {
        self.period
    }
}

/// What one pass after the first changes.
struct Pass {
    /// Passes modulo 16: the continuity counters' multiplier.
    advance: u8,
    /// Ticks added to every timestamp (modulo 2^33).
    shift: u64,
}

/// Rewrites one whole packet (a copy of the clip's) with its edits `e` for `pass`.
fn rewrite(pass: &Pass, e: &Edits, p: &mut [u8]) {
    if let Some(b) = p.get_mut(3) {
        // Both factors are below 16, so the product fits a u8.
        let advance = e.cc_step * pass.advance % 16;
        *b = (*b & 0xF0) | (((*b & 0x0F) + advance) % 16);
    }
    if !e.pcr && e.pts_at == 0 {
        return;
    }
    if e.pcr {
        if let Some(base) = pcr_base(p) {
            write_pcr_base(p, (base + pass.shift) % TS_MODULO);
        }
    }
    for at in [e.pts_at, e.dts_at].into_iter().filter(|&at| at != 0) {
        let at = usize::from(at);
        if let Some(ts) = read_timestamp(p, at) {
            write_timestamp(p, at, (ts + pass.shift) % TS_MODULO);
        }
    }
}

/// The longest per-PID span of presentation times plus that PID's smallest frame step.
/// A clip without timestamps gets a period of 0 (timestamps need no shifting).
fn period(mut stamps: Vec<(u16, u64)>) -> u64 {
    stamps.sort_unstable();
    stamps.dedup();
    let mut best = 0;
    for run in stamps.chunk_by(|a, b| a.0 == b.0) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let step = run.windows(2).map(|w| w[1].1 - w[0].1).min().unwrap_or(0);
        best = best.max(last.1 - first.1 + step);
    }
    best
}

pub(super) fn pid(p: &[u8]) -> u16 {
    match (p.get(1), p.get(2)) {
        (Some(hi), Some(lo)) => (u16::from(hi & 0x1F) << 8) | u16::from(*lo),
        _ => NULL_PID,
    }
}

/// The adaptation field control says a payload follows.
fn has_payload(p: &[u8]) -> bool {
    p.get(3).is_some_and(|b| b & 0x10 != 0)
}

fn has_adaptation(p: &[u8]) -> bool {
    p.get(3).is_some_and(|b| b & 0x20 != 0)
}

/// The PCR base, if this packet's adaptation field carries one.
pub(super) fn pcr_base(p: &[u8]) -> Option<u64> {
    if !has_adaptation(p) || *p.get(4)? < 7 || p.get(5)? & 0x10 == 0 {
        return None;
    }
    let b = p.get(6..11)?;
    Some(
        u64::from(b[0]) << 25
            | u64::from(b[1]) << 17
            | u64::from(b[2]) << 9
            | u64::from(b[3]) << 1
            | u64::from(b[4]) >> 7,
    )
}

fn write_pcr_base(p: &mut [u8], base: u64) {
    if let Some(b) = p.get_mut(6..11) {
        b[0] = (base >> 25) as u8;
        b[1] = (base >> 17) as u8;
        b[2] = (base >> 9) as u8;
        b[3] = (base >> 1) as u8;
        // The low bit of the base shares its byte with the reserved bits and the extension.
        b[4] = (((base & 1) as u8) << 7) | (b[4] & 0x7F);
    }
}

/// Where a PES header's timestamps are (offsets in the packet) and their values.
struct PesTimestamps {
    pts_at: usize,
    pts: u64,
    dts: Option<(usize, u64)>,
}

/// The PTS (and DTS) of a PES header that starts in this packet.
fn pes_timestamps(p: &[u8]) -> Option<PesTimestamps> {
    let unit_start = p.get(1)? & 0x40 != 0;
    if !unit_start || !has_payload(p) {
        return None;
    }
    let payload = if has_adaptation(p) {
        5 + usize::from(*p.get(4)?)
    } else {
        4
    };
    let pes = p.get(payload..)?;
    // Start code, then an MPEG-2 PES header ('10' marker); PSI sections never match.
    if pes.get(..3)? != [0, 0, 1] || pes.get(6)? & 0xC0 != 0x80 {
        return None;
    }
    let flags = pes.get(7)? >> 6;
    let pts_at = payload + 9;
    let pts = read_timestamp(p, pts_at).filter(|_| flags & 0b10 != 0)?;
    let dts = if flags == 0b11 {
        read_timestamp(p, pts_at + 5).map(|dts| (pts_at + 5, dts))
    } else {
        None
    };
    Some(PesTimestamps { pts_at, pts, dts })
}

/// A 5-byte PES timestamp: 3 + 15 + 15 bits, each group followed by a marker bit.
fn read_timestamp(p: &[u8], at: usize) -> Option<u64> {
    let b = p.get(at..at + 5)?;
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | (u64::from(b[2]) >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4]) >> 1,
    )
}

fn write_timestamp(p: &mut [u8], at: usize, ts: u64) {
    if let Some(b) = p.get_mut(at..at + 5) {
        // The prefix nibble ('0010' / '0011' / '0001') and the marker bits stay.
        b[0] = (b[0] & 0xF1) | (((ts >> 30) & 0x07) as u8) << 1;
        b[1] = (ts >> 22) as u8;
        b[2] = (((ts >> 15) & 0x7F) as u8) << 1 | (b[2] & 1);
        b[3] = (ts >> 7) as u8;
        b[4] = ((ts & 0x7F) as u8) << 1 | (b[4] & 1);
    }
}

#[cfg(test)]
mod tests;
