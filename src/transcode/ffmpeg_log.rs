//! ffmpeg's stderr, one line at a time: log events with their level and context, progress
//! (stats) lines, a stable error class for metrics, and a rate limiter for forwarding.
//!
//! Rules:
//! - Pure: no processes, no I/O, no clock reads (the throttle is handed `now`).
//! - Total: every byte sequence parses to a [`Line`]; nothing here panics on input and
//!   nothing fails, which is why this module has no error enum.
//! - Bounded: a line is cut at [`MAX_LINE_BYTES`] before anything else looks at it, then
//!   decoded as lossy UTF-8; control characters in messages become U+FFFD so one ffmpeg
//!   line stays one line in our log.
//! - Written against Debian's ffmpeg 5.1 with `-loglevel level+…` (each line tagged
//!   `[info]`, `[error]`, … after an optional `[h264 @ 0x…]` context); untagged lines are
//!   still accepted with [`Level::Unknown`].

use std::time::{Duration, Instant};

/// The most bytes of one stderr line that are looked at; the rest is dropped (ffmpeg can
/// print whole SDP blobs or binary garbage from a broken input on one "line").
pub const MAX_LINE_BYTES: usize = 1024;

/// Appended to a message whose line was longer than [`MAX_LINE_BYTES`].
const CUT_MARK: &str = "…";

/// ffmpeg's log levels (libavutil `AV_LOG_*`), ordered from chattiest to most severe, so
/// `level >= Level::Warning` means "worth our log". `Unknown` (a line without a level
/// tag) sorts last: an untagged line is rare and usually a failure printed directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `[trace]`
    Trace,
    /// `[debug]`
    Debug,
    /// `[verbose]`
    Verbose,
    /// `[info]`
    Info,
    /// `[warning]`
    Warning,
    /// `[error]`
    Error,
    /// `[fatal]`: ffmpeg is about to exit.
    Fatal,
    /// `[panic]`: ffmpeg is about to abort.
    Panic,
    /// No level tag, or one this parser does not know.
    Unknown,
}

impl Level {
    /// The tag ffmpeg prints for this level (`"warning"`, …); `"unknown"` for `Unknown`.
    /// Stable: usable as a log field or metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Verbose => "verbose",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
            Level::Panic => "panic",
            Level::Unknown => "unknown",
        }
    }

    fn from_tag(tag: &str) -> Option<Level> {
        // `quiet` is a verbosity setting, never printed as a tag, so it is not here.
        Some(match tag {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "verbose" => Level::Verbose,
            "info" => Level::Info,
            "warning" => Level::Warning,
            "error" => Level::Error,
            "fatal" => Level::Fatal,
            "panic" => Level::Panic,
            _ => return None,
        })
    }
}

/// One stats line (`frame=  123 fps= 25 q=28.0 size= 1024kB time=00:00:04.92
/// bitrate=1703.8kbits/s speed=1.0x`). A field is `None` when the line lacks it, says
/// `N/A`, or holds something unparsable, negative or non-finite; never a made-up value.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Frames written so far (`frame=`); absent on audio-only outputs.
    pub frame: Option<u64>,
    /// Current encode rate in frames per second (`fps=`).
    pub fps: Option<f64>,
    /// Position in the output (`time=`).
    pub out_time: Option<Duration>,
    /// Encode speed relative to real time (`speed=1.0x` → 1.0).
    pub speed: Option<f64>,
    /// Output bitrate in kbit/s (`bitrate=1703.8kbits/s` → 1703.8).
    pub bitrate_kbps: Option<f64>,
}

/// What one stderr line was.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A log message. `context` is the component in front of the level tag without its
    /// pointer (`[h264 @ 0x55d0c8a0]` → `h264`); `message` is trimmed, non-empty, free of
    /// control characters, ends in `…` if the line was cut, and is at most
    /// 3 × [`MAX_LINE_BYTES`] + 3 bytes (each invalid byte widens to a 3-byte U+FFFD).
    Log {
        /// Its level; `Unknown` when the line carried no known tag.
        level: Level,
        /// The emitting component, if the line named one.
        context: Option<String>,
        /// The text after the tags.
        message: String,
    },
    /// A stats line.
    Progress(Progress),
    /// Nothing but whitespace or tags.
    Blank,
}

/// Parses one line of ffmpeg stderr (with or without its `\n`/`\r\n`/`\r` ending).
///
/// Never panics, allocates at most a few KiB whatever `raw` holds. If `raw` still holds
/// several `\r`-separated segments (a reader that splits on `\n` only gets every stats
/// redraw in one piece), the last non-blank segment is parsed: it is the one a terminal
/// would show.
pub fn parse_line(raw: &[u8]) -> Line {
    let cut = raw.len() > MAX_LINE_BYTES;
    let bytes = raw.get(..MAX_LINE_BYTES).unwrap_or(raw);
    let text = String::from_utf8_lossy(bytes);
    let segment = text
        .split(['\r', '\n'])
        .rev()
        .find(|s| !s.trim().is_empty())
        .unwrap_or("");
    let (context, level, rest) = split_tags(segment.trim());

    if let Some(progress) = parse_progress(rest) {
        return Line::Progress(progress);
    }
    let mut message = clean(rest);
    if message.is_empty() {
        return Line::Blank;
    }
    if cut {
        message.push_str(CUT_MARK);
    }
    Line::Log {
        level: level.unwrap_or(Level::Unknown),
        context: context.map(clean).filter(|c| !c.is_empty()),
        message,
    }
}

/// Splits `[ctx @ 0x…] [level] rest` into its parts. Looks at no more than two leading
/// bracket groups: ffmpeg prints at most the context and the level, and a message may
/// itself start with brackets (`Press [q] to stop`).
fn split_tags(line: &str) -> (Option<&str>, Option<Level>, &str) {
    let mut rest = line;
    let mut context = None;
    for _ in 0..2 {
        let Some(inner_and_rest) = rest.strip_prefix('[') else {
            break;
        };
        let Some((inner, after)) = inner_and_rest.split_once(']') else {
            break;
        };
        if let Some(level) = Level::from_tag(inner) {
            return (context, Some(level), after.trim_start());
        }
        if context.is_some() {
            break;
        }
        // av_log prints the context as `name @ pointer`; the pointer changes every run
        // and would make log lines impossible to group, so it is dropped.
        context = Some(inner.split(" @ ").next().unwrap_or(inner).trim());
        rest = after.trim_start();
    }
    (context, None, rest)
}

/// Trims and replaces control characters (ANSI escapes, stray `\r`, NUL from binary
/// garbage) so the message cannot break or recolour our one-line-per-event log.
fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// A stats line starts with `frame=` (video) or `size=`/`Lsize=` (audio only; `L` marks
/// the last one) and always carries `time=`. Anything else is a log line.
fn parse_progress(line: &str) -> Option<Progress> {
    if !["frame=", "size=", "Lsize="]
        .iter()
        .any(|k| line.starts_with(k))
    {
        return None;
    }
    let mut progress = Progress {
        frame: None,
        fps: None,
        out_time: None,
        speed: None,
        bitrate_kbps: None,
    };
    let mut saw_time = false;
    for (key, value) in (Fields { rest: line }) {
        // With several outputs ffmpeg repeats `q=`; the first of any key wins.
        match key {
            "frame" if progress.frame.is_none() => progress.frame = value.parse().ok(),
            "fps" if progress.fps.is_none() => progress.fps = parse_nonneg(value),
            "time" if !saw_time => {
                saw_time = true;
                progress.out_time = parse_clock(value);
            }
            "bitrate" if progress.bitrate_kbps.is_none() => {
                progress.bitrate_kbps = value.strip_suffix("kbits/s").and_then(parse_nonneg);
            }
            "speed" if progress.speed.is_none() => {
                progress.speed = value.strip_suffix('x').and_then(parse_nonneg);
            }
            _ => {}
        }
    }
    saw_time.then_some(progress)
}

/// Iterates `key=value` pairs separated by spaces, where ffmpeg pads values after the `=`
/// (`frame=   50`, `speed= 1.0x`). A word without `=` is skipped.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let trimmed = self.rest.trim_start();
            if trimmed.is_empty() {
                self.rest = trimmed;
                return None;
            }
            let word_end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            let (word, after_word) = trimmed.split_at_checked(word_end)?;
            let Some((key, value)) = word.split_once('=') else {
                self.rest = after_word;
                continue;
            };
            if !value.is_empty() {
                self.rest = after_word;
                return Some((key, value));
            }
            // `key=` followed by padding: the value is the next word.
            let padded = after_word.trim_start();
            let value_end = padded.find(char::is_whitespace).unwrap_or(padded.len());
            let (value, rest) = padded.split_at_checked(value_end)?;
            self.rest = rest;
            if value.contains('=') {
                // `fps= q=28.0` would mean an empty fps; do not swallow the next pair.
                self.rest = padded;
                return Some((key, ""));
            }
            return Some((key, value));
        }
    }
}

/// A finite, non-negative decimal (`N/A`, `inf`, `-1` → `None`). `-0.0` is refused too:
/// ffmpeg prints it while the output time is still negative, i.e. meaningless.
fn parse_nonneg(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v.is_sign_positive()).then_some(v)
}

/// `HH:MM:SS.frac` (hours may exceed 99) → `Duration`. ffmpeg prints a negative time
/// (`-577014:32:22.77`) before the first packet; that and `N/A` are `None`.
fn parse_clock(s: &str) -> Option<Duration> {
    let mut parts = s.split(':');
    let hours: u64 = digits(parts.next()?)?;
    let minutes: u64 = digits(parts.next()?)?;
    let seconds_part = parts.next()?;
    if parts.next().is_some() || minutes >= 60 {
        return None;
    }
    let (whole, frac) = seconds_part.split_once('.').unwrap_or((seconds_part, ""));
    let seconds: u64 = digits(whole)?;
    if seconds >= 60 {
        return None;
    }
    let mut nanos: u32 = 0;
    let mut scale: u32 = 100_000_000;
    for c in frac.chars() {
        let d = c.to_digit(10)?;
        nanos = nanos.saturating_add(d.saturating_mul(scale));
        scale /= 10;
    }
    let secs = hours
        .checked_mul(3600)?
        .checked_add(minutes * 60)?
        .checked_add(seconds)?;
    Some(Duration::new(secs, nanos))
}

/// Only ASCII digits (`str::parse` would also take a leading `+`).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Every label [`classify`] can return, for registering metric series up front.
pub const KINDS: &[&str] = &[
    "no_device",
    "encoder_unavailable",
    "input_unreachable",
    "input_invalid",
    "broken_pipe",
    "decode",
    "out_of_memory",
    "permission",
    "other",
];

/// Patterns per kind, checked in this order; the first kind with a matching pattern
/// wins. Matching is ASCII case-insensitive on substrings. The order settles overlaps:
/// `Error while decoding stream #0:0: Invalid data found when processing input` is a
/// decode error, not a bad input; `/dev/dri/renderD128: Permission denied` is fixed by
/// group membership, so permission beats the device patterns; out-of-memory beats all
/// because it is the real cause whatever failed with it.
const RULES: &[(&str, &[&str])] = &[
    (
        "out_of_memory",
        &["cannot allocate memory", "out of memory", "cannot allocate"],
    ),
    (
        "permission",
        &["permission denied", "operation not permitted"],
    ),
    (
        "no_device",
        &[
            // libavutil/hwcontext_vaapi.c
            "no va display found",
            "failed to initialise vaapi connection",
            "cannot open drm render node",
            "cannot open a va display",
            "failed to open a va display",
            "as drm device node",
            "no available render device",
            // libavcodec/vaapi_decode.c, fftools
            "failed to create a vaapi device",
            "device creation failed",
            "device setup failed",
            "no device available for",
            // libavcodec/v4l2_m2m.c
            "could not find a valid device",
            "/dev/dri/",
            "/dev/video",
        ],
    ),
    (
        "encoder_unavailable",
        &[
            "unknown encoder",
            "encoder not found",
            "error while opening encoder",
            "can't configure encoder",
            // libavcodec/vaapi_encode.c: the device exists but cannot encode this.
            "no usable encoding profile",
            "no usable encoding entrypoint",
            "no usable render target format",
            "is not supported by driver",
        ],
    ),
    (
        "broken_pipe",
        &[
            "broken pipe",
            "error writing trailer",
            "error closing file pipe:",
        ],
    ),
    (
        "decode",
        &[
            "error while decoding",
            "error submitting packet to decoder",
            "decode_slice_header error",
            "non-existing pps",
            "non-existing sps",
            "no frame!",
            "missing picture in access unit",
            "invalid nal unit size",
            "corrupt decoded frame",
            "co located pocs unavailable",
            "mmco: unref short failure",
            "reference picture missing",
            "missing reference picture",
            "illegal short term buffer",
            "cabac decode of qscale diff failed",
            "block unavailable for requested intra",
            "header missing",
            "crc mismatch",
            "channel element",
            "reserved bit set",
            "packet corrupt",
            "concealing",
            "ac-tex damaged",
            "invalid mb type",
        ],
    ),
    (
        "input_unreachable",
        &[
            "no such file or directory",
            "connection refused",
            "connection timed out",
            "connection reset by peer",
            "server returned",
            "http error",
            "network is unreachable",
            "no route to host",
            "name or service not known",
        ],
    ),
    (
        "input_invalid",
        &[
            "invalid data found when processing input",
            "could not find codec parameters",
            "unknown input format",
            "does not contain any stream",
            "output file #0 does not contain",
            "end of file",
        ],
    ),
];

/// A short, stable label for an error/fatal message, for the metric
/// `xg2g_transcode_errors_total{backend,kind}`: one of [`KINDS`], `"other"` when nothing
/// matched. Never panics, and looks at no more than [`MAX_LINE_BYTES`] of `message`.
pub fn classify(message: &str) -> &'static str {
    let head = message.get(..MAX_LINE_BYTES).unwrap_or(message);
    for (kind, patterns) in RULES {
        if patterns.iter().any(|p| contains_ignore_ascii_case(head, p)) {
            return kind;
        }
    }
    "other"
}

/// `needle` must be lower-case ASCII (all patterns above are).
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return true;
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The verdict of [`LogThrottle::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log this line.
    Yes,
    /// Drop this line; it is counted.
    No,
    /// Log this line, and say first that this many were dropped since the last one logged.
    YesAfterSuppressing(u64),
}

/// Fixed-window rate limiter for forwarding ffmpeg lines: at most `per_window` lines per
/// window are admitted, the rest are counted and reported once, on the first admitted
/// line of a later window. Use one per level (or per stream and level) so a flood of
/// decode warnings cannot hide an error. Constant memory; `now` going backwards is
/// treated as no time passing.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    admitted: u32,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle admitting `per_window` lines per `window`. `per_window` 0 is taken as 1:
    /// a throttle that admits nothing could never report what it dropped.
    pub fn new(per_window: u32, window: Duration) -> Self {
        LogThrottle {
            per_window: per_window.max(1),
            window,
            window_start: None,
            admitted: 0,
            suppressed: 0,
        }
    }

    /// Decides about one line seen at `now`. Guarantees: never more than `per_window`
    /// `Yes`/`YesAfterSuppressing` per window; every `No` is counted in exactly one later
    /// `YesAfterSuppressing` or in [`LogThrottle::take_suppressed`].
    pub fn admit(&mut self, now: Instant) -> Admit {
        let expired = match self.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.window,
        };
        if expired {
            self.window_start = Some(now);
            self.admitted = 0;
        }
        if self.admitted >= self.per_window {
            self.suppressed = self.suppressed.saturating_add(1);
            return Admit::No;
        }
        self.admitted += 1;
        match std::mem::take(&mut self.suppressed) {
            0 => Admit::Yes,
            n => Admit::YesAfterSuppressing(n),
        }
    }

    /// Lines dropped and not yet reported, and resets that count: call it when the
    /// ffmpeg process ends so the last burst is summarised too.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(level: Level, context: Option<&str>, message: &str) -> Line {
        Line::Log {
            level,
            context: context.map(str::to_string),
            message: message.to_string(),
        }
    }

    fn progress(line: &str) -> Progress {
        match parse_line(line.as_bytes()) {
            Line::Progress(p) => p,
            other => panic!("not progress: {line:?} → {other:?}"),
        }
    }

    fn message_of(line: &[u8]) -> String {
        match parse_line(line) {
            Line::Log { message, .. } => message,
            other => panic!("not a log line: {other:?}"),
        }
    }

    // Lines below were printed by Debian's ffmpeg 5.1.9 with `-loglevel level+info`
    // (bad paths, a missing VAAPI device, an unknown encoder, random bytes as input,
    // a damaged MPEG-TS, a closed output pipe).
    #[test]
    fn golden_log_lines() {
        let cases: &[(&str, Line)] = &[
            (
                "[error] /nonexistent: No such file or directory\n",
                log(
                    Level::Error,
                    None,
                    "/nonexistent: No such file or directory",
                ),
            ),
            (
                "[error] pipe:: Invalid data found when processing input\n",
                log(
                    Level::Error,
                    None,
                    "pipe:: Invalid data found when processing input",
                ),
            ),
            (
                "[AVHWDeviceContext @ 0x5577c5ed7a40] [error] No VA display found for device /dev/dri/renderD128.\n",
                log(
                    Level::Error,
                    Some("AVHWDeviceContext"),
                    "No VA display found for device /dev/dri/renderD128.",
                ),
            ),
            (
                "[fatal] Error parsing global options: Invalid argument",
                log(
                    Level::Fatal,
                    None,
                    "Error parsing global options: Invalid argument",
                ),
            ),
            (
                "[fatal] Unknown encoder 'nosuchenc'\r\n",
                log(Level::Fatal, None, "Unknown encoder 'nosuchenc'"),
            ),
            (
                "[h264 @ 0x5606a5e3e780] [error] error while decoding MB 5 0, bytestream 2568\n",
                log(
                    Level::Error,
                    Some("h264"),
                    "error while decoding MB 5 0, bytestream 2568",
                ),
            ),
            (
                "[mpegts @ 0x5606a5e38880] [warning] Packet corrupt (stream = 0, dts = 126000).\n",
                log(
                    Level::Warning,
                    Some("mpegts"),
                    "Packet corrupt (stream = 0, dts = 126000).",
                ),
            ),
            (
                "[info] Press [q] to stop, [?] for help\n",
                log(Level::Info, None, "Press [q] to stop, [?] for help"),
            ),
            (
                "[info]   Stream #0:0 -> #0:0 (rawvideo (native) -> h264 (h264_vaapi))\n",
                log(
                    Level::Info,
                    None,
                    "Stream #0:0 -> #0:0 (rawvideo (native) -> h264 (h264_vaapi))",
                ),
            ),
            (
                "[h264_v4l2m2m @ 0x55c256615480] [error] Could not find a valid device\n",
                log(
                    Level::Error,
                    Some("h264_v4l2m2m"),
                    "Could not find a valid device",
                ),
            ),
            // No level tag (e.g. `-loglevel error` without `level+`).
            (
                "[mpegts @ 0x1] Packet corrupt",
                log(Level::Unknown, Some("mpegts"), "Packet corrupt"),
            ),
            (
                "Conversion failed!",
                log(Level::Unknown, None, "Conversion failed!"),
            ),
            // ffmpeg 6+/7 contexts carry slashes and colons.
            (
                "[vost#0:0/libx264 @ 0x6000] [warning] frame rate very high",
                log(
                    Level::Warning,
                    Some("vost#0:0/libx264"),
                    "frame rate very high",
                ),
            ),
            ("", Line::Blank),
            ("\r\n", Line::Blank),
            ("   \t ", Line::Blank),
            ("[info] \n", Line::Blank),
            ("[libx264 @ 0x1] [info]", Line::Blank),
        ];
        for (raw, want) in cases {
            assert_eq!(&parse_line(raw.as_bytes()), want, "line {raw:?}");
        }
    }

    #[test]
    fn unknown_bracket_tag_is_context_then_message() {
        assert_eq!(
            parse_line(b"[a] [b] [error] x"),
            log(Level::Unknown, Some("a"), "[b] [error] x")
        );
        assert_eq!(
            parse_line(b"[unterminated tag"),
            log(Level::Unknown, None, "[unterminated tag")
        );
    }

    #[test]
    fn golden_progress_lines() {
        // Video, ffmpeg 5.1 with level tags (stats go through av_log at info).
        let p = progress(
            "[info] frame=   50 fps=0.0 q=-1.0 Lsize=N/A time=00:00:01.92 bitrate=N/A speed=14.2x    \r",
        );
        assert_eq!(p.frame, Some(50));
        assert_eq!(p.fps, Some(0.0));
        assert_eq!(p.out_time, Some(Duration::from_millis(1920)));
        assert_eq!(p.bitrate_kbps, None);
        assert_eq!(p.speed, Some(14.2));

        // The example from the task, without a level tag.
        let p = progress(
            "frame=  123 fps= 25 q=28.0 size= 1024kB time=00:00:04.92 bitrate=1703.8kbits/s speed=1.0x",
        );
        assert_eq!(
            p,
            Progress {
                frame: Some(123),
                fps: Some(25.0),
                out_time: Some(Duration::from_millis(4920)),
                speed: Some(1.0),
                bitrate_kbps: Some(1703.8),
            }
        );

        // Audio only: no frame, exponent speed.
        let p = progress("[info] size=N/A time=00:00:02.00 bitrate=N/A speed=1.52e+03x    ");
        assert_eq!(p.frame, None);
        assert_eq!(p.fps, None);
        assert_eq!(p.out_time, Some(Duration::from_secs(2)));
        assert_eq!(p.speed, Some(1520.0));

        // All N/A, the first stats line of a run.
        let p = progress(
            "[info] frame=    1 fps=0.0 q=0.0 size=N/A time=00:00:00.00 bitrate=N/A speed=N/A    ",
        );
        assert_eq!(p.frame, Some(1));
        assert_eq!(p.out_time, Some(Duration::ZERO));
        assert_eq!(p.speed, None);
    }

    #[test]
    fn progress_odd_spacing_and_values() {
        // Padding after `=`, an empty value, several outputs, dup/drop, negative time.
        let p = progress(
            "frame=    7 fps= q=28.0 q=30.0 size=       0kB time=-577014:32:22.77 bitrate=  -0.0kbits/s dup=3 drop=1 speed=   0x",
        );
        assert_eq!(p.frame, Some(7));
        assert_eq!(p.fps, None);
        assert_eq!(p.out_time, None);
        assert_eq!(p.bitrate_kbps, None);
        assert_eq!(p.speed, Some(0.0));

        let p = progress("frame=100\tfps=50 time=12:34:56.789 speed=inf x bitrate=12.0kbits/s");
        assert_eq!(p.out_time, Some(Duration::new(45296, 789_000_000)));
        assert_eq!(p.speed, None);
        assert_eq!(p.bitrate_kbps, Some(12.0));

        // Hours beyond 99 and time=N/A.
        assert_eq!(
            progress("size=1kB time=123:00:00.5").out_time,
            Some(Duration::new(123 * 3600, 500_000_000))
        );
        assert_eq!(progress("size=1kB time=N/A").out_time, None);
        assert_eq!(progress("size=1kB time=00:61:00.00").out_time, None);
        assert_eq!(progress("frame=x time=+1:00:00").frame, None);
    }

    #[test]
    fn not_progress_without_time_or_wrong_start() {
        assert!(matches!(
            parse_line(b"[info] frame=12 fps=3"),
            Line::Log { .. }
        ));
        assert!(matches!(
            parse_line(b"[info] Output size time=00:00:01.00"),
            Line::Log { .. }
        ));
    }

    #[test]
    fn carriage_return_redraws_keep_the_last() {
        let raw = b"frame=    1 time=00:00:00.04\rframe=    2 time=00:00:00.08\rframe=    3 time=00:00:00.12\r";
        assert_eq!(progress_of(raw).frame, Some(3));
        // A log line after redraws on the same `\n`-line.
        assert_eq!(
            parse_line(b"frame=    1 time=00:00:00.04\r[error] boom\n"),
            log(Level::Error, None, "boom")
        );
    }

    fn progress_of(raw: &[u8]) -> Progress {
        match parse_line(raw) {
            Line::Progress(p) => p,
            other => panic!("not progress: {other:?}"),
        }
    }

    #[test]
    fn huge_lines_are_cut() {
        let mut raw = b"[error] ".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 1_000_000));
        let msg = message_of(&raw);
        assert!(msg.ends_with(CUT_MARK));
        assert_eq!(
            msg.len(),
            MAX_LINE_BYTES - "[error] ".len() + CUT_MARK.len()
        );

        // A multi-byte character split by the cut becomes U+FFFD, not a panic.
        let mut raw = vec![b'a'; MAX_LINE_BYTES - 1];
        raw.extend("é and more".as_bytes());
        let msg = message_of(&raw);
        assert!(msg.ends_with(&format!("\u{FFFD}{CUT_MARK}")), "{msg:?}");

        // Exactly at the limit: not cut.
        let raw = vec![b'y'; MAX_LINE_BYTES];
        assert!(!message_of(&raw).ends_with(CUT_MARK));
    }

    #[test]
    fn invalid_utf8_and_control_characters() {
        assert_eq!(
            parse_line(b"[error] bad \xff\xfe bytes\x00\x1b[31m"),
            log(
                Level::Error,
                None,
                "bad \u{FFFD}\u{FFFD} bytes\u{FFFD}\u{FFFD}[31m"
            )
        );
        assert_eq!(
            parse_line(b"[\xff @ 0x1] [warning] w"),
            log(Level::Warning, Some("\u{FFFD}"), "w")
        );
        assert!(matches!(parse_line(b"\x00\x01\x02"), Line::Log { .. }));
    }

    #[test]
    fn level_order() {
        assert!(Level::Warning > Level::Info);
        assert!(Level::Fatal > Level::Error);
        assert!(Level::Trace < Level::Debug);
        assert_eq!(Level::Warning.as_str(), "warning");
        for tag in [
            "trace", "debug", "verbose", "info", "warning", "error", "fatal", "panic",
        ] {
            assert_eq!(Level::from_tag(tag).map(Level::as_str), Some(tag));
        }
    }

    #[test]
    fn classify_real_messages() {
        let cases: &[(&str, &str)] = &[
            // Seen here (ffmpeg 5.1.9).
            (
                "No VA display found for device /dev/dri/renderD128.",
                "no_device",
            ),
            ("Device creation failed: -22.", "no_device"),
            (
                "Failed to set value '/dev/dri/renderD128' for option 'vaapi_device': Invalid argument",
                "no_device",
            ),
            (
                "No device available for decoder: device type vaapi needed for codec rawvideo.",
                "no_device",
            ),
            (
                "Device setup failed for decoder on input stream #0:0 : Generic error in an external library",
                "no_device",
            ),
            ("Could not find a valid device", "no_device"),
            ("Unknown encoder 'nosuchenc'", "encoder_unavailable"),
            ("can't configure encoder", "encoder_unavailable"),
            (
                "Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0 - maybe incorrect parameters such as bit_rate, rate, width or height",
                "encoder_unavailable",
            ),
            (
                "garbage.bin: Invalid data found when processing input",
                "input_invalid",
            ),
            (
                "pipe:: Invalid data found when processing input",
                "input_invalid",
            ),
            (
                "/nonexistent: No such file or directory",
                "input_unreachable",
            ),
            ("av_interleaved_write_frame(): Broken pipe", "broken_pipe"),
            (
                "Error writing trailer of pipe:1: Broken pipe",
                "broken_pipe",
            ),
            ("Error closing file pipe:1: Broken pipe", "broken_pipe"),
            ("error while decoding MB 5 0, bytestream 2568", "decode"),
            (
                "top block unavailable for requested intra mode -1",
                "decode",
            ),
            ("Packet corrupt (stream = 0, dts = 126000).", "decode"),
            (
                "Impossible to convert between the formats supported by the filter 'Parsed_null_0' and the filter 'auto_scale_0'",
                "other",
            ),
            (
                "Error while processing the decoded data for stream #0:0",
                "other",
            ),
            ("Conversion failed!", "other"),
            // Strings from Debian's libavutil/libavcodec/ffmpeg binaries.
            (
                "Failed to initialise VAAPI connection: -1 (unknown libva error).",
                "no_device",
            ),
            ("Cannot open DRM render node for device 0.", "no_device"),
            (
                "Failed to open /dev/dri/card0 as DRM device node.",
                "no_device",
            ),
            ("Failed to create a VAAPI device.", "no_device"),
            ("No usable encoding profile found.", "encoder_unavailable"),
            (
                "Compatible profile H.264 High (100) is not supported by driver.",
                "encoder_unavailable",
            ),
            ("Encoder not found", "encoder_unavailable"),
            ("pipe:: could not find codec parameters", "input_invalid"),
            (
                "Error while decoding stream #0:0: Invalid data found when processing input",
                "decode",
            ),
            (
                "Error while decoding stream #0:1: Cannot allocate memory",
                "out_of_memory",
            ),
            ("Out of memory", "out_of_memory"),
            ("/dev/dri/renderD128: Permission denied", "permission"),
            (
                "http://192.168.1.2:8001/1:0:1: Connection refused",
                "input_unreachable",
            ),
            ("Server returned 404 Not Found", "input_unreachable"),
            ("non-existing PPS 0 referenced", "decode"),
            ("", "other"),
        ];
        for (message, want) in cases {
            assert_eq!(classify(message), *want, "message {message:?}");
            assert!(KINDS.contains(want));
        }
        assert_eq!(classify("UNKNOWN ENCODER 'x'"), "encoder_unavailable");
    }

    #[test]
    fn every_rule_kind_is_listed() {
        for (kind, _) in RULES {
            assert!(KINDS.contains(kind), "{kind}");
        }
        assert_eq!(KINDS.len(), RULES.len() + 1);
    }

    #[test]
    fn throttle_limits_per_window_and_summarises() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut t = LogThrottle::new(2, w);
        assert_eq!(t.admit(t0), Admit::Yes);
        assert_eq!(t.admit(t0 + Duration::from_secs(1)), Admit::Yes);
        assert_eq!(t.admit(t0 + Duration::from_secs(2)), Admit::No);
        assert_eq!(t.admit(t0 + Duration::from_secs(9)), Admit::No);
        assert_eq!(t.admit(t0 + w), Admit::YesAfterSuppressing(2));
        assert_eq!(t.admit(t0 + w), Admit::Yes);
        assert_eq!(t.admit(t0 + w), Admit::No);
        assert_eq!(t.take_suppressed(), 1);
        assert_eq!(t.take_suppressed(), 0);
        assert_eq!(t.admit(t0 + w * 5), Admit::Yes);
    }

    #[test]
    fn throttle_edge_cases() {
        let t0 = Instant::now();
        // per_window 0 behaves as 1.
        let mut t = LogThrottle::new(0, Duration::from_secs(1));
        assert_eq!(t.admit(t0), Admit::Yes);
        assert_eq!(t.admit(t0), Admit::No);
        // Time going backwards is no time passing.
        let later = t0 + Duration::from_secs(5);
        let mut t = LogThrottle::new(1, Duration::from_secs(1));
        assert_eq!(t.admit(later), Admit::Yes);
        assert_eq!(t.admit(t0), Admit::No);
        // A zero window admits everything.
        let mut t = LogThrottle::new(1, Duration::ZERO);
        for _ in 0..5 {
            assert_eq!(t.admit(t0), Admit::Yes);
        }
    }

    // --- real ffmpeg: every line it prints parses, and its failures classify ---

    /// Runs ffmpeg with `-hide_banner -loglevel level+info` and `args`, feeding `stdin`;
    /// when `read_out` is `Some(n)`, reads `n` bytes of stdout and closes it (the client
    /// went away). Returns stderr split into lines the way a reader splitting on both
    /// `\n` and `\r` would see them.
    fn ffmpeg(args: &[&str], stdin: &[u8], read_out: Option<usize>) -> Vec<Vec<u8>> {
        use std::io::{Read, Write};
        use std::process::{Command, Stdio};
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "level+info"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg not found: install Debian's ffmpeg (apt-get install ffmpeg)");
        let mut input = child.stdin.take().expect("stdin piped");
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            // ffmpeg may stop reading early; a broken pipe here is expected.
            let _ = input.write_all(&data);
        });
        let mut stdout = child.stdout.take().expect("stdout piped");
        match read_out {
            Some(n) => {
                let mut buf = vec![0; n];
                stdout.read_exact(&mut buf).expect("ffmpeg wrote output");
                drop(stdout);
            }
            None => {
                let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            }
        }
        let out = child.wait_with_output().expect("wait for ffmpeg");
        feeder.join().expect("feeder thread");
        out.stderr
            .split(|b| *b == b'\n' || *b == b'\r')
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Parses all lines; asserts each carries a level tag and returns the error/fatal
    /// messages and the progress lines.
    fn parse_all(lines: &[Vec<u8>]) -> (Vec<String>, Vec<Progress>) {
        let mut errors = Vec::new();
        let mut progress = Vec::new();
        for raw in lines {
            match parse_line(raw) {
                Line::Log { level, message, .. } => {
                    assert_ne!(level, Level::Unknown, "untagged: {message:?}");
                    if level >= Level::Error {
                        errors.push(message);
                    }
                }
                Line::Progress(p) => progress.push(p),
                Line::Blank => {}
            }
        }
        (errors, progress)
    }

    fn kinds(errors: &[String]) -> Vec<&'static str> {
        errors.iter().map(|m| classify(m)).collect()
    }

    #[test]
    fn real_ffmpeg_failures_classify() {
        let (errors, _) = parse_all(&ffmpeg(
            &["-i", "/nonexistent.ts", "-f", "null", "-"],
            b"",
            None,
        ));
        assert!(kinds(&errors).contains(&"input_unreachable"), "{errors:?}");

        let garbage: Vec<u8> = (0u32..20_000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (errors, _) = parse_all(&ffmpeg(
            &["-i", "pipe:0", "-f", "null", "-"],
            &garbage,
            None,
        ));
        assert!(kinds(&errors).contains(&"input_invalid"), "{errors:?}");

        let lavfi = ["-f", "lavfi", "-i", "testsrc=d=1"];
        let (errors, _) = parse_all(&ffmpeg(
            &[&lavfi[..], &["-c:v", "xg2g_nosuchenc", "-f", "null", "-"]].concat(),
            b"",
            None,
        ));
        assert_eq!(kinds(&errors), ["encoder_unavailable"], "{errors:?}");

        let (errors, _) = parse_all(&ffmpeg(
            &[
                &["-init_hw_device", "vaapi=va:/dev/dri/xg2g-none"][..],
                &lavfi[..],
                &["-f", "null", "-"],
            ]
            .concat(),
            b"",
            None,
        ));
        assert_eq!(kinds(&errors).first(), Some(&"no_device"), "{errors:?}");

        let (errors, _) = parse_all(&ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=d=5",
                "-c:v",
                "mpeg2video",
                "-f",
                "mpegts",
                "pipe:1",
            ],
            b"",
            Some(188 * 10),
        ));
        assert!(kinds(&errors).contains(&"broken_pipe"), "{errors:?}");
        assert!(
            kinds(&errors).iter().all(|k| *k == "broken_pipe"),
            "{errors:?}"
        );
    }

    #[test]
    fn real_ffmpeg_progress_parses() {
        let (errors, progress) = parse_all(&ffmpeg(
            &[
                "-stats",
                "-f",
                "lavfi",
                "-i",
                "testsrc=d=2:r=25",
                "-f",
                "null",
                "-",
            ],
            b"",
            None,
        ));
        assert!(errors.is_empty(), "{errors:?}");
        let last = progress.last().expect("at least one stats line");
        assert_eq!(last.frame, Some(50));
        let t = last.out_time.expect("final time");
        assert!(
            t >= Duration::from_millis(1900) && t <= Duration::from_secs(2),
            "{t:?}"
        );
        assert!(progress.iter().all(|p| p.frame.is_some()));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn parse_line_is_total_and_bounded(raw in proptest::collection::vec(any::<u8>(), 0..3000)) {
                match parse_line(&raw) {
                    Line::Log { message, context, .. } => {
                        prop_assert!(!message.is_empty());
                        prop_assert!(message.len() <= 3 * MAX_LINE_BYTES + CUT_MARK.len());
                        prop_assert!(!message.chars().any(char::is_control));
                        if let Some(c) = context {
                            prop_assert!(!c.chars().any(char::is_control));
                        }
                    }
                    Line::Progress(_) | Line::Blank => {}
                }
            }

            #[test]
            fn progress_like_lines_never_panic(
                fields in proptest::collection::vec(
                    ("(frame|fps|q|size|time|bitrate|speed|dup)", "[ ]{0,3}", "[-+0-9.:eNA/xkbits]{0,14}"),
                    0..10,
                )
            ) {
                let mut line = String::from("frame=");
                for (k, pad, v) in &fields {
                    line.push_str(&format!(" {k}={pad}{v}"));
                }
                line.push_str(" time=00:00:01.00");
                if let Line::Progress(p) = parse_line(line.as_bytes()) {
                    for v in [p.fps, p.speed, p.bitrate_kbps].into_iter().flatten() {
                        prop_assert!(v.is_finite() && v >= 0.0);
                    }
                } else {
                    prop_assert!(false, "not progress: {line:?}");
                }
            }

            #[test]
            fn classify_is_total(s in any::<String>()) {
                prop_assert!(KINDS.contains(&classify(&s)));
            }

            #[test]
            fn throttle_never_exceeds_budget(
                per in 1u32..5,
                steps in proptest::collection::vec(0u64..300, 1..200),
            ) {
                let t0 = Instant::now();
                let window = Duration::from_millis(1000);
                let mut t = LogThrottle::new(per, window);
                let mut now = t0;
                let mut admitted_in_window = 0u32;
                let mut window_start = t0;
                let mut dropped = 0u64;
                let mut reported = 0u64;
                for (i, step) in steps.iter().enumerate() {
                    now += Duration::from_millis(*step);
                    if i == 0 || now - window_start >= window {
                        window_start = now;
                        admitted_in_window = 0;
                    }
                    match t.admit(now) {
                        Admit::Yes => admitted_in_window += 1,
                        Admit::YesAfterSuppressing(n) => {
                            admitted_in_window += 1;
                            reported += n;
                        }
                        Admit::No => dropped += 1,
                    }
                    prop_assert!(admitted_in_window <= per);
                }
                reported += t.take_suppressed();
                prop_assert_eq!(dropped, reported);
            }
        }
    }
}
