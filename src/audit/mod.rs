//! `trailguard keys audit`: what is wrong with the account's customer-managed keys, before it
//! becomes an outage. Pure: [`findings`] takes what KMS says of one key (metadata, policy text,
//! rotation status, aliases, recent use when pending deletion) and returns its findings; the
//! calls that gather it are in [`inventory`] (not pure), the command line in `cli/keys.rs`.
//!
//! | id | severity | when |
//! |---|---|---|
//! | `kms_key_pending_deletion` | critical if used within `kms.usage_window` (or unknown), else high | the key is scheduled for deletion: its date and recent use |
//! | `kms_key_disabled` | low | the key is disabled |
//! | `kms_key_rotation_disabled` | medium | automatic rotation is off on a symmetric key with KMS key material (CIS AWS 3.6) |
//! | `kms_key_no_root_statement` | high | no statement lets the account's root change the key policy: the key can become unmanageable |
//! | `kms_key_public_principal` | critical | an `Allow` to `"*"` (or `NotPrincipal`) without conditions |
//! | `kms_key_cross_account_unconditioned` | high | an `Allow` to another account's principals without conditions |
//! | `kms_key_destructive_actions_granted` | medium (critical for `"*"`) | principals other than admins may `ScheduleKeyDeletion`, `DisableKey` or `PutKeyPolicy` |
//! | `kms_key_no_alias` | low | the key has no alias: nobody can tell what it is for |
//! | `kms_key_unreadable` | high | the policy, rotation status or metadata could not be read |
//!
//! **Admins** are the account's root, `audit.admin_principals` (ARN globs; default
//! `arn:aws:iam::*:role/*Admin*` and `arn:aws:iam::*:role/*admin*`) and `kms.allowed_principals`
//! (whom the daemon already lets disable or delete keys).

pub mod config;
pub mod inventory;
mod policy;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::rules::Severity;
use crate::usage::{Usage, Verdict};

pub use policy::DESTRUCTIVE;

/// Finding ids.
pub mod ids {
    pub const PENDING_DELETION: &str = "kms_key_pending_deletion";
    pub const DISABLED: &str = "kms_key_disabled";
    pub const ROTATION_DISABLED: &str = "kms_key_rotation_disabled";
    pub const NO_ROOT_STATEMENT: &str = "kms_key_no_root_statement";
    pub const PUBLIC_PRINCIPAL: &str = "kms_key_public_principal";
    pub const CROSS_ACCOUNT: &str = "kms_key_cross_account_unconditioned";
    pub const DESTRUCTIVE_ACTIONS: &str = "kms_key_destructive_actions_granted";
    pub const NO_ALIAS: &str = "kms_key_no_alias";
    pub const UNREADABLE: &str = "kms_key_unreadable";
}

/// Who counts as a key administrator (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPolicy {
    /// ARN globs.
    pub admins: Vec<String>,
    /// For the recent use of keys pending deletion.
    pub usage_window: std::time::Duration,
}

/// The default `audit.admin_principals`.
pub const DEFAULT_ADMINS: &[&str] = &["arn:aws:iam::*:role/*Admin*", "arn:aws:iam::*:role/*admin*"];

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            admins: DEFAULT_ADMINS.iter().map(|s| (*s).to_owned()).collect(),
            usage_window: std::time::Duration::from_secs(30 * 86400),
        }
    }
}

impl AuditPolicy {
    /// Whether `principal` administers keys of `account`: a glob matches it, and it is of
    /// `account` unless the glob names its account literally (a glob's `*` account never makes
    /// another account's `role/Admin` an administrator of this account's keys).
    pub fn is_admin(&self, principal: &str, account: &str) -> bool {
        let of = crate::arn::Arn::parse(principal).map(|a| a.account);
        self.admins.iter().any(|g| {
            crate::glob::matches(g, principal)
                && (of == Some(account) || crate::arn::Arn::parse(g).is_some_and(|a| Some(a.account) == of))
        })
    }
}

/// What KMS says of one customer-managed key. A read that failed is `Err(why)`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub arn: String,
    pub account: String,
    pub region: String,
    /// `KeyState` (`Enabled`, `Disabled`, `PendingDeletion`, ...).
    pub state: String,
    pub deletion_date: Option<DateTime<Utc>>,
    /// `KeySpec` (`SYMMETRIC_DEFAULT`, `RSA_2048`, `HMAC_256`, ...).
    pub key_spec: String,
    /// `Origin` (`AWS_KMS`, `EXTERNAL`, `AWS_CLOUDHSM`, `EXTERNAL_KEY_STORE`).
    pub origin: String,
    pub policy: Result<String, String>,
    /// `None`: rotation does not apply (asymmetric, HMAC, imported material, pending deletion).
    pub rotation: Option<Result<bool, String>>,
    pub aliases: Result<Vec<String>, String>,
    /// Looked up for keys pending deletion.
    pub usage: Option<Usage>,
}

impl KeyInfo {
    pub fn partition(&self) -> &str {
        crate::arn::Arn::parse(&self.arn).map_or("aws", |a| a.partition)
    }

    /// Whether automatic rotation applies: symmetric encryption keys with KMS key material.
    pub fn rotates(spec: &str, origin: &str) -> bool {
        spec == "SYMMETRIC_DEFAULT" && origin == "AWS_KMS"
    }

    fn name(&self) -> String {
        match &self.aliases {
            Ok(a) if !a.is_empty() => a.join(", "),
            _ => crate::arn::short_name(&self.arn).to_owned(),
        }
    }
}

/// One finding: a JSON line of `trailguard keys audit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFinding {
    pub id: &'static str,
    pub severity: Severity,
    pub key_arn: String,
    /// The policy statement: its `Sid`, else its index; `null` when it is about no statement.
    pub statement: Value,
    pub message: String,
}

fn key_finding(id: &'static str, severity: Severity, k: &KeyInfo, message: String) -> AuditFinding {
    AuditFinding {
        id,
        severity,
        key_arn: k.arn.clone(),
        statement: Value::Null,
        message,
    }
}

/// Every finding about one key, most severe first.
pub fn findings(k: &KeyInfo, p: &AuditPolicy) -> Vec<AuditFinding> {
    let mut out = Vec::new();
    let name = k.name();
    match k.state.as_str() {
        "PendingDeletion" | "PendingReplicaDeletion" => {
            let when = k
                .deletion_date
                .map(|d| format!("on {}", d.to_rfc3339()))
                .unwrap_or_else(|| "once its replicas are deleted".into());
            let window = format!("within the last {}", crate::usage::human(p.usage_window));
            let (severity, use_text) = match &k.usage {
                Some(u) if u.verdict() == Verdict::Unused => (Severity::High, u.summary(&window)),
                Some(u) => (Severity::Critical, u.summary(&window)),
                None => (Severity::High, "its recent use was not looked up".into()),
            };
            out.push(key_finding(
                ids::PENDING_DELETION,
                severity,
                k,
                format!("{name} is scheduled for deletion {when}; {use_text}"),
            ));
        }
        "Disabled" => out.push(key_finding(
            ids::DISABLED,
            Severity::Low,
            k,
            format!("{name} is disabled: every call that uses it fails"),
        )),
        _ => {}
    }
    match &k.rotation {
        Some(Ok(false)) => out.push(key_finding(
            ids::ROTATION_DISABLED,
            Severity::Medium,
            k,
            format!("automatic rotation is off for the symmetric key {name} (CIS AWS Foundations 3.6)"),
        )),
        Some(Err(why)) => out.push(key_finding(
            ids::UNREADABLE,
            Severity::High,
            k,
            format!("the rotation status of {name} cannot be read ({why})"),
        )),
        _ => {}
    }
    match &k.policy {
        Ok(text) => out.extend(policy::findings(k, text, p)),
        Err(why) => out.push(key_finding(
            ids::UNREADABLE,
            Severity::High,
            k,
            format!("the key policy of {name} cannot be read ({why}): nothing in it could be checked"),
        )),
    }
    match &k.aliases {
        Ok(a) if a.is_empty() => out.push(key_finding(
            ids::NO_ALIAS,
            Severity::Low,
            k,
            format!("{name} has no alias: nobody can tell what it is for or who owns it"),
        )),
        Err(why) => out.push(key_finding(
            ids::UNREADABLE,
            Severity::High,
            k,
            format!("the aliases of {name} cannot be read ({why})"),
        )),
        _ => {}
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// A failure to read a key or a region at all.
pub fn unreadable(key_arn: &str, what: &str, why: &str) -> AuditFinding {
    AuditFinding {
        id: ids::UNREADABLE,
        severity: Severity::High,
        key_arn: key_arn.to_owned(),
        statement: Value::Null,
        message: format!("{what} cannot be read ({why})"),
    }
}
