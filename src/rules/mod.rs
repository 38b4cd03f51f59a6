//! The rule engine: rules are data, written as CloudWatch Logs filter patterns
//! ([`pattern`]), compiled together to the fields they read ([`compiled`]). Pure: rule files
//! and test-case files are read by the configuration loader ([`crate::config`]).
//!
//! The built-in rules are defined the same way, in `src/rules/builtin.toml`, shipped inside the
//! binary, each with its own test cases; their ids are stable, because metrics, logs,
//! notifications and `scan` output use them:
//!
//! | id | matches |
//! |---|---|
//! | `kms_pending_deletion_use` | `eventSource` starts with `kms` and `errorMessage` ends with ` is pending deletion.` (AWS's own metric filter), whatever the error code; also ` is pending replica deletion.` |
//! | `kms_key_disabled` | a successful `DisableKey` |
//! | `kms_key_deletion_scheduled` | a successful `ScheduleKeyDeletion` (also multi-Region primaries going to `PendingReplicaDeletion`) |
//! | `kms_protection_removed` | a successful `DeleteAlias`, `UpdateAlias` or `UntagResource`; the daemon reports it only when the alias or tag protected the key |
//! | `iam_access_key_reactivated` | a successful `UpdateAccessKey` to `Active` |
//! | `iam_root_access_key_created` | a successful `CreateAccessKey` by the root user for itself |
//!
//! A rule with the id of a built-in overrides it (fields left out are kept); `enabled = false`
//! disables it.
//!
//! The key a finding names is the one the record names: for a failed call, the ARN at the start
//! of `errorMessage`; otherwise `responseElements.keyId` when it is an ARN, a `resources[]`
//! KMS key ARN, or `requestParameters.keyId` completed into an ARN with the record's region and
//! account.

pub mod compiled;
mod finding;
pub mod pattern;

pub use finding::{Finding, KeyFields, key_alias, key_arn, key_arn_of};

use std::path::PathBuf;

use serde::Deserialize;

use crate::event::Record;
use compiled::CompiledSet;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule asks to be done about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Notify,
    CancelKeyDeletion,
    EnableKey,
}

impl Action {
    /// Whether the action changes a key (anything but notifying).
    pub fn remediates(self) -> bool {
        matches!(self, Action::CancelKeyDeletion | Action::EnableKey)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Notify => "notify",
            Action::CancelKeyDeletion => "cancel_key_deletion",
            Action::EnableKey => "enable_key",
        }
    }
}

pub const PENDING_DELETION_USE: &str = "kms_pending_deletion_use";
pub const KEY_DISABLED: &str = "kms_key_disabled";
pub const KEY_DELETION_SCHEDULED: &str = "kms_key_deletion_scheduled";
pub const PROTECTION_REMOVED: &str = "kms_protection_removed";
pub const ACCESS_KEY_REACTIVATED: &str = "iam_access_key_reactivated";
pub const ROOT_ACCESS_KEY_CREATED: &str = "iam_root_access_key_created";

const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// A rule as written in TOML (`[[rules]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: Option<String>,
    pub description: Option<String>,
    pub severity: Option<Severity>,
    pub pattern: Option<String>,
    pub actions: Option<Vec<Action>>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub tests: Vec<RawTest>,
}

/// A test case: an event (inline JSON text, an inline table, or a file) and whether it must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub name: Option<String>,
    pub must_match: bool,
    pub event: Option<toml::Value>,
    pub event_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub must_match: bool,
    pub event: String,
}

/// A validated, enabled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub pattern: String,
    pub actions: Vec<Action>,
    /// Where it was defined: `built-in`, a file, or `config`.
    pub source: String,
    pub tests: Vec<TestCase>,
}

/// A rule problem, with the key (or file) it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub key: String,
    pub message: String,
}

/// The effective rules, compiled.
#[derive(Debug)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Built-in rules disabled by configuration: (id, where).
    pub disabled: Vec<(String, String)>,
    compiled: CompiledSet,
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect())
        }
    }
}

/// A source of raw rules: where they came from, and the directory test files are relative to.
pub struct RuleSource {
    pub name: String,
    pub key_prefix: String,
    pub base_dir: Option<PathBuf>,
    pub rules: Vec<RawRule>,
}

impl RuleSet {
    /// The built-in rules alone.
    pub fn builtin() -> Self {
        Self::load(Vec::new()).expect("the built-in rules are valid (tested)")
    }

    /// The rules of one rules file's text (`[[rules]]` tables).
    pub fn parse_file(text: &str) -> Result<Vec<RawRule>, String> {
        toml::from_str::<RuleFile>(text)
            .map(|f| f.rules)
            .map_err(|e| e.message().to_owned())
    }

    /// Built-ins, then each source in order; a later rule with an existing id overrides it.
    pub fn load(sources: Vec<RuleSource>) -> Result<Self, Vec<RuleProblem>> {
        let builtin: RuleFile = toml::from_str(BUILTIN_TOML).expect("builtin.toml parses");
        let mut all = vec![RuleSource {
            name: "built-in".into(),
            key_prefix: "built-in rules".into(),
            base_dir: None,
            rules: builtin.rules,
        }];
        all.extend(sources);
        let mut problems = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut disabled = Vec::new();
        for src in all {
            for (i, raw) in src.rules.into_iter().enumerate() {
                let key = format!("{}[{i}]", src.key_prefix);
                let Some(id) = raw.id.clone().filter(|s| !s.is_empty()) else {
                    problems.push(RuleProblem {
                        key: format!("{key}.id"),
                        message: "every rule needs an id".into(),
                    });
                    continue;
                };
                if !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    problems.push(RuleProblem {
                        key: format!("{key}.id"),
                        message: format!("{id:?}: use snake_case (a-z, 0-9, _): ids are metric labels"),
                    });
                    continue;
                }
                let existing = rules.iter().position(|r| r.id == id);
                if raw.enabled == Some(false) {
                    match existing {
                        Some(pos) => {
                            rules.remove(pos);
                            disabled.push((id, src.name.clone()));
                        }
                        None => disabled.push((id, src.name.clone())),
                    }
                    continue;
                }
                let base = existing.map(|p| rules[p].clone());
                let pattern = raw
                    .pattern
                    .clone()
                    .or_else(|| base.as_ref().map(|b| b.pattern.clone()));
                let Some(pattern) = pattern else {
                    problems.push(RuleProblem {
                        key: format!("{key}.pattern"),
                        message: format!("rule {id}: a new rule needs a pattern"),
                    });
                    continue;
                };
                if let Err(e) = pattern::parse(&pattern) {
                    problems.push(RuleProblem {
                        key: format!("{key}.pattern"),
                        message: format!("rule {id}: {e}"),
                    });
                    continue;
                }
                let mut tests: Vec<TestCase> = if raw.tests.is_empty() {
                    base.as_ref().map(|b| b.tests.clone()).unwrap_or_default()
                } else {
                    Vec::new()
                };
                for (t, rt) in raw.tests.iter().enumerate() {
                    let tkey = format!("{key}.tests[{t}]");
                    let event = match (&rt.event, &rt.event_file) {
                        (Some(toml::Value::String(s)), None) => Ok(s.clone()),
                        (Some(v @ toml::Value::Table(_)), None) => Ok(toml_to_json(v).to_string()),
                        (None, Some(f)) => Err(format!(
                            "event_file {} was not read (the configuration loader reads rule files)",
                            f.display()
                        )),
                        _ => {
                            Err("give exactly one of event (JSON text or a table) and event_file".to_owned())
                        }
                    };
                    match event {
                        Ok(event) => tests.push(TestCase {
                            name: rt.name.clone().unwrap_or_else(|| format!("case {t}")),
                            must_match: rt.must_match,
                            event,
                        }),
                        Err(message) => problems.push(RuleProblem {
                            key: tkey,
                            message: format!("rule {id}: {message}"),
                        }),
                    }
                }
                let rule = Rule {
                    description: raw
                        .description
                        .or_else(|| base.as_ref().map(|b| b.description.clone()))
                        .unwrap_or_default(),
                    severity: raw
                        .severity
                        .or(base.as_ref().map(|b| b.severity))
                        .unwrap_or(Severity::Medium),
                    actions: raw
                        .actions
                        .or_else(|| base.as_ref().map(|b| b.actions.clone()))
                        .unwrap_or_else(|| vec![Action::Notify]),
                    source: src.name.clone(),
                    id,
                    pattern,
                    tests,
                };
                match existing {
                    Some(pos) => rules[pos] = rule,
                    None => rules.push(rule),
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let exprs: Vec<pattern::Expr> = rules
            .iter()
            .map(|r| pattern::parse(&r.pattern).expect("checked above"))
            .collect();
        let compiled = CompiledSet::new(&exprs.iter().collect::<Vec<_>>());
        Ok(Self {
            rules,
            disabled,
            compiled,
        })
    }

    pub fn compiled(&self) -> &CompiledSet {
        &self.compiled
    }

    /// Indices of the rules a record matches.
    pub fn matching(&self, json: &[u8]) -> Result<Vec<usize>, serde_json::Error> {
        let slots = self.compiled.extract(json)?;
        Ok((0..self.rules.len())
            .filter(|i| self.compiled.matches(*i, &slots))
            .collect())
    }

    /// Findings for one record (its JSON text). The typed record is parsed only on a match.
    pub fn findings(&self, json: &str) -> Result<Vec<Finding>, serde_json::Error> {
        let hits = self.matching(json.as_bytes())?;
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let record: Record = serde_json::from_str(json)?;
        Ok(hits
            .into_iter()
            .map(|i| finding::finding(&self.rules[i], &record))
            .collect())
    }

    /// Runs every rule's test cases: (rule id, case name, failure message if any).
    pub fn run_tests(&self) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for case in &rule.tests {
                let result = match self.matching(case.event.as_bytes()) {
                    Err(e) => Some(format!("the event is not a readable record: {e}")),
                    Ok(hits) => {
                        let matched = hits.contains(&i);
                        (matched != case.must_match).then(|| {
                            if case.must_match {
                                format!("expected a match, but `{}` did not match", rule.pattern)
                            } else {
                                format!("expected no match, but `{}` matched", rule.pattern)
                            }
                        })
                    }
                };
                out.push((rule.id.clone(), case.name.clone(), result));
            }
        }
        out
    }
}

/// Every built-in rule that matches a record, for tests and tools.
pub fn evaluate_json(json: &str) -> Vec<Finding> {
    thread_local! {
        static BUILTIN: RuleSet = RuleSet::builtin();
    }
    BUILTIN.with(|set| set.findings(json).unwrap_or_default())
}

#[cfg(test)]
mod tests;
