//! The command line: exit codes and messages people and systemd rely on.

use std::process::Command;

fn trailguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn temp_config(text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("trailguard-cli-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn validate_accepts_the_shipped_example() {
    let (code, out, err) = trailguard(&[
        "validate",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/trailguard.toml"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(": ok\n"));
}

#[test]
fn invalid_config_exits_64_listing_every_problem_with_its_key() {
    let p =
        temp_config("[aws]\nregions = []\n[cloudtrail]\npoll_interval = \"1s\"\n[log]\nformat = \"xml\"\n");
    for cmd in ["validate", "run"] {
        let (code, _, err) = trailguard(&[cmd, "--config", p.to_str().unwrap()]);
        assert_eq!(code, 64, "{cmd}: {err}");
        assert!(err.contains("3 problems"), "{err}");
        for key in ["aws.regions:", "cloudtrail.poll_interval:", "log.format:"] {
            assert!(err.contains(key), "{cmd}: {key} missing from {err}");
        }
    }
    let _ = std::fs::remove_file(p);
}

#[test]
fn missing_config_exits_64() {
    let (code, _, err) = trailguard(&["validate", "--config", "/nonexistent/trailguard.toml"]);
    assert_eq!(code, 64);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn version_is_printed() {
    let (code, out, _) = trailguard(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("trailguard {}", env!("CARGO_PKG_VERSION")));
}
