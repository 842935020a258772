//! The byte ring one upstream writes and all its clients read: each client is a cursor
//! into the same bytes, so N clients cost one buffer, not N.
//!
//! Rules: offsets are absolute (bytes since the upstream opened), so a cursor that falls
//! more than the ring's capacity behind has lost data and is told so (`Lagged`), never
//! handed overwritten bytes. The writer never waits for readers. A scanner follows the
//! 188-byte MPEG-TS packets as they stream in and remembers where a newcomer should start
//! (the last PAT before a keyframe) so a late joiner decodes at once.

/// MPEG-TS packet size.
pub const PACKET: usize = 188;
/// MPEG-TS sync byte, the first byte of every packet.
pub const SYNC: u8 = 0x47;

/// What a read at some cursor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were copied; advance the cursor by as much.
    Data(usize),
    /// Nothing new yet.
    Empty,
    /// The cursor is further behind than the ring holds: its bytes are gone.
    Lagged,
}

/// A fixed-capacity ring of the newest bytes of one stream.
pub struct Ring {
    buf: Box<[u8]>,
    written: u64,
    scanner: Scanner,
}

impl Ring {
    /// An empty ring holding the newest `capacity` bytes (at least one packet).
    pub fn new(capacity: usize) -> Ring {
        Ring {
            buf: vec![0; capacity.max(PACKET)].into_boxed_slice(),
            written: 0,
            scanner: Scanner::default(),
        }
    }

    /// How many bytes the ring holds at most.
    pub fn capacity(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Total bytes ever written (the offset one past the newest byte).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`, overwriting the oldest bytes, and scans the packets it completes.
    pub fn push(&mut self, data: &[u8]) {
        let cap = self.buf.len();
        // Only the newest `cap` bytes of an oversized push can survive.
        let skip = data.len().saturating_sub(cap);
        let kept = data.get(skip..).unwrap_or_default();
        let mut at = ((self.written + skip as u64) % cap as u64) as usize;
        let mut rest = kept;
        while !rest.is_empty() {
            let room = cap - at;
            let n = room.min(rest.len());
            let (now, later) = rest.split_at(n);
            if let Some(dst) = self.buf.get_mut(at..at + n) {
                dst.copy_from_slice(now);
            }
            rest = later;
            at = (at + n) % cap;
        }
        self.scanner.scan(data, self.written);
        self.written += data.len() as u64;
    }

    /// Copies bytes from absolute offset `pos` into `out`.
    pub fn read(&self, pos: u64, out: &mut [u8]) -> ReadOutcome {
        if self.written.saturating_sub(pos) > self.capacity() {
            return ReadOutcome::Lagged;
        }
        let available = self.written.saturating_sub(pos);
        if available == 0 || out.is_empty() {
            return ReadOutcome::Empty;
        }
        let cap = self.buf.len();
        let at = (pos % cap as u64) as usize;
        // One contiguous piece per read: up to the end of the ring or of the data.
        let n = (cap - at)
            .min(usize::try_from(available).unwrap_or(usize::MAX))
            .min(out.len());
        match (out.get_mut(..n), self.buf.get(at..at + n)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                ReadOutcome::Data(n)
            }
            _ => ReadOutcome::Empty,
        }
    }

    /// Where a client joining now should start: the last PAT before the newest keyframe
    /// if the ring still holds it with room to spare, else the newest packet boundary.
    pub fn join_offset(&self) -> u64 {
        let half = self.capacity() / 2;
        match self.scanner.join {
            Some(j) if self.written.saturating_sub(j) <= half => j,
            _ => self.scanner.last_boundary(self.written),
        }
    }
}

/// Follows the packet structure of the stream as it arrives in arbitrary pieces.
#[derive(Default)]
struct Scanner {
    /// Offset of the next packet start we expect.
    next_packet: u64,
    /// The first bytes of a packet split across pushes (only the 6 we look at).
    head: [u8; 6],
    head_len: usize,
    /// Offset of the newest PAT (PID 0 with a section start).
    pat: Option<u64>,
    /// A keyframe (random access indicator) has been seen.
    keyframes: bool,
    /// Where newcomers start.
    join: Option<u64>,
}

impl Scanner {
    /// Looks at every packet start inside `data`, which begins at offset `base`.
    fn scan(&mut self, data: &[u8], base: u64) {
        let end = base + data.len() as u64;
        while self.next_packet < end {
            let start = self.next_packet;
            // Offset of the packet start relative to `data` (packets started in an
            // earlier push have their first bytes in `head`).
            let rel = start.saturating_sub(base) as usize;
            if start >= base {
                self.head_len = 0;
            }
            let have = self.head_len;
            let want = self.head.len() - have;
            let from = if start >= base { rel } else { 0 };
            let take = want.min(data.len().saturating_sub(from));
            if let (Some(dst), Some(src)) = (
                self.head.get_mut(have..have + take),
                data.get(from..from + take),
            ) {
                dst.copy_from_slice(src);
            }
            self.head_len = have + take;
            if self.head_len < self.head.len() {
                // The rest of this packet head comes with the next push.
                return;
            }
            self.head_len = 0;
            if self.head[0] != SYNC {
                self.resync(data, base, start);
                continue;
            }
            self.packet(start);
            self.next_packet = start + PACKET as u64;
        }
    }

    /// Sync was lost at `start`: the next packet starts at the next sync byte in `data`
    /// (or, failing that, after `data`).
    fn resync(&mut self, data: &[u8], base: u64, start: u64) {
        let from = (start + 1).saturating_sub(base) as usize;
        let found = data
            .get(from..)
            .and_then(|rest| rest.iter().position(|b| *b == SYNC));
        self.next_packet = match found {
            Some(i) => base + (from + i) as u64,
            None => base + data.len() as u64,
        };
    }

    fn packet(&mut self, start: u64) {
        let [_, b1, b2, b3, b4, b5] = self.head;
        let pid = (u16::from(b1 & 0x1F) << 8) | u16::from(b2);
        let unit_start = b1 & 0x40 != 0;
        if pid == 0 && unit_start {
            self.pat = Some(start);
            if !self.keyframes {
                self.join = Some(start);
            }
        }
        let adaptation = b3 & 0x20 != 0;
        let random_access = adaptation && b4 > 0 && b5 & 0x40 != 0;
        if random_access {
            self.keyframes = true;
            if let Some(pat) = self.pat {
                self.join = Some(pat);
            }
        }
    }

    /// The newest packet start at or before `written`.
    fn last_boundary(&self, written: u64) -> u64 {
        if self.next_packet <= written {
            self.next_packet
        } else {
            self.next_packet.saturating_sub(PACKET as u64)
        }
    }
}

/// True when `data` looks like MPEG-TS from its first byte: a sync byte at 0 and at every
/// 188-byte step that `data` reaches. A receiver that failed to tune writes text here.
pub fn looks_like_ts(data: &[u8]) -> bool {
    !data.is_empty() && data.iter().step_by(PACKET).all(|b| *b == SYNC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with the given PID, unit-start flag and random-access flag.
    fn packet(pid: u16, unit_start: bool, random_access: bool, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; PACKET];
        p[0] = SYNC;
        p[1] = ((pid >> 8) as u8 & 0x1F) | if unit_start { 0x40 } else { 0 };
        p[2] = pid as u8;
        if random_access {
            p[3] = 0x30;
            p[4] = 7;
            p[5] = 0x40;
        } else {
            p[3] = 0x10;
        }
        p
    }

    fn read_all(ring: &Ring, mut pos: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            match ring.read(pos, &mut buf) {
                ReadOutcome::Data(n) => {
                    out.extend_from_slice(&buf[..n]);
                    pos += n as u64;
                }
                ReadOutcome::Empty => return out,
                ReadOutcome::Lagged => panic!("lagged"),
            }
        }
    }

    #[test]
    fn reads_what_was_written_across_the_wrap() {
        let mut ring = Ring::new(1000);
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        for piece in data.chunks(333) {
            ring.push(piece);
        }
        assert_eq!(ring.written(), 2500);
        assert_eq!(read_all(&ring, 1500), data[1500..]);
        assert_eq!(ring.read(1499, &mut [0; 10]), ReadOutcome::Lagged);
        assert_eq!(ring.read(2500, &mut [0; 10]), ReadOutcome::Empty);
    }

    #[test]
    fn oversized_push_keeps_the_newest_bytes() {
        let mut ring = Ring::new(500);
        let data: Vec<u8> = (0..1234u32).map(|i| (i * 7) as u8).collect();
        ring.push(&data);
        assert_eq!(read_all(&ring, 734), data[734..]);
        assert_eq!(ring.read(733, &mut [0; 1]), ReadOutcome::Lagged);
    }

    #[test]
    fn newcomers_join_at_the_pat_before_the_newest_keyframe() {
        let mut ring = Ring::new(188 * 100);
        let mut stream = Vec::new();
        for gop in 0..3 {
            stream.extend(packet(0, true, false, gop)); // PAT
            stream.extend(packet(0x100, true, false, gop)); // PMT
            stream.extend(packet(0x101, true, true, gop)); // keyframe
            for _ in 0..5 {
                stream.extend(packet(0x101, false, false, gop));
            }
        }
        // Odd piece sizes split packet heads across pushes.
        for piece in stream.chunks(77) {
            ring.push(piece);
        }
        let gop = 8 * PACKET as u64;
        assert_eq!(ring.join_offset(), 2 * gop);
        // Data after a PAT without a keyframe yet does not move the join point.
        ring.push(&packet(0, true, false, 9));
        assert_eq!(ring.join_offset(), 2 * gop);
    }

    #[test]
    fn without_keyframes_newcomers_join_at_the_newest_pat() {
        let mut ring = Ring::new(188 * 100);
        for i in 0..10 {
            ring.push(&packet(if i % 4 == 0 { 0 } else { 0x44 }, true, false, 0));
        }
        assert_eq!(ring.join_offset(), 8 * PACKET as u64);
    }

    #[test]
    fn a_stale_join_point_falls_back_to_the_newest_boundary() {
        let mut ring = Ring::new(188 * 10);
        ring.push(&packet(0, true, false, 0));
        ring.push(&packet(0x101, true, true, 0));
        for _ in 0..20 {
            ring.push(&packet(0x101, false, false, 0));
        }
        // A partial packet at the end: join at the boundary before it.
        ring.push(&packet(0x101, false, false, 0)[..50]);
        assert_eq!(ring.join_offset(), 22 * PACKET as u64);
    }

    #[test]
    fn lost_sync_is_found_again() {
        let mut ring = Ring::new(188 * 100);
        ring.push(&[1, 2, 3]); // garbage before the first packet
        ring.push(&packet(0, true, false, 0));
        ring.push(&packet(0x101, true, true, 0));
        assert_eq!(ring.join_offset(), 3);
    }

    #[test]
    fn ts_detection() {
        assert!(looks_like_ts(&packet(0, true, false, 0)));
        assert!(looks_like_ts(&[SYNC]));
        assert!(!looks_like_ts(b"HTTP/1.0 400 Bad Request\r\n\r\n"));
        assert!(!looks_like_ts(&[]));
        let mut two = packet(0, true, false, 0);
        two.extend(vec![0u8; PACKET]);
        assert!(!looks_like_ts(&two));
    }
}
