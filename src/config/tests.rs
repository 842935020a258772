//! Loader tests: defaults, every kind of bad value, file vs environment, describe().

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const BASE: (&str, &str) = ("XG2G_OWI_BASE", "http://192.168.1.10");

fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_with(None, pairs)
}

fn load_with(file: Option<&Path>, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    Settings::load(file, &env)
}

/// A settings file in the temp folder, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "xg2g-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp settings file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load_file(toml: &str, pairs: &[(&str, &str)]) -> (Result<Settings, ConfigError>, TempFile) {
    let file = TempFile::new(toml.as_bytes());
    (load_with(Some(&file.0), pairs), file)
}

/// The Display of an error, checked to be one line.
fn message(e: &ConfigError) -> String {
    let m = e.to_string();
    assert!(!m.contains('\n'), "not one line: {m}");
    m
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = load_env(&[BASE]).expect("defaults load");
    assert_eq!(s.owi_base, "http://192.168.1.10");
    assert_eq!(s.owi_user, None);
    assert_eq!(s.owi_pass, None);
    assert!(s.bouquets.is_empty());
    assert_eq!(s.stream_port, 8001);
    assert_eq!(s.data_dir, PathBuf::from("./data"));
    assert_eq!(s.listen, "0.0.0.0:8080".parse().expect("addr"));
    assert_eq!(s.metrics_listen, None);
    assert!(s.epg_enabled);
    assert_eq!(s.epg_days, 7);
    assert_eq!(s.epg_source, EpgSource::Bouquet);
    assert_eq!(s.epg_max_concurrency, 4);
    assert_eq!(s.owi_timeout, Duration::from_millis(10_000));
    assert_eq!(s.owi_retries, 2);
    assert_eq!(s.owi_max_body_bytes, 256 * 1024 * 1024);
    assert_eq!(s.x_tvg_url, None);
    assert_eq!(s.picon_base, None);
    assert_eq!(s.public_url, None);
    assert!(s.use_proxy_urls);
    assert_eq!(s.refresh_interval, Duration::from_secs(6 * 3600));
    assert!(s.initial_refresh);
    assert_eq!(s.api_token, None);
    assert_eq!(s.http_max_connections, 256);
    assert_eq!(s.http_header_timeout, Duration::from_secs(10));
    assert_eq!(s.http_idle_timeout, Duration::from_secs(60));
    assert_eq!(s.http_write_timeout, Duration::from_secs(30));
    assert_eq!(s.http_max_header_bytes, 8192);
    assert_eq!(s.log_level, "info");
}

#[test]
fn key_table_is_consistent() {
    let keys = keys();
    assert_eq!(keys.len(), 83);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k.env, format!("XG2G_{}", k.file_key.to_ascii_uppercase()));
        assert!(!k.help.is_empty(), "{} has no help", k.env);
        assert!(
            keys.iter().skip(i + 1).all(|o| o.env != k.env),
            "{} listed twice",
            k.env
        );
    }
    let secrets: Vec<_> = keys
        .iter()
        .filter(|k| k.is_secret())
        .map(|k| k.env)
        .collect();
    assert_eq!(
        secrets,
        ["XG2G_OWI_PASS", "XG2G_API_TOKEN", "XG2G_STREAM_TOKEN"]
    );
    // The default column, fed back as settings, gives exactly the defaults.
    let defaults = load_env(&[BASE]).expect("defaults").describe();
    let mut pairs: Vec<(&str, &str)> = keys
        .iter()
        .filter(|k| !k.default.is_empty())
        .map(|k| (k.env, k.default))
        .collect();
    pairs.push(BASE);
    assert_eq!(
        load_env(&pairs).expect("table defaults").describe(),
        defaults
    );
}

#[test]
fn bad_env_values_say_what_is_allowed() {
    let cases: &[(&str, &str, &str)] = &[
        ("XG2G_OWI_BASE", "https://box", "https is not supported"),
        ("XG2G_OWI_BASE", "192.168.1.10", "must start with http://"),
        (
            "XG2G_OWI_BASE",
            "http://root:pw@box",
            "put credentials in XG2G_OWI_USER/XG2G_OWI_PASS",
        ),
        ("XG2G_OWI_BASE", "http://box/?x=1", "must not have a query"),
        ("XG2G_OWI_BASE", "http://:80", "has no host"),
        (
            "XG2G_STREAM_PORT",
            "0",
            "must be a whole number from 1 to 65535",
        ),
        ("XG2G_STREAM_PORT", "70000", "from 1 to 65535"),
        ("XG2G_STREAM_PORT", "80a", "from 1 to 65535"),
        (
            "XG2G_LISTEN",
            "8080",
            "write :8080 to listen on all interfaces",
        ),
        ("XG2G_LISTEN", "tv.local:80", "not resolved"),
        ("XG2G_LISTEN", ":99999", "bad port"),
        ("XG2G_METRICS_LISTEN", "x", "must be an address like :8080"),
        ("XG2G_EPG_ENABLED", "maybe", "must be true or false"),
        ("XG2G_EPG_DAYS", "20", "must be a whole number from 1 to 14"),
        ("XG2G_EPG_DAYS", "0", "from 1 to 14"),
        ("XG2G_EPG_DAYS", "-1", "from 1 to 14"),
        ("XG2G_EPG_DAYS", "7.5", "from 1 to 14"),
        (
            "XG2G_EPG_SOURCE",
            "channel",
            "must be bouquet or per-service",
        ),
        ("XG2G_EPG_MAX_CONCURRENCY", "17", "from 1 to 16"),
        ("XG2G_OWI_TIMEOUT_MS", "99", "from 100 to 600000"),
        ("XG2G_OWI_TIMEOUT_MS", "10s", "from 100 to 600000"),
        ("XG2G_OWI_RETRIES", "11", "from 0 to 10"),
        ("XG2G_OWI_MAX_BODY_BYTES", "64MB", "KiB, MiB or GiB"),
        ("XG2G_OWI_MAX_BODY_BYTES", "1KiB", "from 64KiB to 4GiB"),
        ("XG2G_OWI_MAX_BODY_BYTES", "5GiB", "from 64KiB to 4GiB"),
        (
            "XG2G_X_TVG_URL",
            "xmltv.xml",
            "must start with http:// or https://",
        ),
        ("XG2G_PICON_BASE", "ftp://box/picon", "http:// or https://"),
        ("XG2G_PUBLIC_URL", "http://", "has no host"),
        ("XG2G_USE_PROXY_URLS", "2", "must be true or false"),
        ("XG2G_REFRESH_INTERVAL", "30", "add a unit, e.g. 30s"),
        ("XG2G_REFRESH_INTERVAL", "30s", "from 1m to 7d"),
        ("XG2G_REFRESH_INTERVAL", "8d", "from 1m to 7d"),
        ("XG2G_REFRESH_INTERVAL", "6 hours", "must be a duration"),
        ("XG2G_REFRESH_INTERVAL", "6x", "unknown unit"),
        ("XG2G_INITIAL_REFRESH", "y", "must be true or false"),
        ("XG2G_HTTP_MAX_CONNECTIONS", "0", "from 1 to 65536"),
        ("XG2G_HTTP_HEADER_TIMEOUT", "500ms", "from 1s to 1h"),
        ("XG2G_HTTP_IDLE_TIMEOUT", "2h", "from 1s to 1h"),
        ("XG2G_HTTP_WRITE_TIMEOUT", "10", "add a unit, e.g. 10s"),
        ("XG2G_HTTP_MAX_HEADER_BYTES", "100", "from 1024 to 65536"),
        (
            "XG2G_LOG_LEVEL",
            "verbose",
            "must be one of error, warn, info, debug, trace",
        ),
        ("XG2G_HDHR_DEVICE_ID", "XG2G1234", "hex"),
        (
            "XG2G_HDHR_FRIENDLY_NAME",
            "a\u{7}b",
            "1 to 64 printable characters",
        ),
        ("XG2G_HDHR_TUNER_COUNT", "0", "from 1 to 64"),
        ("XG2G_HDHR_DISCOVERY_PORT", "70000", "from 0 to 65535"),
        ("XG2G_SSDP_LISTEN", "eth0", "not an IPv4 address"),
        ("XG2G_BOUQUET", "\"Favourites", "unterminated quote"),
        ("XG2G_BOUQUET", "\"A\"B", "text after a closing quote"),
    ];
    for &(key, value, want) in cases {
        let err = load_env(&[BASE, (key, value)]).expect_err(key);
        let m = message(&err);
        assert!(
            m.starts_with(&format!("{key}={value:?}: ")),
            "{key}={value}: {m}"
        );
        assert!(m.contains(want), "{key}={value}: want {want:?} in {m}");
        assert!(matches!(err, ConfigError::Invalid { key: k, .. } if k == key));
    }
    assert_eq!(
        message(&load_env(&[BASE, ("XG2G_EPG_DAYS", "20")]).expect_err("days")),
        "XG2G_EPG_DAYS=\"20\": must be a whole number from 1 to 14"
    );
}

#[test]
fn good_env_values_are_read() {
    let s = load_env(&[
        ("XG2G_OWI_BASE", " HTTP://vu.local:8080/web/ "),
        ("XG2G_OWI_USER", "root"),
        ("XG2G_OWI_PASS", " pa ss "),
        ("XG2G_BOUQUET", "\"Österreich, Schweiz\", Favourites ,,"),
        ("XG2G_STREAM_PORT", "17999"),
        ("XG2G_DATA", "/var/lib/xg2g"),
        ("XG2G_LISTEN", "localhost:0"),
        ("XG2G_METRICS_LISTEN", "[::]:9090"),
        ("XG2G_EPG_ENABLED", "OFF"),
        ("XG2G_EPG_DAYS", "14"),
        ("XG2G_EPG_SOURCE", "per_service"),
        ("XG2G_EPG_MAX_CONCURRENCY", "16"),
        ("XG2G_OWI_TIMEOUT_MS", "2500"),
        ("XG2G_OWI_RETRIES", "0"),
        ("XG2G_OWI_MAX_BODY_BYTES", "64MiB"),
        ("XG2G_X_TVG_URL", "https://tv.example.org/xmltv.xml"),
        ("XG2G_PICON_BASE", "http://box/picon/"),
        ("XG2G_PUBLIC_URL", "http://192.168.1.20:8080/"),
        ("XG2G_USE_PROXY_URLS", "no"),
        ("XG2G_REFRESH_INTERVAL", "1h30m"),
        ("XG2G_INITIAL_REFRESH", "0"),
        ("XG2G_API_TOKEN", "tok"),
        ("XG2G_HTTP_MAX_CONNECTIONS", "32"),
        ("XG2G_HTTP_HEADER_TIMEOUT", "5s"),
        ("XG2G_HTTP_IDLE_TIMEOUT", "1m"),
        ("XG2G_HTTP_WRITE_TIMEOUT", "1h"),
        ("XG2G_HTTP_MAX_HEADER_BYTES", "16384"),
        ("XG2G_LOG_LEVEL", "DEBUG"),
    ])
    .expect("valid settings");
    assert_eq!(s.owi_base, "http://vu.local:8080/web");
    assert_eq!(s.owi_user.as_deref(), Some("root"));
    assert_eq!(s.owi_pass.as_deref(), Some(" pa ss "));
    assert_eq!(s.bouquets, ["Österreich, Schweiz", "Favourites"]);
    assert_eq!(s.stream_port, 17999);
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/xg2g"));
    assert_eq!(s.listen, "127.0.0.1:0".parse().expect("addr"));
    assert_eq!(s.metrics_listen, Some("[::]:9090".parse().expect("addr")));
    assert!(!s.epg_enabled);
    assert_eq!(s.epg_days, 14);
    assert_eq!(s.epg_source, EpgSource::PerService);
    assert_eq!(s.epg_max_concurrency, 16);
    assert_eq!(s.owi_timeout, Duration::from_millis(2500));
    assert_eq!(s.owi_retries, 0);
    assert_eq!(s.owi_max_body_bytes, 64 << 20);
    assert_eq!(
        s.x_tvg_url.as_deref(),
        Some("https://tv.example.org/xmltv.xml")
    );
    assert_eq!(s.picon_base.as_deref(), Some("http://box/picon"));
    assert_eq!(s.public_url.as_deref(), Some("http://192.168.1.20:8080"));
    assert!(!s.use_proxy_urls);
    assert_eq!(s.refresh_interval, Duration::from_secs(5400));
    assert!(!s.initial_refresh);
    assert_eq!(s.api_token.as_deref(), Some("tok"));
    assert_eq!(s.http_max_connections, 32);
    assert_eq!(s.http_header_timeout, Duration::from_secs(5));
    assert_eq!(s.http_idle_timeout, Duration::from_secs(60));
    assert_eq!(s.http_write_timeout, Duration::from_secs(3600));
    assert_eq!(s.http_max_header_bytes, 16384);
    assert_eq!(s.log_level, "debug");
}

#[test]
fn owi_base_is_required() {
    for pairs in [
        &[][..],
        &[("XG2G_OWI_BASE", "")][..],
        &[("XG2G_OWI_BASE", "  ")][..],
    ] {
        let err = load_env(pairs).expect_err("no base");
        assert_eq!(
            message(&err),
            "XG2G_OWI_BASE is required (e.g. http://192.168.1.10)"
        );
    }
    let (res, file) = load_file("epg_days = 3\n", &[]);
    let m = message(&res.expect_err("no base"));
    assert!(m.starts_with("XG2G_OWI_BASE is required (e.g. http://192.168.1.10)"));
    assert!(
        m.contains(&format!("owi_base in {}", file.0.display())),
        "{m}"
    );
}

#[test]
fn file_is_read_and_env_overrides_it() {
    let toml = r#"
owi_base = "http://10.0.0.2/"
owi_user = "root"
owi_pass = "secret"
bouquet = ["Österreich, Schweiz", " Favourites ", ""]
stream_port = 8002
data = "/srv/xg2g"
listen = "127.0.0.1:8081"
metrics_listen = ":9100"
epg_enabled = false
epg_days = 3
epg_source = "per-service"
epg_max_concurrency = 2
owi_timeout_ms = 5000
owi_retries = 1
owi_max_body_bytes = 1048576
x_tvg_url = "http://a/x.xml"
picon_base = "http://a/picon/"
public_url = "https://tv.example.org"
use_proxy_urls = false
refresh_interval = "30m"
initial_refresh = false
api_token = "t0k"
http_max_connections = 64
http_header_timeout = "3s"
http_idle_timeout = "2m"
http_write_timeout = "45s"
http_max_header_bytes = 4096
log_level = "warn"
"#;
    let (res, _file) = load_file(toml, &[]);
    let s = res.expect("valid file");
    assert_eq!(s.owi_base, "http://10.0.0.2");
    assert_eq!(s.bouquets, ["Österreich, Schweiz", "Favourites"]);
    assert_eq!(s.stream_port, 8002);
    assert_eq!(
        s.metrics_listen,
        Some("0.0.0.0:9100".parse().expect("addr"))
    );
    assert_eq!(s.epg_source, EpgSource::PerService);
    assert_eq!(s.owi_timeout, Duration::from_millis(5000));
    assert_eq!(s.owi_max_body_bytes, 1 << 20);
    assert_eq!(s.refresh_interval, Duration::from_secs(1800));
    assert_eq!(s.http_idle_timeout, Duration::from_secs(120));
    assert_eq!(s.log_level, "warn");
    assert_eq!(s.api_token.as_deref(), Some("t0k"));

    let (res, _file) = load_file(
        toml,
        &[
            ("XG2G_EPG_DAYS", "9"),
            ("XG2G_BOUQUET", "Sport"),
            ("XG2G_OWI_BASE", "http://10.0.0.3"),
            // Empty means unset: the file's values stay.
            ("XG2G_LOG_LEVEL", ""),
            ("XG2G_METRICS_LISTEN", ""),
            ("XG2G_OWI_PASS", ""),
        ],
    );
    let s = res.expect("valid file + env");
    assert_eq!(s.epg_days, 9);
    assert_eq!(s.bouquets, ["Sport"]);
    assert_eq!(s.owi_base, "http://10.0.0.3");
    assert_eq!(s.log_level, "warn");
    assert_eq!(
        s.metrics_listen,
        Some("0.0.0.0:9100".parse().expect("addr"))
    );
    assert_eq!(s.owi_pass.as_deref(), Some("secret"));
    assert_eq!(s.stream_port, 8002);
}

#[test]
fn file_bouquet_as_comma_string() {
    let (res, _f) = load_file("owi_base = \"http://b\"\nbouquet = '\"A, B\",C'\n", &[]);
    assert_eq!(res.expect("valid").bouquets, ["A, B", "C"]);
}

#[test]
fn wrong_toml_types_name_key_value_and_expectation() {
    let cases: &[(&str, &str)] = &[
        ("epg_days = \"7\"", "epg_days = \"7\" in "),
        (
            "epg_days = \"7\"",
            "must be a whole number from 1 to 14 (a TOML integer, not a string)",
        ),
        ("epg_days = 20", "epg_days = 20 in "),
        ("epg_days = -3", "must be a whole number from 1 to 14"),
        ("epg_days = 7.0", "(a TOML integer, not a float)"),
        ("stream_port = true", "(a TOML integer, not a boolean)"),
        (
            "epg_enabled = \"yes\"",
            "must be true or false (a TOML boolean, not a string)",
        ),
        ("epg_enabled = 1", "(a TOML boolean, not an integer)"),
        ("refresh_interval = 30", "add a unit, e.g. \"30s\""),
        ("refresh_interval = \"30\"", "add a unit, e.g. 30s"),
        ("listen = 8080", "(a TOML string, not an integer)"),
        (
            "public_url = [\"http://x\"]",
            "(a TOML string, not an array)",
        ),
        (
            "bouquet = [\"A\", 2]",
            "array items must be strings, not integer",
        ),
        ("bouquet = 5", "(a TOML string, not an integer)"),
        ("log_level = { a = 1 }", "log_level = {...} in "),
        ("data = 1979-05-27", "(a TOML string, not a date)"),
        ("owi_max_body_bytes = 1.5", "(a TOML integer, not a float)"),
        ("owi_max_body_bytes = \"12 parsecs\"", "KiB, MiB or GiB"),
        ("owi_timeout_ms = \"10s\"", "(a TOML integer, not a string)"),
    ];
    for &(line, want) in cases {
        let (res, file) = load_file(&format!("owi_base = \"http://b\"\n{line}\n"), &[]);
        let err = res.expect_err(line);
        let m = message(&err);
        assert!(m.contains(want), "{line}: want {want:?} in {m}");
        assert!(m.contains(&file.0.display().to_string()), "{line}: {m}");
    }
    let (res, file) = load_file("owi_base = \"http://b\"\nepg_days = 20\n", &[]);
    assert_eq!(
        message(&res.expect_err("days")),
        format!(
            "epg_days = 20 in {}: must be a whole number from 1 to 14",
            file.0.display()
        )
    );
    // Byte sizes may carry a unit in the file too (same parser as the environment).
    let (res, _f) = load_file(
        "owi_base = \"http://b\"\nowi_max_body_bytes = \"64MiB\"\n",
        &[],
    );
    assert_eq!(res.expect("size").owi_max_body_bytes, 64 << 20);
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let cases: &[(&str, &str)] = &[
        ("epg_day = 3", "unknown key \"epg_day\" in "),
        ("epg_day = 3", "(did you mean epg_days?)"),
        ("XG2G_EPG_DAYS = 3", "(did you mean epg_days?)"),
        ("epg-days = 3", "(did you mean epg_days?)"),
        ("bouquets = []", "(did you mean bouquet?)"),
        ("data_dir = \"/x\"", "(did you mean data?)"),
        ("owi_timeout = 5", "(did you mean owi_timeout_ms?)"),
        ("[http]\nlisten = \":80\"", "unknown key \"http\""),
    ];
    for &(line, want) in cases {
        let (res, _f) = load_file(&format!("owi_base = \"http://b\"\n{line}\n"), &[]);
        let err = res.expect_err(line);
        let m = message(&err);
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{m}");
        assert!(m.contains(want), "{line}: want {want:?} in {m}");
    }
    let (res, _f) = load_file("owi_base = \"http://b\"\nfrobnicate = 1\n", &[]);
    let m = message(&res.expect_err("unknown"));
    assert!(!m.contains("did you mean"), "{m}");
}

#[test]
fn syntax_errors_name_file_and_line() {
    for (toml, line) in [
        ("owi_base = \"http://b\"\nepg_days = \n", 2),
        ("owi_base = \"http://b\"\n\n\nlisten = \":80\n", 4),
        ("a = 1\na = 2\n", 2),
        ("owi_base = http://b\n", 1),
    ] {
        let (res, file) = load_file(toml, &[]);
        let err = res.expect_err(toml);
        let m = message(&err);
        let prefix = format!("{} line {line}: ", file.0.display());
        assert!(m.starts_with(&prefix), "{toml:?}: want {prefix:?}, got {m}");
        assert!(matches!(err, ConfigError::Syntax { .. }));
    }
}

#[test]
fn unreadable_files_are_errors() {
    let missing = std::env::temp_dir().join("xg2g-config-test-does-not-exist.toml");
    let err = load_with(Some(&missing), &[BASE]).expect_err("missing");
    let m = message(&err);
    assert!(m.starts_with("cannot read settings file "), "{m}");
    assert!(m.contains("xg2g-config-test-does-not-exist.toml"), "{m}");

    let big = TempFile::new(&vec![
        b'#';
        usize::try_from(MAX_FILE_BYTES).unwrap_or(0) + 1
    ]);
    let m = message(&load_with(Some(&big.0), &[BASE]).expect_err("big"));
    assert!(m.contains("is larger than"), "{m}");

    let binary = TempFile::new(b"owi_base = \"\xff\"\n");
    let m = message(&load_with(Some(&binary.0), &[BASE]).expect_err("binary"));
    assert!(m.contains("not UTF-8"), "{m}");

    let dir = load_with(Some(&std::env::temp_dir()), &[BASE]).expect_err("dir");
    assert!(message(&dir).starts_with("cannot read settings file "));
}

#[test]
fn secrets_are_never_echoed() {
    let (res, _f) = load_file("owi_base = \"http://b\"\nowi_pass = 31337666\n", &[]);
    let m = message(&res.expect_err("pass type"));
    assert!(!m.contains("31337666"), "{m}");
    assert!(m.contains("owi_pass = **** in "), "{m}");
    let (res, _f) = load_file("owi_base = \"http://b\"\napi_token = [\"hunter2\"]\n", &[]);
    let m = message(&res.expect_err("token type"));
    assert!(!m.contains("hunter2"), "{m}");
}

#[test]
fn listeners_must_not_collide() {
    for (main, metrics) in [
        (":8080", ":8080"),
        ("127.0.0.1:9000", "0.0.0.0:9000"),
        ("[::]:9000", "127.0.0.1:9000"),
    ] {
        let err = load_env(&[
            BASE,
            ("XG2G_LISTEN", main),
            ("XG2G_METRICS_LISTEN", metrics),
        ])
        .expect_err(metrics);
        let m = message(&err);
        assert!(m.starts_with("XG2G_METRICS_LISTEN="), "{m}");
        assert!(m.contains("must not use the port of XG2G_LISTEN"), "{m}");
    }
    for (main, metrics) in [
        (":8080", ":9090"),
        ("127.0.0.1:9000", "127.0.0.2:9000"),
        (":0", ":0"),
    ] {
        load_env(&[
            BASE,
            ("XG2G_LISTEN", main),
            ("XG2G_METRICS_LISTEN", metrics),
        ])
        .expect(metrics);
    }
}

#[test]
fn describe_prints_every_setting_and_masks_secrets() {
    let s = load_env(&[
        BASE,
        ("XG2G_OWI_USER", "root"),
        ("XG2G_OWI_PASS", "hunter2"),
        ("XG2G_API_TOKEN", "s3cr3t"),
        ("XG2G_BOUQUET", "\"A, B\",C"),
        ("XG2G_REFRESH_INTERVAL", "90m"),
    ])
    .expect("valid");
    let text = s.describe();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cr3t"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once('=').map_or("", |(k, _)| k))
        .collect();
    let want: Vec<&str> = keys().iter().map(|k| k.env).collect();
    assert_eq!(names, want);
    for line in [
        "XG2G_OWI_BASE=http://192.168.1.10",
        "XG2G_OWI_USER=root",
        "XG2G_OWI_PASS=****",
        "XG2G_API_TOKEN=****",
        "XG2G_BOUQUET=\"A, B\",C",
        "XG2G_REFRESH_INTERVAL=1h30m",
        "XG2G_HTTP_HEADER_TIMEOUT=10s",
        "XG2G_HTTP_IDLE_TIMEOUT=1m",
        "XG2G_OWI_TIMEOUT_MS=10000",
        "XG2G_OWI_MAX_BODY_BYTES=256MiB",
        "XG2G_LISTEN=0.0.0.0:8080",
        "XG2G_METRICS_LISTEN=(unset)",
        "XG2G_X_TVG_URL=(unset)",
        "XG2G_EPG_SOURCE=bouquet",
        "XG2G_LOG_LEVEL=info",
    ] {
        assert!(lines.contains(&line), "missing {line:?} in\n{text}");
    }
    let bare = load_env(&[BASE]).expect("valid").describe();
    assert!(bare.contains("XG2G_OWI_PASS=(unset)\n"), "{bare}");
    assert!(bare.contains("XG2G_API_TOKEN=(unset)\n"), "{bare}");
    assert!(bare.contains("XG2G_BOUQUET=(unset)\n"), "{bare}");
}

#[test]
fn describe_reads_back_as_the_same_settings() {
    let s = load_env(&[
        BASE,
        ("XG2G_BOUQUET", "\"say \"\"hi\"\"\", \"x,y\", z"),
        ("XG2G_EPG_SOURCE", "service"),
        ("XG2G_REFRESH_INTERVAL", "1d2h3m"),
        ("XG2G_OWI_MAX_BODY_BYTES", "100000"),
        ("XG2G_METRICS_LISTEN", "[::1]:9090"),
    ])
    .expect("valid");
    let text = s.describe();
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(_, v)| *v != "(unset)" && *v != "****")
        .collect();
    assert_eq!(load_env(&pairs).expect("read back").describe(), text);
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items.get(i).copied().unwrap_or("")
    }
}

#[test]
fn garbage_never_panics() {
    let atoms = [
        "",
        " ",
        "\"",
        "\"\"",
        ",",
        ":",
        "[",
        "]",
        "::",
        "0",
        "1",
        "9",
        "65535",
        "99999999999999999999",
        "-",
        ".",
        "..",
        "h",
        "ms",
        "d",
        "s",
        "m",
        "KiB",
        "GiB",
        "http://",
        "https://",
        "@",
        "/",
        "?",
        "#",
        "%",
        "Ö",
        "\u{0}",
        "\n",
        "\t",
        "localhost",
        "[::]",
        "yes",
        "true",
        "=",
        "'",
        "{",
        "}",
        "\\",
        "µ",
        "💥",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let n = rng.next() % 8;
        let mut value = String::new();
        for _ in 0..n {
            value.push_str(rng.pick(&atoms));
        }
        for k in keys() {
            if let Err(e) = load_env(&[BASE, (k.env, &value)]) {
                let _ = message(&e);
            }
        }
        let key = rng.pick(&[
            "epg_days",
            "bouquet",
            "listen",
            "owi_base",
            "refresh_interval",
        ]);
        let doc = format!("{key} = {value}\n");
        let (res, _f) = load_file(&doc, &[BASE]);
        if let Err(e) = res {
            let _ = message(&e);
        }
    }
    // Deep nesting and long values stay bounded and one line.
    let deep = format!("bouquet = {}{}\n", "[".repeat(2000), "]".repeat(2000));
    let (res, _f) = load_file(&deep, &[BASE]);
    if let Err(e) = res {
        let _ = message(&e);
    }
    let deep = format!("bouquet = {}1{}\n", "{a = ".repeat(2000), "}".repeat(2000));
    let (res, _f) = load_file(&deep, &[BASE]);
    let _ = message(&res.expect_err("deep table"));
    let long = "9".repeat(100_000);
    let m = message(&load_env(&[BASE, ("XG2G_EPG_DAYS", &long)]).expect_err("long"));
    assert!(m.len() < 300, "{m}");
    let m = message(&load_env(&[BASE, ("XG2G_REFRESH_INTERVAL", &long)]).expect_err("long"));
    assert!(m.len() < 300, "{m}");
}

/// Runs only inside the child started by `from_process_rejects_non_utf8`.
#[test]
fn from_process_child() {
    if std::env::var_os("XG2G_CONFIG_TEST_CHILD").is_none() {
        return;
    }
    let err = Settings::from_process(None).expect_err("non-UTF-8");
    assert_eq!(err.to_string(), "XG2G_LOG_LEVEL is not valid UTF-8");
}

#[test]
fn from_process_rejects_non_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let out = std::process::Command::new(exe)
        .args(["--exact", "config::tests::from_process_child"])
        .env("XG2G_CONFIG_TEST_CHILD", "1")
        .env("XG2G_OWI_BASE", "http://b")
        .env("XG2G_LOG_LEVEL", std::ffi::OsStr::from_bytes(b"in\xfffo"))
        .output()
        .expect("start test child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child test failed: {stdout}");
    assert!(
        stdout.contains("1 passed"),
        "child test did not run: {stdout}"
    );
}

#[test]
fn readme_documents_every_setting_with_its_default() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    for k in keys() {
        let start = format!("| `{}` | `{}` | ", k.env, k.file_key);
        let row = readme
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("README has no row for {}", k.env));
        let default = if k.default.is_empty() {
            "—".to_string()
        } else {
            format!("`{}`", k.default)
        };
        assert!(
            row[start.len()..].starts_with(&default),
            "README default of {} should be {default}: {row}",
            k.env
        );
    }
}

#[test]
fn protection_settings_parse_with_their_old_names_too() {
    let s = load_env(&[
        BASE,
        ("XG2G_RATE_LIMIT_ENABLED", "false"),
        ("XG2G_RATE_LIMIT_PER_IP_RATE", "7"),
        ("XG2G_RATE_LIMIT_GLOBAL_RATE", "70"),
        ("XG2G_RATELIMIT_API_BURST", "3"),
        ("XG2G_RATELIMIT_WHITELIST", "10.0.0.0/8, 192.168.1.5"),
        ("XG2G_TRUSTED_PROXIES", "127.0.0.1"),
        ("XG2G_OWI_CACHE_TTL", "0s"),
        ("XG2G_STREAM_TOKEN", "tv"),
    ])
    .expect("valid");
    assert!(!s.ratelimit_enabled);
    assert_eq!(s.ratelimit_rps.get(), 7);
    assert_eq!(s.ratelimit_global_rps.get(), 70);
    assert_eq!(s.ratelimit_api_burst.map(|n| n.get()), Some(3));
    assert_eq!(s.ratelimit_files_rps, None);
    assert!(
        s.ratelimit_whitelist
            .contains("10.9.8.7".parse().expect("ip"))
    );
    assert!(s.trusted_proxies.contains("127.0.0.1".parse().expect("ip")));
    assert_eq!(s.owi_cache_ttl, Duration::ZERO);
    assert_eq!(s.stream_token.as_deref(), Some("tv"));
    // The current name wins over an alias.
    let s = load_env(&[
        BASE,
        ("XG2G_RATELIMIT_RPS", "5"),
        ("XG2G_RATE_LIMIT_PER_IP_RATE", "9"),
    ])
    .expect("valid");
    assert_eq!(s.ratelimit_rps.get(), 5);
    // Errors name the variable as the user wrote it.
    let e = load_env(&[BASE, ("XG2G_RATE_LIMIT_PER_IP_RATE", "0")]).expect_err("zero");
    assert_eq!(
        e.to_string(),
        "XG2G_RATE_LIMIT_PER_IP_RATE=\"0\": must be a whole number from 1 to 1000000"
    );
    let e = load_env(&[BASE, ("XG2G_TRUSTED_PROXIES", "10.0.0.1/8")]).expect_err("host bits");
    assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
}

#[test]
fn changed_keys_compare_secrets_without_printing_them() {
    let old = load_env(&[BASE, ("XG2G_API_TOKEN", "a")]).expect("valid");
    let new = load_env(&[BASE, ("XG2G_API_TOKEN", "b"), ("XG2G_EPG_DAYS", "3")]).expect("valid");
    let changed: Vec<_> = old.changed_keys(&new).iter().map(|k| k.env).collect();
    assert_eq!(changed, ["XG2G_EPG_DAYS", "XG2G_API_TOKEN"]);
    assert!(old.changed_keys(&old).is_empty());
    let moved = load_env(&[BASE, ("XG2G_LISTEN", ":9090")]).expect("valid");
    let restart: Vec<_> = old
        .changed_keys(&moved)
        .iter()
        .filter(|k| k.needs_restart())
        .map(|k| k.env)
        .collect();
    assert_eq!(restart, ["XG2G_LISTEN"]);
    // Keeping the running values of every restart-only key leaves nothing of them
    // changed, whatever the new file says.
    let mut everything = load_env(&[
        BASE,
        ("XG2G_LISTEN", ":9090"),
        ("XG2G_METRICS_LISTEN", ":9091"),
        ("XG2G_DATA", "/elsewhere"),
        ("XG2G_PICON_BASE", "http://logos"),
        ("XG2G_HTTP_MAX_CONNECTIONS", "5"),
        ("XG2G_HTTP_HEADER_TIMEOUT", "2s"),
        ("XG2G_HTTP_IDLE_TIMEOUT", "2s"),
        ("XG2G_HTTP_WRITE_TIMEOUT", "2s"),
        ("XG2G_HTTP_MAX_HEADER_BYTES", "2048"),
        ("XG2G_PICON_CACHE_MAX_BYTES", "2MiB"),
        ("XG2G_CIRCUIT_BREAKER_ENABLED", "false"),
        ("XG2G_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2"),
        ("XG2G_CIRCUIT_BREAKER_TIMEOUT", "2s"),
        ("XG2G_LOG_LEVEL", "debug"),
        ("XG2G_HDHR_ENABLED", "false"),
        ("XG2G_HDHR_DEVICE_ID", "103A9917"),
        ("XG2G_HDHR_DISCOVERY_PORT", "0"),
        ("XG2G_SSDP_ENABLED", "false"),
        ("XG2G_SSDP_PORT", "1901"),
        ("XG2G_SSDP_LISTEN", "127.0.0.1"),
        ("XG2G_SSDP_INTERFACE", "127.0.0.1"),
        ("XG2G_EPG_DAYS", "2"),
        ("XG2G_API_TOKEN", "a"),
    ])
    .expect("valid");
    let wanted = old.changed_keys(&everything);
    assert_eq!(wanted.iter().filter(|k| k.needs_restart()).count(), 21);
    everything.keep_restart_settings(&old);
    let left: Vec<_> = old
        .changed_keys(&everything)
        .iter()
        .map(|k| k.env)
        .collect();
    assert_eq!(left, ["XG2G_EPG_DAYS"]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The settings parser as a fuzz target: any text for any key gives valid
        /// settings or one short line naming the key, and never echoes a secret.
        #[test]
        fn any_env_text_is_settings_or_one_line_error(
            index in 0usize..56,
            text in "\\PC{0,40}|[0-9a-zA-Z./:,\\[\\] -]{0,40}",
        ) {
            let info = &keys()[index];
            match load_env(&[BASE, (info.env, &text)]) {
                Ok(s) => {
                    // Whatever was accepted prints as a value that reads back the same.
                    let described = s.describe();
                    let prefix = format!("{}=", info.env);
                    let printed = described
                        .lines()
                        .find_map(|l| l.strip_prefix(prefix.as_str()))
                        .unwrap_or_default();
                    if printed != "(unset)" && !info.is_secret() {
                        let again = load_env(&[BASE, (info.env, printed)]).map(|s| s.describe());
                        prop_assert_eq!(again.ok(), Some(described));
                    }
                }
                Err(e) => {
                    let m = e.to_string();
                    prop_assert!(!m.contains('\n') && m.len() < 400, "{}", m);
                    prop_assert!(m.starts_with(info.env), "{}", m);
                    if info.is_secret() && text.trim().len() > 4 {
                        prop_assert!(!m.contains(text.trim()), "{}", m);
                    }
                }
            }
        }
    }
}

#[test]
fn transcode_settings_are_read_and_checked() {
    let s = load_env(&[BASE]).unwrap();
    assert_eq!(s.ffmpeg_path, PathBuf::from("ffmpeg"));
    assert_eq!(s.default_profile, "copy");
    assert_eq!(s.gpu_queue_size, 100);
    assert_eq!(s.gpu_queue_max_wait, Duration::from_secs(30));
    assert_eq!(s.gpu_max_load, 85);
    assert_eq!(s.transcode_max_restarts, 3);
    assert_eq!((s.gpu_queue_workers, s.transcode_cpu_slots), (None, None));

    let s = load_env(&[
        BASE,
        ("XG2G_FFMPEG_BIN", "/opt/ffmpeg/bin/ffmpeg"),
        (
            "XG2G_TRANSCODE_PROFILES",
            "mobile:video=h264,height=480,bitrate=1200k",
        ),
        ("XG2G_DEFAULT_PROFILE", "mobile"),
        ("XG2G_GPU_QUEUE_WORKERS", "2"),
        ("XG2G_TRANSCODE_CPU_SLOTS", "0"),
        ("XG2G_GPU_QUEUE_MAX_WAIT", "5s"),
    ])
    .unwrap();
    assert_eq!(s.ffmpeg_path, PathBuf::from("/opt/ffmpeg/bin/ffmpeg"));
    assert_eq!(s.default_profile, "mobile");
    assert!(s.profiles().get("mobile").is_some());
    assert_eq!(
        (s.gpu_queue_workers, s.transcode_cpu_slots),
        (Some(2), Some(0))
    );

    let missing = load_env(&[BASE, ("XG2G_DEFAULT_PROFILE", "mobile")]).unwrap_err();
    let text = message(&missing);
    assert!(
        text.starts_with("XG2G_DEFAULT_PROFILE=\"mobile\""),
        "{text}"
    );
    assert!(text.contains("copy, aac, h264"), "{text}");
    for (key, value) in [
        ("XG2G_DEFAULT_PROFILE", "Mobile!"),
        ("XG2G_TRANSCODE_PROFILES", "x:video=h264,bitrate=3000"),
        ("XG2G_GPU_QUEUE_SIZE", "10001"),
        ("XG2G_GPU_QUEUE_WORKERS", "0"),
        ("XG2G_GPU_MAX_LOAD", "101"),
        ("XG2G_GPU_QUEUE_MAX_WAIT", "0s"),
        ("XG2G_TRANSCODE_MAX_RESTARTS", "21"),
        ("XG2G_FFMPEG_PATH", "ff\u{7}mpeg"),
        ("XG2G_TRANSCODE_ENCODERS", "vaapi"),
        ("XG2G_TRANSCODE_ENCODERS", "quicksync:/dev/dri/renderD128"),
    ] {
        let e = load_env(&[BASE, (key, value)]).unwrap_err();
        assert!(
            message(&e).starts_with(key),
            "{key}={value}: {}",
            message(&e)
        );
    }
}
