//! The rule engine: pure functions from a record to findings. No I/O, no clock.
//!
//! Three built-in rules, with ids that are stable because metrics, logs, notifications and
//! `scan` output use them:
//!
//! | id | matches |
//! |---|---|
//! | `kms_pending_deletion_use` | `eventSource` starts with `kms` and `errorMessage` ends with ` is pending deletion.` (AWS's own metric filter), whatever the error code; also ` is pending replica deletion.` |
//! | `kms_key_disabled` | a successful `DisableKey` |
//! | `kms_key_deletion_scheduled` | a successful `ScheduleKeyDeletion` (also multi-Region primaries going to `PendingReplicaDeletion`) |
//!
//! The key a finding names is the one the record names: for a failed call, the ARN at the start
//! of `errorMessage`; otherwise `responseElements.keyId` when it is an ARN, a `resources[]`
//! KMS key ARN, or `requestParameters.keyId` completed into an ARN with the record's region and
//! account.

use crate::event::Record;

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
}

/// A built-in rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub description: &'static str,
    pub severity: Severity,
    pub actions: &'static [Action],
    matches: fn(&Record) -> bool,
}

pub const PENDING_DELETION_USE: &str = "kms_pending_deletion_use";
pub const KEY_DISABLED: &str = "kms_key_disabled";
pub const KEY_DELETION_SCHEDULED: &str = "kms_key_deletion_scheduled";
pub const ACCESS_KEY_REACTIVATED: &str = "iam_access_key_reactivated";
pub const ROOT_ACCESS_KEY_CREATED: &str = "iam_root_access_key_created";

const PENDING_SUFFIXES: [&str; 2] = [" is pending deletion.", " is pending replica deletion."];

pub const BUILTIN: [Rule; 5] = [
    Rule {
        id: PENDING_DELETION_USE,
        description: "A KMS call failed because its key is pending deletion: the key is still in use",
        severity: Severity::Critical,
        actions: &[Action::CancelKeyDeletion, Action::Notify],
        matches: |r| {
            r.source().starts_with("kms")
                && r.error_message
                    .as_deref()
                    .is_some_and(|m| PENDING_SUFFIXES.iter().any(|s| m.ends_with(s)))
        },
    },
    Rule {
        id: KEY_DISABLED,
        description: "A KMS key was disabled",
        severity: Severity::High,
        actions: &[Action::Notify],
        matches: |r| r.source() == "kms.amazonaws.com" && r.name() == "DisableKey" && r.succeeded(),
    },
    Rule {
        id: KEY_DELETION_SCHEDULED,
        description: "A KMS key was scheduled for deletion",
        severity: Severity::High,
        actions: &[Action::Notify],
        matches: |r| r.source() == "kms.amazonaws.com" && r.name() == "ScheduleKeyDeletion" && r.succeeded(),
    },
    Rule {
        id: ACCESS_KEY_REACTIVATED,
        description: "An IAM access key was reactivated",
        severity: Severity::High,
        actions: &[Action::Notify],
        matches: |r| {
            r.source() == "iam.amazonaws.com"
                && r.name() == "UpdateAccessKey"
                && r.succeeded()
                && r.request_str("status") == Some("Active")
        },
    },
    Rule {
        id: ROOT_ACCESS_KEY_CREATED,
        description: "An access key was created for the root user",
        severity: Severity::Critical,
        actions: &[Action::Notify],
        matches: |r| {
            r.source() == "iam.amazonaws.com"
                && r.name() == "CreateAccessKey"
                && r.succeeded()
                && r.user_identity.as_ref().and_then(|u| u.kind.as_deref()) == Some("Root")
                && r.request_str("userName").is_none()
        },
    },
];

/// One rule matching one record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub rule_id: String,
    pub severity: Severity,
    pub actions: Vec<Action>,
    pub event_id: String,
    pub event_name: String,
    pub event_source: String,
    pub event_time: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    pub key_arn: Option<String>,
    pub key_alias: Option<String>,
    pub principal_arn: Option<String>,
    pub principal_type: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `responseElements.deletionDate` of a `ScheduleKeyDeletion`, as CloudTrail wrote it.
    pub deletion_date: Option<String>,
    pub key_state: Option<String>,
    /// For IAM findings: the access key and its user.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
}

/// Every built-in rule that matches `record`.
pub fn evaluate(record: &Record) -> Vec<Finding> {
    BUILTIN
        .iter()
        .filter(|rule| (rule.matches)(record))
        .map(|rule| finding(rule, record))
        .collect()
}

fn finding(rule: &Rule, r: &Record) -> Finding {
    let identity = r.user_identity.as_ref();
    Finding {
        rule_id: rule.id.to_owned(),
        severity: rule.severity,
        actions: rule.actions.to_vec(),
        event_id: r.event_id().to_owned(),
        event_name: r.name().to_owned(),
        event_source: r.source().to_owned(),
        event_time: r.event_time.clone(),
        region: r.aws_region.clone(),
        account: r.account().map(str::to_owned),
        key_arn: if r.source().starts_with("kms") {
            key_arn(r)
        } else {
            None
        },
        key_alias: key_alias(r),
        principal_arn: r.principal_arn().map(str::to_owned),
        principal_type: identity.and_then(|i| i.kind.clone()),
        source_ip: r.source_ip_address.clone(),
        user_agent: r.user_agent.clone(),
        error_code: r.error_code.clone(),
        error_message: r.error_message.clone(),
        deletion_date: r.response_str("deletionDate").map(str::to_owned),
        key_state: r.response_str("keyState").map(str::to_owned),
        access_key_id: r.request_str("accessKeyId").map(str::to_owned).or_else(|| {
            let created = r.response_elements.as_ref()?.get("accessKey")?;
            created.get("accessKeyId")?.as_str().map(str::to_owned)
        }),
        user_name: r.request_str("userName").map(str::to_owned),
    }
}

fn is_key_arn(s: &str) -> bool {
    s.starts_with("arn:") && s.split(':').nth(2) == Some("kms") && s.contains(":key/")
}

/// The key ARN a record is about (see the module docs for the order).
pub fn key_arn(r: &Record) -> Option<String> {
    if let Some(msg) = r.error_message.as_deref()
        && let Some(first) = msg.split_whitespace().next()
        && is_key_arn(first)
    {
        return Some(first.to_owned());
    }
    if let Some(id) = r.response_str("keyId").filter(|k| is_key_arn(k)) {
        return Some(id.to_owned());
    }
    let from_resources = r.resources.as_ref().and_then(|rs| {
        rs.iter()
            .filter_map(|res| res.arn.as_deref())
            .find(|arn| is_key_arn(arn))
            .map(str::to_owned)
    });
    if from_resources.is_some() {
        return from_resources;
    }
    let id = r.request_str("keyId")?;
    if is_key_arn(id) {
        return Some(id.to_owned());
    }
    if id.starts_with("alias/") || id.starts_with("arn:") {
        return None;
    }
    let (region, account) = (r.aws_region.as_deref()?, r.account()?);
    Some(format!("arn:aws:kms:{region}:{account}:key/{id}"))
}

/// The alias a caller named the key by, if any (`alias/...` or an alias ARN).
pub fn key_alias(r: &Record) -> Option<String> {
    let p = r.request_parameters.as_ref()?;
    ["keyId", "aliasName", "targetKeyId"].iter().find_map(|k| {
        let v = p.get(*k)?.as_str()?;
        if v.starts_with("alias/") {
            Some(v.to_owned())
        } else {
            v.split_once(":alias/").map(|(_, a)| format!("alias/{a}"))
        }
    })
}

#[cfg(test)]
mod tests;
