use super::*;
use proptest::prelude::*;

fn vaapi(p: &str, capacity: Option<u32>) -> EncoderSpec {
    EncoderSpec {
        backend: Backend::Vaapi {
            render_node: PathBuf::from(p),
        },
        capacity,
    }
}

fn v4l2(p: &str, capacity: Option<u32>) -> EncoderSpec {
    EncoderSpec {
        backend: Backend::V4l2m2m {
            device: PathBuf::from(p),
        },
        capacity,
    }
}

fn software(capacity: Option<u32>) -> EncoderSpec {
    EncoderSpec {
        backend: Backend::Software,
        capacity,
    }
}

/// The error for `text`, checked to be one printable line.
fn err(text: &str) -> String {
    let e = parse_encoders(text).expect_err(text);
    assert!(
        !e.chars().any(char::is_control),
        "not one clean line: {e:?}"
    );
    e
}

#[test]
fn good_lists() {
    assert_eq!(
        parse_encoders("vaapi:/dev/dri/renderD128=4, v4l2m2m:/dev/video11=1, software=2"),
        Ok(vec![
            vaapi("/dev/dri/renderD128", Some(4)),
            v4l2("/dev/video11", Some(1)),
            software(Some(2)),
        ])
    );
    assert_eq!(parse_encoders(""), Ok(vec![]));
    assert_eq!(parse_encoders(" \t\n "), Ok(vec![]));
    assert_eq!(parse_encoders("software"), Ok(vec![software(None)]));
    assert_eq!(
        parse_encoders(" vaapi : /dev/dri/renderD129 = 0 ,software= 64"),
        Ok(vec![
            vaapi("/dev/dri/renderD129", Some(0)),
            software(Some(64))
        ])
    );
    // Two render nodes are two devices; a colon inside the path belongs to the path.
    assert_eq!(
        parse_encoders("vaapi:/dev/dri/renderD128,vaapi:/dev/dri/by-path/pci-0000:00:02.0-render"),
        Ok(vec![
            vaapi("/dev/dri/renderD128", None),
            vaapi("/dev/dri/by-path/pci-0000:00:02.0-render", None),
        ])
    );
    let sixteen: Vec<String> = (0..16)
        .map(|i| format!("vaapi:/dev/dri/renderD{}", 128 + i))
        .collect();
    assert_eq!(parse_encoders(&sixteen.join(",")).map(|v| v.len()), Ok(16));
}

#[test]
fn ids_match_the_syntax() {
    let specs =
        parse_encoders("vaapi:/dev/dri/renderD128=4,v4l2m2m:/dev/video11,software").unwrap();
    let ids: Vec<String> = specs.iter().map(EncoderSpec::id).collect();
    assert_eq!(
        ids,
        [
            "vaapi:/dev/dri/renderD128",
            "v4l2m2m:/dev/video11",
            "software"
        ]
    );
}

#[test]
fn bad_entries_are_named() {
    let cases: &[(&str, &str)] = &[
        (
            "vaapi",
            "encoders entry 1 \"vaapi\": vaapi needs a device path",
        ),
        (
            "software,v4l2m2m=1",
            "entry 2 \"v4l2m2m=1\": v4l2m2m needs a device path",
        ),
        ("software:/dev/null", "software takes no device path"),
        ("cuda:/dev/nvidia0", "unknown backend \"cuda\""),
        ("VAAPI:/dev/dri/renderD128", "unknown backend \"VAAPI\""),
        ("vaapi:dev/dri/renderD128", "is not absolute"),
        ("vaapi:/dev/dri/../../etc/passwd", "contains .."),
        ("vaapi:", "empty device path"),
        ("vaapi:/dev/dri/render D128", "contains \" \""),
        (
            "vaapi:/dev/dri/renderD128=65",
            "capacity \"65\" is above the maximum 64",
        ),
        (
            "vaapi:/dev/dri/renderD128=99999999999999999999",
            "above the maximum",
        ),
        (
            "vaapi:/dev/dri/renderD128=-1",
            "capacity \"-1\" is not a number",
        ),
        ("vaapi:/dev/dri/renderD128=+4", "is not a number"),
        (
            "vaapi:/dev/dri/renderD128=",
            "capacity \"\" is not a number",
        ),
        (
            "vaapi:/dev/dri/renderD128=4=5",
            "capacity \"4=5\" is not a number",
        ),
        (
            "software,,vaapi:/dev/dri/renderD128",
            "entry 2 \"\": empty entry",
        ),
        ("software,", "entry 2 \"\": empty entry"),
        (
            "software=1,software=2",
            "entry 2 \"software=2\": \"software\" is named twice",
        ),
        (
            "vaapi:/dev/dri/renderD128, vaapi:/dev/dri/renderD128=2",
            "\"vaapi:/dev/dri/renderD128\" is named twice",
        ),
        // Odd bytes are shown escaped, and the message stays one line.
        (
            "soft\nware",
            "entry 1 \"soft\\nware\": unknown backend \"soft\\nware\"",
        ),
        ("vaapi:/dev/\u{1b}[31m", "contains \"\\u{1b}\""),
        ("\"quoted\"", "unknown backend \"\\\"quoted\\\"\""),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
        assert!(e.starts_with("encoders"), "{e}");
    }
}

#[test]
fn bounds() {
    let long = format!("vaapi:/{}", "a".repeat(MAX_PATH));
    assert!(err(&long).contains("at most 256"));
    // The shown entry is cut, so a long entry cannot make a long log line.
    assert!(err(&long).len() < 200, "{}", err(&long));
    let huge = "software,".repeat(500);
    assert!(err(&huge).contains("at most 4096"));
    let seventeen: Vec<String> = (0..17)
        .map(|i| format!("vaapi:/dev/dri/renderD{}", 128 + i))
        .collect();
    assert!(err(&seventeen.join(",")).contains("more than 16 entries"));
}

fn arb_spec() -> impl Strategy<Value = EncoderSpec> {
    let path = "(/[a-zA-Z0-9_.:-]{1,12}){1,4}".prop_filter("no ..", |p| {
        !Path::new(p)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    });
    let cap = proptest::option::of(0..=MAX_CAPACITY);
    prop_oneof![
        cap.clone().prop_map(software),
        (path.clone(), cap.clone()).prop_map(|(p, c)| vaapi(&p, c)),
        (path, cap).prop_map(|(p, c)| v4l2(&p, c)),
    ]
}

fn render(spec: &EncoderSpec, pad: &str) -> String {
    match spec.capacity {
        Some(c) => format!("{pad}{}{pad}={pad}{c}{pad}", spec.id()),
        None => format!("{pad}{}{pad}", spec.id()),
    }
}

proptest! {
    #[test]
    fn never_panics_and_errors_are_one_line(text in "\\PC{0,80}|[a-z4:/=, \\n.]{0,80}") {
        match parse_encoders(&text) {
            Ok(specs) => prop_assert!(specs.len() <= MAX_ENTRIES),
            Err(e) => {
                prop_assert!(!e.chars().any(char::is_control), "{:?}", e);
                prop_assert!(e.len() < 600, "{}", e);
            }
        }
    }

    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_encoders(&text);
    }

    #[test]
    fn written_lists_parse_back(
        specs in proptest::collection::vec(arb_spec(), 1..=MAX_ENTRIES),
        pad in "[ \\t]{0,2}",
    ) {
        // Ids must be distinct to be valid; keep the first of each.
        let mut unique: Vec<EncoderSpec> = Vec::new();
        for s in specs {
            if !unique.iter().any(|u| u.backend == s.backend) {
                unique.push(s);
            }
        }
        let text: Vec<String> = unique.iter().map(|s| render(s, &pad)).collect();
        prop_assert_eq!(parse_encoders(&text.join(",")), Ok(unique));
    }

    #[test]
    fn capacities_in_range_only(c in 0u64..1000) {
        let r = parse_encoders(&format!("software={c}"));
        if c <= u64::from(MAX_CAPACITY) {
            prop_assert_eq!(r, Ok(vec![software(Some(c as u32))]));
        } else {
            prop_assert!(r.is_err());
        }
    }
}
