//! Loading rules: `[[rules]]` of the configuration (keys `rules[i]...`), then every `*.toml`
//! file of `rules_dir` in name order; test-case files (`event_file`) are read here, relative to
//! the file that names them.

use std::path::{Path, PathBuf};

use crate::rules::{RawRule, RuleSet, RuleSource};
use crate::validate::Problems;

/// Reads every `event_file` of `rules` into its test case; a file that cannot be read is a
/// problem at the test's key, and the case is dropped.
fn read_event_files(prefix: &str, base: Option<&Path>, rules: &mut [RawRule], p: &mut Problems) {
    for (i, rule) in rules.iter_mut().enumerate() {
        let id = rule.id.clone().unwrap_or_default();
        let mut kept = Vec::new();
        for (t, mut case) in std::mem::take(&mut rule.tests).into_iter().enumerate() {
            if case.event.is_none()
                && let Some(f) = case.event_file.take()
            {
                let path = base.map(|d| d.join(&f)).unwrap_or(f);
                match std::fs::read_to_string(&path) {
                    Ok(text) => case.event = Some(toml::Value::String(text)),
                    Err(e) => {
                        p.push(
                            format!("{prefix}[{i}].tests[{t}]"),
                            format!("rule {id}: cannot read {}: {e}", path.display()),
                        );
                        continue;
                    }
                }
            }
            kept.push(case);
        }
        rule.tests = kept;
    }
}

/// The effective rule set: built-ins, then `rules`, then `rules_dir` (relative to `base`).
pub fn load(
    rules: Vec<RawRule>,
    rules_dir: Option<String>,
    base: Option<&Path>,
    p: &mut Problems,
) -> Option<RuleSet> {
    let mut rules = rules;
    read_event_files("rules", base, &mut rules, p);
    let mut sources = vec![RuleSource {
        name: "config".into(),
        key_prefix: "rules".into(),
        base_dir: base.map(Path::to_path_buf),
        rules,
    }];
    if let Some(dir) = rules_dir {
        let dir = base.map(|b| b.join(&dir)).unwrap_or_else(|| PathBuf::from(&dir));
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => {
                p.push("rules_dir", format!("cannot read {}: {e}", dir.display()));
                return None;
            }
        };
        files.sort();
        for file in files {
            let key = file.display().to_string();
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| RuleSet::parse_file(&text));
            match parsed {
                Ok(mut rules) => {
                    let prefix = format!("{key}: rules");
                    read_event_files(&prefix, file.parent(), &mut rules, p);
                    sources.push(RuleSource {
                        name: key,
                        key_prefix: prefix,
                        base_dir: file.parent().map(Path::to_path_buf),
                        rules,
                    });
                }
                Err(message) => p.push(key, message),
            }
        }
    }
    match RuleSet::load(sources) {
        Ok(set) => Some(set),
        Err(problems) => {
            for e in problems {
                p.push(e.key, e.message);
            }
            None
        }
    }
}
