//! `[kms]`: the protection policy and how a rescue ends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{KeyExemption, OnDisable, OnScheduleDeletion, Policy, Protected};
use crate::usage::{OnUsedKey, UsagePolicy};
use crate::validate::{Field, Problems, choice, duration, number};

crate::validated!(RawKms => KmsConfig, KmsConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawKms {
    pub enable_after_cancel: Field<bool>,
    pub protected_keys: Field<Vec<String>>,
    pub on_disable: Field<String>,
    pub on_schedule_deletion: Field<String>,
    pub allowed_principals: Field<Vec<String>>,
    pub refresh_interval: Field<String>,
    pub exemptions: Field<Vec<KeyExemption>>,
    pub usage_window: Field<String>,
    pub usage_lookup_pages: Field<usize>,
    pub on_schedule_deletion_of_used_key: Field<String>,
    pub reminders: Field<Vec<String>>,
    pub reminder_interval: Field<String>,
}

#[derive(Debug, Clone)]
pub struct KmsConfig {
    pub enable_after_cancel: bool,
    /// The protection policy (empty: no key is protected).
    pub policy: Policy,
    /// How long a key's aliases and tags are cached for the policy and for notifications.
    pub refresh_interval: Duration,
    /// Usage lookups, the used-key policy and reminders.
    pub usage: UsagePolicy,
}

impl KmsConfig {
    pub fn from_raw(raw: RawKms, p: &mut Problems) -> Self {
        let policy = policy(
            raw.protected_keys,
            raw.on_disable,
            raw.on_schedule_deletion,
            raw.allowed_principals,
            raw.exemptions,
            p,
        );
        let refresh_interval = duration(
            p,
            "kms.refresh_interval",
            raw.refresh_interval,
            "10m",
            (Duration::from_secs(10), Duration::from_secs(24 * 3600)),
            "",
        );
        let usage = usage(
            raw.usage_window,
            raw.usage_lookup_pages,
            raw.on_schedule_deletion_of_used_key,
            raw.reminders,
            raw.reminder_interval,
            p,
        );
        Self {
            enable_after_cancel: raw
                .enable_after_cancel
                .get("kms.enable_after_cancel", p)
                .unwrap_or(false),
            policy,
            refresh_interval,
            usage,
        }
    }

    /// The policy alone, for `scan`.
    pub fn policy_from_raw(raw: RawKms, p: &mut Problems) -> Policy {
        Self::from_raw(raw, p).policy
    }
}

/// Exemption keys are checked as protected keys are: one that can never match is an error.
fn checked_exemptions(f: Field<Vec<KeyExemption>>, p: &mut Problems) -> Vec<KeyExemption> {
    let all = f.get("kms.exemptions", p).unwrap_or_default();
    for (i, e) in all.iter().enumerate() {
        if let Err(why) = crate::plan::check_key_spec(&e.key) {
            p.push(format!("kms.exemptions[{i}].key"), why);
        }
    }
    all
}

fn policy(
    protected_keys: Field<Vec<String>>,
    on_disable: Field<String>,
    on_schedule_deletion: Field<String>,
    allowed_principals: Field<Vec<String>>,
    exemptions: Field<Vec<KeyExemption>>,
    p: &mut Problems,
) -> Policy {
    let mut protected = Vec::new();
    for (i, k) in protected_keys
        .get("kms.protected_keys", p)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match Protected::parse(k) {
            Ok(prot) => protected.push(prot),
            Err(e) => p.push(format!("kms.protected_keys[{i}]"), e),
        }
    }
    let allowed = allowed_principals
        .get("kms.allowed_principals", p)
        .unwrap_or_default();
    for (i, g) in allowed.iter().enumerate() {
        if !g.starts_with("arn:") {
            p.push(
                format!("kms.allowed_principals[{i}]"),
                format!("{g:?} is not an ARN glob like arn:aws:sts::*:assumed-role/KeyAdmin/*"),
            );
        }
    }
    Policy {
        protected,
        on_disable: choice(
            p,
            "kms.on_disable",
            on_disable,
            &[
                ("notify", OnDisable::Notify),
                ("enable_key", OnDisable::EnableKey),
            ],
            OnDisable::Notify,
        ),
        on_schedule_deletion: choice(
            p,
            "kms.on_schedule_deletion",
            on_schedule_deletion,
            &[
                ("notify", OnScheduleDeletion::Notify),
                ("cancel_key_deletion", OnScheduleDeletion::CancelKeyDeletion),
            ],
            OnScheduleDeletion::Notify,
        ),
        allowed_principals: allowed,
        exemptions: checked_exemptions(exemptions, p),
    }
}

const DAY: u64 = 86400;

fn usage(
    window: Field<String>,
    pages: Field<usize>,
    on_used: Field<String>,
    reminders: Field<Vec<String>>,
    interval: Field<String>,
    p: &mut Problems,
) -> UsagePolicy {
    let window = duration(
        p,
        "kms.usage_window",
        window,
        "30d",
        (Duration::ZERO, Duration::from_secs(90 * DAY)),
        " (event history keeps 90 days; \"0s\" turns usage lookups off)",
    );
    let pages = number(
        p,
        "kms.usage_lookup_pages",
        pages,
        5,
        (1, 50),
        " (each page is one LookupEvents request of 50 events, from the region's quota)",
    );
    let on_used = choice(
        p,
        "kms.on_schedule_deletion_of_used_key",
        on_used,
        &[
            ("notify", OnUsedKey::Notify),
            ("cancel_key_deletion", OnUsedKey::CancelKeyDeletion),
        ],
        OnUsedKey::Notify,
    );
    if window.is_zero() && on_used == OnUsedKey::CancelKeyDeletion {
        p.push(
            "kms.on_schedule_deletion_of_used_key",
            "\"cancel_key_deletion\" needs kms.usage_window above 0s (with lookups off, no use is ever seen)",
        );
    }
    let mut points: Vec<Duration> = Vec::new();
    let texts = reminders.get("kms.reminders", p);
    for (i, text) in texts.iter().flatten().enumerate() {
        let key = format!("kms.reminders[{i}]");
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d >= Duration::from_secs(3600) && d <= Duration::from_secs(30 * DAY) => {
                if points.contains(&d) {
                    p.push(key, format!("{text:?} is listed twice"));
                } else {
                    points.push(d);
                }
            }
            Ok(_) => p.push(
                key,
                format!("must be between 1h and 30days, got {text} (a deletion waits 7 to 30 days)"),
            ),
            Err(e) => p.push(
                key,
                format!("not a duration like \"7d\" or \"12h\": {text:?} ({e})"),
            ),
        }
    }
    if texts.is_none() {
        points = UsagePolicy::default().reminders;
    }
    points.sort_by(|a, b| b.cmp(a));
    let reminder_interval = duration(
        p,
        "kms.reminder_interval",
        interval,
        "1h",
        (Duration::from_secs(10), Duration::from_secs(DAY)),
        " (keys pending deletion are checked this often for a due reminder)",
    );
    UsagePolicy {
        window,
        pages,
        on_used,
        reminders: points,
        reminder_interval,
    }
}
