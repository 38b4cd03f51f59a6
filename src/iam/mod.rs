//! Stale IAM access keys: the CIS rules, exemptions and the action plan. Pure: no I/O, and `now`
//! is an argument.
//!
//! | rule id | flags |
//! |---|---|
//! | `iam_access_key_unrotated` | an active key older than `iam.max_key_age` (default 90 days) |
//! | `iam_access_key_unused` | an active key not used for `iam.max_unused_age` (default 90 days); a never-used key counts from its creation |
//!
//! Actions, least destructive first: `notify`; `deactivate` (`UpdateAccessKey` to `Inactive`);
//! `delete`, only for a key that is already inactive and has been for `iam.delete_after_inactive`
//! (an active key is deactivated first, never deleted), so a mistaken deactivation can be undone.
//! How long a key has been inactive needs positive evidence ([`KeyInfo::inactive_since`]):
//! trailguard's own record of deactivating it, or a successful `UpdateAccessKey` to `Inactive`
//! visible in event history, whichever is later, and no later reactivation known. Without it
//! the key is reported "inactive since unknown" and kept. A deletion is decided, then re-checked
//! once `cloudtrail.max_delivery_delay` has passed ([`confirm`]): the key is deleted only if the
//! evidence still holds.
//! trailguard's own access key (the one it signs with) is never changed.
//! If a sweep would change more keys than `iam.max_actions_per_sweep`, it changes none and says
//! why: a mass-expiry is more likely a clock, config or data problem than 11 stale keys.

pub mod api;
pub mod config;
pub mod confirm;
pub mod intent;
pub mod report;
pub mod sweep;

pub use api::IamApi;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::glob;

pub const UNROTATED: &str = "iam_access_key_unrotated";
pub const UNUSED: &str = "iam_access_key_unused";

/// What to do with stale keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    Notify,
    Deactivate,
    Delete,
}

/// Everything known about one access key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub user_name: String,
    pub user_arn: String,
    pub user_path: String,
    pub user_tags: Vec<(String, String)>,
    pub access_key_id: String,
    pub active: bool,
    pub created: DateTime<Utc>,
    /// `None`: never used (or not since IAM began tracking, April 2015).
    pub last_used: Option<LastUse>,
    /// For an inactive key: since when, if there is evidence (see the module docs).
    pub inactive_since: Option<DateTime<Utc>>,
    /// What the evidence is (or why there is none), for notifications.
    #[serde(default)]
    pub inactive_evidence: Option<String>,
    /// The key trailguard signs its own requests with.
    #[serde(default)]
    pub own: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUse {
    pub date: DateTime<Utc>,
    pub service: String,
    pub region: String,
}

/// An exemption from `[[iam.exemptions]]`; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    /// Glob on the user name or the user ARN (`ci-*`, `arn:aws:iam::*:user/svc/*`).
    pub user: Option<String>,
    /// IAM path prefix (`/service-accounts/`).
    pub path: Option<String>,
    /// A user tag, `key=value` (or `key` for any value).
    pub tag: Option<String>,
    pub access_key_id: Option<String>,
    /// Last day the exemption applies (inclusive), `YYYY-MM-DD`.
    pub expires: Option<NaiveDate>,
    pub reason: Option<String>,
}

/// The tag that exempts a user without any configuration.
pub const EXEMPT_TAG: &str = "trailguard:exempt";

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_key_age: Duration,
    pub max_unused_age: Duration,
    pub action: KeyAction,
    pub delete_after_inactive: Duration,
    pub max_actions_per_sweep: usize,
    pub exemptions: Vec<Exemption>,
}

impl Exemption {
    pub fn applies(&self, k: &KeyInfo, now: DateTime<Utc>) -> bool {
        if self.expires.is_some_and(|d| now.date_naive() > d) {
            return false;
        }
        let user = self
            .user
            .as_deref()
            .is_none_or(|g| glob::matches(g, &k.user_name) || glob::matches(g, &k.user_arn));
        let path = self.path.as_deref().is_none_or(|p| k.user_path.starts_with(p));
        let key = self
            .access_key_id
            .as_deref()
            .is_none_or(|id| id == k.access_key_id);
        let tag = self.tag.as_deref().is_none_or(|t| {
            let (tk, tv) = t.split_once('=').map_or((t, None), |(a, b)| (a, Some(b)));
            k.user_tags
                .iter()
                .any(|(k2, v2)| k2 == tk && tv.is_none_or(|v| v == v2))
        });
        user && path && key && tag
    }

    /// How the exemption reads in logs and notifications.
    pub fn describe(&self, index: usize) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("user", &self.user),
            ("path", &self.path),
            ("tag", &self.tag),
            ("access_key_id", &self.access_key_id),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        }
        if let Some(d) = self.expires {
            parts.push(format!("until {d}"));
        }
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        format!("iam.exemptions[{index}] ({}){reason}", parts.join(", "))
    }
}

/// One stale key, with what the policy decides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyFinding {
    pub rule_ids: Vec<&'static str>,
    pub key: KeyInfo,
    pub age_days: i64,
    pub unused_days: i64,
    pub never_used: bool,
    /// The exemption that applies, described.
    pub exemption: Option<String>,
    pub planned: Planned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Planned {
    Notify,
    Deactivate,
    Delete,
    /// Exempt: notified, never acted on.
    Exempt,
    /// Would act, but the sweep exceeded its blast-radius limit.
    BlastRadius,
    /// Inactive key not yet inactive long enough to delete (or since unknown).
    WaitBeforeDelete,
    /// Due for deletion: the decision is recorded and re-checked once
    /// `cloudtrail.max_delivery_delay` has passed ([`confirm`]).
    ConfirmDelete,
}

fn days(d: chrono::Duration) -> i64 {
    d.num_days()
}

fn older(t: DateTime<Utc>, now: DateTime<Utc>, limit: Duration) -> bool {
    (now - t).to_std().is_ok_and(|age| age > limit)
}

/// Which rules a key breaks (active keys only).
pub fn evaluate(k: &KeyInfo, now: DateTime<Utc>, p: &Policy) -> Vec<&'static str> {
    let mut out = Vec::new();
    if older(k.created, now, p.max_key_age) {
        out.push(UNROTATED);
    }
    let last = k.last_used.as_ref().map_or(k.created, |u| u.date);
    if older(last, now, p.max_unused_age) {
        out.push(UNUSED);
    }
    out
}

/// The sweep's plan: findings for active stale keys, and deletions of long-inactive stale keys.
pub fn plan(keys: &[KeyInfo], now: DateTime<Utc>, p: &Policy) -> Vec<KeyFinding> {
    let mut out = Vec::new();
    for k in keys {
        let rule_ids = evaluate(k, now, p);
        if rule_ids.is_empty() {
            continue;
        }
        let exemption = p
            .exemptions
            .iter()
            .enumerate()
            .find(|(_, e)| e.applies(k, now))
            .map(|(i, e)| e.describe(i))
            .or_else(|| {
                k.user_tags
                    .iter()
                    .any(|(tk, tv)| tk == EXEMPT_TAG && tv.eq_ignore_ascii_case("true"))
                    .then(|| format!("user tag {EXEMPT_TAG}=true"))
            })
            .or_else(|| {
                k.own
                    .then(|| "trailguard's own access key (it signs trailguard's requests)".to_owned())
            });
        let planned = match (&exemption, k.active, p.action) {
            (Some(_), _, _) => Planned::Exempt,
            (None, true, KeyAction::Notify) => Planned::Notify,
            (None, true, KeyAction::Deactivate | KeyAction::Delete) => Planned::Deactivate,
            (None, false, KeyAction::Delete) => match k.inactive_since {
                Some(t) if older(t, now, p.delete_after_inactive) => Planned::Delete,
                _ => Planned::WaitBeforeDelete,
            },
            // Inactive keys are only of interest when deletion is enabled.
            (None, false, _) => continue,
        };
        if !k.active && planned == Planned::Exempt && p.action != KeyAction::Delete {
            continue;
        }
        let last = k.last_used.as_ref().map_or(k.created, |u| u.date);
        out.push(KeyFinding {
            rule_ids,
            age_days: days(now - k.created),
            unused_days: days(now - last),
            never_used: k.last_used.is_none(),
            key: k.clone(),
            exemption,
            planned,
        });
    }
    let changes = out
        .iter()
        .filter(|f| matches!(f.planned, Planned::Deactivate | Planned::Delete))
        .count();
    if changes > p.max_actions_per_sweep {
        for f in &mut out {
            if matches!(f.planned, Planned::Deactivate | Planned::Delete) {
                f.planned = Planned::BlastRadius;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn key(id: &str, created_days: i64, used_days: Option<i64>) -> KeyInfo {
        KeyInfo {
            user_name: format!("user-{id}"),
            user_arn: format!("arn:aws:iam::111122223333:user/user-{id}"),
            user_path: "/".into(),
            user_tags: vec![],
            access_key_id: id.into(),
            active: true,
            created: now() - chrono::Duration::days(created_days),
            last_used: used_days.map(|d| LastUse {
                date: now() - chrono::Duration::days(d),
                service: "s3".into(),
                region: "us-east-1".into(),
            }),
            inactive_since: None,
            inactive_evidence: None,
            own: false,
        }
    }

    fn policy(action: KeyAction) -> Policy {
        Policy {
            max_key_age: Duration::from_secs(90 * 86400),
            max_unused_age: Duration::from_secs(90 * 86400),
            action,
            delete_after_inactive: Duration::from_secs(30 * 86400),
            max_actions_per_sweep: 10,
            exemptions: vec![],
        }
    }

    #[test]
    fn old_key_used_yesterday_breaks_only_the_rotation_rule() {
        assert_eq!(
            evaluate(&key("A", 200, Some(1)), now(), &policy(KeyAction::Notify)),
            [UNROTATED]
        );
    }

    #[test]
    fn never_used_key_counts_from_its_creation() {
        let f = plan(&[key("A", 100, None)], now(), &policy(KeyAction::Notify));
        assert_eq!(f[0].rule_ids, [UNROTATED, UNUSED]);
        assert!(f[0].never_used);
        assert_eq!(f[0].unused_days, 100);
        assert!(evaluate(&key("B", 80, None), now(), &policy(KeyAction::Notify)).is_empty());
    }

    #[test]
    fn active_keys_are_deactivated_never_deleted_directly() {
        let f = plan(&[key("A", 120, Some(120))], now(), &policy(KeyAction::Delete));
        assert_eq!(f[0].planned, Planned::Deactivate);
    }

    #[test]
    fn inactive_keys_are_deleted_only_after_the_wait() {
        let mut long = key("A", 200, Some(150));
        long.active = false;
        long.inactive_since = Some(now() - chrono::Duration::days(40));
        let mut short = long.clone();
        short.access_key_id = "B".into();
        short.inactive_since = Some(now() - chrono::Duration::days(3));
        let mut unknown = long.clone();
        unknown.access_key_id = "C".into();
        unknown.inactive_since = None;
        let f = plan(&[long, short, unknown], now(), &policy(KeyAction::Delete));
        let planned: Vec<_> = f
            .iter()
            .map(|f| (f.key.access_key_id.as_str(), f.planned))
            .collect();
        assert_eq!(
            planned,
            [
                ("A", Planned::Delete),
                ("B", Planned::WaitBeforeDelete),
                ("C", Planned::WaitBeforeDelete)
            ]
        );
        // Without delete enabled, inactive keys are not reported at all.
        assert!(
            plan(
                &[key("X", 200, None)].map(|mut k| {
                    k.active = false;
                    k
                }),
                now(),
                &policy(KeyAction::Deactivate)
            )
            .is_empty()
        );
    }

    #[test]
    fn exemptions_match_and_expire_and_say_which_line() {
        let mut p = policy(KeyAction::Deactivate);
        p.exemptions = vec![
            Exemption {
                user: Some("ci-*".into()),
                expires: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
                reason: Some("expired".into()),
                ..Default::default()
            },
            Exemption {
                path: Some("/service/".into()),
                reason: Some("owned by platform".into()),
                ..Default::default()
            },
            Exemption {
                tag: Some("team=payments".into()),
                ..Default::default()
            },
        ];
        let mut ci = key("A", 120, None);
        ci.user_name = "ci-deploy".into();
        let mut svc = key("B", 120, None);
        svc.user_path = "/service/batch/".into();
        let mut tagged = key("C", 120, None);
        tagged.user_tags = vec![("team".into(), "payments".into())];
        let mut self_exempt = key("D", 120, None);
        self_exempt.user_tags = vec![(EXEMPT_TAG.into(), "true".into())];
        let mut own = key("E", 120, None);
        own.own = true;
        let f = plan(&[ci, svc, tagged, self_exempt, own], now(), &p);
        assert_eq!(
            f[4].planned,
            Planned::Exempt,
            "trailguard never changes its own key"
        );
        assert_eq!(
            f[0].planned,
            Planned::Deactivate,
            "an expired exemption no longer applies"
        );
        assert_eq!(f[1].planned, Planned::Exempt);
        assert_eq!(
            f[1].exemption.as_deref(),
            Some("iam.exemptions[1] (path=/service/): owned by platform")
        );
        assert_eq!(
            f[2].exemption.as_deref(),
            Some("iam.exemptions[2] (tag=team=payments)")
        );
        assert_eq!(f[3].exemption.as_deref(), Some("user tag trailguard:exempt=true"));
    }

    #[test]
    fn a_sweep_over_the_blast_radius_changes_nothing() {
        let keys: Vec<_> = (0..11).map(|i| key(&format!("K{i}"), 120, None)).collect();
        let f = plan(&keys, now(), &policy(KeyAction::Deactivate));
        assert_eq!(f.len(), 11);
        assert!(f.iter().all(|f| f.planned == Planned::BlastRadius));
        let f = plan(&keys[..10], now(), &policy(KeyAction::Deactivate));
        assert!(f.iter().all(|f| f.planned == Planned::Deactivate));
    }
}
