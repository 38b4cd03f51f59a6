//! The periodic IAM sweep: read every user's access keys, plan ([`super::plan`]), act. What is
//! notified, and when, is the sweep loop's ([`crate::pipeline`]).
//!
//! Small accounts are read per user (`ListUsers`, `ListAccessKeys`, `GetAccessKeyLastUsed`).
//! From `iam.credential_report_min_users` users on, the credential report (one CSV for the
//! account, at most 4 hours old) picks the users worth a closer look, and only those are read per
//! user: decisions are never made on report data alone. IAM calls are paced by the
//! [`super::IamApi`] implementation.
//!
//! Fail toward keeping keys: a user whose tags cannot be read (so exemptions cannot be checked)
//! or whose keys cannot be listed is skipped and reported, and the sweep goes on; a key whose
//! last use cannot be read is skipped too.
//!
//! How long an inactive key has been inactive needs positive evidence, checked newest first:
//! the key's latest `UpdateAccessKey` in event history (looked up by the key as resource name
//! in the partition's IAM home region, through the shared `LookupEvents` rate limiter): if it
//! set `Inactive`, that time; if it set `Active`, the deactivation since is not visible yet, so
//! no evidence. With no event at all, trailguard's own record of deactivating the key. Either is
//! void if the key was used after it. Nothing is assumed from the key's age.

use std::collections::{HashMap, HashSet};
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
    /// The access key trailguard signs with: never changed.
    pub own_key: Option<String>,
}

/// What one sweep saw and did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub users: usize,
    pub keys: usize,
    pub used_credential_report: bool,
    pub calls: u64,
    pub results: Vec<SweepResult>,
    /// Users (or keys) not checked, and why: nothing was changed for them.
    pub skipped: Vec<(String, String)>,
    /// Keys seen active: any record of trailguard deactivating them is void.
    pub active: Vec<String>,
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
            own_key: None,
        }
    }

    /// Runs one sweep at `now`. `deactivated`: when trailguard deactivated keys, from its state.
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        deactivated: &HashMap<String, DateTime<Utc>>,
    ) -> Result<SweepReport, String> {
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
            let user_keys = match self.user_keys(u, deactivated, &mut report).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(user = %u.name, error = %e, "Cannot list a user's access keys; the user is skipped.");
                    report.skipped.push((
                        u.name.clone(),
                        format!("its access keys could not be listed: {}", e.short()),
                    ));
                    continue;
                }
            };
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
            match self.iam.user_tags(user).await {
                Ok(tags) => {
                    for k in keys.iter_mut().filter(|k| &k.user_name == user) {
                        k.user_tags = tags.clone();
                    }
                }
                Err(e) => {
                    // Its exemptions cannot be checked: leave the user alone, and say so.
                    tracing::warn!(user, error = %e, "Cannot read a user's tags; the user is skipped.");
                    report.skipped.push((
                        user.clone(),
                        format!(
                            "its tags could not be read, so exemptions cannot be checked: {}",
                            e.short()
                        ),
                    ));
                    keys.retain(|k| &k.user_name != user);
                }
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
                    inactive_evidence: None,
                    own: false,
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
        deactivated: &HashMap<String, DateTime<Utc>>,
        report: &mut SweepReport,
    ) -> Result<Vec<KeyInfo>, crate::aws::AwsError> {
        let mut out = Vec::new();
        for k in self.iam.list_access_keys(&u.name).await? {
            let Some(created) = k.created else {
                report
                    .skipped
                    .push((format!("{}/{}", u.name, k.id), "IAM gave no creation date".into()));
                continue;
            };
            let last_used = match self.iam.last_used(&k.id).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(access_key_id = %k.id, error = %e, "Cannot read a key's last use; the key is skipped.");
                    report.skipped.push((
                        format!("{}/{}", u.name, k.id),
                        format!("its last use could not be read: {}", e.short()),
                    ));
                    continue;
                }
            };
            if k.active {
                report.active.push(k.id.clone());
            }
            let (inactive_since, inactive_evidence) =
                if !k.active && self.policy.action == super::KeyAction::Delete {
                    let (since, why) = self.inactive_since(&k.id, deactivated.get(&k.id).copied()).await;
                    // A key used after its "deactivation" was active then: the evidence is void.
                    match (since, &last_used) {
                        (Some(t), Some(u)) if u.date > t => (
                            None,
                            Some(format!(
                                "used on {} after it was deactivated on {}",
                                u.date.format("%Y-%m-%d"),
                                t.format("%Y-%m-%d")
                            )),
                        ),
                        _ => (since, Some(why)),
                    }
                } else {
                    (None, None)
                };
            out.push(KeyInfo {
                user_name: u.name.clone(),
                user_arn: u.arn.clone(),
                user_path: u.path.clone(),
                user_tags: vec![],
                own: self.own_key.as_deref() == Some(k.id.as_str()),
                access_key_id: k.id,
                active: k.active,
                created,
                last_used,
                inactive_since,
                inactive_evidence,
            });
        }
        Ok(out)
    }

    /// When the key was set `Inactive`, with the evidence; `None` (and why) without evidence.
    async fn inactive_since(
        &self,
        key_id: &str,
        own: Option<DateTime<Utc>>,
    ) -> (Option<DateTime<Utc>>, String) {
        let latest = find_latest(&self.lookup, &self.events, key_id, HISTORY_PAGES, |e| {
            let rec = Record::parse(&e.record).ok()?;
            (rec.name() == "UpdateAccessKey"
                && rec.succeeded()
                && rec.request_str("accessKeyId") == Some(key_id))
            .then(|| {
                (
                    rec.request_str("status") == Some("Inactive"),
                    e.time,
                    rec.principal_arn().map(str::to_owned),
                )
            })
        })
        .await;
        match latest {
            Ok(Some((true, Some(t), who))) => (
                Some(t),
                format!(
                    "UpdateAccessKey to Inactive on {} by {} (event history)",
                    t.to_rfc3339(),
                    who.as_deref().unwrap_or("?")
                ),
            ),
            Ok(Some((_, t, _))) => (
                None,
                format!(
                    "reactivated on {}; its deactivation since is not in event history yet",
                    t.map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
            ),
            Ok(None) => match own {
                Some(t) => (
                    Some(t),
                    format!("trailguard deactivated it on {}", t.to_rfc3339()),
                ),
                None => (
                    None,
                    "no UpdateAccessKey in event history, and trailguard did not deactivate it".into(),
                ),
            },
            Err(e) => (None, format!("its history could not be read: {}", e.short())),
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
                        "inactive since {} ({}); deleted once inactive for iam.delete_after_inactive",
                        t.format("%Y-%m-%d"),
                        f.key.inactive_evidence.as_deref().unwrap_or("-")
                    ),
                    None => format!(
                        "inactive since unknown ({}); kept until there is evidence",
                        f.key.inactive_evidence.as_deref().unwrap_or("no evidence")
                    ),
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
