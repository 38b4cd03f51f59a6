//! Configuration: a TOML file overridden by `TRAILGUARD__SECTION__KEY` environment variables,
//! read into raw structs that reject unknown keys, then validated into typed values.
//! Every problem is reported at once, each with its key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cursor::Schedule;

pub const DEFAULT_PATH: &str = "/etc/trailguard/trailguard.toml";

/// Every key trailguard reads; anything else in a file or the environment is an error.
const KNOWN_KEYS: &[&str] = &[
    "dry_run",
    "aws.regions",
    "cloudtrail.poll_interval",
    "cloudtrail.max_delivery_delay",
    "cloudtrail.lookback_interval",
    "cloudtrail.max_requests_per_second",
    "kms.enable_after_cancel",
    "kms.protected_keys",
    "kms.on_disable",
    "kms.on_schedule_deletion",
    "kms.allowed_principals",
    "kms.refresh_interval",
    "kms.exemptions",
    "notify.sns_topic_arn",
    "notify.aggregation_window",
    "state.dir",
    "server.listen",
    "server.shutdown_grace",
    "log.format",
    "log.level",
    "iam.enabled",
    "iam.sweep_interval",
    "iam.max_key_age",
    "iam.max_unused_age",
    "iam.action",
    "iam.delete_after_inactive",
    "iam.max_actions_per_sweep",
    "iam.credential_report_min_users",
    "iam.max_requests_per_second",
    "iam.exemptions",
    "rules",
    "rules_dir",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    dry_run: Option<bool>,
    aws: RawAws,
    cloudtrail: RawCloudTrail,
    kms: RawKms,
    notify: RawNotify,
    state: RawState,
    server: RawServer,
    log: RawLog,
    iam: RawIam,
    rules: Option<Vec<crate::rules::RawRule>>,
    rules_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIam {
    enabled: Option<bool>,
    sweep_interval: Option<String>,
    max_key_age: Option<String>,
    max_unused_age: Option<String>,
    action: Option<String>,
    delete_after_inactive: Option<String>,
    max_actions_per_sweep: Option<i64>,
    credential_report_min_users: Option<i64>,
    max_requests_per_second: Option<f64>,
    exemptions: Option<Vec<crate::iam::Exemption>>,
}

/// The IAM access-key sweep, when `iam.enabled`.
#[derive(Debug, Clone)]
pub struct IamConfig {
    pub sweep_interval: Duration,
    pub policy: crate::iam::Policy,
    pub credential_report_min_users: usize,
    pub max_requests_per_second: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAws {
    regions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCloudTrail {
    poll_interval: Option<String>,
    max_delivery_delay: Option<String>,
    lookback_interval: Option<String>,
    max_requests_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKms {
    enable_after_cancel: Option<bool>,
    protected_keys: Option<Vec<String>>,
    on_disable: Option<crate::plan::OnDisable>,
    on_schedule_deletion: Option<crate::plan::OnScheduleDeletion>,
    allowed_principals: Option<Vec<String>>,
    refresh_interval: Option<String>,
    exemptions: Option<Vec<crate::plan::KeyExemption>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNotify {
    sns_topic_arn: Option<String>,
    aggregation_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawState {
    dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dry_run: bool,
    pub regions: Vec<String>,
    pub poll_interval: Duration,
    pub schedule: Schedule,
    pub max_requests_per_second: f64,
    pub enable_after_cancel: bool,
    pub sns_topic_arn: Option<String>,
    pub aggregation_window: Duration,
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub iam: Option<IamConfig>,
    /// The KMS protection policy (empty: no key is protected).
    pub kms_policy: crate::plan::Policy,
    /// How long a key's aliases and tags are cached for the policy.
    pub kms_refresh_interval: Duration,
    /// The effective rules: built-ins, overridden and extended by `[[rules]]` and `rules_dir`.
    pub rules: std::sync::Arc<crate::rules::RuleSet>,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn problem(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Loads `path` (which must exist) and the `TRAILGUARD__` environment, and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TRAILGUARD__"))
        .collect();
    load_from(path, env)
}

/// As [`load`], with the environment given (tests).
pub fn load_from(path: &Path, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
    let (raw, _) = read_raw(path, env)?;
    validate(raw, path.parent())
}

fn read_raw(path: &Path, env: Vec<(String, String)>) -> Result<(RawConfig, ()), ConfigError> {
    if !path.exists() {
        return Err(ConfigError {
            problems: vec![problem(
                "config",
                format!("file {} does not exist", path.display()),
            )],
        });
    }
    // NOTE: values stay strings (no `try_parsing`), so an account id such as 012345678901 keeps
    // its leading zero; the one list key is split here.
    let regions: Option<Vec<String>> =
        env.iter()
            .find(|(k, _)| k == "TRAILGUARD__AWS__REGIONS")
            .map(|(_, v)| {
                v.split(',')
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .collect()
            });
    let env: std::collections::HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k != "TRAILGUARD__AWS__REGIONS")
        .collect();
    let env_source = config::Environment::with_prefix("TRAILGUARD")
        .prefix_separator("__")
        .separator("__")
        .source(Some(env));
    let mut builder = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(env_source);
    if let Some(regions) = regions {
        builder = builder
            .set_override("aws.regions", regions)
            .map_err(|e| ConfigError {
                problems: vec![problem("aws.regions", e.to_string())],
            })?;
    }
    let built = builder.build().map_err(|e| ConfigError {
        problems: vec![problem("config", e.to_string())],
    })?;

    let mut problems = Vec::new();
    let tree: serde_json::Value = built.clone().try_deserialize().unwrap_or(serde_json::Value::Null);
    unknown_keys(&tree, "", &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let raw: RawConfig = built.try_deserialize().map_err(|e| {
        let msg = e.to_string();
        let key = msg
            .split("for key `")
            .nth(1)
            .and_then(|s| s.split('`').next())
            .unwrap_or("config")
            .to_owned();
        ConfigError {
            problems: vec![Problem { key, message: msg }],
        }
    })?;
    Ok((raw, ()))
}

fn unknown_keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<Problem>) {
    let serde_json::Value::Object(map) = v else { return };
    for (k, child) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if KNOWN_KEYS.contains(&key.as_str()) {
            continue;
        }
        if child.is_object()
            && KNOWN_KEYS
                .iter()
                .any(|known| known.starts_with(&format!("{key}.")))
        {
            unknown_keys(child, &key, out);
            continue;
        }
        let hint = KNOWN_KEYS
            .iter()
            .filter(|known| {
                known.rsplit('.').next() == key.rsplit('.').next() || edit_distance(known, &key) <= 2
            })
            .map(|k| format!(" (did you mean `{k}`?)"))
            .next()
            .unwrap_or_default();
        out.push(problem(&key, format!("unknown key{hint}")));
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn duration(
    problems: &mut Vec<Problem>,
    key: &str,
    raw: Option<&str>,
    default: &str,
    range: (Duration, Duration),
    why: &str,
) -> Duration {
    let text = raw.unwrap_or(default);
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d >= range.0 && d <= range.1 => d,
        Ok(_) => {
            problems.push(problem(
                key,
                format!(
                    "must be between {} and {}, got {text}{why}",
                    humantime::format_duration(range.0),
                    humantime::format_duration(range.1)
                ),
            ));
            humantime::parse_duration(default).expect("defaults parse")
        }
        Err(e) => {
            problems.push(problem(
                key,
                format!("not a duration like \"15s\" or \"5m\": {text:?} ({e})"),
            ));
            humantime::parse_duration(default).expect("defaults parse")
        }
    }
}

fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Loads the rules of a config: `[[rules]]` (keys `rules[i]...`), then `rules_dir` files.
fn rule_set(
    rules: Option<Vec<crate::rules::RawRule>>,
    rules_dir: Option<String>,
    base_dir: Option<&Path>,
    p: &mut Vec<Problem>,
) -> Option<crate::rules::RuleSet> {
    use crate::rules::{RuleSet, RuleSource};
    let mut sources = vec![RuleSource {
        name: "config".into(),
        key_prefix: "rules".into(),
        base_dir: base_dir.map(Path::to_path_buf),
        rules: rules.unwrap_or_default(),
    }];
    if let Some(dir) = rules_dir {
        let dir = base_dir
            .map(|b| b.join(&dir))
            .unwrap_or_else(|| PathBuf::from(&dir));
        match RuleSet::read_dir(&dir) {
            Ok(more) => sources.extend(more),
            Err(e) => {
                p.push(Problem {
                    key: e.key,
                    message: e.message,
                });
                return None;
            }
        }
    }
    match RuleSet::load(sources) {
        Ok(set) => Some(set),
        Err(problems) => {
            p.extend(problems.into_iter().map(|e| Problem {
                key: e.key,
                message: e.message,
            }));
            None
        }
    }
}

/// The KMS protection policy of a config file, for `scan` (empty without a file).
pub fn load_policy(path: Option<&Path>) -> Result<crate::plan::Policy, ConfigError> {
    let Some(path) = path else {
        return Ok(kms_policy(&RawKms::default(), &mut Vec::new()));
    };
    let (raw, _) = read_raw(path, vec![])?;
    let mut p = Vec::new();
    let policy = kms_policy(&raw.kms, &mut p);
    if p.is_empty() {
        Ok(policy)
    } else {
        Err(ConfigError { problems: p })
    }
}

fn kms_policy(kms: &RawKms, p: &mut Vec<Problem>) -> crate::plan::Policy {
    let mut protected = Vec::new();
    for (i, k) in kms.protected_keys.iter().flatten().enumerate() {
        match crate::plan::Protected::parse(k) {
            Ok(prot) => protected.push(prot),
            Err(e) => p.push(problem(&format!("kms.protected_keys[{i}]"), e)),
        }
    }
    for (i, g) in kms.allowed_principals.iter().flatten().enumerate() {
        if !g.starts_with("arn:") {
            p.push(problem(
                &format!("kms.allowed_principals[{i}]"),
                format!("{g:?} is not an ARN glob like arn:aws:sts::*:assumed-role/KeyAdmin/*"),
            ));
        }
    }
    crate::plan::Policy {
        protected,
        on_disable: kms.on_disable.unwrap_or(crate::plan::OnDisable::Notify),
        on_schedule_deletion: kms
            .on_schedule_deletion
            .unwrap_or(crate::plan::OnScheduleDeletion::Notify),
        allowed_principals: kms.allowed_principals.clone().unwrap_or_default(),
        exemptions: kms.exemptions.clone().unwrap_or_default(),
    }
}

/// Loads only the rules of a config file (for `scan` and `rules`): a file holding only
/// `[[rules]]` is enough. Without a file, the built-in rules.
pub fn load_rules(path: Option<&Path>) -> Result<crate::rules::RuleSet, ConfigError> {
    let Some(path) = path else {
        return Ok(crate::rules::RuleSet::builtin());
    };
    let (mut raw, _) = read_raw(path, vec![])?;
    let mut p = Vec::new();
    let set = rule_set(raw.rules.take(), raw.rules_dir.take(), path.parent(), &mut p);
    match set {
        Some(set) if p.is_empty() => Ok(set),
        _ => Err(ConfigError { problems: p }),
    }
}

fn validate(mut raw: RawConfig, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let mut p = Vec::new();
    let secs = Duration::from_secs;

    let regions = raw.aws.regions.unwrap_or_default();
    if regions.is_empty() {
        p.push(problem(
            "aws.regions",
            "list at least one region to watch, e.g. [\"us-east-1\"]",
        ));
    }
    for r in &regions {
        if !is_region(r) {
            p.push(problem(
                "aws.regions",
                format!("{r:?} is not an AWS region name like \"eu-west-1\""),
            ));
        }
    }
    let mut unique = regions.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != regions.len() {
        p.push(problem("aws.regions", "lists a region twice"));
    }

    let ct = &raw.cloudtrail;
    let poll_interval = duration(
        &mut p,
        "cloudtrail.poll_interval",
        ct.poll_interval.as_deref(),
        "15s",
        (secs(5), secs(3600)),
        " (LookupEvents allows 2 requests/s per account and region)",
    );
    let max_delivery_delay = duration(
        &mut p,
        "cloudtrail.max_delivery_delay",
        ct.max_delivery_delay.as_deref(),
        "15m",
        (secs(60), secs(24 * 3600)),
        "",
    );
    let lookback_interval = duration(
        &mut p,
        "cloudtrail.lookback_interval",
        ct.lookback_interval.as_deref(),
        "5m",
        (secs(5), secs(24 * 3600)),
        "",
    );
    if lookback_interval < poll_interval {
        p.push(problem(
            "cloudtrail.lookback_interval",
            format!(
                "must not be shorter than cloudtrail.poll_interval ({}), got {}",
                humantime::format_duration(poll_interval),
                humantime::format_duration(lookback_interval)
            ),
        ));
    }
    let max_requests_per_second = ct.max_requests_per_second.unwrap_or(1.0);
    if !(max_requests_per_second > 0.0 && max_requests_per_second <= 2.0) {
        p.push(problem(
            "cloudtrail.max_requests_per_second",
            format!("must be above 0 and at most 2 (the LookupEvents quota per account and region), got {max_requests_per_second}"),
        ));
    }

    let sns_topic_arn = raw.notify.sns_topic_arn.filter(|a| !a.trim().is_empty());
    if let Some(arn) = &sns_topic_arn {
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
            p.push(problem(
                "notify.sns_topic_arn",
                format!("not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME): {arn:?}"),
            ));
        }
    }
    let aggregation_window = duration(
        &mut p,
        "notify.aggregation_window",
        raw.notify.aggregation_window.as_deref(),
        "5m",
        (secs(0), secs(24 * 3600)),
        "",
    );

    let state_dir = raw.state.dir.unwrap_or_else(|| "/var/lib/trailguard".into());
    if state_dir.trim().is_empty() {
        p.push(problem("state.dir", "must not be empty"));
    }
    let listen_text = raw.server.listen.unwrap_or_else(|| "127.0.0.1:9464".into());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        p.push(problem(
            "server.listen",
            format!("not an address like \"127.0.0.1:9464\": {listen_text:?}"),
        ));
        SocketAddr::from(([127, 0, 0, 1], 9464))
    });
    let shutdown_grace = duration(
        &mut p,
        "server.shutdown_grace",
        raw.server.shutdown_grace.as_deref(),
        "30s",
        (secs(1), secs(110)),
        " (keep it below systemd's TimeoutStopSec and ECS's stopTimeout of at most 120s)",
    );
    let log_format = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.push(problem(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            ));
            LogFormat::Text
        }
    };
    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        p.push(problem(
            "log.level",
            format!("not a level or filter like \"info\" or \"trailguard=debug\": {log_level:?}"),
        ));
    }

    let iam = validate_iam(raw.iam, &mut p);
    let kms_refresh_interval = duration(
        &mut p,
        "kms.refresh_interval",
        raw.kms.refresh_interval.as_deref(),
        "10m",
        (Duration::from_secs(10), Duration::from_secs(24 * 3600)),
        "",
    );
    let kms_policy = kms_policy(&raw.kms, &mut p);
    let rules = rule_set(raw.rules.take(), raw.rules_dir.take(), base_dir, &mut p);

    if !p.is_empty() {
        return Err(ConfigError { problems: p });
    }
    Ok(Config {
        iam,
        kms_policy,
        kms_refresh_interval,
        rules: std::sync::Arc::new(rules.expect("no problems means the rules loaded")),
        dry_run: raw.dry_run.unwrap_or(false),
        regions,
        poll_interval,
        schedule: Schedule {
            max_delivery_delay,
            lookback_interval,
        },
        max_requests_per_second,
        enable_after_cancel: raw.kms.enable_after_cancel.unwrap_or(false),
        sns_topic_arn,
        aggregation_window,
        state_dir: PathBuf::from(state_dir),
        listen,
        shutdown_grace,
        log_format,
        log_level,
    })
}

fn validate_iam(raw: RawIam, p: &mut Vec<Problem>) -> Option<IamConfig> {
    let day = Duration::from_secs(86400);
    let sweep_interval = duration(
        p,
        "iam.sweep_interval",
        raw.sweep_interval.as_deref(),
        "1h",
        (Duration::from_secs(60), 7 * day),
        "",
    );
    let max_key_age = duration(
        p,
        "iam.max_key_age",
        raw.max_key_age.as_deref(),
        "90d",
        (day, 3650 * day),
        "",
    );
    let max_unused_age = duration(
        p,
        "iam.max_unused_age",
        raw.max_unused_age.as_deref(),
        "90d",
        (day, 3650 * day),
        "",
    );
    let delete_after_inactive = duration(
        p,
        "iam.delete_after_inactive",
        raw.delete_after_inactive.as_deref(),
        "30d",
        (day, 3650 * day),
        "",
    );
    let action = match raw.action.as_deref().unwrap_or("notify") {
        "notify" => crate::iam::KeyAction::Notify,
        "deactivate" => crate::iam::KeyAction::Deactivate,
        "delete" => crate::iam::KeyAction::Delete,
        other => {
            p.push(problem(
                "iam.action",
                format!("must be \"notify\", \"deactivate\" or \"delete\", got {other:?}"),
            ));
            crate::iam::KeyAction::Notify
        }
    };
    let max_actions = raw.max_actions_per_sweep.unwrap_or(10);
    if !(0..=10_000).contains(&max_actions) {
        p.push(problem(
            "iam.max_actions_per_sweep",
            format!("must be between 0 and 10000, got {max_actions}"),
        ));
    }
    let report_min = raw.credential_report_min_users.unwrap_or(500);
    if report_min < 1 {
        p.push(problem(
            "iam.credential_report_min_users",
            format!("must be at least 1, got {report_min}"),
        ));
    }
    let rps = raw.max_requests_per_second.unwrap_or(5.0);
    if !(rps > 0.0 && rps <= 100.0) {
        p.push(problem(
            "iam.max_requests_per_second",
            format!("must be above 0 and at most 100, got {rps}"),
        ));
    }
    let exemptions = raw.exemptions.unwrap_or_default();
    for (i, e) in exemptions.iter().enumerate() {
        if e.user.is_none() && e.path.is_none() && e.tag.is_none() && e.access_key_id.is_none() {
            p.push(problem(
                &format!("iam.exemptions[{i}]"),
                "names nothing to exempt: set user, path, tag or access_key_id",
            ));
        }
    }
    raw.enabled.unwrap_or(false).then(|| IamConfig {
        sweep_interval,
        policy: crate::iam::Policy {
            max_key_age,
            max_unused_age,
            action,
            delete_after_inactive,
            max_actions_per_sweep: max_actions.max(0) as usize,
            exemptions,
        },
        credential_report_min_users: report_min.max(1) as usize,
        max_requests_per_second: rps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile_lite::TempFile {
        tempfile_lite::TempFile::new(text)
    }

    mod tempfile_lite {
        pub struct TempFile(pub std::path::PathBuf);
        impl TempFile {
            pub fn new(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!("trailguard-test-{}.toml", uuid::Uuid::new_v4()));
                std::fs::write(&p, text).unwrap();
                Self(p)
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn keys(e: &ConfigError) -> Vec<&str> {
        e.problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/trailguard.toml"));
        let c = load_from(path, vec![]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(15));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9464");
        assert!(!c.dry_run);
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let f = file("[aws]\nregions = [\"eu-west-1\"]\n");
        let c = load_from(&f.0, vec![]).unwrap();
        assert_eq!(c.schedule.max_delivery_delay, Duration::from_secs(900));
        assert_eq!(c.schedule.lookback_interval, Duration::from_secs(300));
        assert_eq!(c.max_requests_per_second, 1.0);
        assert_eq!(c.aggregation_window, Duration::from_secs(300));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(!c.enable_after_cancel);
        assert_eq!(c.sns_topic_arn, None);
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let f = file(
            "dry_run = false\n[aws]\nregions = [\"eu-west-1\", \"Mars\"]\n[cloudtrail]\npoll_interval = \"1s\"\nmax_requests_per_second = 5.0\n\
             [notify]\nsns_topic_arn = \"topic\"\n[log]\nformat = \"xml\"\n[server]\nlisten = \"nowhere\"\n",
        );
        let e = load_from(&f.0, vec![]).unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "aws.regions",
                "cloudtrail.poll_interval",
                "cloudtrail.max_requests_per_second",
                "notify.sns_topic_arn",
                "server.listen",
                "log.format"
            ]
        );
        let text = e.to_string();
        assert!(text.contains("cloudtrail.poll_interval: must be between 5s and 1h, got 1s (LookupEvents allows 2 requests/s"), "{text}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_a_hint() {
        let f = file(
            "[aws]\nregions = [\"eu-west-1\"]\n[cloudtrail]\npoll_intervall = \"15s\"\n[extra]\nx = 1\n",
        );
        let e = load_from(&f.0, vec![]).unwrap_err();
        assert_eq!(keys(&e), ["cloudtrail.poll_intervall", "extra"]);
        assert!(
            e.problems[0]
                .message
                .contains("did you mean `cloudtrail.poll_interval`")
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = file(
            "[aws]\nregions = [\"eu-west-1\"]\n[notify]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:111122223333:a\"\n",
        );
        let env = vec![
            (
                "TRAILGUARD__CLOUDTRAIL__POLL_INTERVAL".to_owned(),
                "30s".to_owned(),
            ),
            (
                "TRAILGUARD__AWS__REGIONS".to_owned(),
                "us-east-1,eu-central-1".to_owned(),
            ),
            ("TRAILGUARD__DRY_RUN".to_owned(), "true".to_owned()),
            // An account id with a leading zero must stay a string.
            (
                "TRAILGUARD__NOTIFY__SNS_TOPIC_ARN".to_owned(),
                "arn:aws:sns:us-east-1:012345678901:alerts".to_owned(),
            ),
        ];
        let c = load_from(&f.0, env).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.regions, ["us-east-1", "eu-central-1"]);
        assert!(c.dry_run);
        assert_eq!(
            c.sns_topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:012345678901:alerts")
        );
    }

    #[test]
    fn iam_section_is_validated_and_off_by_default() {
        let f = file("[aws]\nregions = [\"eu-west-1\"]\n");
        assert!(load_from(&f.0, vec![]).unwrap().iam.is_none());
        let f = file(
            "[aws]\nregions = [\"eu-west-1\"]\n[iam]\nenabled = true\naction = \"deactivate\"\nmax_key_age = \"120d\"\n\
             [[iam.exemptions]]\nuser = \"ci-*\"\nexpires = \"2027-01-31\"\nreason = \"migration\"\n",
        );
        let iam = load_from(&f.0, vec![]).unwrap().iam.unwrap();
        assert_eq!(iam.policy.action, crate::iam::KeyAction::Deactivate);
        assert_eq!(iam.policy.max_key_age, Duration::from_secs(120 * 86400));
        assert_eq!(iam.policy.max_actions_per_sweep, 10);
        assert_eq!(
            iam.policy.exemptions[0].expires.unwrap().to_string(),
            "2027-01-31"
        );
        let f = file(
            "[aws]\nregions = [\"eu-west-1\"]\n[iam]\nenabled = true\naction = \"purge\"\n[[iam.exemptions]]\nreason = \"x\"\n",
        );
        let e = load_from(&f.0, vec![]).unwrap_err();
        assert_eq!(keys(&e), ["iam.action", "iam.exemptions[0]"]);
    }

    #[test]
    fn missing_file_is_a_problem() {
        let e = load_from(Path::new("/nonexistent/trailguard.toml"), vec![]).unwrap_err();
        assert_eq!(keys(&e), ["config"]);
    }
}
