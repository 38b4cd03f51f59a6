//! The periodic IAM sweep: read every user's access keys, plan ([`super::plan`]), act. What is
//! notified, and when, is the sweep loop's ([`crate::pipeline`]).
//!
//! Small accounts are read per user (`ListUsers`, `ListAccessKeys`, `GetAccessKeyLastUsed`).
//! From `iam.credential_report_min_users` users on, the credential report (one CSV for the
//! account, at most 4 hours old) picks the users worth a closer look, and only those are read per
//! user: decisions are never made on report data alone. IAM calls are paced by the
//! [`super::IamApi`] implementation.
//!
//! How long an inactive key has been inactive comes from CloudTrail (`UpdateAccessKey` to
//! `Inactive`, looked up by the key as resource name in the partition's IAM home region,
//! through the shared `LookupEvents` rate limiter). With no such event in the 90 days event
//! history keeps, a key created over 90 days ago has been inactive at least that long.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::api::IamApi;
use super::{KeyFinding, KeyInfo, LastUse, Planned, Policy};
use crate::aws::Place;
use crate::event::Record;
use crate::job::Outcome;
use crate::sources::{LookupApi, find_latest};

/// How many pages of a key's history are read to find its last status change.
const HISTORY_PAGES: usize = 5;

pub struct Sweeper<I, L> {
    iam: I,
    lookup: L,
    /// Where IAM's events are: the account, in its partition's IAM home region.
    events: Place,
    pub policy: Policy,
    pub dry_run: bool,
    pub report_min_users: usize,
}

/// What one sweep saw and did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub users: usize,
    pub keys: usize,
    pub used_credential_report: bool,
    pub calls: u64,
    pub results: Vec<SweepResult>,
}

/// One finding and what was done about it.
#[derive(Debug, Clone)]
pub struct SweepResult {
    pub finding: KeyFinding,
    pub outcome: Outcome,
    pub detail: String,
}

impl<I: IamApi, L: LookupApi> Sweeper<I, L> {
    pub fn new(
        iam: I,
        lookup: L,
        events: Place,
        policy: Policy,
        dry_run: bool,
        report_min_users: usize,
    ) -> Self {
        Self {
            iam,
            lookup,
            events,
            policy,
            dry_run,
            report_min_users,
        }
    }

    /// Runs one sweep at `now`.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, String> {
        let calls_before = self.iam.calls();
        let mut report = SweepReport::default();
        let users = self.iam.list_users().await.map_err(|e| e.to_string())?;
        report.users = users.len();
        let wanted: Vec<&super::api::User> = if users.len() >= self.report_min_users {
            report.used_credential_report = true;
            let (hinted, keys) = self.report_hints(now).await?;
            report.keys = keys;
            users.iter().filter(|u| hinted.contains(&u.name)).collect()
        } else {
            users.iter().collect()
        };
        let mut keys = Vec::new();
        for u in wanted {
            let user_keys = self.user_keys(u, now).await.map_err(|e| e.to_string())?;
            if !report.used_credential_report {
                report.keys += user_keys.len();
            }
            keys.extend(user_keys);
        }
        // Tags only for users that have something to report.
        let stale_users: HashSet<String> = keys
            .iter()
            .filter(|k| !super::evaluate(k, now, &self.policy).is_empty())
            .map(|k| k.user_name.clone())
            .collect();
        for user in &stale_users {
            let tags = match self.iam.user_tags(user).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(user, error = %e, "Cannot read user tags; tag exemptions cannot apply.");
                    vec![]
                }
            };
            for k in keys.iter_mut().filter(|k| &k.user_name == user) {
                k.user_tags = tags.clone();
            }
        }
        for finding in super::plan(&keys, now, &self.policy) {
            let (outcome, detail) = self.act(&finding).await;
            report.results.push(SweepResult {
                finding,
                outcome,
                detail,
            });
        }
        report.calls = self.iam.calls() - calls_before;
        Ok(report)
    }

    /// Users whose report line shows a key worth a closer look, and the number of keys seen.
    async fn report_hints(&self, now: DateTime<Utc>) -> Result<(HashSet<String>, usize), String> {
        let mut csv = None;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            match self.iam.credential_report().await.map_err(|e| e.to_string())? {
                Some(r) if r.generated.is_some_and(|t| now - t < chrono::Duration::hours(4)) => {
                    csv = Some(r.csv);
                    break;
                }
                _ => {}
            }
            self.iam
                .generate_credential_report()
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let csv = csv.ok_or("the credential report was not ready within 60s")?;
        let mut hinted = HashSet::new();
        let mut keys = 0;
        for line in super::report::parse(&csv)? {
            for k in &line.keys {
                keys += 1;
                let probe = KeyInfo {
                    user_name: String::new(),
                    user_arn: String::new(),
                    user_path: String::new(),
                    user_tags: vec![],
                    access_key_id: String::new(),
                    active: k.active,
                    created: k.last_rotated,
                    last_used: k.last_used.map(|date| LastUse {
                        date,
                        service: String::new(),
                        region: String::new(),
                    }),
                    inactive_since: None,
                };
                let stale = !super::evaluate(&probe, now, &self.policy).is_empty();
                if stale && (k.active || self.policy.action == super::KeyAction::Delete) {
                    hinted.insert(line.user.clone());
                }
            }
        }
        Ok((hinted, keys))
    }

    async fn user_keys(
        &self,
        u: &super::api::User,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyInfo>, crate::aws::AwsError> {
        let mut out = Vec::new();
        for k in self.iam.list_access_keys(&u.name).await? {
            let created = k.created.unwrap_or(now);
            let last_used = match self.iam.last_used(&k.id).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(access_key_id = %k.id, error = %e, "Cannot read a key's last use; skipping the key.");
                    continue;
                }
            };
            let inactive_since = if !k.active && self.policy.action == super::KeyAction::Delete {
                self.inactive_since(&k.id, created, now).await
            } else {
                None
            };
            out.push(KeyInfo {
                user_name: u.name.clone(),
                user_arn: u.arn.clone(),
                user_path: u.path.clone(),
                user_tags: vec![],
                access_key_id: k.id,
                active: k.active,
                created,
                last_used,
                inactive_since,
            });
        }
        Ok(out)
    }

    /// When the key was last set `Inactive`, from event history (newest first).
    async fn inactive_since(
        &self,
        key_id: &str,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let latest = find_latest(&self.lookup, &self.events, key_id, HISTORY_PAGES, |e| {
            let rec = Record::parse(&e.record).ok()?;
            (rec.name() == "UpdateAccessKey"
                && rec.succeeded()
                && rec.request_str("accessKeyId") == Some(key_id))
            .then(|| (rec.request_str("status") == Some("Inactive"), e.time))
        })
        .await;
        match latest {
            Ok(Some((inactive, time))) => inactive.then_some(time).flatten(),
            Ok(None) => {
                let horizon = now - chrono::Duration::days(90);
                (created < horizon).then_some(horizon)
            }
            Err(e) => {
                tracing::warn!(access_key_id = key_id, error = %e, "Cannot read the key's history.");
                None
            }
        }
    }

    async fn act(&self, f: &KeyFinding) -> (Outcome, String) {
        let (user, key) = (f.key.user_name.as_str(), f.key.access_key_id.as_str());
        match f.planned {
            Planned::Notify => (
                Outcome::NotNeeded,
                "notified only (iam.action = \"notify\")".into(),
            ),
            Planned::Exempt => (
                Outcome::NotNeeded,
                format!("exempt by {}", f.exemption.as_deref().unwrap_or("an exemption")),
            ),
            Planned::BlastRadius => (
                Outcome::NotActionable,
                format!(
                    "not changed: this sweep would change more keys than iam.max_actions_per_sweep ({}); review and raise the limit, or act by hand",
                    self.policy.max_actions_per_sweep
                ),
            ),
            Planned::WaitBeforeDelete => (
                Outcome::NotNeeded,
                match f.key.inactive_since {
                    Some(t) => format!(
                        "inactive since {}; deleted once inactive for iam.delete_after_inactive",
                        t.format("%Y-%m-%d")
                    ),
                    None => "inactive since an unknown date; not deleted".into(),
                },
            ),
            _ if self.dry_run => (
                Outcome::DryRun,
                format!("dry run: would {}", planned_action(f.planned).as_str()),
            ),
            Planned::Deactivate => {
                if let Err(e) = self.iam.deactivate(user, key).await {
                    return (Outcome::Failed, format!("UpdateAccessKey failed: {}", e.short()));
                }
                match self.status(user, key).await {
                    Some(false) => (
                        Outcome::Applied,
                        "deactivated (UpdateAccessKey to Inactive, verified); reactivate it with aws iam update-access-key --status Active if this was a mistake".into(),
                    ),
                    other => (
                        Outcome::Failed,
                        format!("UpdateAccessKey succeeded but the key is {}", describe_status(other)),
                    ),
                }
            }
            Planned::Delete => {
                if let Err(e) = self.iam.delete(user, key).await {
                    return (Outcome::Failed, format!("DeleteAccessKey failed: {}", e.short()));
                }
                match self.status(user, key).await {
                    None => (
                        Outcome::Applied,
                        "deleted (it had been inactive long enough; verified gone)".into(),
                    ),
                    other => (
                        Outcome::Failed,
                        format!(
                            "DeleteAccessKey succeeded but the key is still listed ({})",
                            describe_status(other)
                        ),
                    ),
                }
            }
        }
    }

    /// Whether the key is listed and active (`None`: not listed, or the list failed).
    async fn status(&self, user: &str, key: &str) -> Option<bool> {
        let keys = self.iam.list_access_keys(user).await.ok()?;
        keys.into_iter().find(|k| k.id == key).map(|k| k.active)
    }
}

fn describe_status(s: Option<bool>) -> &'static str {
    match s {
        Some(true) => "Active",
        Some(false) => "Inactive",
        None => "not listed",
    }
}

/// The action a plan stands for (also the metric label).
pub fn planned_action(p: Planned) -> crate::job::ActionKind {
    use crate::job::ActionKind;
    match p {
        Planned::Notify | Planned::Exempt | Planned::WaitBeforeDelete => ActionKind::Notify,
        Planned::Deactivate | Planned::BlastRadius => ActionKind::Deactivate,
        Planned::Delete => ActionKind::Delete,
    }
}
