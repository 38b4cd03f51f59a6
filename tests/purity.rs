//! The dependency direction of `src/`, checked on the source text:
//! - the pure core does no I/O and never reads the clock: it names no tokio, AWS SDK, metrics,
//!   state store, file system or network, and within trailguard only other pure modules;
//! - `notify` does not depend on the state store, the KMS policy does not reach into `iam`,
//!   `telemetry` does not depend on `config`;
//! - ARNs are taken apart only in `arn.rs`, globs matched only in `glob.rs`.

use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The pure core.
const PURE: &[&str] = &[
    "event.rs",
    "cursor.rs",
    "cursor/tests.rs",
    "rules/mod.rs",
    "rules/compiled.rs",
    "rules/pattern.rs",
    "rules/finding.rs",
    "rules/compiled/document.rs",
    "plan.rs",
    "protection.rs",
    "job.rs",
    "aggregate.rs",
    "outbox.rs",
    "notify/message.rs",
    "arn.rs",
    "glob.rs",
    "validate.rs",
    "sources/envelope.rs",
];

/// What a pure module may name inside trailguard.
const PURE_MODULES: &[&str] = &[
    "event",
    "cursor",
    "rules",
    "plan",
    "job",
    "aggregate",
    "outbox",
    "notify::message",
    "arn",
    "glob",
    "validate",
];

/// What a pure module must never name.
const IMPURE: &[&str] = &[
    "tokio",
    "aws_sdk_",
    "aws_config",
    "aws_smithy",
    "metrics",
    "redb",
    "std::fs",
    "std::net",
    "std::time::Instant",
    "SystemTime",
    "Utc::now",
    "hyper",
    "tracing",
];

/// The source without comments (doc comments mention other modules freely).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first two segments of a path.
fn two(path: &str) -> String {
    let end = path
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(path.len());
    path[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join("::")
}

/// Every `crate::a::b` path named in `text` (also inside `crate::{a::b, c}`), as `a::b`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(inner.split(',').map(|p| two(p.trim())).filter(|p| !p.is_empty()));
            }
            None => out.push(two(rest)),
        }
    }
    out
}

fn violations(file: &str, text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for bad in IMPURE {
        if text.contains(bad) {
            v.push(format!("{file} names {bad}"));
        }
    }
    for path in crate_paths(text) {
        let ok = PURE_MODULES
            .iter()
            .any(|m| path == *m || path.starts_with(&format!("{m}::")));
        if !ok {
            v.push(format!("{file} names crate::{path}, which is not pure"));
        }
    }
    v
}

#[test]
fn the_pure_core_does_no_io_and_names_only_pure_modules() {
    let mut all = Vec::new();
    for f in PURE {
        all.extend(violations(f, &code(&Path::new(SRC).join(f))));
    }
    assert!(
        all.is_empty(),
        "impure imports in the pure core:\n  {}",
        all.join("\n  ")
    );
}

#[test]
fn the_check_catches_an_impure_import() {
    let text = "use tokio::time::Instant;\nuse crate::state::Store;\nuse crate::{notify::kms, rules::Finding, aws};\nuse crate::rules::Finding;";
    let v = violations("x.rs", text);
    assert_eq!(v.len(), 4, "tokio, state, notify::kms, aws: {v:?}");
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(SRC).join(dir)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    if out.is_empty() {
        out.push(Path::new(SRC).join(format!("{dir}.rs")));
    }
    out
}

#[test]
fn modules_depend_only_in_the_documented_direction() {
    for (module, forbidden) in [
        ("notify", "crate::state"),
        ("plan.rs", "crate::iam"),
        ("telemetry", "crate::config"),
        ("actions", "crate::pipeline"),
        ("sources", "crate::pipeline"),
    ] {
        for f in files(module.trim_end_matches(".rs")) {
            assert!(
                !code(&f).contains(forbidden),
                "{} must not depend on {forbidden}",
                f.display()
            );
        }
    }
}

#[test]
fn arns_and_globs_are_taken_apart_in_one_place() {
    for f in files("") {
        let name = f
            .strip_prefix(SRC)
            .unwrap()
            .display()
            .to_string()
            .trim_start_matches('/')
            .to_owned();
        let text = code(&f);
        if name != "arn.rs" {
            for needle in ["split(':')", "splitn(6, ':')", "rsplit(':')", "\":alias/\""] {
                assert!(
                    !text.contains(needle),
                    "{name} parses ARNs ({needle}); use crate::arn"
                );
            }
        }
        if name != "glob.rs" {
            assert!(
                !text.contains("WildMatch"),
                "{name} matches globs; use crate::glob"
            );
        }
    }
}

#[test]
fn no_source_file_is_over_500_lines() {
    for f in files("") {
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(n <= 500, "{} has {n} lines", f.display());
    }
}

#[test]
fn every_file_of_a_pure_module_is_checked() {
    // PURE lists files by hand: a file of a pure module that is not listed is never read, so
    // `use tokio` there passes the check above.
    let roots = [
        "event",
        "cursor",
        "rules",
        "plan",
        "protection",
        "job",
        "aggregate",
        "outbox",
        "notify/message",
        "arn",
        "glob",
        "validate",
    ];
    let mut unchecked = Vec::new();
    for f in files("") {
        let name = f
            .strip_prefix(SRC)
            .unwrap()
            .display()
            .to_string()
            .trim_start_matches('/')
            .to_owned();
        let stem = name.trim_end_matches(".rs");
        let pure = roots
            .iter()
            .any(|r| stem == *r || stem.starts_with(&format!("{r}/")));
        if pure && !name.ends_with("tests.rs") && !PURE.contains(&name.as_str()) {
            unchecked.push(name);
        }
    }
    assert!(
        unchecked.is_empty(),
        "files of pure modules the purity check never reads: {unchecked:?}"
    );
}
