//! Fake `/dev`, sysfs and debugfs trees in a temp folder, one per test, laid out (and
//! linked) the way the kernel lays them out.

use super::*;
use crate::hw::fake::Fake;

impl Fake {
    /// A DRM device at sysfs path `dev` with `driver`, card `card` and render node
    /// `render`, linked from `/sys/class/drm` and present in `/dev/dri`.
    fn drm(&self, dev: &str, driver: &str, bus: &str, card: u32, render: u32) -> &Fake {
        self.dir(dev)
            .dir(&format!("/sys/bus/{bus}/drivers/{driver}"))
            .link(
                &format!("{dev}/driver"),
                &format!("/sys/bus/{bus}/drivers/{driver}"),
            );
        for name in [format!("card{card}"), format!("renderD{render}")] {
            let node = format!("{dev}/drm/{name}");
            self.dir(&node)
                .link(&format!("{node}/device"), dev)
                .link(&format!("/sys/class/drm/{name}"), &node)
                .file(&format!("/dev/dri/{name}"), "");
        }
        self
    }

    /// A V4L2 node `/dev/video<n>` named `name` on device `dev` driven by `driver`.
    fn video(&self, dev: &str, driver: &str, n: u32, name: &str) -> &Fake {
        let node = format!("{dev}/video4linux/video{n}");
        let drv = format!("/sys/bus/platform/drivers/{driver}");
        if !self.p(&format!("{dev}/driver")).exists() {
            self.dir(&drv).link(&format!("{dev}/driver"), &drv);
        }
        self.file(&format!("{node}/name"), format!("{name}\n"))
            .link(&format!("{node}/device"), dev)
            .link(&format!("/sys/class/video4linux/video{n}"), &node)
            .file(&format!("/dev/video{n}"), "")
    }

    fn nodes(&self) -> Vec<Node> {
        find_nodes(&self.root)
    }

    fn load(&self, node: &Node) -> Load {
        read_load(&self.root, node)
    }

    /// The load of the first node.
    fn load0(&self) -> Load {
        let nodes = self.nodes();
        let node = nodes.first().expect("a node");
        self.load(node)
    }
}

const AMD: &str = "/sys/devices/pci0000:00/0000:00:03.1/0000:03:00.0";
const INTEL: &str = "/sys/devices/pci0000:00/0000:00:02.0";
const V3D: &str = "/sys/devices/platform/v3dbus/fec00000.v3d";
const CODEC: &str = "/sys/devices/platform/soc/soc:bcm2835-codec";

fn amd_box(tag: &str) -> Fake {
    let f = Fake::new(tag);
    f.drm(AMD, "amdgpu", "pci", 0, 128)
        .file(&format!("{AMD}/vendor"), "0x1002\n")
        .file(&format!("{AMD}/device"), "0x73bf\n");
    f
}

fn intel_box(tag: &str, driver: &str) -> Fake {
    let f = Fake::new(tag);
    f.drm(INTEL, driver, "pci", 0, 128)
        .file(&format!("{INTEL}/vendor"), "0x8086\n")
        .file(&format!("{INTEL}/device"), "0x46A6\n");
    f
}

fn pi_box(tag: &str) -> Fake {
    let f = Fake::new(tag);
    let df = format!("{V3D}/devfreq/fec00000.v3d");
    f.drm(V3D, "v3d", "platform", 0, 128)
        .file(&format!("{df}/load"), "45@500000000Hz\n")
        .file(&format!("{df}/cur_freq"), "500000000\n")
        .file(&format!("{df}/max_freq"), "1000000000\n")
        .video(CODEC, "bcm2835-codec", 10, "bcm2835-codec-decode")
        .video(CODEC, "bcm2835-codec", 11, "bcm2835-codec-encode")
        .video(CODEC, "bcm2835-codec", 12, "bcm2835-codec-isp");
    f
}

#[test]
fn amdgpu_box_is_found_with_driver_ids_and_busy_percent() {
    let f = amd_box("amd");
    f.file(&format!("{AMD}/gpu_busy_percent"), "37\n");
    let nodes = f.nodes();
    assert_eq!(
        nodes,
        vec![Node {
            kind: NodeKind::Render,
            path: PathBuf::from("/dev/dri/renderD128"),
            driver: Some("amdgpu".into()),
            name: Some("1002:73bf".into()),
            sysfs: Some(PathBuf::from("/sys/class/drm/renderD128/device")),
        }]
    );
    let load = f.load(&nodes[0]);
    assert_eq!(
        load,
        Load {
            busy_percent: Some(37.0),
            freq_ratio: None,
            source: Some("gpu_busy_percent"),
        }
    );
    assert_eq!(load.percent(), Some(37.0));
}

#[test]
fn amdgpu_debugfs_is_the_fallback_under_each_directory_name() {
    for dir in ["0", "0000:03:00.0", "128"] {
        let f = amd_box("amd-debugfs");
        f.file(
            &format!("/sys/kernel/debug/dri/{dir}/amdgpu_pm_info"),
            "GFX Clocks and Power:\n\t300 MHz (MCLK)\n\t3.213 W (average GPU)\n\
             GPU Temperature: 24 C\nGPU Load: 12 %\nMEM Load: 3 %\n",
        );
        let load = f.load0();
        assert_eq!(load.busy_percent, Some(12.0), "dri/{dir}");
        assert_eq!(load.source, Some("amdgpu_pm_info"));

        // The sysfs file wins when it is there; a garbage one falls through again.
        f.file(&format!("{AMD}/gpu_busy_percent"), "80\n");
        assert_eq!(f.load0().source, Some("gpu_busy_percent"));
        f.file(&format!("{AMD}/gpu_busy_percent"), "abc\n");
        assert_eq!(f.load0().busy_percent, Some(12.0));
    }
}

#[test]
fn debugfs_is_not_read_for_other_drivers_nor_when_it_says_nothing() {
    let f = intel_box("debugfs-other", "i915");
    f.file("/sys/kernel/debug/dri/0/amdgpu_pm_info", "GPU Load: 12 %\n");
    assert_eq!(f.load0().busy_percent, None);

    let f = amd_box("debugfs-empty");
    for text in ["", "MEM Load: 3 %\n", "GPU Load: lots %\n", "GPU Load:\n"] {
        f.file("/sys/kernel/debug/dri/0/amdgpu_pm_info", text);
        assert_eq!(f.load0(), Load::default(), "{text:?}");
    }
    // Unmounted debugfs: an empty directory, or none at all.
    f.rm("/sys/kernel/debug/dri");
    f.dir("/sys/kernel/debug");
    assert_eq!(f.load0(), Load::default());
}

#[test]
fn intel_i915_reports_a_frequency_ratio_only() {
    let f = intel_box("i915", "i915");
    f.file("/sys/class/drm/card0/gt_act_freq_mhz", "300\n")
        .file("/sys/class/drm/card0/gt_max_freq_mhz", "1200\n")
        .file("/sys/class/drm/card0/gt_cur_freq_mhz", "1200\n");
    let nodes = f.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].driver.as_deref(), Some("i915"));
    assert_eq!(nodes[0].name.as_deref(), Some("8086:46a6"));
    let load = f.load(&nodes[0]);
    assert_eq!(
        load,
        Load {
            busy_percent: None,
            freq_ratio: Some(0.25),
            source: Some("i915_freq"),
        }
    );
    assert_eq!(load.percent(), Some(25.0));

    // Per-GT files win, and the busiest GT (the media GT here) counts.
    f.file("/sys/class/drm/card0/gt/gt0/rps_act_freq_mhz", "100\n")
        .file("/sys/class/drm/card0/gt/gt0/rps_max_freq_mhz", "1000\n")
        .file("/sys/class/drm/card0/gt/gt1/rps_act_freq_mhz", "900\n")
        .file("/sys/class/drm/card0/gt/gt1/rps_max_freq_mhz", "1000\n");
    assert_eq!(f.load0().freq_ratio, Some(0.9));
}

#[test]
fn intel_xe_reports_the_busiest_gt() {
    let f = intel_box("xe", "xe");
    f.file(&format!("{INTEL}/tile0/gt0/freq0/act_freq"), "600\n")
        .file(&format!("{INTEL}/tile0/gt0/freq0/max_freq"), "2400\n")
        .file(&format!("{INTEL}/tile0/gt1/freq0/act_freq"), "1000\n")
        .file(&format!("{INTEL}/tile0/gt1/freq0/max_freq"), "2000\n");
    assert_eq!(f.nodes()[0].driver.as_deref(), Some("xe"));
    assert_eq!(
        f.load0(),
        Load {
            busy_percent: None,
            freq_ratio: Some(0.5),
            source: Some("xe_freq"),
        }
    );
    // A GT with garbage is skipped, not fatal.
    f.file(&format!("{INTEL}/tile0/gt1/freq0/max_freq"), "0\n");
    assert_eq!(f.load0().freq_ratio, Some(0.25));
}

#[test]
fn raspberry_pi_has_devfreq_load_and_codec_video_nodes() {
    let f = pi_box("pi");
    // A video node without sysfs, and names that are not nodes.
    f.file("/dev/video2", "")
        .file("/dev/video-legacy", "")
        .file("/dev/videox", "")
        .dir("/dev/dri/by-path");
    let nodes = f.nodes();
    let summary: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                n.path.to_string_lossy().into_owned(),
                n.driver.clone(),
                n.name.clone(),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        summary,
        vec![
            ("/dev/dri/renderD128".into(), s("v3d"), None),
            ("/dev/video2".into(), None, None),
            (
                "/dev/video10".into(),
                s("bcm2835-codec"),
                s("bcm2835-codec-decode")
            ),
            (
                "/dev/video11".into(),
                s("bcm2835-codec"),
                s("bcm2835-codec-encode")
            ),
            (
                "/dev/video12".into(),
                s("bcm2835-codec"),
                s("bcm2835-codec-isp")
            ),
        ]
    );
    assert_eq!(nodes[1].sysfs, None);
    assert_eq!(nodes[1].kind, NodeKind::Video);
    assert_eq!(
        nodes[3].sysfs.as_deref(),
        Some(Path::new("/sys/class/video4linux/video11/device"))
    );

    assert_eq!(
        f.load(&nodes[0]),
        Load {
            busy_percent: Some(45.0),
            freq_ratio: Some(0.5),
            source: Some("devfreq_load"),
        }
    );
    // The codec exposes no load; a node without sysfs neither.
    assert_eq!(f.load(&nodes[3]), Load::default());
    assert_eq!(f.load(&nodes[1]), Load::default());

    // Without `load` (mainline kernels), the frequency ratio is the answer.
    f.rm(&format!("{V3D}/devfreq/fec00000.v3d/load"));
    let load = f.load(&nodes[0]);
    assert_eq!(load.source, Some("devfreq_freq"));
    assert_eq!(load.percent(), Some(50.0));
}

#[test]
fn render_nodes_sort_by_number_before_video_nodes() {
    let f = Fake::new("sort");
    f.file("/dev/video0", "")
        .file("/dev/dri/renderD129", "")
        .file("/dev/dri/renderD128", "")
        .file("/dev/dri/card0", "")
        .file("/dev/dri/renderD", "")
        .file("/dev/dri/renderD12a", "");
    let paths: Vec<_> = f.nodes().into_iter().map(|n| n.path).collect();
    assert_eq!(
        paths,
        ["/dev/dri/renderD128", "/dev/dri/renderD129", "/dev/video0"]
            .map(PathBuf::from)
            .to_vec()
    );
}

#[test]
fn too_many_nodes_are_cut_at_the_bound() {
    let f = Fake::new("many");
    for n in 0..(MAX_NODES as u32 + 10) {
        f.file(&format!("/dev/video{n}"), "");
    }
    let nodes = f.nodes();
    assert_eq!(nodes.len(), MAX_NODES);
    assert_eq!(nodes[0].path, PathBuf::from("/dev/video0"));
}

#[test]
fn empty_or_missing_root_finds_nothing_and_reads_nothing() {
    let f = Fake::new("empty");
    assert!(f.nodes().is_empty());
    let gone = f.root.join("does-not-exist");
    assert!(find_nodes(&gone).is_empty());
    let node = Node {
        kind: NodeKind::Render,
        path: PathBuf::from("/dev/dri/renderD128"),
        driver: None,
        name: None,
        sysfs: None,
    };
    assert_eq!(read_load(&gone, &node), Load::default());
    assert_eq!(f.load(&node), Load::default());
}

#[test]
fn a_node_without_recorded_sysfs_finds_its_device_and_a_climbing_one_is_refused() {
    let f = amd_box("derive");
    f.file(&format!("{AMD}/gpu_busy_percent"), "5\n");
    let mut node = f.nodes().remove(0);
    node.sysfs = None;
    assert_eq!(f.load(&node).busy_percent, Some(5.0));
    node.sysfs = Some(PathBuf::from("/sys/class/drm/../drm/renderD128/device"));
    assert_eq!(f.load(&node), Load::default());
}

#[test]
fn garbage_busy_percent_is_absent_or_clamped() {
    let f = amd_box("garbage");
    let path = format!("{AMD}/gpu_busy_percent");
    let cases: &[(&[u8], Option<f64>)] = &[
        (b"abc", None),
        (b"", None),
        (b"\n", None),
        (b"999999\n", Some(100.0)),
        (b"100\n", Some(100.0)),
        (b"0\n", Some(0.0)),
        (b"-5\n", None),
        (b"-0\n", None),
        (b"+5\n", None),
        (b"NaN\n", None),
        (b"inf\n", None),
        (b"1e2\n", None),
        (b"12.5\n", Some(12.5)),
        (b"12.\n", None),
        (b".5\n", None),
        (b"  7 \n", Some(7.0)),
        (b"7 8\n", None),
        (b"\xff\xfe7\n", None),
    ];
    for (text, want) in cases {
        f.file(&path, text);
        assert_eq!(
            f.load0().busy_percent,
            *want,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    // A digit string within the cap but beyond f64 is garbage, not 100 %.
    f.file(&path, "9".repeat(400));
    assert_eq!(f.load0().busy_percent, None);
    // A file longer than the cap is garbage even though it starts with a number.
    f.file(&path, format!("42\n{}", " ".repeat(VALUE_CAP)));
    assert_eq!(f.load0().busy_percent, None);
    // Exactly at the cap is still read.
    f.file(&path, format!("{:<width$}", "42", width = VALUE_CAP));
    assert_eq!(f.load0().busy_percent, Some(42.0));
}

#[test]
fn unreadable_places_are_skipped() {
    // Tests run as root, so permissions stop nothing: unreadable means a directory, a
    // dangling link or a link loop where a file is expected.
    let f = amd_box("unreadable");
    let path = format!("{AMD}/gpu_busy_percent");
    f.dir(&path);
    assert_eq!(f.load0(), Load::default());
    f.rm(&path);
    f.link(&path, "/nowhere");
    assert_eq!(f.load0(), Load::default());
    f.rm(&path);
    std::os::unix::fs::symlink("gpu_busy_percent", f.p(&path)).expect("loop");
    assert_eq!(f.load0(), Load::default());

    // Directories where the id files and driver link are expected.
    let f = amd_box("unreadable-ids");
    f.rm(&format!("{AMD}/vendor"));
    f.dir(&format!("{AMD}/vendor"));
    f.rm(&format!("{AMD}/driver"));
    f.dir(&format!("{AMD}/driver"));
    let nodes = f.nodes();
    assert_eq!(nodes[0].name, None);
    assert_eq!(nodes[0].driver, None);
}

#[test]
fn a_fifo_is_not_opened() {
    let f = amd_box("fifo");
    let path = f.p(&format!("{AMD}/gpu_busy_percent"));
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        eprintln!("mkfifo unavailable; skipped");
        return;
    }
    // Opening a FIFO without a writer would hang this test forever.
    assert_eq!(f.load0(), Load::default());
}

#[test]
fn garbage_devfreq_load_and_frequencies() {
    let f = pi_box("devfreq-garbage");
    let df = format!("{V3D}/devfreq/fec00000.v3d");
    let cases: &[(&str, Option<f64>)] = &[
        ("45@500000000Hz\n", Some(45.0)),
        ("45@500000000\n", Some(45.0)),
        ("45\n", Some(45.0)),
        ("150@1Hz\n", Some(100.0)),
        ("45@\n", None),
        ("@500Hz\n", None),
        ("45@abcHz\n", None),
        ("45@-1Hz\n", None),
        ("-45@500Hz\n", None),
        ("NaN@500Hz\n", None),
        ("", None),
    ];
    for (text, want) in cases {
        f.file(&format!("{df}/load"), text);
        assert_eq!(f.load0().busy_percent, *want, "{text:?}");
    }
    let freq_cases: &[(&str, &str, Option<f64>)] = &[
        ("500000000", "1000000000", Some(0.5)),
        ("2000000000", "1000000000", Some(1.0)),
        ("0", "1000000000", Some(0.0)),
        ("500", "0", None),
        ("abc", "1000", None),
        ("500", "", None),
        ("-1", "1000", None),
        ("500", "99999999999999999999999", None),
    ];
    for (cur, max, want) in freq_cases {
        f.file(&format!("{df}/cur_freq"), cur)
            .file(&format!("{df}/max_freq"), max);
        assert_eq!(f.load0().freq_ratio, *want, "{cur:?}/{max:?}");
    }
}

#[test]
fn second_devfreq_instance_is_used_when_the_first_says_nothing() {
    let f = pi_box("devfreq-two");
    f.rm(&format!("{V3D}/devfreq/fec00000.v3d"));
    f.dir(&format!("{V3D}/devfreq/a-empty"))
        .file(&format!("{V3D}/devfreq/b-real/load"), "7\n");
    assert_eq!(f.load0().busy_percent, Some(7.0));
}

#[test]
fn card_is_found_through_class_links_without_a_drm_folder() {
    let f = intel_box("no-drm-dir", "i915");
    // Some layouts lack `<device>/drm/`; the card is matched by its device link.
    f.rm("/sys/class/drm/card0");
    f.rm(&format!("{INTEL}/drm/card0"));
    f.file("/sys/class/drm/card0/gt_act_freq_mhz", "600\n")
        .file("/sys/class/drm/card0/gt_max_freq_mhz", "1200\n")
        .link("/sys/class/drm/card0/device", INTEL);
    assert_eq!(f.load0().freq_ratio, Some(0.5));
}

#[test]
fn percent_prefers_busy_over_frequency() {
    let both = Load {
        busy_percent: Some(10.0),
        freq_ratio: Some(0.9),
        source: Some("devfreq_load"),
    };
    assert_eq!(both.percent(), Some(10.0));
    let freq = Load {
        freq_ratio: Some(0.3),
        ..Load::default()
    };
    assert!((freq.percent().unwrap_or(0.0) - 30.0).abs() < 1e-9);
    assert_eq!(Load::default().percent(), None);
}

#[test]
fn garbage_pci_ids_and_names() {
    assert_eq!(parse_hex_id("0x8086\n"), Some(0x8086));
    assert_eq!(parse_hex_id("0X10de"), Some(0x10de));
    assert_eq!(parse_hex_id("8086"), Some(0x8086));
    for bad in ["", "0x", "0x12345", "0xzz", "-0x1", "0x 1"] {
        assert_eq!(parse_hex_id(bad), None, "{bad:?}");
    }
    assert_eq!(clean_name(" rpivid \n").as_deref(), Some("rpivid"));
    assert_eq!(clean_name("a\u{1b}[31m"), None);
    assert_eq!(clean_name(""), None);
    assert_eq!(clean_name(&"x".repeat(MAX_NAME + 1)), None);
}

mod props {
    use super::super::*;
    use proptest::prelude::*;

    fn in_range(v: Option<f64>) -> bool {
        v.is_none_or(|v| (0.0..=100.0).contains(&v))
    }

    proptest! {
        #[test]
        fn parsers_never_panic_and_stay_in_range(s in "\\PC{0,40}") {
            prop_assert!(in_range(parse_percent(&s)));
            prop_assert!(in_range(parse_devfreq_load(&s)));
            prop_assert!(in_range(parse_pm_info(&s)));
            let _ = parse_uint(&s);
            let _ = parse_hex_id(&s);
            let _ = parse_index(&s);
            let _ = clean_name(&s);
        }

        #[test]
        fn numeric_looking_text_stays_in_range(s in "[-+0-9.@Hz% eE]{0,30}") {
            prop_assert!(in_range(parse_percent(&s)));
            prop_assert!(in_range(parse_devfreq_load(&s)));
            let line = format!("GPU Load: {s}");
            prop_assert!(in_range(parse_pm_info(&line)));
        }
    }
}
