//! Encoder device discovery and load readers: the DRM render nodes and V4L2 video nodes
//! under a root laid out like `/`, and how busy sysfs and debugfs say each of them is.
//!
//! Rules:
//! - Every path is built under the caller's `root`, so tests (and containers that mount
//!   the host's trees elsewhere) read fake or relocated trees. Symlinks are followed as
//!   they are; the kernel's sysfs links are all relative, so they stay inside `root`.
//! - Synchronous and blocking, a handful of small reads per call: the caller runs it on
//!   the blocking pool every few seconds, never on the executor.
//! - Only regular files are read (a FIFO or device node in their place could block or
//!   stream forever), at most [`VALUE_CAP`] bytes each ([`DEBUGFS_CAP`] for
//!   `amdgpu_pm_info`); a longer file is garbage.
//! - Nothing here fails or panics: a missing, unreadable, empty, oversized, non-UTF-8 or
//!   malformed file makes that one source count as absent (logged at trace level) and
//!   the next source is tried. Percentages above 100 are clamped to 100, ratios above 1
//!   to 1; negative, NaN, infinite or non-numeric values are absent.
//! - Directory scans are bounded: at most [`MAX_SCAN`] entries are looked at per
//!   directory and at most [`MAX_NODES`] nodes of each kind are reported.
//! - Out of scope: Intel engine busyness (the i915/xe PMU through `perf_event_open`,
//!   which needs `CAP_PERFMON` and two samples over time), so Intel GPUs only report a
//!   frequency ratio; and whether a video node is an M2M encoder, which an ioctl probe
//!   elsewhere decides.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Cap for a one-value sysfs attribute: the kernel never emits more than a page.
pub const VALUE_CAP: usize = 4096;

/// Cap for debugfs `amdgpu_pm_info`, a dozen short lines on every known GPU.
pub const DEBUGFS_CAP: usize = 16 * 1024;

/// Directory entries looked at per scanned directory (`/dev` is the big one).
pub const MAX_SCAN: usize = 4096;

/// Nodes of one kind reported by [`find_nodes`]; more encoders than this is not a box.
pub const MAX_NODES: usize = 64;

/// Sub-directories (devfreq instances, tiles, GTs, cards) looked at per device.
const MAX_SUBDIRS: usize = 16;

/// Longest driver or device name kept; V4L2 names are at most 31 bytes.
const MAX_NAME: usize = 64;

/// Why one file did not give a value; only ever logged, never returned.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is longer than {cap} bytes")]
    TooLarge { path: PathBuf, cap: usize },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
}

/// What kind of device node a [`Node`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A DRM render node, `/dev/dri/renderD*` (VAAPI and friends open these).
    Render,
    /// A V4L2 node, `/dev/video*` (maybe an M2M encoder; a probe decides).
    Video,
}

/// One device node and what sysfs says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Render or video node.
    pub kind: NodeKind,
    /// The node as seen from `root`, e.g. `/dev/dri/renderD128`: what the encoder opens
    /// when `root` is `/`.
    pub path: PathBuf,
    /// The kernel driver bound to the device (`amdgpu`, `i915`, `xe`, `v3d`,
    /// `bcm2835-codec`, ...), from the `driver` symlink's name; `None` when unknown.
    pub driver: Option<String>,
    /// Video nodes: the V4L2 name (e.g. `bcm2835-codec-encode`). Render nodes: the PCI
    /// ids as `vendor:device` in lower-case hex (e.g. `8086:46a6`), `None` for
    /// platform devices. Printable text of at most 64 characters.
    pub name: Option<String>,
    /// The device's sysfs directory as seen from `root`, e.g.
    /// `/sys/class/drm/renderD128/device`; `None` when sysfs does not show it.
    pub sysfs: Option<PathBuf>,
}

/// How busy a device is now, as far as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Share of time the device was busy, in 0..=100.
    pub busy_percent: Option<f64>,
    /// Current clock over the maximum clock, in 0..=1.
    pub freq_ratio: Option<f64>,
    /// Where the value [`Load::percent`] returns came from: `gpu_busy_percent`,
    /// `devfreq_load`, `amdgpu_pm_info`, `i915_freq`, `xe_freq` or `devfreq_freq`.
    pub source: Option<&'static str>,
}

impl Load {
    /// The best load estimate in 0..=100: the busy percentage when known, else the
    /// frequency ratio × 100. Frequency is a weak proxy (a governor may clock up for a
    /// short burst, or stay low while a fixed-function encoder is saturated), but it is
    /// the only thing Intel GPUs and many ARM SoCs offer without privileges.
    pub fn percent(&self) -> Option<f64> {
        self.busy_percent
            .or_else(|| self.freq_ratio.map(|r| r * 100.0))
    }
}

/// Render and video nodes under root, sorted (render first, by number).
///
/// A node is listed when its device file exists (`/dev/dri/renderD<N>`,
/// `/dev/video<N>`), whether or not sysfs knows it; what sysfs does not say is `None`.
pub fn find_nodes(root: &Path) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (_, name) in numbered_entries(&root.join("dev/dri"), "renderD", MAX_NODES) {
        nodes.push(render_node(root, &name));
    }
    for (_, name) in numbered_entries(&root.join("dev"), "video", MAX_NODES) {
        nodes.push(video_node(root, &name));
    }
    nodes
}

/// What the kernel says about `node` now.
///
/// Busy percentage, first that works: `<device>/gpu_busy_percent` (amdgpu), the
/// devfreq `load` of `<device>/devfreq/*`, then debugfs `dri/*/amdgpu_pm_info` (render
/// nodes of amdgpu or of an unknown driver). Frequency ratio, first that works: i915
/// (`gt/gt*/rps_act_freq_mhz` over `rps_max_freq_mhz`, busiest GT, else
/// `gt_act_freq_mhz` over `gt_max_freq_mhz`), xe (`tile*/gt*/freq0/act_freq` over
/// `max_freq`, busiest GT, since the media engines of newer chips sit on their own GT),
/// then devfreq `cur_freq` over `max_freq`. Absent sources leave fields `None`.
pub fn read_load(root: &Path, node: &Node) -> Load {
    let dev = device_dir(root, node);
    let card = match (&node.kind, &dev) {
        (NodeKind::Render, Some(d)) => card_dir(root, d),
        _ => None,
    };

    let busy = dev
        .as_deref()
        .and_then(sysfs_busy)
        .or_else(|| amdgpu_debugfs(root, node, dev.as_deref(), card.as_ref()));
    let freq = card
        .as_ref()
        .and_then(|(c, _)| i915_freq(c))
        .or_else(|| dev.as_deref().and_then(xe_freq))
        .or_else(|| dev.as_deref().and_then(devfreq_freq));

    Load {
        busy_percent: busy.map(|(v, _)| v),
        freq_ratio: freq.map(|(v, _)| v),
        source: busy.or(freq).map(|(_, s)| s),
    }
}

fn render_node(root: &Path, name: &str) -> Node {
    let dev_rel = Path::new("/sys/class/drm").join(name).join("device");
    let dev = under(root, &dev_rel);
    let known = dev.is_dir();
    Node {
        kind: NodeKind::Render,
        path: Path::new("/dev/dri").join(name),
        driver: if known { driver_name(&dev) } else { None },
        name: if known { pci_ids(&dev) } else { None },
        sysfs: known.then_some(dev_rel),
    }
}

fn video_node(root: &Path, name: &str) -> Node {
    let class_rel = Path::new("/sys/class/video4linux").join(name);
    let class = under(root, &class_rel);
    let dev_rel = class_rel.join("device");
    let dev = under(root, &dev_rel);
    let known = dev.is_dir();
    Node {
        kind: NodeKind::Video,
        path: Path::new("/dev").join(name),
        driver: if known { driver_name(&dev) } else { None },
        name: read_opt(&class.join("name"), VALUE_CAP).and_then(|s| clean_name(&s)),
        sysfs: known.then_some(dev_rel),
    }
}

/// The node's sysfs device directory under `root`: the recorded one, or the class
/// path its device file name implies. A recorded path that climbs (`..`) is refused so
/// a hand-made node cannot point outside the tree.
fn device_dir(root: &Path, node: &Node) -> Option<PathBuf> {
    let rel = match &node.sysfs {
        Some(p) => p.clone(),
        None => {
            let name = node.path.file_name()?;
            let class = match node.kind {
                NodeKind::Render => "/sys/class/drm",
                NodeKind::Video => "/sys/class/video4linux",
            };
            Path::new(class).join(name).join("device")
        }
    };
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let dev = under(root, &rel);
    dev.is_dir().then_some(dev)
}

/// The DRM card directory of a render node's device, and the card's minor number.
fn card_dir(root: &Path, dev: &Path) -> Option<(PathBuf, u32)> {
    let class = root.join("sys/class/drm");
    if let Some((minor, name)) = numbered_entries(&dev.join("drm"), "card", 1)
        .into_iter()
        .next()
    {
        let by_class = class.join(&name);
        let dir = if by_class.is_dir() {
            by_class
        } else {
            dev.join("drm").join(&name)
        };
        return Some((dir, minor));
    }
    // Without `<device>/drm/`, find the card whose device is the same directory.
    let target = fs::canonicalize(dev).ok()?;
    numbered_entries(&class, "card", MAX_SUBDIRS)
        .into_iter()
        .find(|(_, name)| {
            fs::canonicalize(class.join(name).join("device"))
                .ok()
                .as_ref()
                == Some(&target)
        })
        .map(|(minor, name)| (class.join(name), minor))
}

fn sysfs_busy(dev: &Path) -> Option<(f64, &'static str)> {
    if let Some(v) =
        read_opt(&dev.join("gpu_busy_percent"), VALUE_CAP).and_then(|s| parse_percent(&s))
    {
        return Some((v, "gpu_busy_percent"));
    }
    sorted_entries(&dev.join("devfreq"), MAX_SUBDIRS)
        .iter()
        .find_map(|d| {
            read_opt(&dev.join("devfreq").join(d).join("load"), VALUE_CAP)
                .and_then(|s| parse_devfreq_load(&s))
        })
        .map(|v| (v, "devfreq_load"))
}

/// `GPU Load:` from debugfs. The file lives in the primary (card) minor's directory;
/// newer kernels name that directory after the PCI device and link the minor numbers
/// to it, older ones also had one per render minor: try all three names.
fn amdgpu_debugfs(
    root: &Path,
    node: &Node,
    dev: Option<&Path>,
    card: Option<&(PathBuf, u32)>,
) -> Option<(f64, &'static str)> {
    if node.kind != NodeKind::Render {
        return None;
    }
    match node.driver.as_deref() {
        None | Some("amdgpu") => {}
        Some(_) => return None,
    }
    let mut names: Vec<String> = Vec::new();
    if let Some((_, minor)) = card {
        names.push(minor.to_string());
    }
    if let Some(pci) = dev
        .and_then(|d| fs::read_link(d).ok())
        .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(str::to_owned))
    {
        names.push(pci);
    }
    if let Some(minor) = node
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("renderD"))
        .and_then(parse_index)
    {
        names.push(minor.to_string());
    }
    let base = root.join("sys/kernel/debug/dri");
    names
        .iter()
        .find_map(|n| {
            read_opt(&base.join(n).join("amdgpu_pm_info"), DEBUGFS_CAP)
                .and_then(|s| parse_pm_info(&s))
        })
        .map(|v| (v, "amdgpu_pm_info"))
}

fn i915_freq(card: &Path) -> Option<(f64, &'static str)> {
    // Per-GT files exist since 5.19 and are the only view of the media GT (gt1) that
    // Meteor Lake and later encode on; the card-level files mirror gt0.
    let gt = card.join("gt");
    let per_gt = numbered_entries(&gt, "gt", MAX_SUBDIRS)
        .iter()
        .map(|(_, n)| {
            let d = gt.join(n);
            ratio(&d.join("rps_act_freq_mhz"), &d.join("rps_max_freq_mhz"))
        })
        .fold(None, max_opt);
    per_gt
        .or_else(|| ratio(&card.join("gt_act_freq_mhz"), &card.join("gt_max_freq_mhz")))
        .map(|v| (v, "i915_freq"))
}

fn xe_freq(dev: &Path) -> Option<(f64, &'static str)> {
    let mut best = None;
    for (_, tile) in numbered_entries(dev, "tile", MAX_SUBDIRS) {
        let tile = dev.join(tile);
        for (_, gt) in numbered_entries(&tile, "gt", MAX_SUBDIRS) {
            let freq = tile.join(gt).join("freq0");
            best = max_opt(best, ratio(&freq.join("act_freq"), &freq.join("max_freq")));
        }
    }
    best.map(|v| (v, "xe_freq"))
}

fn devfreq_freq(dev: &Path) -> Option<(f64, &'static str)> {
    let base = dev.join("devfreq");
    sorted_entries(&base, MAX_SUBDIRS)
        .iter()
        .find_map(|d| {
            let d = base.join(d);
            ratio(&d.join("cur_freq"), &d.join("max_freq"))
        })
        .map(|v| (v, "devfreq_freq"))
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// `act / max` from two integer files, in 0..=1; a zero maximum is absent.
fn ratio(act: &Path, max: &Path) -> Option<f64> {
    let act = read_opt(act, VALUE_CAP).and_then(|s| parse_uint(&s))?;
    let max = read_opt(max, VALUE_CAP).and_then(|s| parse_uint(&s))?;
    if max == 0 {
        return None;
    }
    Some((act as f64 / max as f64).min(1.0))
}

/// The bound driver's name: the last component of the `driver` symlink.
fn driver_name(dev: &Path) -> Option<String> {
    let target = fs::read_link(dev.join("driver")).ok()?;
    clean_name(target.file_name()?.to_str()?)
}

/// `vendor:device` from the PCI id files (`0x8086`), lower-case hex.
fn pci_ids(dev: &Path) -> Option<String> {
    let vendor = read_opt(&dev.join("vendor"), VALUE_CAP).and_then(|s| parse_hex_id(&s))?;
    let device = read_opt(&dev.join("device"), VALUE_CAP).and_then(|s| parse_hex_id(&s))?;
    Some(format!("{vendor:04x}:{device:04x}"))
}

/// A PCI id as sysfs prints it: `0x` and up to four hex digits.
fn parse_hex_id(s: &str) -> Option<u16> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

/// A name worth showing: trimmed, non-empty, short, no control characters.
fn clean_name(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > MAX_NAME || t.chars().any(char::is_control) {
        return None;
    }
    Some(t.to_owned())
}

/// A percentage written as plain decimal (`37`, `12.5`), clamped to 100. Signs,
/// exponents, `NaN` and `inf` are not numbers a driver writes, so they are garbage.
fn parse_percent(s: &str) -> Option<f64> {
    let t = s.trim();
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    // A digit string too long for f64 parses to infinity: garbage, not "100 %".
    v.is_finite().then_some(v.min(100.0))
}

/// devfreq `load`: vendor kernels print `<percent>@<frequency>Hz`, others a plain
/// percentage. The frequency part must be a number too, or the line is garbage.
fn parse_devfreq_load(s: &str) -> Option<f64> {
    match s.trim().split_once('@') {
        Some((load, freq)) => {
            let freq = freq.trim();
            parse_uint(freq.strip_suffix("Hz").unwrap_or(freq))?;
            parse_percent(load)
        }
        None => parse_percent(s),
    }
}

/// The first `GPU Load: <n> %` line of `amdgpu_pm_info`.
fn parse_pm_info(text: &str) -> Option<f64> {
    let rest = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("GPU Load:"))?
        .trim();
    parse_percent(rest.strip_suffix('%').unwrap_or(rest))
}

/// A non-negative integer of at most 20 digits (a frequency in Hz or MHz).
fn parse_uint(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A node or instance number: 1 to 9 digits, nothing else.
fn parse_index(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `root` joined with a path written as seen from `root` (leading `/` dropped).
fn under(root: &Path, rel: &Path) -> PathBuf {
    root.join(rel.strip_prefix("/").unwrap_or(rel))
}

/// Entries of `dir` named `<prefix><number>`, by number then name, at most `limit`.
fn numbered_entries(dir: &Path, prefix: &str, limit: usize) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = entries
        .take(MAX_SCAN)
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let n = parse_index(name.strip_prefix(prefix)?)?;
            Some((n, name))
        })
        .collect();
    found.sort();
    found.truncate(limit);
    found
}

/// Names of the entries of `dir`, sorted, at most `limit`.
fn sorted_entries(dir: &Path, limit: usize) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .take(MAX_SCAN)
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names.truncate(limit);
    names
}

/// The text of a small regular file, or `None` (and a trace line unless it is simply
/// missing, the common case on every box that lacks that source).
fn read_opt(path: &Path, cap: usize) -> Option<String> {
    match read_small(path, cap) {
        Ok(s) => Some(s),
        Err(LoadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::trace!("event=hw_load_skip error=\"{e}\"");
            None
        }
    }
}

fn read_small(path: &Path, cap: usize) -> Result<String, LoadError> {
    let io_err = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    // Checked before opening: opening a FIFO blocks until a writer appears.
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_owned(),
        });
    }
    let file = File::open(path).map_err(io_err)?;
    let mut buf = Vec::with_capacity(cap.min(512));
    // One byte past the cap tells "exactly cap" from "longer".
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() > cap {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            cap,
        });
    }
    String::from_utf8(buf).map_err(|_| LoadError::NotText {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests;
