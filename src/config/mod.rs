//! Configuration: a TOML document (the file, or the whole document in the
//! `TRAILGUARD_CONFIG_TOML` environment variable, as ECS injects it from an SSM parameter or a
//! secret), overridden key by key by `TRAILGUARD__SECTION__KEY` environment variables, read
//! into raw sections, then validated. Each section's raw → validated conversion lives with its
//! domain (`TryFrom<Raw…>`); this module only assembles them. Every problem is reported at
//! once, each with its key: unknown keys (with a "did you mean"), unreadable values, and values
//! out of range, side by side.

mod rules;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountsConfig, RawAccounts};
use crate::actions::config::{KmsConfig, RawKms};
use crate::arn;
use crate::aws::config::{RawAws, Regions};
use crate::iam::config::{IamConfig, RawIam};
use crate::lease::{LeaseConfig, RawLease};
use crate::notify::config::{NotifyConfig, RawNotify};
use crate::plan::Policy;
use crate::rules::{RawRule, RuleSet};
use crate::sources::config::{CloudTrailConfig, RawCloudTrail, RawSource, Sources};
use crate::state::config::{RawState, StateDir};
use crate::telemetry::config::{LogConfig, RawLog, RawServer, ServerConfig};
use crate::validate::{Field, Problems, section};

pub use crate::validate::Problem;

pub const DEFAULT_PATH: &str = "/etc/trailguard/trailguard.toml";
/// The whole configuration document, instead of the file (for containers).
pub const DOCUMENT_ENV: &str = "TRAILGUARD_CONFIG_TOML";
const PREFIX: &str = "TRAILGUARD__";

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct RawConfig {
    dry_run: Field<bool>,
    aws: RawAws,
    cloudtrail: RawCloudTrail,
    kms: RawKms,
    notify: RawNotify,
    state: RawState,
    server: RawServer,
    log: RawLog,
    iam: RawIam,
    lease: RawLease,
    accounts: RawAccounts,
    sources: Vec<RawSource>,
    rules: Field<Vec<RawRule>>,
    rules_dir: Field<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dry_run: bool,
    /// The regions to watch; empty for `["all"]` (every region enabled in each account).
    pub regions: Vec<String>,
    /// `[accounts]`; `None`: only the account trailguard's credentials belong to.
    pub accounts: Option<AccountsConfig>,
    /// `[[sources]]`.
    pub sources: Sources,
    pub cloudtrail: CloudTrailConfig,
    pub kms: KmsConfig,
    pub notify: NotifyConfig,
    pub state_dir: PathBuf,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub iam: Option<IamConfig>,
    pub lease: LeaseConfig,
    /// The effective rules: built-ins, overridden and extended by `[[rules]]` and `rules_dir`.
    pub rules: Arc<RuleSet>,
}

impl Config {
    /// Whether `aws.regions = ["all"]`.
    pub fn all_regions(&self) -> bool {
        self.regions.is_empty()
    }

    /// The partition the regions are in (`aws`, `aws-us-gov`, `aws-cn`); with `["all"]`, the
    /// one trailguard's identity is in (see the daemon), `aws` here.
    pub fn partition(&self) -> &'static str {
        self.regions
            .first()
            .map(|r| arn::partition_of(r))
            .unwrap_or("aws")
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl From<Problems> for ConfigError {
    fn from(p: Problems) -> Self {
        Self { problems: p.0 }
    }
}

/// Where the document came from: its name for messages, and the directory relative paths
/// (`rules_dir`, `event_file`) are resolved against.
struct Document {
    name: String,
    text: String,
    base: Option<PathBuf>,
}

fn document(path: &Path, env: &[(String, String)]) -> Result<Document, ConfigError> {
    if let Some((_, text)) = env
        .iter()
        .find(|(k, v)| k == DOCUMENT_ENV && !v.trim().is_empty())
    {
        return Ok(Document {
            name: format!("${DOCUMENT_ENV}"),
            text: text.clone(),
            base: None,
        });
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Document {
            name: path.display().to_string(),
            text,
            base: path.parent().map(Path::to_path_buf),
        }),
        Err(e) => {
            let mut p = Problems::default();
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "file {} does not exist (or set {DOCUMENT_ENV} to the whole document)",
                    path.display()
                )
            } else {
                format!("cannot read {}: {e}", path.display())
            };
            p.push("config", why);
            Err(p.into())
        }
    }
}

/// Applies `TRAILGUARD__SECTION__KEY=value` overrides to the document's table.
fn apply_env(table: &mut toml::Table, env: &[(String, String)], p: &mut Problems) {
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if path.iter().any(|p| p.is_empty()) {
            p.push(
                k.clone(),
                "names no configuration key: use TRAILGUARD__KEY or TRAILGUARD__SECTION__KEY",
            );
            continue;
        }
        if let Err(part) = set(table, &path, toml::Value::String(v.clone())) {
            p.push(
                path.join("."),
                format!("{k} overrides a key inside {part}, which is not a section"),
            );
        }
    }
}

/// Sets `path` in `table`, creating sections; `Err(part)` if `part` is not a section.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => match table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => set(inner, rest, value),
            _ => Err(first.clone()),
        },
    }
}

/// Every key the configuration knows (`section.key`), for "did you mean" and the
/// deployment tests.
pub fn known_keys() -> Vec<String> {
    let tree = serde_json::to_value(RawConfig::default()).expect("raw config serializes");
    let mut out = Vec::new();
    if let serde_json::Value::Object(top) = tree {
        for (k, v) in top {
            match v {
                serde_json::Value::Object(inner) => out.extend(inner.keys().map(|f| format!("{k}.{f}"))),
                _ => out.push(k),
            }
        }
    }
    // `[[sources]]` entries: `sources.kind`, `sources.queue_url`, ...
    if let Ok(serde_json::Value::Object(entry)) = serde_json::to_value(RawSource::default()) {
        out.extend(entry.keys().map(|f| format!("sources.{f}")));
    }
    out
}

fn unknown_key(key: &str, known: &[String]) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let hint = known
        .iter()
        .filter(|k| k.rsplit('.').next() == Some(leaf) || strsim::levenshtein(k, key) <= 2)
        .min_by_key(|k| strsim::levenshtein(k, key))
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    format!("unknown key{hint}")
}

/// Reads the document and the environment into raw sections, with the problems found so far.
fn read(doc: &Document, env: &[(String, String)]) -> Result<(RawConfig, Problems), ConfigError> {
    let mut p = Problems::default();
    let mut table: toml::Table = doc.text.parse().map_err(|e: toml::de::Error| {
        let mut p = Problems::default();
        p.push(
            "config",
            format!("{}: not valid TOML: {}", doc.name, e.to_string().trim()),
        );
        ConfigError::from(p)
    })?;
    apply_env(&mut table, env, &mut p);
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut note);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut p = Problems::default();
        let key = e.path().to_string();
        p.push(
            if key == "." { "config".into() } else { key },
            e.inner().to_string(),
        );
        ConfigError::from(p)
    })?;
    let known = known_keys();
    for key in unknown {
        let message = unknown_key(&key, &known);
        p.push(key, message);
    }
    Ok((raw, p))
}

fn environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with(PREFIX) || k == DOCUMENT_ENV)
        .collect()
}

/// Loads the document (`path`, or `TRAILGUARD_CONFIG_TOML`) and the `TRAILGUARD__` environment,
/// and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_from(path, environment())
}

/// As [`load`], with the environment given (tests).
pub fn load_from(path: &Path, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
    let doc = document(path, &env)?;
    validate(&doc, &env)
}

/// Validates a configuration document given as text (relative paths against the working
/// directory), with the environment given: as `TRAILGUARD_CONFIG_TOML` does.
pub fn load_text(text: &str, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
    let doc = Document {
        name: "(text)".into(),
        text: text.to_owned(),
        base: None,
    };
    validate(&doc, &env)
}

fn validate(doc: &Document, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let (raw, mut p) = read(doc, env)?;
    let dry_run = raw.dry_run.get("dry_run", &mut p).unwrap_or(false);
    let regions = section(&mut p, Regions::try_from(raw.aws));
    let cloudtrail = section(&mut p, CloudTrailConfig::try_from(raw.cloudtrail));
    let kms = section(&mut p, KmsConfig::try_from(raw.kms));
    let notify = section(&mut p, NotifyConfig::try_from(raw.notify));
    let state = section(&mut p, StateDir::try_from(raw.state));
    let server = section(&mut p, ServerConfig::try_from(raw.server));
    let log = section(&mut p, LogConfig::try_from(raw.log));
    let iam = section(&mut p, Option::<IamConfig>::try_from(raw.iam));
    let lease = section(&mut p, LeaseConfig::try_from(raw.lease));
    let accounts = section(&mut p, Option::<AccountsConfig>::try_from(raw.accounts));
    let sources = Sources::from_raw(raw.sources, &mut p);
    if let Some(r) = &regions
        && r.all()
    {
        for (i, q) in sources.queues.iter().enumerate() {
            if q.region.is_none() {
                p.push(
                    format!("sources[{i}].region"),
                    "the queue URL does not name its region: set region (aws.regions = [\"all\"] gives no default)",
                );
            }
        }
    }
    let rule_list = raw.rules.get("rules", &mut p).unwrap_or_default();
    let rules_dir = raw.rules_dir.get("rules_dir", &mut p);
    let rules = rules::load(rule_list, rules_dir, doc.base.as_deref(), &mut p);
    match (
        regions, cloudtrail, kms, notify, state, server, log, iam, lease, accounts, rules,
    ) {
        (
            Some(regions),
            Some(cloudtrail),
            Some(kms),
            Some(notify),
            Some(state),
            Some(server),
            Some(log),
            Some(iam),
            Some(lease),
            Some(accounts),
            Some(rules),
        ) if p.is_empty() => Ok(Config {
            dry_run,
            sources: sources.with_region(regions.0.first()),
            regions: regions.0,
            accounts,
            cloudtrail,
            kms,
            notify,
            state_dir: state.0,
            server,
            log,
            iam,
            lease,
            rules: Arc::new(rules),
        }),
        _ => Err(p.into()),
    }
}

/// Loads only the rules of a config file (for `scan` and `rules`): a file holding only
/// `[[rules]]` is enough. Without a file, the built-in rules.
pub fn load_rules(path: Option<&Path>) -> Result<RuleSet, ConfigError> {
    let Some(path) = path else {
        return Ok(RuleSet::builtin());
    };
    let doc = document(path, &[])?;
    let (raw, _) = read(&doc, &[])?;
    let mut p = Problems::default();
    let rule_list = raw.rules.get("rules", &mut p).unwrap_or_default();
    let rules_dir = raw.rules_dir.get("rules_dir", &mut p);
    match rules::load(rule_list, rules_dir, doc.base.as_deref(), &mut p) {
        Some(set) if p.is_empty() => Ok(set),
        _ => Err(p.into()),
    }
}

/// The KMS protection policy of a config file, for `scan` (empty without a file).
pub fn load_policy(path: Option<&Path>) -> Result<Policy, ConfigError> {
    let raw = match path {
        Some(path) => read(&document(path, &[])?, &[])?.0.kms,
        None => RawKms::default(),
    };
    let mut p = Problems::default();
    let policy = KmsConfig::policy_from_raw(raw, &mut p);
    if p.is_empty() { Ok(policy) } else { Err(p.into()) }
}
