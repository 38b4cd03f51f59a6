//! Key policy findings. Pure: the policy is the JSON text `GetKeyPolicy` returns.
//!
//! Read as IAM reads it: `Statement` is one object or a list; `Principal` is `"*"` or a map of
//! `AWS` (ARNs, or account ids standing for the account's root), `Service`, `Federated`;
//! `Action` / `NotAction` are strings or lists of case-insensitive globs; an `Allow` with
//! `NotPrincipal` allows everyone but the principals named. Only `Allow` statements grant;
//! `Deny` statements are not subtracted (a finding may be one a `Deny` already mitigates: the
//! finding names the statement to check).

use serde_json::Value;

use super::{AuditFinding, AuditPolicy, KeyInfo, ids};
use crate::arn::Arn;
use crate::rules::Severity;

/// The actions that can destroy a key or lock its owners out.
pub const DESTRUCTIVE: &[&str] = &["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy"];

/// One statement, as far as the audit reads it.
#[derive(Debug, Clone)]
struct Statement {
    /// The Sid, else the index.
    id: Value,
    allow: bool,
    /// `AWS` principals (`*` for everyone; `Principal: "*"` and `NotPrincipal` give `*`).
    principals: Vec<String>,
    actions: Vec<String>,
    not_actions: Option<Vec<String>>,
    conditioned: bool,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn statement(i: usize, s: &Value) -> Statement {
    let id = s
        .get("Sid")
        .and_then(Value::as_str)
        .filter(|sid| !sid.is_empty())
        .map_or_else(|| Value::from(i), Value::from);
    let principals = if s.get("NotPrincipal").is_some() {
        vec!["*".to_owned()]
    } else {
        match s.get("Principal") {
            Some(Value::String(p)) if p == "*" => vec!["*".to_owned()],
            Some(Value::Object(m)) => strings(m.get("AWS")),
            _ => Vec::new(),
        }
    };
    Statement {
        id,
        allow: s.get("Effect").and_then(Value::as_str) == Some("Allow"),
        principals,
        actions: strings(s.get("Action")),
        not_actions: s.get("NotAction").map(|v| strings(Some(v))),
        conditioned: s
            .get("Condition")
            .and_then(Value::as_object)
            .is_some_and(|c| !c.is_empty()),
    }
}

/// Whether an IAM action glob (`kms:*`, `kms:Disable*`, `*`) covers `action`.
fn covers(glob: &str, action: &str) -> bool {
    crate::glob::matches(&glob.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

impl Statement {
    fn grants(&self, action: &str) -> bool {
        match &self.not_actions {
            Some(not) => !not.iter().any(|g| covers(g, action)),
            None => self.actions.iter().any(|g| covers(g, action)),
        }
    }
}

/// The account a principal belongs to (`*` for any), if it names one.
fn account_of(p: &str) -> Option<&str> {
    if p == "*" {
        return Some("*");
    }
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Some(p);
    }
    Arn::parse(p).map(|a| a.account)
}

/// Whether a principal is the account's root (`arn:aws:iam::ACCOUNT:root`, or the bare id).
fn is_root_of(p: &str, account: &str) -> bool {
    p == account
        || Arn::parse(p).is_some_and(|a| a.service == "iam" && a.account == account && a.resource == "root")
}

/// The policy's statements, or why it cannot be read.
fn parse(text: &str) -> Result<Vec<Statement>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err("no Statement".into()),
    };
    Ok(list.iter().enumerate().map(|(i, s)| statement(i, s)).collect())
}

fn finding(
    id: &'static str,
    severity: Severity,
    key: &KeyInfo,
    statement: Value,
    message: String,
) -> AuditFinding {
    AuditFinding {
        id,
        severity,
        key_arn: key.arn.clone(),
        statement,
        message,
    }
}

/// The findings of a key's policy text.
pub fn findings(key: &KeyInfo, text: &str, admins: &AuditPolicy) -> Vec<AuditFinding> {
    let statements = match parse(text) {
        Ok(s) => s,
        Err(why) => {
            return vec![finding(
                ids::UNREADABLE,
                Severity::High,
                key,
                Value::Null,
                format!("the key policy cannot be read ({why}): nothing in it could be checked"),
            )];
        }
    };
    let mut out = Vec::new();
    let account = key.account.as_str();
    let root = format!("arn:{}:iam::{account}:root", key.partition());
    // NOTE: what keeps a key manageable is that the account (through IAM) can always change its
    // policy: AWS's default policy gives the root kms:*, and the console warns when that goes.
    let root_ok = statements.iter().any(|s| {
        s.allow && s.grants("kms:PutKeyPolicy") && s.principals.iter().any(|p| is_root_of(p, account))
    });
    if !root_ok {
        out.push(finding(
            ids::NO_ROOT_STATEMENT,
            Severity::High,
            key,
            Value::Null,
            format!(
                "no statement allows the account's root ({root}) to change the key policy (AWS's default gives it kms:*): IAM policies cannot grant access to the key, and if the principals the policy names are deleted, nobody can manage it (only AWS Support can restore access)"
            ),
        ));
    }
    for s in statements.iter().filter(|s| s.allow) {
        let public = s
            .principals
            .iter()
            .any(|p| p == "*" || account_of(p) == Some("*"));
        if public && !s.conditioned {
            out.push(finding(
                ids::PUBLIC_PRINCIPAL,
                Severity::Critical,
                key,
                s.id.clone(),
                format!(
                    "the statement allows any principal (\"*\") {} without conditions: anyone with an AWS account can use the key within what the statement allows",
                    s.actions_text()
                ),
            ));
        }
        let foreign: Vec<&String> = s
            .principals
            .iter()
            .filter(|p| account_of(p).is_some_and(|a| a != "*" && a != account))
            .collect();
        if !foreign.is_empty() && !s.conditioned {
            out.push(finding(
                ids::CROSS_ACCOUNT,
                Severity::High,
                key,
                s.id.clone(),
                format!(
                    "the statement allows another account's principals ({}) {} without conditions",
                    join(&foreign),
                    s.actions_text()
                ),
            ));
        }
        let granted: Vec<&str> = DESTRUCTIVE.iter().copied().filter(|a| s.grants(a)).collect();
        if granted.is_empty() {
            continue;
        }
        let others: Vec<&String> = s
            .principals
            .iter()
            .filter(|p| !is_root_of(p, account) && !admins.is_admin(p, account))
            .collect();
        if !others.is_empty() {
            out.push(finding(
                ids::DESTRUCTIVE_ACTIONS,
                if public { Severity::Critical } else { Severity::Medium },
                key,
                s.id.clone(),
                format!(
                    "principals that are not key administrators ({}) are allowed {}: they can delete the key or lock its owners out (admins: the account root and audit.admin_principals)",
                    join(&others),
                    granted.join(", ")
                ),
            ));
        }
    }
    out
}

impl Statement {
    fn actions_text(&self) -> String {
        match &self.not_actions {
            Some(not) => format!("every action but {}", not.join(", ")),
            None => self.actions.join(", "),
        }
    }
}

fn join(items: &[&String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(|s| s.as_str()).collect();
    let more = items.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
