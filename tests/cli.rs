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

/// `trailguard run` with `envs`, no AWS variables from the caller: the exit-code paths below
/// all end before any AWS call.
fn run_with(config: &std::path::Path, envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn run_exits_73_on_a_state_file_it_cannot_trust_and_systemd_does_not_restart_it() {
    // systemd's RestartPreventExitStatus lists 64 and 73 (tests/deploy.rs checks the unit): a
    // restart cannot fix either, so the unit stays failed instead of looping.
    let dir = std::env::temp_dir().join(format!("trailguard-cli-state-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("trailguard.redb"), b"this is not a redb file").unwrap();
    let p = temp_config(&format!(
        "[aws]\nregions = [\"us-east-1\"]\n[state]\ndir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
        dir.display()
    ));
    let (code, err) = run_with(&p, &[]);
    assert_eq!(code, i32::from(trailguard::cli::EXIT_STATE), "{err}");
    assert_eq!(code, 73);
    assert!(err.contains("trailguard.redb"), "{err}");
    // The file is left as it was, for --reset-state (or a person) to move aside.
    assert_eq!(
        std::fs::read(dir.join("trailguard.redb")).unwrap(),
        b"this is not a redb file"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(p);
}

#[test]
fn run_exits_64_on_a_bad_config_before_touching_anything() {
    // A bad document given through the environment, as ECS does, and a bad file: 64, and the
    // state directory is not even created.
    let dir = std::env::temp_dir().join(format!("trailguard-cli-untouched-{}", uuid::Uuid::new_v4()));
    let doc = format!(
        "[aws]\nregions = [\"Mars\"]\n[state]\ndir = \"{}\"\n",
        dir.display()
    );
    let (code, err) = run_with(
        std::path::Path::new("/nonexistent/trailguard.toml"),
        &[("TRAILGUARD_CONFIG_TOML", doc.as_str())],
    );
    assert_eq!(code, i32::from(trailguard::cli::EXIT_CONFIG), "{err}");
    assert!(err.contains("aws.regions"), "{err}");
    assert!(!dir.exists());
    let (code, err) = run_with(std::path::Path::new("/nonexistent/trailguard.toml"), &[]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn run_exits_64_when_the_systemd_watchdog_is_shorter_than_two_polls() {
    let dir = std::env::temp_dir().join(format!("trailguard-cli-watchdog-{}", uuid::Uuid::new_v4()));
    let p = temp_config(&format!(
        "[aws]\nregions = [\"us-east-1\"]\n[cloudtrail]\npoll_interval = \"150s\"\n[state]\ndir = \"{}\"\n",
        dir.display()
    ));
    // 299 s < 2 x 150 s.
    let (code, err) = run_with(&p, &[("WATCHDOG_USEC", "299000000")]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("WatchdogSec"), "{err}");
    let _ = std::fs::remove_file(p);
}
