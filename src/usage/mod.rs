//! Whether a key is still used: the answer AWS's own guidance asks for before deleting a KMS key
//! ("determine past usage" from CloudTrail), at the moment someone schedules the deletion (or
//! disables the key), and again before the deletion date ([`reminders`]). Pure: the records come
//! from event history (`LookupEvents` by `ResourceName` = the key ARN, newest first, at most
//! `kms.usage_lookup_pages` pages, read by [`crate::sources::usage`]); every question takes its
//! times as arguments.
//!
//! # What counts as a use
//!
//! A call of a cryptographic operation on the key (`Encrypt`, `Decrypt`, `ReEncrypt`,
//! `GenerateDataKey*`, `Sign`, `Verify`, `GenerateMac`, `VerifyMac`, `GetPublicKey`,
//! `DeriveSharedSecret`) or `CreateGrant` (how AWS services such as EBS arrange to use a key
//! later), recorded for the key in the window, whether it succeeded or failed: a call refused
//! because the key is disabled or pending deletion is an application that still needs the key.
//! Not counted: management and read-only calls (`DescribeKey`, `ListAliases`, `GetKeyPolicy`:
//! auditors and consoles), calls refused with `AccessDenied*` (a caller the key does not serve),
//! records of other services (event history's own `LookupEvents`), and trailguard's own calls.
//!
//! **The caller who scheduled the deletion counts.** If an application role's credentials are
//! used to schedule the deletion of the key that role uses, not counting the role's own calls
//! would make the key look unused and let the deletion through. So every caller counts; the
//! notification says how many of the calls were the scheduler's own, for the reader to judge.
//!
//! # Never "unused" by mistake
//!
//! A lookup that ran out of its page budget reports "at least N calls"; one that failed, or read
//! some pages and found no use before the budget ran out, reports the use as **unknown**, with
//! the reason. Only a lookup that read every event of the window and found no use says "not
//! used". With `kms.on_schedule_deletion_of_used_key = "cancel_key_deletion"`, an unknown use is
//! treated as a use (the deletion is cancelled unless an exemption or an allowed principal
//! covers it), and the notification says so: trailguard fails toward keeping the key.

pub mod reminders;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::Record;
use crate::plan::{self, Decision, KeyFacts, Policy};
use crate::rules::{self, Action};

/// The rule id of a reminder before a key's deletion date.
pub const DELETION_REMINDER: &str = "kms_key_deletion_reminder";

/// Calls that use a key.
pub const USES: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "Sign",
    "Verify",
    "GetPublicKey",
    "DeriveSharedSecret",
    "CreateGrant",
];

/// What to do when a key used within `kms.usage_window` is scheduled for deletion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUsedKey {
    #[default]
    Notify,
    CancelKeyDeletion,
}

impl OnUsedKey {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUsedKey::Notify => "notify",
            OnUsedKey::CancelKeyDeletion => "cancel_key_deletion",
        }
    }
}

/// The usage settings of `[kms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePolicy {
    /// How far back a use counts (`kms.usage_window`); zero turns usage lookups off.
    pub window: Duration,
    /// At most this many `LookupEvents` pages (50 events each) per lookup.
    pub pages: usize,
    pub on_used: OnUsedKey,
    /// Reminders before the deletion date (`kms.reminders`), longest first.
    pub reminders: Vec<Duration>,
    /// How often keys pending deletion are checked for a due reminder.
    pub reminder_interval: Duration,
}

impl Default for UsagePolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30 * 86400),
            pages: 5,
            on_used: OnUsedKey::Notify,
            reminders: vec![Duration::from_secs(7 * 86400), Duration::from_secs(86400)],
            reminder_interval: Duration::from_secs(3600),
        }
    }
}

impl UsagePolicy {
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

/// A duration as people write it in the config (`30d`, `1h 30m`).
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// One caller of the key: an IAM user or role (all sessions of an assumed role together), an
/// AWS service, or the account root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub principal: String,
    pub calls: u64,
    pub last_use: Option<DateTime<Utc>>,
}

/// What event history says of a key's use in `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub calls: u64,
    /// Most calls first.
    pub callers: Vec<Caller>,
    pub last_use: Option<DateTime<Utc>>,
    /// Calls among `calls` made by the caller the finding is about (who scheduled or disabled).
    pub by_scheduler: u64,
    /// The operations seen, with their counts.
    pub operations: BTreeMap<String, u64>,
    pub events_read: u64,
    pub pages: u32,
    /// Why not every event of the window was read (the page budget, a failed page, the
    /// deadline): the counts are then lower bounds. `None`: complete.
    pub incomplete: Option<String>,
}

/// What a usage lookup means for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Used,
    /// Every event of the window was read, and none was a use.
    Unused,
    Unknown,
}

impl Usage {
    /// A lookup that read nothing: the use is unknown, for `why`.
    pub fn unknown(from: DateTime<Utc>, to: DateTime<Utc>, why: impl Into<String>) -> Self {
        Self {
            incomplete: Some(why.into()),
            ..Self::none(from, to)
        }
    }

    /// No use found (yet) between `from` and `to`.
    fn none(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            from,
            to,
            calls: 0,
            callers: Vec::new(),
            last_use: None,
            by_scheduler: 0,
            operations: BTreeMap::new(),
            events_read: 0,
            pages: 0,
            incomplete: None,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match (self.calls, &self.incomplete) {
            (0, None) => Verdict::Unused,
            (0, Some(_)) => Verdict::Unknown,
            _ => Verdict::Used,
        }
    }

    /// One line for people: "at least 250 calls by 3 callers ..." or "usage unknown: ...".
    pub fn summary(&self, window: &str) -> String {
        let at_least = if self.incomplete.is_some() {
            "at least "
        } else {
            ""
        };
        match self.verdict() {
            Verdict::Unknown => format!(
                "usage unknown: {} ({} events read)",
                self.incomplete.as_deref().unwrap_or("-"),
                self.events_read
            ),
            Verdict::Unused => format!("not used {window} ({} events of the key read)", self.events_read),
            Verdict::Used => {
                let n = self.callers.len();
                let mut s = format!(
                    "{at_least}{} call{} by {at_least}{n} caller{} {window}, last at {}",
                    self.calls,
                    plural(self.calls),
                    plural(n as u64),
                    self.last_use
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                );
                if self.by_scheduler > 0 {
                    s.push_str(&format!(
                        "; {} of them by the caller this notification is about",
                        self.by_scheduler
                    ));
                }
                if let Some(why) = &self.incomplete {
                    s.push_str(&format!(" ({why})"));
                }
                s
            }
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A principal, as a finding names it: the caller's ARN and the role its session was issued for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    pub principal: Option<String>,
    pub session_issuer: Option<String>,
}

impl Who {
    /// The caller a use is counted under: the role for an assumed-role session (all its sessions
    /// are one application), else the ARN, else the service that called.
    fn caller_of(r: &Record) -> String {
        let id = r.user_identity.as_ref();
        let issuer = id
            .and_then(|i| i.session_context.as_ref())
            .and_then(|c| c.session_issuer.as_ref())
            .and_then(|s| s.arn.clone());
        let role = r
            .principal_arn()
            .and_then(crate::arn::Arn::parse)
            .and_then(|a| a.session_role());
        issuer
            .or(role)
            .or_else(|| r.principal_arn().map(str::to_owned))
            .or_else(|| id.and_then(|i| i.invoked_by.clone()))
            .unwrap_or_else(|| {
                format!(
                    "unknown caller ({})",
                    id.and_then(|i| i.kind.as_deref()).unwrap_or("no identity")
                )
            })
    }

    /// Whether a record's caller is this principal (any session of the same role included).
    fn made(&self, r: &Record) -> bool {
        let own = [self.principal.as_deref(), self.session_issuer.as_deref()];
        let own_role = self
            .principal
            .as_deref()
            .and_then(crate::arn::Arn::parse)
            .and_then(|a| a.session_role());
        let theirs = Self::caller_of(r);
        r.principal_arn().is_some_and(|p| own.contains(&Some(p)))
            || own.contains(&Some(theirs.as_str()))
            || own_role.as_deref() == Some(theirs.as_str())
    }
}

/// Counts the uses of `key_arn` in `[from, to]`, record by record (in any order; a record read
/// twice counts once).
#[derive(Debug)]
pub struct Tally<'a> {
    key_arn: &'a str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    scheduler: Who,
    seen: HashSet<String>,
    callers: BTreeMap<String, Caller>,
    usage: Usage,
}

/// Whether a record is a use (see the module docs), ignoring who made it.
pub fn is_use(r: &Record) -> bool {
    r.source() == "kms.amazonaws.com"
        && USES.contains(&r.name())
        && !r
            .error_code
            .as_deref()
            .is_some_and(|c| c.starts_with("AccessDenied"))
}

fn names_key(r: &Record, key_arn: &str) -> bool {
    r.resources
        .iter()
        .flatten()
        .any(|res| res.arn.as_deref() == Some(key_arn))
        || rules::key_arn(r).as_deref() == Some(key_arn)
}

impl<'a> Tally<'a> {
    pub fn new(key_arn: &'a str, from: DateTime<Utc>, to: DateTime<Utc>, scheduler: Who) -> Self {
        Self {
            key_arn,
            from,
            to,
            scheduler,
            seen: HashSet::new(),
            callers: BTreeMap::new(),
            usage: Usage::none(from, to),
        }
    }

    /// Adds one record; `own` tells trailguard's own calls, which never count.
    pub fn add(&mut self, r: &Record, own: &dyn Fn(&Record) -> bool) {
        if !self.seen.insert(r.event_id().to_owned()) {
            return;
        }
        self.usage.events_read += 1;
        let Some(t) = r
            .event_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
        else {
            return;
        };
        if t < self.from || t > self.to || !is_use(r) || !names_key(r, self.key_arn) || own(r) {
            return;
        }
        let u = &mut self.usage;
        u.calls += 1;
        u.last_use = u.last_use.max(Some(t));
        *u.operations.entry(r.name().to_owned()).or_default() += 1;
        if self.scheduler.made(r) {
            u.by_scheduler += 1;
        }
        let who = Who::caller_of(r);
        let c = self.callers.entry(who.clone()).or_insert(Caller {
            principal: who,
            calls: 0,
            last_use: None,
        });
        c.calls += 1;
        c.last_use = c.last_use.max(Some(t));
    }

    /// A page was read.
    pub fn page(&mut self) {
        self.usage.pages += 1;
    }

    /// The result; `incomplete` says why the window was not read to its start, if it was not.
    pub fn finish(mut self, incomplete: Option<String>) -> Usage {
        let mut callers: Vec<Caller> = self.callers.into_values().collect();
        callers.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.principal.cmp(&b.principal)));
        self.usage.callers = callers;
        self.usage.incomplete = incomplete;
        self.usage
    }
}

/// Decides what to do about a scheduled deletion (or a reminder of one) given the key's use:
/// with `kms.on_schedule_deletion_of_used_key = "cancel_key_deletion"`, a used key's deletion
/// is cancelled unless an exemption or an allowed principal covers it, judged as the protection
/// policy judges ([`plan::judge`]), as of `at` (the event's time). An unknown use counts as a use
/// at scheduling time; at a reminder (`reminder`), only a use seen since scheduling cancels (the
/// key was judged when it was scheduled; an unknown is reported, not acted on). `None` when the
/// rule is not one this decides.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    p: &Policy,
    usage_policy: &UsagePolicy,
    rule_id: &str,
    arn: &str,
    (principal, issuer): (Option<&str>, Option<&str>),
    facts: &KeyFacts,
    at: DateTime<Utc>,
    usage: &Usage,
) -> Option<Decision> {
    let reminder = rule_id == DELETION_REMINDER;
    if !reminder && rule_id != rules::KEY_DELETION_SCHEDULED {
        return None;
    }
    let key = "kms.on_schedule_deletion_of_used_key";
    let since = if reminder {
        "since it was scheduled for deletion".to_owned()
    } else {
        format!("within kms.usage_window ({})", human(usage_policy.window))
    };
    let why = match usage.verdict() {
        Verdict::Unused => {
            return Some(Decision {
                actions: vec![Action::Notify],
                reason: format!("the key was not used {since}: the deletion goes ahead"),
            });
        }
        Verdict::Unknown if reminder => {
            return Some(Decision {
                actions: vec![Action::Notify],
                reason: format!(
                    "the key's use {since} is unknown ({}): reported, not acted on at a reminder",
                    usage.incomplete.as_deref().unwrap_or("-")
                ),
            });
        }
        Verdict::Unknown => format!(
            "the key's use {since} is unknown ({}), and an unknown use counts as a use",
            usage.incomplete.as_deref().unwrap_or("-")
        ),
        Verdict::Used => format!("the key was used {since}"),
    };
    if usage_policy.on_used == OnUsedKey::Notify {
        return Some(Decision {
            actions: vec![Action::Notify],
            reason: format!("{why}; {key} = \"notify\": reported, not cancelled"),
        });
    }
    Some(plan::judge(
        p,
        &why,
        arn,
        (principal, issuer),
        facts,
        at,
        (
            vec![Action::CancelKeyDeletion, Action::Notify],
            &format!("{key} = \"cancel_key_deletion\""),
        ),
    ))
}
