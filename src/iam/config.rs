//! `[iam]`: the stale access-key sweep (off unless `iam.enabled = true`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Exemption, KeyAction, Policy};
use crate::validate::{Field, Problems, choice, duration, number};

crate::validated!(RawIam => Option<IamConfig>, IamConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawIam {
    pub enabled: Field<bool>,
    pub sweep_interval: Field<String>,
    pub max_key_age: Field<String>,
    pub max_unused_age: Field<String>,
    pub action: Field<String>,
    pub delete_after_inactive: Field<String>,
    pub max_actions_per_sweep: Field<i64>,
    pub credential_report_min_users: Field<i64>,
    pub max_requests_per_second: Field<f64>,
    pub exemptions: Field<Vec<Exemption>>,
}

/// The IAM access-key sweep, when `iam.enabled`.
#[derive(Debug, Clone)]
pub struct IamConfig {
    pub sweep_interval: Duration,
    pub policy: Policy,
    pub credential_report_min_users: usize,
    pub max_requests_per_second: f64,
}

impl IamConfig {
    /// Validates `[iam]` (also when disabled, so a mistake shows before it is turned on).
    pub fn from_raw(raw: RawIam, p: &mut Problems) -> Option<Self> {
        let day = Duration::from_secs(86400);
        let sweep_interval = duration(
            p,
            "iam.sweep_interval",
            raw.sweep_interval,
            "1h",
            (Duration::from_secs(60), 7 * day),
            "",
        );
        let max_key_age = duration(
            p,
            "iam.max_key_age",
            raw.max_key_age,
            "90d",
            (day, 3650 * day),
            "",
        );
        let max_unused_age = duration(
            p,
            "iam.max_unused_age",
            raw.max_unused_age,
            "90d",
            (day, 3650 * day),
            "",
        );
        let delete_after_inactive = duration(
            p,
            "iam.delete_after_inactive",
            raw.delete_after_inactive,
            "30d",
            (day, 3650 * day),
            "",
        );
        let action = choice(
            p,
            "iam.action",
            raw.action,
            &[
                ("notify", KeyAction::Notify),
                ("deactivate", KeyAction::Deactivate),
                ("delete", KeyAction::Delete),
            ],
            KeyAction::Notify,
        );
        let max_actions = number(
            p,
            "iam.max_actions_per_sweep",
            raw.max_actions_per_sweep,
            10,
            (0, 10_000),
            "",
        );
        let report_min = number(
            p,
            "iam.credential_report_min_users",
            raw.credential_report_min_users,
            500,
            (1, i64::MAX),
            "",
        );
        let rps = number(
            p,
            "iam.max_requests_per_second",
            raw.max_requests_per_second,
            5.0,
            (0.1, 100.0),
            "",
        );
        let exemptions = raw.exemptions.get("iam.exemptions", p).unwrap_or_default();
        for (i, e) in exemptions.iter().enumerate() {
            if e.user.is_none() && e.path.is_none() && e.tag.is_none() && e.access_key_id.is_none() {
                p.push(
                    format!("iam.exemptions[{i}]"),
                    "names nothing to exempt: set user, path, tag or access_key_id",
                );
            }
        }
        raw.enabled
            .get("iam.enabled", p)
            .unwrap_or(false)
            .then(|| IamConfig {
                sweep_interval,
                policy: Policy {
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
}
