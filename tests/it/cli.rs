//! The command line: check-config, exit codes, version.

use std::process::Command;

use crate::common::BIN;

fn check_config(env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("check-config");
    for (k, _) in std::env::vars() {
        if k.starts_with("XG2G_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run xg2g");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_effective_settings_with_secrets_masked() {
    let (code, out, err) = check_config(&[
        ("XG2G_OWI_BASE", "http://192.168.1.10"),
        ("XG2G_OWI_PASS", "hunter2"),
        ("XG2G_API_TOKEN", "sesame"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("XG2G_OWI_BASE=http://192.168.1.10"), "{out}");
    assert!(!out.contains("hunter2") && !out.contains("sesame"), "{out}");
    assert!(out.contains("XG2G_EPG_DAYS=7"), "{out}");
}

#[test]
fn bad_values_exit_2_with_one_line_naming_key_value_and_rule() {
    for (key, value) in [
        ("XG2G_EPG_DAYS", "20"),
        ("XG2G_STREAM_PORT", "70000"),
        ("XG2G_REFRESH_INTERVAL", "often"),
        ("XG2G_EPG_SOURCE", "satellite"),
        ("XG2G_LISTEN", "nowhere"),
        ("XG2G_EPG_ENABLED", "maybe"),
    ] {
        let (code, _, err) =
            check_config(&[("XG2G_OWI_BASE", "http://192.168.1.10"), (key, value)]);
        assert_eq!(code, 2, "{key}={value}: {err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        assert!(line.contains(key) && line.contains(value), "{line}");
        assert!(!line.contains("panicked"), "{line}");
    }
    let (code, _, err) = check_config(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("XG2G_OWI_BASE"), "{err}");
}

#[test]
fn config_file_keys_are_checked_and_env_overrides() {
    let dir = crate::common::TempDir::new("cfg");
    let file = dir.path().join("xg2g.toml");
    std::fs::write(
        &file,
        "owi_base = \"http://10.0.0.2\"\nepg_days = 3\nbouquet = [\"Österreich, Schweiz\", \"Favourites\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .env("XG2G_EPG_DAYS", "5")
        .env_remove("XG2G_OWI_BASE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("XG2G_OWI_BASE=http://10.0.0.2"), "{text}");
    assert!(text.contains("XG2G_EPG_DAYS=5"), "{text}");
    std::fs::write(&file, "owi_base = \"http://10.0.0.2\"\nepg_dayz = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("epg_dayz"));
}

#[test]
fn version_and_usage() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let features = match (cfg!(feature = "vaapi"), cfg!(feature = "v4l2")) {
        (true, true) => "vaapi, v4l2",
        (true, false) => "vaapi",
        (false, true) => "v4l2",
        (false, false) => "none",
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "xg2g {} (features: {features})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
