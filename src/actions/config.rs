//! `[kms]`: the protection policy and how a rescue ends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{KeyExemption, OnDisable, OnScheduleDeletion, Policy, Protected};
use crate::validate::{Field, Problems, choice, duration};

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
}

#[derive(Debug, Clone)]
pub struct KmsConfig {
    pub enable_after_cancel: bool,
    /// The protection policy (empty: no key is protected).
    pub policy: Policy,
    /// How long a key's aliases and tags are cached for the policy.
    pub refresh_interval: Duration,
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
        Self {
            enable_after_cancel: raw
                .enable_after_cancel
                .get("kms.enable_after_cancel", p)
                .unwrap_or(false),
            policy,
            refresh_interval,
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
