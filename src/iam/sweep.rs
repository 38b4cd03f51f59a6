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
//!
//! A key due for deletion is deleted only at a sweep once `cloudtrail.max_delivery_delay` has
//! passed since the decision, on the same evidence ([`super::confirm`]): a change CloudTrail had
//! not delivered when the deletion was decided has been delivered by then.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

mod act;

use super::api::IamApi;
use super::confirm::{self, Pending};
use super::intent::KeyStatus;
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
    /// How long a deletion decision waits before it is re-checked and acted on
    /// (`cloudtrail.max_delivery_delay`).
    pub delete_wait: Duration,
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
    /// Deletions decided and waiting to be re-checked, by access key id (to record).
    pub pending: Vec<(String, Pending)>,
    /// Keys read whose recorded deletion decision, if any, no longer stands.
    pub settled: Vec<String>,
}

/// What the sweep tells its caller as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// A change of this key is about to be made: write it down first ([`super::intent`]).
    /// Answer false and the key is left as it is.
    Intend(&'a KeyFinding),
    /// A result, as soon as it is known (see [`SweepResult::made`]); answer whether its
    /// message was queued.
    Done(&'a SweepResult),
}

/// One finding and what was done about it.
#[derive(Debug, Clone)]
pub struct SweepResult {
    pub finding: KeyFinding,
    pub outcome: Outcome,
    pub detail: String,
    /// The change has just been made and is not verified yet: the final result follows.
    pub made: bool,
    /// The message queued when the change was made stands for this result.
    pub notified: bool,
    /// Whether the change was made is not known yet: its note stays for the next sweep.
    pub keep_intent: bool,
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
            delete_wait: Duration::from_secs(15 * 60),
        }
    }

    /// Runs one sweep at `now`. `deactivated`: when trailguard deactivated keys, and
    /// `pending`: the deletions it decided, from its state. `acted` sees each result as soon
    /// as it is known, and a change as soon as it is made ([`SweepResult::made`], before it is
    /// verified); it returns whether it queued the result's message.
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        deactivated: &HashMap<String, DateTime<Utc>>,
        pending: &HashMap<String, Pending>,
        mut acted: impl FnMut(Step<'_>) -> bool,
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
        let mut findings = super::plan(&keys, now, &self.policy);
        report.pending = confirm::gate(&mut findings, pending, now, self.delete_wait);
        let waiting: HashMap<String, DateTime<Utc>> = report
            .pending
            .iter()
            .map(|(k, p)| (k.clone(), p.due(self.delete_wait)))
            .collect();
        report.settled = keys
            .iter()
            .map(|k| k.access_key_id.clone())
            .filter(|k| !waiting.contains_key(k))
            .collect();
        for finding in findings {
            let result = if self.changes(&finding) {
                self.change(finding, &mut acted).await
            } else {
                let (outcome, detail) = match waiting.get(&finding.key.access_key_id) {
                    Some(due) if finding.planned == Planned::ConfirmDelete => {
                        (Outcome::NotNeeded, act::confirm_detail(&finding, *due))
                    }
                    _ => self.act(&finding),
                };
                SweepResult {
                    finding,
                    outcome,
                    detail,
                    made: false,
                    notified: false,
                    keep_intent: false,
                }
            };
            acted(Step::Done(&result));
            report.results.push(result);
        }
        report.calls = self.iam.calls() - calls_before;
        Ok(report)
    }

    /// The account whose keys this sweeper reads.
    pub fn account(&self) -> &str {
        &self.events.account
    }

    /// The key's status now, for an intent left by an interrupted sweep. A user that no
    /// longer exists has no keys.
    pub async fn key_status(&self, user: &str, key: &str) -> Result<KeyStatus, crate::aws::AwsError> {
        let keys = match self.iam.list_access_keys(user).await {
            Ok(keys) => keys,
            Err(e) if e.error_type == crate::aws::ErrorType::NotFound => return Ok(KeyStatus::Gone),
            Err(e) => return Err(e),
        };
        Ok(match keys.into_iter().find(|k| k.id == key) {
            Some(k) if k.active => KeyStatus::Active,
            Some(_) => KeyStatus::Inactive,
            None => KeyStatus::Gone,
        })
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
        // trailguard's own deactivation is evidence too when it is the latest known change.
        let own_later = own.filter(|o| matches!(&latest, Ok(Some((_, Some(t), _))) if o > t));
        if let Some(o) = own_later {
            return (
                Some(o),
                format!(
                    "trailguard deactivated it on {}, after its latest UpdateAccessKey in event history",
                    o.to_rfc3339()
                ),
            );
        }
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
}

/// The action a plan stands for (also the metric label).
pub fn planned_action(p: Planned) -> crate::job::ActionKind {
    use crate::job::ActionKind;
    match p {
        Planned::Notify | Planned::Exempt | Planned::WaitBeforeDelete | Planned::ConfirmDelete => {
            ActionKind::Notify
        }
        Planned::Deactivate | Planned::BlastRadius => ActionKind::Deactivate,
        Planned::Delete => ActionKind::Delete,
    }
}
