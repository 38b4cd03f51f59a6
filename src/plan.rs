//! The protection policy (`[kms]`): which keys must never be disabled or deleted, who may do it
//! anyway, and what trailguard does otherwise. Pure: the caller resolves a key's aliases and tags
//! (through KMS, cached) and passes `now`.
//!
//! For a finding of `kms_key_disabled` or `kms_key_deletion_scheduled` the decision is, in order:
//! 1. the key is not protected: the rule's own actions (notify);
//! 2. a time-limited exemption covers the key: notify only (an approved change is not fought).
//!    An exemption is matched only against aliases no stranger gave the key: a caller outside
//!    `kms.allowed_principals` who adds `alias/retired-x` to a protected key does not exempt it;
//! 3. the caller matches `kms.allowed_principals`: notify only, never reverted;
//! 4. otherwise `kms.on_disable` (`notify` | `enable_key`) or `kms.on_schedule_deletion`
//!    (`notify` | `cancel_key_deletion`).
//!
//! For `kms_pending_deletion_use`, an exemption covering the key means the deletion was
//! approved: its use is notified loudly, and the deletion is not cancelled (otherwise anyone
//! allowed to use a key could keep it alive by calling `Decrypt` once per window).
//!
//! Everything is judged as of the event: the key's facts at the event's time (see
//! [`crate::protection`]) and an exemption's expiry against the event's date, so a finding
//! handled late is decided as it would have been on time. A principal glob matches the caller's
//! ARN, the role its session was issued for (`sessionIssuer.arn`), and that role's ARN without
//! its path: `arn:aws:iam::111122223333:role/KeyAdmin` covers every session of the role.
//!
//! Every decision names the policy line that made it, for logs and notifications.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::glob::matches as glob;
use crate::rules::{self, Action, Finding};

/// A key the policy protects: a key id, a key ARN, an alias glob (`alias/prod-*`) or a tag
/// (`tag:trailguard:protect=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protected {
    Key(String),
    Alias(String),
    Tag(String, String),
}

/// Whether `s` is a KMS key id: a UUID, or a multi-Region key id (`mrk-` and 32 hex digits).
fn is_key_id(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(m) = s.strip_prefix("mrk-") {
        return hex(m, 32);
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5 && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| hex(p, *n))
}

/// Checks a key given as a key id, a key ARN or an alias glob: one that can never match a key
/// is an error (an alias ARN, another service's ARN, a typo).
pub fn check_key_spec(s: &str) -> Result<(), String> {
    if s.starts_with("alias/") || is_key_id(s) || crate::arn::is_kms_key(s) {
        return Ok(());
    }
    match crate::arn::Arn::parse(s) {
        Some(a) if a.kms_alias().is_some() => Err(format!(
            "{s:?} is an alias ARN, which never names a key in CloudTrail: write {:?}",
            a.resource
        )),
        Some(_) => Err(format!(
            "{s:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        )),
        None => Err(format!(
            "{s:?} is not a key id (a UUID or mrk-...), key ARN, alias/... glob or tag:KEY=VALUE"
        )),
    }
}

impl Protected {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(tag) = s.strip_prefix("tag:") {
            let (k, v) = tag
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{s:?}: a tag is tag:KEY=VALUE"))?;
            return Ok(Protected::Tag(k.to_owned(), v.to_owned()));
        }
        check_key_spec(s)?;
        if s.starts_with("alias/") {
            return Ok(Protected::Alias(s.to_owned()));
        }
        Ok(Protected::Key(s.to_owned()))
    }
}

/// A time-limited exemption: this key may be disabled or deleted until the date.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyExemption {
    /// Key id, key ARN or alias glob.
    pub key: String,
    /// Last day it applies (inclusive).
    pub expires: NaiveDate,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisable {
    #[default]
    Notify,
    EnableKey,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnScheduleDeletion {
    #[default]
    Notify,
    CancelKeyDeletion,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub protected: Vec<Protected>,
    pub on_disable: OnDisable,
    pub on_schedule_deletion: OnScheduleDeletion,
    pub allowed_principals: Vec<String>,
    pub exemptions: Vec<KeyExemption>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.protected.is_empty()
    }

    /// Whether this policy needs the key's aliases or tags.
    pub fn needs_aliases(&self) -> bool {
        self.protected.iter().any(|p| matches!(p, Protected::Alias(_)))
            || self.exemptions.iter().any(|e| e.key.starts_with("alias/"))
    }

    pub fn needs_tags(&self) -> bool {
        self.protected.iter().any(|p| matches!(p, Protected::Tag(..)))
    }
}

/// What KMS says about a key, for the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    pub aliases: Vec<String>,
    pub tags: Vec<(String, String)>,
}

fn key_matches(pattern: &str, arn: &str, facts: &KeyFacts) -> bool {
    if pattern.starts_with("alias/") {
        return facts.aliases.iter().any(|a| glob(pattern, a));
    }
    pattern == arn || crate::arn::Arn::parse(arn).and_then(|a| a.kms_key_id()) == Some(pattern)
}

/// The decision for one finding, and the policy line that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub reason: String,
}

/// Which policy line protects the key, if any.
pub fn protected_by(p: &Policy, arn: &str, facts: &KeyFacts) -> Option<String> {
    p.protected.iter().enumerate().find_map(|(i, prot)| {
        let hit = match prot {
            Protected::Key(k) => key_matches(k, arn, facts),
            Protected::Alias(a) => facts.aliases.iter().any(|x| glob(a, x)),
            // "*": a tag whose value is not known (removed by an untag).
            Protected::Tag(k, v) => facts
                .tags
                .iter()
                .any(|(tk, tv)| tk == k && (tv == v || tv == "*")),
        };
        hit.then(|| {
            let text = match prot {
                Protected::Key(k) => k.clone(),
                Protected::Alias(a) => a.clone(),
                Protected::Tag(k, v) => format!("tag:{k}={v}"),
            };
            format!("kms.protected_keys[{i}] ({text})")
        })
    })
}

/// Which of `allowed` (ARN globs) accepts a caller: by its ARN, the role its session was issued
/// for, or that role's ARN without its path.
pub fn principal_allowed<'p>(
    allowed: &'p [String],
    principal: Option<&str>,
    session_issuer: Option<&str>,
) -> Option<(usize, &'p String)> {
    let role = principal
        .and_then(crate::arn::Arn::parse)
        .and_then(|a| a.session_role());
    let names: Vec<&str> = [principal, session_issuer, role.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    allowed
        .iter()
        .enumerate()
        .find(|(_, g)| names.iter().any(|n| glob(g, n)))
}

/// The exemption covering `arn` on `date`'s day, if any: (index, exemption).
pub fn exemption_for<'p>(
    p: &'p Policy,
    arn: &str,
    facts: &KeyFacts,
    at: DateTime<Utc>,
) -> Option<(usize, &'p KeyExemption)> {
    p.exemptions
        .iter()
        .enumerate()
        .find(|(_, e)| key_matches(&e.key, arn, facts) && at.date_naive() <= e.expires)
}

/// Decides what to do about a finding on a key (see the module docs), as of `at`: the event's
/// time. Protection and exemptions are both judged on `facts`.
pub fn decide(p: &Policy, f: &Finding, facts: &KeyFacts, at: DateTime<Utc>) -> Option<Decision> {
    decide_vouched(p, f, facts, facts, at)
}

/// [`decide`], with exemptions matched against `vouched`: the facts no caller outside
/// `kms.allowed_principals` gave the key ([`crate::protection`]), so that a stranger who adds an
/// exempt alias to a protected key does not exempt it.
pub fn decide_vouched(
    p: &Policy,
    f: &Finding,
    facts: &KeyFacts,
    vouched: &KeyFacts,
    at: DateTime<Utc>,
) -> Option<Decision> {
    let arn = f.key_arn.as_deref()?;
    if f.rule_id == rules::PENDING_DELETION_USE {
        let (i, e) = exemption_for(p, arn, vouched, at)?;
        return Some(Decision {
            actions: vec![Action::Notify],
            reason: format!(
                "kms.exemptions[{i}] ({}, until {}: {}) approves this key's deletion: its use is reported, the deletion is not cancelled",
                e.key, e.expires, e.reason
            ),
        });
    }
    decide_parts(
        p,
        &f.rule_id,
        &f.actions,
        arn,
        (f.principal_arn.as_deref(), f.session_issuer_arn.as_deref()),
        (facts, vouched),
        at,
    )
}

/// [`decide`] for a disable or a scheduled deletion, from the parts of a finding it reads
/// (also for `scan`, which reads records without building findings).
pub fn decide_for(
    p: &Policy,
    rule_id: &str,
    rule_actions: &[Action],
    key_arn: Option<&str>,
    principal_arn: Option<&str>,
    facts: &KeyFacts,
    at: DateTime<Utc>,
) -> Option<Decision> {
    decide_parts(
        p,
        rule_id,
        rule_actions,
        key_arn?,
        (principal_arn, None),
        (facts, facts),
        at,
    )
}

fn decide_parts(
    p: &Policy,
    rule_id: &str,
    rule_actions: &[Action],
    arn: &str,
    (principal, issuer): (Option<&str>, Option<&str>),
    (facts, vouched): (&KeyFacts, &KeyFacts),
    at: DateTime<Utc>,
) -> Option<Decision> {
    let is_disable = rule_id == rules::KEY_DISABLED;
    if !is_disable && rule_id != rules::KEY_DELETION_SCHEDULED {
        return None;
    }
    let Some(protection) = protected_by(p, arn, facts) else {
        return Some(Decision {
            actions: rule_actions.to_vec(),
            reason: "the key is not protected by kms.protected_keys".into(),
        });
    };
    let notify = || vec![Action::Notify];
    let (actions, line) = if is_disable {
        match p.on_disable {
            OnDisable::EnableKey => (
                vec![Action::EnableKey, Action::Notify],
                "kms.on_disable = \"enable_key\"",
            ),
            OnDisable::Notify => (notify(), "kms.on_disable = \"notify\""),
        }
    } else {
        match p.on_schedule_deletion {
            OnScheduleDeletion::CancelKeyDeletion => (
                vec![Action::CancelKeyDeletion, Action::Notify],
                "kms.on_schedule_deletion = \"cancel_key_deletion\"",
            ),
            OnScheduleDeletion::Notify => (notify(), "kms.on_schedule_deletion = \"notify\""),
        }
    };
    Some(judge(
        p,
        &format!("{protection} protects the key"),
        arn,
        (principal, issuer),
        vouched,
        at,
        (actions, line),
    ))
}

/// The judgement every policy that reverts a change shares, as of `at`: `why` the change matters
/// (a protected key, a used key); a time-limited exemption covering the key lets it through
/// (notify only); so does a caller in `kms.allowed_principals` (notified, not reverted);
/// otherwise `actions`, as the policy line `line` says. The reason names the line that decided.
/// Exemptions are matched against `vouched`: the facts no caller outside
/// `kms.allowed_principals` changed.
pub fn judge(
    p: &Policy,
    why: &str,
    arn: &str,
    (principal, issuer): (Option<&str>, Option<&str>),
    vouched: &KeyFacts,
    at: DateTime<Utc>,
    (actions, line): (Vec<Action>, &str),
) -> Decision {
    if let Some((i, e)) = exemption_for(p, arn, vouched, at) {
        return Decision {
            actions: vec![Action::Notify],
            reason: format!(
                "{why}, but kms.exemptions[{i}] ({}, until {}: {}) allows this change",
                e.key, e.expires, e.reason
            ),
        };
    }
    if let Some((i, g)) = principal_allowed(&p.allowed_principals, principal, issuer) {
        return Decision {
            actions: vec![Action::Notify],
            reason: format!(
                "{why}; the caller is allowed by kms.allowed_principals[{i}] ({g}): notified, not reverted"
            ),
        };
    }
    Decision {
        actions,
        reason: format!("{why} and the caller is not allowed; {line}"),
    }
}

#[cfg(test)]
mod tests;
