//! The deployment artifacts speak of metrics and config keys that exist.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every `trailguard_*` name defined in `src/telemetry/names.rs`.
fn defined_metrics() -> BTreeSet<String> {
    read("src/telemetry/names.rs")
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const"))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|n| n.starts_with("trailguard_"))
        .map(str::to_owned)
        .collect()
}

fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("trailguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alerts_and_dashboard_use_only_metrics_trailguard_exports() {
    let defined = defined_metrics();
    assert!(defined.len() >= 15, "{defined:?}");
    for file in [
        "deploy/prometheus/trailguard-alerts.yml",
        "deploy/prometheus/trailguard-alerts.test.yml",
        "deploy/grafana/trailguard-dashboard.json",
    ] {
        let used = used_metrics(&read(file));
        assert!(!used.is_empty(), "{file} uses no metric");
        let unknown: Vec<_> = used.difference(&defined).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics trailguard does not export: {unknown:?}"
        );
    }
}

#[test]
fn deploy_environment_names_real_config_keys() {
    // Every TRAILGUARD__SECTION__KEY in the task definition and container config must be a key
    // `trailguard validate` knows, or the container would exit 64.
    let known = trailguard::config::known_keys();
    for file in [
        "deploy/cloudformation/trailguard.yaml",
        "deploy/container/Dockerfile",
        "systemd/trailguard.service",
    ] {
        let text = read(file);
        for var in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("TRAILGUARD__"))
        {
            let key = var
                .trim_start_matches("TRAILGUARD__")
                .to_lowercase()
                .replacen("__", ".", 1);
            assert!(known.contains(&key), "{file}: {var} is not a config key ({key})");
        }
    }
}
