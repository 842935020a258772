//! ffmpeg argument vectors: MPEG-TS in on stdin, MPEG-TS out on stdout, for one profile
//! on one encoder backend (software, VAAPI, V4L2 M2M), plus the one-frame probe encode.
//!
//! Rules:
//! - Pure: builds `Vec<String>` (without the program name) and never spawns anything;
//!   the same inputs always give the same vector (golden-tested below).
//! - Written for Debian's ffmpeg 5.1; every option used exists there.
//! - Low latency and late joiners first: small probe, no B-frames, a keyframe at least
//!   every 2 s with SPS/PPS in front of it, PAT/PMT re-sent, no mux delay.
//! - Decisions, once:
//!   - Logging: `-hide_banner -nostats -loglevel level+warning`. stderr carries only
//!     warnings and errors, each line tagged `[warning]`/`[error]`, so whoever drains it
//!     can log it line by line without a progress parser. Placed first among our
//!     arguments, it still overrides a wrapper's earlier `-loglevel` (ffmpeg applies
//!     options in order, the last wins). No `-nostdin`: stdin *is* the input, and ffmpeg
//!     turns off its key handling by itself when reading `pipe:0`.
//!   - Input: `-fflags +genpts+discardcorrupt` (broadcast has gaps and damaged packets);
//!     `-analyzeduration 1.5 s`, `-probesize 2 MB`: DVB repeats PAT/PMT every ≤100 ms
//!     and MPEG-2/H.264 sequence headers every GOP (≤1 s), so this finds video and audio
//!     in well under a second on SD and HD while the defaults (5 s / 5 MB) delay the
//!     first byte.
//!   - Streams: first video and first audio only (`-map 0:v:0? -map 0:a:0?`), subtitles
//!     and data dropped (`-sn -dn`). Players pick one audio track anyway; encoding every
//!     language doubles the CPU cost; `?` keeps radio channels (no video) working.
//!   - Keyframes: `-g 50` and `-force_key_frames expr:gte(t,n_forced*2)`: at most 2 s
//!     (or 50 frames) between keyframes whatever the frame rate, so a late joiner waits
//!     at most 2 s.
//!   - Rate: `-b:v B -maxrate B -bufsize 2B` (capped bitrate, 2 s buffer matching the
//!     GOP); V4L2 M2M drivers only take `-b:v`.
//!   - Deinterlace: broadcast SD and 1080i are interlaced and players show combing, so
//!     video encodes deinterlace only frames flagged interlaced (`yadif` with
//!     `deint=interlaced`, `deinterlace_vaapi=auto=1`), at frame rate (cheapest);
//!     progressive 720p/1080p passes untouched. Deinterlacing comes before scaling.
//!   - Scale: `h=min(ih,H)`, width `-2` (keeps the aspect ratio, even width): never
//!     upscales.
//!   - Audio: `-c:a aac -b:a Nk -ac C -af aresample=async=1` (fills broadcast gaps with
//!     silence and trims overlaps so audio stays in sync), or copy.
//!   - Output: `-flush_packets 0 -f mpegts -mpegts_flags +resend_headers -muxdelay 0
//!     -muxpreload 0 pipe:1`. Without `-flush_packets 0` ffmpeg flushes the pipe after
//!     every packet (measured: ~1100 writes/s for an 8 Mbit/s `aac` stream, each a wake-up
//!     of the daemon); with it, 32 KiB writes (~20/s). The cost is at most one 32 KiB
//!     buffer of delay: nothing at TV rates, about a second on a 200 kbit/s radio stream.
//! - Backends: a profile that encodes no video opens no device, so its arguments are the
//!   same on every backend. A video profile on a backend that cannot encode it (see
//!   [`backend_supports`]) gets the software arguments: a slow stream beats none, and the
//!   caller is expected to check [`backend_supports`] first.

use std::path::{Path, PathBuf};

use super::profile::{AudioMode, Profile, VideoMode};

/// An encoder backend: where video encoding runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// libx264 / libx265 on the CPU.
    Software,
    /// A VAAPI render node (Intel, AMD), e.g. `/dev/dri/renderD128`.
    Vaapi {
        /// The DRM render node; must be valid UTF-8 to reach ffmpeg intact.
        render_node: PathBuf,
    },
    /// A V4L2 memory-to-memory encoder (Raspberry Pi and other ARM boards).
    V4l2m2m {
        /// The M2M video node. ffmpeg 5.1's `h264_v4l2m2m` has no option to pick a node
        /// (it takes the first one that encodes H.264), so this path is used for slot
        /// accounting and probing by the caller, not in the arguments.
        device: PathBuf,
    },
}

impl Backend {
    /// The stable lower-case name for logs, metric labels and settings:
    /// "software", "vaapi" or "v4l2m2m".
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Software => "software",
            Backend::Vaapi { .. } => "vaapi",
            Backend::V4l2m2m { .. } => "v4l2m2m",
        }
    }
}

/// Whether `profile` may use `backend`: `copy` uses no backend at all (false
/// everywhere); an audio-only transcode like `aac` runs on the CPU (software only); H.264
/// runs on every backend; HEVC on software and VAAPI (V4L2 M2M boards encode H.264 only).
pub fn backend_supports(backend: &Backend, profile: &Profile) -> bool {
    if profile.is_passthrough() {
        return false;
    }
    match (&profile.video, backend) {
        (VideoMode::Copy, Backend::Software) => true,
        (VideoMode::Copy, _) => false,
        (VideoMode::H264 { .. }, _) => true,
        (VideoMode::Hevc { .. }, Backend::V4l2m2m { .. }) => false,
        (VideoMode::Hevc { .. }, _) => true,
    }
}

/// The ffmpeg arguments (without the program name) that read MPEG-TS from stdin and write
/// MPEG-TS to stdout for `profile` on `backend` (see the module rules for every choice).
/// VAAPI decodes in hardware; use [`ffmpeg_args_with`] for the software-decode variant.
/// Guarantees: deterministic, never panics, always ends with `-f mpegts ... pipe:1`.
pub fn ffmpeg_args(profile: &Profile, backend: &Backend) -> Vec<String> {
    ffmpeg_args_with(profile, backend, true)
}

/// As [`ffmpeg_args`], choosing whether VAAPI also decodes in hardware (`hw_decode`).
/// Hardware decode saves the CPU and a copy, but fails for codecs or profiles the GPU
/// cannot decode (e.g. MPEG-2 on recent AMD); then retry with `hw_decode = false`
/// (software decode, upload to the GPU, filter and encode there). The filter chain
/// accepts both frame kinds, so only the input options differ. Ignored for other
/// backends.
pub fn ffmpeg_args_with(profile: &Profile, backend: &Backend, hw_decode: bool) -> Vec<String> {
    let mut a = Args::default();
    a.push(&LOG_ARGS);

    let encode = match &profile.video {
        VideoMode::Copy => None,
        VideoMode::H264 {
            max_height,
            bitrate_kbps,
        } => Some((Codec::H264, *max_height, *bitrate_kbps)),
        VideoMode::Hevc {
            max_height,
            bitrate_kbps,
        } => Some((Codec::Hevc, *max_height, *bitrate_kbps)),
    };
    // Only a video encode opens a device; an unsupported pairing falls back to the CPU.
    let backend = match encode {
        Some(_) if backend_supports(backend, profile) => backend,
        _ => &Backend::Software,
    };

    if let Backend::Vaapi { render_node } = backend {
        a.push(&["-init_hw_device"]);
        a.one(format!("vaapi=va:{}", render_node.to_string_lossy()));
        a.push(&["-filter_hw_device", "va"]);
        if hw_decode {
            a.push(&[
                "-hwaccel",
                "vaapi",
                "-hwaccel_device",
                "va",
                "-hwaccel_output_format",
                "vaapi",
            ]);
        }
    }
    a.push(&INPUT);
    a.push(&["-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn"]);

    match encode {
        None => a.push(&["-c:v", "copy"]),
        Some((codec, height, kbps)) => video_encode(&mut a, backend, codec, height, kbps),
    }

    match &profile.audio {
        AudioMode::Copy => a.push(&["-c:a", "copy"]),
        AudioMode::Aac {
            bitrate_kbps,
            channels,
        } => {
            a.push(&["-c:a", "aac", "-b:a"]);
            a.one(format!("{bitrate_kbps}k"));
            a.push(&["-ac"]);
            a.one(channels.to_string());
            a.push(&["-af", "aresample=async=1"]);
        }
    }

    a.push(&[
        "-flush_packets",
        "0",
        "-f",
        "mpegts",
        "-mpegts_flags",
        "+resend_headers",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "pipe:1",
    ]);
    a.0
}

/// The one-frame H.264 test encode used to probe a backend without libva or V4L2
/// bindings: exit status 0 means the backend encodes. Reads nothing from stdin, writes
/// nothing but errors (`-loglevel level+error`); a 320x240 `testsrc` frame
/// (`d=0.04` = one frame at 25 fps) to the null muxer.
pub fn probe_args(backend: &Backend) -> Vec<String> {
    let mut a = Args::default();
    a.push(&[
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+error",
    ]);
    if let Backend::Vaapi { render_node } = backend {
        a.push(&["-init_hw_device"]);
        a.one(format!("vaapi=va:{}", render_node.to_string_lossy()));
        a.push(&["-filter_hw_device", "va"]);
    }
    a.push(&["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=0.04"]);
    match backend {
        Backend::Software => a.push(&["-c:v", "libx264"]),
        Backend::Vaapi { .. } => a.push(&["-vf", "format=nv12,hwupload", "-c:v", "h264_vaapi"]),
        Backend::V4l2m2m { .. } => a.push(&["-vf", "format=yuv420p", "-c:v", "h264_v4l2m2m"]),
    }
    a.push(&["-frames:v", "1", "-f", "null", "-"]);
    a.0
}

/// Logging options (see the module rules).
const LOG_ARGS: [&str; 4] = ["-hide_banner", "-nostats", "-loglevel", "level+warning"];

/// Input options (see the module rules): broadcast-tolerant, quick to probe, stdin.
const INPUT: [&str; 8] = [
    "-fflags",
    "+genpts+discardcorrupt",
    "-analyzeduration",
    "1500000",
    "-probesize",
    "2000000",
    "-i",
    "pipe:0",
];

/// Logging and input options as owned arguments: how every job's vector starts.
fn log_and_input() -> Vec<String> {
    LOG_ARGS
        .iter()
        .chain(&INPUT)
        .map(|s| (*s).to_string())
        .collect()
}

/// ffmpeg arguments that segment MPEG-TS from stdin into a live HLS playlist in `dir`:
/// streams copied, segments written to a temporary name and renamed when complete (a
/// reader never sees half a segment), old ones deleted, no end tag (it is live).
pub fn hls_args(dir: &Path, segment_seconds: u32, list_size: u32) -> Vec<String> {
    let mut args = log_and_input();
    for a in [
        "-map",
        "0:v:0?",
        "-map",
        "0:a:0?",
        "-sn",
        "-dn",
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
    ] {
        args.push(a.to_string());
    }
    args.push(segment_seconds.to_string());
    args.push("-hls_list_size".into());
    args.push(list_size.to_string());
    for a in [
        "-hls_flags",
        "delete_segments+temp_file+omit_endlist+independent_segments",
        "-hls_segment_filename",
    ] {
        args.push(a.to_string());
    }
    args.push(dir.join("seg%d.ts").to_string_lossy().into_owned());
    args.push(dir.join("index.m3u8").to_string_lossy().into_owned());
    args
}

/// ffmpeg arguments for one JPEG frame from MPEG-TS on stdin: the input options of
/// every transcode, the first video stream, deinterlaced if flagged, scaled down.
pub fn snapshot_args(max_height: u32) -> Vec<String> {
    let mut args = log_and_input();
    args.extend(["-map", "0:v:0", "-frames:v", "1", "-vf"].map(String::from));
    args.push(format!(
        "yadif=deint=interlaced,scale=-2:'min(ih,{max_height})'"
    ));
    args.extend(
        ["-q:v", "5", "-f", "image2", "-c:v", "mjpeg", "pipe:1"]
            .iter()
            .map(|s| (*s).to_string()),
    );
    args
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    Hevc,
}

/// An argument vector under construction.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push(&mut self, items: &[&str]) {
        self.0.extend(items.iter().map(|s| (*s).to_owned()));
    }

    fn one(&mut self, item: String) {
        self.0.push(item);
    }
}

/// The CPU filter chain for software and V4L2 M2M encoders: deinterlace flagged frames,
/// scale down to `height`, hand the encoder plain 4:2:0. The quotes are filtergraph
/// quoting (no shell is involved) so the comma in `min()` is not a filter separator.
fn cpu_filters(height: u32) -> String {
    format!(
        "yadif=mode=send_frame:parity=auto:deint=interlaced,scale=-2:'min(ih,{height})',format=yuv420p"
    )
}

fn video_encode(a: &mut Args, backend: &Backend, codec: Codec, height: u32, kbps: u32) {
    a.push(&["-vf"]);
    match backend {
        Backend::Software | Backend::V4l2m2m { .. } => a.one(cpu_filters(height)),
        // nv12|vaapi accepts both hardware-decoded surfaces (hwupload passes them
        // through) and software frames (converted to nv12 and uploaded).
        Backend::Vaapi { .. } => a.one(format!(
            "format=nv12|vaapi,hwupload,deinterlace_vaapi=auto=1,scale_vaapi=w=-2:h='min(ih,{height})':format=nv12"
        )),
    }
    match (backend, codec) {
        (Backend::Software, Codec::H264) => a.push(&[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ]),
        // x265 prints its own banner and stats to stderr past ffmpeg's log level.
        (Backend::Software, Codec::Hevc) => a.push(&[
            "-c:v",
            "libx265",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-x265-params",
            "log-level=error",
        ]),
        (Backend::Vaapi { .. }, Codec::H264) => a.push(&["-c:v", "h264_vaapi"]),
        (Backend::Vaapi { .. }, Codec::Hevc) => a.push(&["-c:v", "hevc_vaapi"]),
        // backend_supports() keeps HEVC off V4L2 M2M; H.264 is the only codec left.
        (Backend::V4l2m2m { .. }, _) => a.push(&["-c:v", "h264_v4l2m2m"]),
    }
    a.push(&["-b:v"]);
    a.one(format!("{kbps}k"));
    if !matches!(backend, Backend::V4l2m2m { .. }) {
        // B-frames add a frame of delay per B-frame and confuse some TS players;
        // zerolatency already drops them for x264/x265, VAAPI defaults to 2.
        a.push(&["-bf", "0", "-maxrate"]);
        a.one(format!("{kbps}k"));
        a.push(&["-bufsize"]);
        a.one(format!("{}k", u64::from(kbps) * 2));
    }
    a.push(&["-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)"]);
    if matches!(backend, Backend::V4l2m2m { .. }) {
        // M2M encoders may emit SPS/PPS only once; dump_extra puts the stream headers
        // in front of every keyframe so late joiners can start decoding (a no-op when
        // the encoder already repeats them or reports none).
        a.push(&["-bsf:v", "dump_extra=freq=keyframe"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::profile::{builtin, parse_profiles};
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn vaapi() -> Backend {
        Backend::Vaapi {
            render_node: PathBuf::from("/dev/dri/renderD128"),
        }
    }

    fn v4l2() -> Backend {
        Backend::V4l2m2m {
            device: PathBuf::from("/dev/video11"),
        }
    }

    fn backends() -> [Backend; 3] {
        [Backend::Software, vaapi(), v4l2()]
    }

    fn profile(name: &str) -> Profile {
        builtin()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no built-in {name}"))
    }

    #[rustfmt::skip]
    const COPY: &[&str] = &[
        "-hide_banner", "-nostats", "-loglevel", "level+warning",
        "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
        "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
        "-c:v", "copy",
        "-c:a", "copy",
        "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
    ];

    #[rustfmt::skip]
    const AAC: &[&str] = &[
        "-hide_banner", "-nostats", "-loglevel", "level+warning",
        "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
        "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
        "-c:v", "copy",
        "-c:a", "aac", "-b:a", "192k", "-ac", "2", "-af", "aresample=async=1",
        "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
    ];

    #[rustfmt::skip]
    const H264_SOFTWARE: &[&str] = &[
        "-hide_banner", "-nostats", "-loglevel", "level+warning",
        "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
        "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
        "-vf", "yadif=mode=send_frame:parity=auto:deint=interlaced,scale=-2:'min(ih,720)',format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-b:v", "3000k", "-bf", "0", "-maxrate", "3000k", "-bufsize", "6000k",
        "-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-c:a", "aac", "-b:a", "192k", "-ac", "2", "-af", "aresample=async=1",
        "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
    ];

    #[rustfmt::skip]
    const H264_VAAPI: &[&str] = &[
        "-hide_banner", "-nostats", "-loglevel", "level+warning",
        "-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va",
        "-hwaccel", "vaapi", "-hwaccel_device", "va", "-hwaccel_output_format", "vaapi",
        "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
        "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
        "-vf", "format=nv12|vaapi,hwupload,deinterlace_vaapi=auto=1,scale_vaapi=w=-2:h='min(ih,720)':format=nv12",
        "-c:v", "h264_vaapi",
        "-b:v", "3000k", "-bf", "0", "-maxrate", "3000k", "-bufsize", "6000k",
        "-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-c:a", "aac", "-b:a", "192k", "-ac", "2", "-af", "aresample=async=1",
        "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
    ];

    #[rustfmt::skip]
    const H264_VAAPI_SW_DECODE: &[&str] = &[
        "-hide_banner", "-nostats", "-loglevel", "level+warning",
        "-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va",
        "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
        "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
        "-vf", "format=nv12|vaapi,hwupload,deinterlace_vaapi=auto=1,scale_vaapi=w=-2:h='min(ih,720)':format=nv12",
        "-c:v", "h264_vaapi",
        "-b:v", "3000k", "-bf", "0", "-maxrate", "3000k", "-bufsize", "6000k",
        "-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-c:a", "aac", "-b:a", "192k", "-ac", "2", "-af", "aresample=async=1",
        "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
    ];

    #[rustfmt::skip]
    const H264_V4L2M2M: &[&str] = &[
        "-hide_banner", "-nostats", "-loglevel", "level+warning",
        "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
        "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
        "-vf", "yadif=mode=send_frame:parity=auto:deint=interlaced,scale=-2:'min(ih,720)',format=yuv420p",
        "-c:v", "h264_v4l2m2m",
        "-b:v", "3000k",
        "-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-bsf:v", "dump_extra=freq=keyframe",
        "-c:a", "aac", "-b:a", "192k", "-ac", "2", "-af", "aresample=async=1",
        "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
    ];

    #[test]
    fn golden_builtins_on_every_backend() {
        for b in backends() {
            assert_eq!(
                ffmpeg_args(&profile("copy"), &b),
                v(COPY),
                "copy on {}",
                b.as_str()
            );
            assert_eq!(
                ffmpeg_args(&profile("aac"), &b),
                v(AAC),
                "aac on {}",
                b.as_str()
            );
            // Without a video encode the decode choice does not matter.
            assert_eq!(ffmpeg_args_with(&profile("aac"), &b, false), v(AAC));
        }
        let h264 = profile("h264");
        assert_eq!(ffmpeg_args(&h264, &Backend::Software), v(H264_SOFTWARE));
        assert_eq!(ffmpeg_args(&h264, &vaapi()), v(H264_VAAPI));
        assert_eq!(
            ffmpeg_args_with(&h264, &vaapi(), false),
            v(H264_VAAPI_SW_DECODE)
        );
        assert_eq!(ffmpeg_args(&h264, &v4l2()), v(H264_V4L2M2M));
        assert_eq!(
            ffmpeg_args_with(&h264, &Backend::Software, false),
            v(H264_SOFTWARE)
        );
    }

    #[test]
    #[rustfmt::skip]
    fn golden_user_profiles() {
        let user = parse_profiles(
            "hevc4k:video=hevc,height=2160,bitrate=12M,audio=copy;radio:audio_bitrate=96k,channels=1",
        )
        .unwrap();
        let hevc_sw = v(&[
            "-hide_banner", "-nostats", "-loglevel", "level+warning",
            "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
            "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
            "-vf", "yadif=mode=send_frame:parity=auto:deint=interlaced,scale=-2:'min(ih,2160)',format=yuv420p",
            "-c:v", "libx265", "-preset", "veryfast", "-tune", "zerolatency", "-x265-params", "log-level=error",
            "-b:v", "12000k", "-bf", "0", "-maxrate", "12000k", "-bufsize", "24000k",
            "-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)",
            "-c:a", "copy",
            "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
        ]);
        assert_eq!(ffmpeg_args(&user[0], &Backend::Software), hevc_sw);
        // HEVC cannot run on V4L2 M2M: software fallback.
        assert_eq!(ffmpeg_args(&user[0], &v4l2()), hevc_sw);
        assert_eq!(
            ffmpeg_args(&user[0], &vaapi()),
            v(&[
                "-hide_banner", "-nostats", "-loglevel", "level+warning",
                "-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va",
                "-hwaccel", "vaapi", "-hwaccel_device", "va", "-hwaccel_output_format", "vaapi",
                "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
                "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
                "-vf", "format=nv12|vaapi,hwupload,deinterlace_vaapi=auto=1,scale_vaapi=w=-2:h='min(ih,2160)':format=nv12",
                "-c:v", "hevc_vaapi",
                "-b:v", "12000k", "-bf", "0", "-maxrate", "12000k", "-bufsize", "24000k",
                "-g", "50", "-force_key_frames", "expr:gte(t,n_forced*2)",
                "-c:a", "copy",
                "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
            ])
        );
        assert_eq!(
            ffmpeg_args(&user[1], &vaapi()),
            v(&[
                "-hide_banner", "-nostats", "-loglevel", "level+warning",
                "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
                "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn",
                "-c:v", "copy",
                "-c:a", "aac", "-b:a", "96k", "-ac", "1", "-af", "aresample=async=1",
                "-flush_packets", "0", "-f", "mpegts", "-mpegts_flags", "+resend_headers", "-muxdelay", "0", "-muxpreload", "0", "pipe:1",
            ])
        );
    }

    #[test]
    #[rustfmt::skip]
    fn golden_snapshot_and_hls() {
        assert_eq!(snapshot_args(360), v(&[
            "-hide_banner", "-nostats", "-loglevel", "level+warning",
            "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
            "-i", "pipe:0", "-map", "0:v:0", "-frames:v", "1",
            "-vf", "yadif=deint=interlaced,scale=-2:'min(ih,360)'",
            "-q:v", "5", "-f", "image2", "-c:v", "mjpeg", "pipe:1",
        ]));
        assert_eq!(hls_args(Path::new("/data/hls/7"), 2, 6), v(&[
            "-hide_banner", "-nostats", "-loglevel", "level+warning",
            "-fflags", "+genpts+discardcorrupt", "-analyzeduration", "1500000", "-probesize", "2000000",
            "-i", "pipe:0", "-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn", "-c", "copy",
            "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
            "-hls_flags", "delete_segments+temp_file+omit_endlist+independent_segments",
            "-hls_segment_filename", "/data/hls/7/seg%d.ts", "/data/hls/7/index.m3u8",
        ]));
    }

    #[test]
    #[rustfmt::skip]
    fn golden_probes() {
        assert_eq!(
            probe_args(&Backend::Software),
            v(&[
                "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+error",
                "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=0.04",
                "-c:v", "libx264", "-frames:v", "1", "-f", "null", "-",
            ])
        );
        assert_eq!(
            probe_args(&vaapi()),
            v(&[
                "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+error",
                "-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va",
                "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=0.04",
                "-vf", "format=nv12,hwupload", "-c:v", "h264_vaapi",
                "-frames:v", "1", "-f", "null", "-",
            ])
        );
        assert_eq!(
            probe_args(&v4l2()),
            v(&[
                "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+error",
                "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=0.04",
                "-vf", "format=yuv420p", "-c:v", "h264_v4l2m2m",
                "-frames:v", "1", "-f", "null", "-",
            ])
        );
    }

    #[test]
    fn support_matrix() {
        let hevc = parse_profiles("x:video=hevc").unwrap().remove(0);
        let table = [
            // (profile, software, vaapi, v4l2m2m)
            (profile("copy"), [false, false, false]),
            (profile("aac"), [true, false, false]),
            (profile("h264"), [true, true, true]),
            (hevc, [true, true, false]),
        ];
        for (p, want) in table {
            let got = backends().map(|b| backend_supports(&b, &p));
            assert_eq!(got, want, "{}", p.name);
        }
        let names = backends().map(|b| b.as_str());
        assert_eq!(names, ["software", "vaapi", "v4l2m2m"]);
    }

    // --- the software vectors run for real ---

    fn need(tool: &str) {
        let ok = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{tool} not found: install Debian's ffmpeg (apt-get install ffmpeg; scripts/test.sh does it)"
        );
    }

    /// Runs `prog args` with `input` on stdin; returns stdout, panicking with stderr on
    /// failure. stdin is fed from a thread so a full stdout pipe cannot deadlock us.
    fn run(prog: &str, args: &[String], input: Vec<u8>) -> Vec<u8> {
        run_full(prog, args, input).0
    }

    /// As [`run`], returning (stdout, stderr).
    fn run_full(prog: &str, args: &[String], input: Vec<u8>) -> (Vec<u8>, String) {
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            // ffmpeg may stop reading early; a broken pipe is not our failure.
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// 2 s of interlaced 720x576 MPEG-2 + MP2 in MPEG-TS, like DVB SD.
    #[rustfmt::skip]
    fn broadcast_ts() -> Vec<u8> {
        let args = v(&[
            "-hide_banner", "-nostats", "-loglevel", "error",
            "-f", "lavfi", "-i", "testsrc=size=720x576:rate=25",
            "-f", "lavfi", "-i", "sine",
            "-c:v", "mpeg2video", "-flags", "+ildct+ilme", "-top", "1",
            "-c:a", "mp2", "-ac", "2", "-t", "2", "-f", "mpegts", "pipe:1",
        ]);
        run("ffmpeg", &args, Vec::new())
    }

    /// (codec_type, codec_name, height or channels, field_order) per stream, from
    /// `ffprobe -show_streams`.
    fn streams(ts: Vec<u8>) -> Vec<(String, String, u64, String)> {
        let args = v(&[
            "-v",
            "error",
            "-show_streams",
            "-of",
            "json",
            "-i",
            "pipe:0",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&run("ffprobe", &args, ts)).unwrap();
        let list = json["streams"].as_array().cloned().unwrap_or_default();
        list.iter()
            .map(|s| {
                (
                    s["codec_type"].as_str().unwrap_or("").to_owned(),
                    s["codec_name"].as_str().unwrap_or("").to_owned(),
                    s["height"].as_u64().or(s["channels"].as_u64()).unwrap_or(0),
                    s["field_order"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// One expected stream: kind, codec, height (video) or channels (audio), field order.
    fn s(t: &str, c: &str, n: u64, f: &str) -> (String, String, u64, String) {
        (t.to_owned(), c.to_owned(), n, f.to_owned())
    }

    #[test]
    fn software_vectors_run_in_real_ffmpeg() {
        need("ffmpeg");
        need("ffprobe");
        let input = broadcast_ts();
        assert!(input.len() > 100_000, "generated input too small");
        // The input really is interlaced, so "progressive" below proves yadif ran.
        assert_eq!(
            streams(input.clone()),
            [
                s("video", "mpeg2video", 576, "tt"),
                s("audio", "mp2", 2, "")
            ]
        );

        let out = run(
            "ffmpeg",
            &ffmpeg_args(&profile("aac"), &Backend::Software),
            input.clone(),
        );
        assert_eq!(
            streams(out),
            [
                s("video", "mpeg2video", 576, "tt"),
                s("audio", "aac", 2, "")
            ]
        );

        // As a wrapper like ffmpeg-sidecar would call it: its earlier `-loglevel
        // level+info` must be overridden by ours, leaving stderr free of info lines.
        let mut wrapped = v(&["-loglevel", "level+info"]);
        wrapped.extend(ffmpeg_args(&profile("h264"), &Backend::Software));
        let (out, stderr) = run_full("ffmpeg", &wrapped, input.clone());
        assert!(!stderr.contains("[info]"), "info lines on stderr: {stderr}");
        // 576 lines is below the 720 cap: kept, never upscaled; deinterlaced.
        assert_eq!(
            streams(out),
            [
                s("video", "h264", 576, "progressive"),
                s("audio", "aac", 2, "")
            ]
        );

        let user = parse_profiles(
            "mobile:video=h264,height=480,bitrate=800k,audio_bitrate=64k,channels=1;\
             small265:video=hevc,height=288,bitrate=500k,audio=copy",
        )
        .unwrap();
        let out = run(
            "ffmpeg",
            &ffmpeg_args(&user[0], &Backend::Software),
            input.clone(),
        );
        assert_eq!(
            streams(out),
            [
                s("video", "h264", 480, "progressive"),
                s("audio", "aac", 1, "")
            ]
        );
        let out = run("ffmpeg", &ffmpeg_args(&user[1], &Backend::Software), input);
        // ffprobe reports no field order for HEVC in MPEG-TS.
        assert_eq!(
            streams(out),
            [s("video", "hevc", 288, ""), s("audio", "mp2", 2, "")]
        );
    }

    #[test]
    fn software_probe_runs_in_real_ffmpeg() {
        need("ffmpeg");
        run("ffmpeg", &probe_args(&Backend::Software), Vec::new());
    }
}
