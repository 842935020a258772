//! Discovery over fake trees (a temp folder laid out like `/`, device nodes linked to
//! `/dev/null` where a character device is needed), the real ffmpeg, and fake `ffmpeg`
//! scripts that record their arguments or hang.

use super::*;
use crate::hw::fake::Fake;
use crate::hw::spec::parse_encoders;
use std::fs;

const CODEC: &str = "/sys/devices/platform/soc/soc:bcm2835-codec";

impl Fake {
    /// A video node `/dev/video<n>` with V4L2 name `name`; a character device (a link to
    /// `/dev/null`) when `char_dev`, else an empty regular file.
    fn codec_video(&self, n: u32, name: &str, char_dev: bool) -> &Fake {
        let node = format!("{CODEC}/video4linux/video{n}");
        self.file(&format!("{node}/name"), format!("{name}\n"));
        fs::create_dir_all(self.p(CODEC)).expect("mkdir");
        let class = self.p(&format!("/sys/class/video4linux/video{n}"));
        fs::create_dir_all(class.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(self.p(&node), class).expect("symlink");
        std::os::unix::fs::symlink(self.p(CODEC), self.p(&format!("{node}/device")))
            .expect("symlink");
        if char_dev {
            self.link_to(&format!("/dev/video{n}"), Path::new("/dev/null"))
        } else {
            self.file(&format!("/dev/video{n}"), "")
        }
    }

    /// A render node; a character device when `char_dev`.
    fn render_node(&self, n: u32, char_dev: bool) -> &Fake {
        if char_dev {
            self.link_to(&format!("/dev/dri/renderD{n}"), Path::new("/dev/null"))
        } else {
            self.file(&format!("/dev/dri/renderD{n}"), "")
        }
    }

    /// An executable `ffmpeg` stand-in running `body` under /bin/sh, ready to run.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = self.p(name);
        let text = format!("#!/bin/sh\n[ \"$1\" = --ready ] && exit 0\n{body}\n");
        fs::write(&p, text).expect("write script");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        // A child forked by another test thread while the file was open for writing
        // keeps it busy (ETXTBSY) until that child execs; wait for that to pass.
        for _ in 0..100 {
            match Command::new(&p).arg("--ready").status() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    thread::sleep(Duration::from_millis(20));
                }
                Ok(s) if s.success() => return p,
                other => panic!("fake ffmpeg does not run: {other:?}"),
            }
        }
        panic!("fake ffmpeg stays busy");
    }

    /// A fake ffmpeg that appends its arguments to `calls` and succeeds when they
    /// contain one of `ok` (a codec name).
    fn recording_ffmpeg(&self, ok: &[&str]) -> PathBuf {
        let calls = self.p("calls");
        let cases: String = ok
            .iter()
            .map(|c| format!("*\" {c} \"*) exit 0 ;; "))
            .collect();
        self.script(
            "ffmpeg",
            &format!(
                "echo \"$*\" >> '{}'\ncase \" $* \" in {cases} esac\necho '[error] no such encoder' >&2\nexit 1",
                calls.display()
            ),
        )
    }

    /// The argument lines the recording ffmpeg was called with.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.p("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

const T: Duration = Duration::from_secs(20);

fn real_ffmpeg() -> &'static Path {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "ffmpeg not found: install Debian's ffmpeg (apt-get install ffmpeg; scripts/test.sh does it)"
    );
    Path::new("ffmpeg")
}

#[test]
fn an_empty_tree_has_no_encoders() {
    let f = Fake::new("empty");
    let ffmpeg = f.recording_ffmpeg(&["h264_vaapi", "h264_v4l2m2m"]);
    assert_eq!(discover(&f.root, &ffmpeg, T), []);
    assert_eq!(f.calls(), Vec::<String>::new());
    // A root that does not exist at all is an empty tree too.
    assert_eq!(discover(&f.p("missing"), &ffmpeg, T), []);
}

#[test]
fn nodes_that_are_not_devices_are_never_probed() {
    let f = Fake::new("files");
    f.render_node(128, false)
        .codec_video(11, "bcm2835-codec-encode", false);
    assert_eq!(
        load::find_nodes(&f.root).len(),
        2,
        "the fake tree lists both"
    );
    let ffmpeg = f.recording_ffmpeg(&["h264_vaapi", "h264_v4l2m2m"]);
    assert_eq!(discover(&f.root, &ffmpeg, T), []);
    assert_eq!(
        f.calls(),
        Vec::<String>::new(),
        "ffmpeg ran on a regular file"
    );
}

/// What discovery finds on a Pi-like tree whose nodes are character devices no probe
/// but (fake) ffmpeg understands: with or without the features, libva and V4L2 are
/// inconclusive on `/dev/null`, so the ffmpeg rules decide.
#[test]
fn char_device_nodes_go_to_the_ffmpeg_probe() {
    let f = Fake::new("ffmpeg");
    f.render_node(128, true)
        .codec_video(10, "bcm2835-codec-decode", true)
        .codec_video(11, "bcm2835-codec-encode", true)
        .codec_video(12, "bcm2835-codec-encode-image", true);
    let ffmpeg = f.recording_ffmpeg(&["h264_vaapi", "h264_v4l2m2m"]);
    let nodes = load::find_nodes(&f.root);
    let found = discover(&f.root, &ffmpeg, T);

    let render = f.p("/dev/dri/renderD128");
    let video = f.p("/dev/video11");
    assert_eq!(
        found,
        [
            Encoder {
                id: format!("vaapi:{}", render.display()),
                backend: Backend::Vaapi {
                    render_node: render.clone()
                },
                capacity: VAAPI_CAPACITY,
                hevc: false,
                node: Some(nodes[0].clone()),
                probed_by: "ffmpeg",
            },
            Encoder {
                id: format!("v4l2m2m:{}", video.display()),
                backend: Backend::V4l2m2m {
                    device: video.clone()
                },
                capacity: V4L2M2M_CAPACITY,
                hevc: false,
                node: Some(nodes[2].clone()),
                probed_by: "ffmpeg",
            },
        ]
    );
    assert_eq!(nodes[2].name.as_deref(), Some("bcm2835-codec-encode"));
    // H.264 on the render node, then HEVC (refused), then one V4L2 run: nothing else.
    let calls = f.calls();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(calls[0].contains(&format!("-init_hw_device vaapi=va:{} ", render.display())));
    assert!(calls[0].contains(" h264_vaapi "), "{}", calls[0]);
    assert!(calls[1].contains(" hevc_vaapi "), "{}", calls[1]);
    assert!(calls[2].contains(" h264_v4l2m2m "), "{}", calls[2]);
}

#[test]
fn hevc_is_reported_when_its_test_encode_works() {
    let f = Fake::new("hevc");
    f.render_node(128, true).render_node(129, true);
    let ffmpeg = f.recording_ffmpeg(&["h264_vaapi", "hevc_vaapi"]);
    let found = discover(&f.root, &ffmpeg, T);
    let ids: Vec<(&str, bool)> = found.iter().map(|e| (e.id.as_str(), e.hevc)).collect();
    let want = [
        format!("vaapi:{}", f.p("/dev/dri/renderD128").display()),
        format!("vaapi:{}", f.p("/dev/dri/renderD129").display()),
    ];
    assert_eq!(ids, [(want[0].as_str(), true), (want[1].as_str(), true)]);
}

#[test]
fn failing_test_encodes_offer_nothing() {
    let f = Fake::new("nothing");
    f.render_node(128, true)
        .codec_video(11, "bcm2835-codec-encode", true);
    let ffmpeg = f.recording_ffmpeg(&[]);
    assert_eq!(discover(&f.root, &ffmpeg, T), []);
    // One H.264 try per kind; HEVC is not tried on a node without H.264.
    assert_eq!(f.calls().len(), 2, "{:#?}", f.calls());
}

#[test]
fn video_nodes_without_an_encoder_name_are_not_offered() {
    let f = Fake::new("noname");
    f.codec_video(10, "bcm2835-codec-decode", true)
        .codec_video(13, "bcm2835-isp", true)
        .link("/dev/video14", "/dev/null");
    let ffmpeg = f.recording_ffmpeg(&["h264_v4l2m2m"]);
    assert_eq!(discover(&f.root, &ffmpeg, T), []);
    assert_eq!(f.calls(), Vec::<String>::new());
}

#[test]
fn software_probe_succeeds_in_real_ffmpeg() {
    let ffmpeg = real_ffmpeg();
    let started = Instant::now();
    probe_ffmpeg(ffmpeg, &Backend::Software, T).expect("libx264 encodes one frame");
    assert!(started.elapsed() < T);
}

#[test]
fn vaapi_probe_of_a_missing_node_fails_fast_in_real_ffmpeg() {
    let ffmpeg = real_ffmpeg();
    let started = Instant::now();
    let backend = Backend::Vaapi {
        render_node: PathBuf::from("/nonexistent/dri/renderD128"),
    };
    match probe_ffmpeg(ffmpeg, &backend, T) {
        Err(ProbeError::Failed { status, stderr }) => {
            assert_ne!(status, "exit 0");
            assert!(!stderr.contains('\n'), "{stderr}");
        }
        other => panic!("expected a failed test encode, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // On this machine there is no GPU: discovery over the real tree finds no VAAPI node
    // that encodes (and must not hang or panic on whatever /dev holds).
    let found = discover(Path::new("/"), ffmpeg, Duration::from_secs(10));
    assert!(found.iter().all(|e| e.probed_by != "config"), "{found:?}");
}

#[test]
fn a_hanging_ffmpeg_is_killed_at_the_timeout_and_reaped() {
    let f = Fake::new("hang");
    let pids = f.p("pids");
    // The shell starts a grandchild and waits: both must die with the process group.
    let ffmpeg = f.script(
        "ffmpeg",
        &format!("sleep 30 &\necho \"$$ $!\" > '{}'\nwait", pids.display()),
    );
    let started = Instant::now();
    let r = probe_ffmpeg(&ffmpeg, &Backend::Software, Duration::from_millis(300));
    let took = started.elapsed();
    assert!(matches!(r, Err(ProbeError::Timeout { .. })), "{r:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    let text = fs::read_to_string(&pids).expect("the script wrote its pids");
    let mut it = text.split_whitespace();
    let (child, grandchild) = (it.next().unwrap(), it.next().unwrap());
    // Reaped by us: no /proc entry at all (a zombie would still have one).
    assert!(
        !Path::new(&format!("/proc/{child}")).exists(),
        "child {child} left behind"
    );
    // The grandchild was killed with the group; its new parent reaps it, so allow it to
    // be a zombie for a moment, never alive.
    let dead = |pid: &str| match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dead(grandchild) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(dead(grandchild), "grandchild {grandchild} still runs");
}

#[test]
fn a_missing_ffmpeg_is_a_spawn_error() {
    let r = probe_ffmpeg(Path::new("/nonexistent/ffmpeg"), &Backend::Software, T);
    assert!(matches!(r, Err(ProbeError::Spawn { .. })), "{r:?}");
}

#[test]
fn a_chatty_failure_is_drained_and_summarised() {
    let f = Fake::new("chatty");
    // 1 MB of stderr would fill any pipe: the probe must keep reading.
    let ffmpeg = f.script(
        "ffmpeg",
        "head -c 1000000 /dev/zero | tr '\\0' 'x' >&2\nprintf '\\n[error] bad\\001thing\\n' >&2\nexit 3",
    );
    match probe_ffmpeg(&ffmpeg, &Backend::Software, T) {
        Err(ProbeError::Failed { status, stderr }) => {
            assert_eq!(status, "exit 3");
            // Only the first STDERR_CAP bytes are kept, and the summary is bounded.
            assert_eq!(stderr, "x".repeat(200));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let ffmpeg = f.script(
        "ffmpeg2",
        "printf '[error] bad\\001thing\\n\\n' >&2\nexit 1",
    );
    // A timeout beyond what an Instant can hold means no deadline, not a panic.
    match probe_ffmpeg(&ffmpeg, &Backend::Software, Duration::MAX) {
        Err(ProbeError::Failed { stderr, .. }) => assert_eq!(stderr, "[error] bad\\u{1}thing"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn helpers() {
    let mut long = io::Cursor::new(vec![b'a'; 10_000]);
    assert_eq!(read_bounded(&mut long, 100), vec![b'a'; 100]);
    assert_eq!(long.position(), 10_000, "read to the end");
    assert_eq!(last_line(b"one\ntwo\n\n  \n"), "two");
    assert_eq!(last_line(b""), "");
    assert_eq!(last_line(b"\xff\"q\""), "\u{fffd}\\\"q\\\"");

    let vaapi = Backend::Vaapi {
        render_node: PathBuf::from("/dev/dri/renderD128"),
    };
    let hevc = hevc_probe_args(&vaapi).expect("the VAAPI probe names h264_vaapi");
    assert!(hevc.iter().any(|a| a == "hevc_vaapi"));
    assert!(!hevc.iter().any(|a| a == "h264_vaapi"));
    assert_eq!(hevc_probe_args(&Backend::Software), None);

    assert_eq!(default_capacity(&Backend::Software), software_capacity());
    assert_eq!(default_capacity(&vaapi), 4);
    let v4l2 = Backend::V4l2m2m {
        device: PathBuf::from("/dev/video11"),
    };
    assert_eq!(default_capacity(&v4l2), 1);
}

#[test]
fn configured_devices_become_encoders() {
    let f = Fake::new("spec");
    f.render_node(128, true);
    let nodes = load::find_nodes(&f.root);
    let text = format!(
        "vaapi:{}=2, v4l2m2m:/dev/video11, software=3",
        f.p("/dev/dri/renderD128").display()
    );
    let specs = parse_encoders(&text).unwrap();
    let got: Vec<Encoder> = specs
        .iter()
        .map(|s| Encoder::from_spec(s, &f.root, &nodes))
        .collect();
    assert_eq!(got[0].capacity, 2);
    assert_eq!(got[0].node.as_ref(), Some(&nodes[0]));
    assert!(!got[0].hevc);
    assert_eq!(got[0].id, specs[0].id());
    assert_eq!(got[1].capacity, V4L2M2M_CAPACITY);
    assert_eq!(got[1].node, None);
    assert_eq!(got[2].id, "software");
    assert_eq!((got[2].capacity, got[2].hevc), (3, true));
    assert!(got.iter().all(|e| e.probed_by == "config"));
}

#[test]
fn the_video_encoder_may_come_after_many_other_nodes() {
    // Rockchip-like: a dozen ISP nodes first, the encoder last.
    let f = Fake::new("many");
    for n in 0..12 {
        f.codec_video(n, "rkisp_mainpath", true);
    }
    f.codec_video(20, "rockchip,rk3568-vepu-enc", true);
    let ffmpeg = f.recording_ffmpeg(&["h264_v4l2m2m"]);
    let found = discover(&f.root, &ffmpeg, T);
    let ids: Vec<&str> = found.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [format!("v4l2m2m:{}", f.p("/dev/video20").display())]);
    assert_eq!(f.calls().len(), 1);
}
