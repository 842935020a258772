use super::*;
use crate::sim::stream::{FALLBACK, load_clip};
use proptest::prelude::*;

/// `passes` whole passes of `clip`, as a body hands them out.
fn looped(clip: &Clip, passes: u64) -> Vec<u8> {
    let mut out = vec![0u8; clip.len() * passes as usize];
    for (pass, dst) in out.chunks_mut(clip.len()).enumerate() {
        clip.copy_pass(pass as u64, 0, dst);
    }
    out
}

/// Where `ts` is not continuous: a PID's continuity counter not stepping by one per
/// payload packet, or its decode times (DTS, else PTS) or the PCRs not going forward.
fn seam(ts: &[u8]) -> Option<String> {
    let mut cc: Vec<Option<u8>> = vec![None; PIDS];
    let mut decode: Vec<Option<u64>> = vec![None; PIDS];
    let mut last_pcr = None;
    for (n, p) in ts.chunks_exact(PACKET).enumerate() {
        let pid = pid(p);
        if pid == NULL_PID {
            continue;
        }
        let slot = usize::from(pid);
        if has_payload(p) {
            let now = p[3] & 0x0F;
            if cc[slot].is_some_and(|before| now != (before + 1) % 16) {
                return Some(format!(
                    "packet {n}, PID {pid}: counter {now} after {:?}",
                    cc[slot]
                ));
            }
            cc[slot] = Some(now);
        }
        if let Some(pcr) = pcr_base(p) {
            if last_pcr.is_some_and(|l| pcr <= l) {
                return Some(format!("packet {n}: PCR {pcr} after {last_pcr:?}"));
            }
            last_pcr = Some(pcr);
        }
        if let Some(t) = pes_timestamps(p) {
            let d = t.dts.map_or(t.pts, |(_, d)| d);
            if decode[slot].is_some_and(|b| d <= b) {
                return Some(format!(
                    "packet {n}, PID {pid}: decode time {d} after {:?}",
                    decode[slot]
                ));
            }
            decode[slot] = Some(d);
        }
    }
    last_pcr.is_none().then(|| "no PCR at all".to_owned())
}

#[test]
fn the_first_pass_is_the_clip_byte_for_byte() {
    let clip = Clip::new(FALLBACK.to_vec());
    assert_eq!(looped(&clip, 1), FALLBACK);
}

#[test]
fn the_embedded_clip_loops_without_a_seam() {
    let clip = Clip::new(FALLBACK.to_vec());
    // The embedded clip is 1.92 s: 48 video frames, 80 audio frames.
    assert_eq!(clip.period(), 172_800);
    // The clip alone is continuous; a plain loop is not (that is what this fixes).
    assert_eq!(seam(FALLBACK), None);
    assert!(seam(&[FALLBACK, FALLBACK].concat()).is_some());
    assert_eq!(seam(&looped(&clip, 20)), None);
}

#[test]
fn cut_reads_give_the_same_bytes_as_whole_passes() {
    let clip = Clip::new(FALLBACK.to_vec());
    let whole = looped(&clip, 3);
    let mut cut = Vec::with_capacity(whole.len());
    let sizes = [1, 187, 189, 376, 1000, 5, 188 * 7];
    let (mut pass, mut pos, mut i) = (0u64, 0usize, 0usize);
    while cut.len() < whole.len() {
        let n = sizes[i % sizes.len()].min(clip.len() - pos);
        let mut piece = vec![0u8; n];
        clip.copy_pass(pass, pos, &mut piece);
        cut.extend_from_slice(&piece);
        pos += n;
        if pos == clip.len() {
            (pass, pos) = (pass + 1, 0);
        }
        i += 1;
    }
    assert_eq!(cut, whole);
}

#[test]
fn timestamps_wrap_at_33_bits_like_a_real_stream() {
    let clip = Clip::new(FALLBACK.to_vec());
    // The pass whose shift first takes the clip's last PCR past 2^33.
    let last_pcr = FALLBACK
        .chunks_exact(PACKET)
        .filter_map(pcr_base)
        .max()
        .unwrap();
    let pass = (TS_MODULO - last_pcr) / clip.period() + 1;
    let mut out = vec![0u8; clip.len()];
    clip.copy_pass(pass, 0, &mut out);
    let pcrs: Vec<u64> = out.chunks_exact(PACKET).filter_map(pcr_base).collect();
    assert!(pcrs.iter().all(|&p| p < TS_MODULO));
    assert!(
        pcrs.windows(2).any(|w| w[1] < w[0]),
        "no wrap in pass {pass}"
    );
}

#[test]
fn real_ffmpeg_reads_the_loop_as_one_clean_stream() {
    // The clip the simulator makes with ffmpeg (MPEG-2 video + MP2, 4 s).
    let dir = std::env::temp_dir().join(format!("xg2g-sim-loop-{}", std::process::id()));
    let bytes = load_clip(&dir);
    assert!(
        bytes != FALLBACK,
        "ffmpeg must be installed (scripts/test.sh installs it)"
    );
    let clip = Clip::new(bytes);
    // 3.96 s: 99 video frames and 165 audio frames end together.
    assert_eq!(clip.period(), 356_400);
    let passes = 4;
    let file = dir.join("looped.ts");
    std::fs::write(&file, looped(&clip, passes)).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "warning", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "ffmpeg failed: {log}");
    assert!(
        log.trim().is_empty(),
        "ffmpeg warned about the looped stream:\n{log}"
    );
    let duration: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    let want = (passes * clip.period()) as f64 / 90_000.0;
    assert!(
        (duration - want).abs() < 0.25,
        "duration {duration} s, want about {want} s"
    );
}

proptest! {
    #[test]
    fn any_packets_loop_without_panics(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), PACKET), 1..8),
        pass in any::<u64>(),
        pos in 0usize..2000,
        len in 0usize..2000,
    ) {
        let bytes: Vec<u8> = packets.into_iter().flat_map(|mut p| { p[0] = 0x47; p }).collect();
        let clip = Clip::new(bytes);
        let pos = pos % clip.len();
        let mut dst = vec![0u8; len.min(clip.len() - pos)];
        clip.copy_pass(pass, pos, &mut dst);
        // Only counters and timestamps change: the sync bytes stay.
        let first = pos.div_ceil(PACKET) * PACKET;
        for at in (first..pos + dst.len()).step_by(PACKET) {
            prop_assert_eq!(dst[at - pos], 0x47);
        }
    }
}
