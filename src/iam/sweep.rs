//! The periodic IAM sweep: read every user's access keys, plan ([`super::plan`]), act, notify.
//!
//! Small accounts are read per user (`ListUsers`, `ListAccessKeys`, `GetAccessKeyLastUsed`).
//! From `iam.credential_report_min_users` users on, the credential report (one CSV for the
//! account, at most 4 hours old) picks the users worth a closer look, and only those are read per
//! user: decisions are never made on report data alone. Every IAM call is paced to
//! `iam.max_requests_per_second`; throttling is retried by the SDK with backoff.
//!
//! How long an inactive key has been inactive comes from CloudTrail (`UpdateAccessKey` to
//! `Inactive`, looked up by the key as resource name in us-east-1). With no such event in the
//! 90 days event history keeps, a key created over 90 days ago has been inactive at least that
//! long.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_iam::Client;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use metrics::{counter, gauge};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{KeyFinding, KeyInfo, LastUse, Planned, Policy};
use crate::notify::{Message, clean_subject};
use crate::state::Outcome;
use crate::telemetry::{self, names};

pub struct Sweeper {
    iam: Client,
    cloudtrail: aws_sdk_cloudtrail::Client,
    pub policy: Policy,
    pub dry_run: bool,
    pub report_min_users: usize,
    gap: Duration,
    last: Option<Instant>,
    /// IAM calls made in the current sweep.
    pub calls: u64,
}

/// What one sweep saw and did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub users: usize,
    pub keys: usize,
    pub used_credential_report: bool,
    pub calls: u64,
    pub results: Vec<(KeyFinding, Outcome, String)>,
}

fn time(d: &aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(d.secs(), 0).unwrap_or_default()
}

fn err<E: ProvideErrorMetadata>(e: &aws_sdk_iam::error::SdkError<E>) -> String {
    let code = e.code().unwrap_or("transport").to_owned();
    telemetry::aws_error("iam", &code);
    format!("{code}: {}", e.message().unwrap_or_default())
}

impl Sweeper {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        policy: Policy,
        dry_run: bool,
        report_min_users: usize,
        rps: f64,
    ) -> Self {
        let iam_conf = aws_sdk_iam::config::Builder::from(sdk)
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .retry_config(aws_smithy_types::retry::RetryConfig::standard().with_max_attempts(5))
            .build();
        let ct_conf = aws_sdk_cloudtrail::config::Builder::from(sdk)
            .region(aws_sdk_cloudtrail::config::Region::new("us-east-1"))
            .build();
        Self {
            iam: Client::from_conf(iam_conf),
            cloudtrail: aws_sdk_cloudtrail::Client::from_conf(ct_conf),
            policy,
            dry_run,
            report_min_users,
            gap: Duration::from_secs_f64(1.0 / rps),
            last: None,
            calls: 0,
        }
    }

    async fn pace(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.gap).await;
        }
        self.last = Some(Instant::now());
        self.calls += 1;
    }

    /// Runs one sweep at `now`.
    pub async fn sweep(&mut self, now: DateTime<Utc>) -> Result<SweepReport, String> {
        self.calls = 0;
        let mut report = SweepReport::default();
        let users = self.users().await?;
        report.users = users.len();
        let wanted: Vec<&(String, String, String)> = if users.len() >= self.report_min_users {
            report.used_credential_report = true;
            let (hinted, keys) = self.report_hints(now).await?;
            report.keys = keys;
            users.iter().filter(|u| hinted.contains(&u.0)).collect()
        } else {
            users.iter().collect()
        };
        let mut keys = Vec::new();
        for (name, arn, path) in wanted {
            let user_keys = self.user_keys(name, arn, path, now).await?;
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
            let tags = self.tags(user).await;
            for k in keys.iter_mut().filter(|k| &k.user_name == user) {
                k.user_tags = tags.clone();
            }
        }
        for f in super::plan(&keys, now, &self.policy) {
            let (outcome, detail) = self.act(&f).await;
            counter!(names::REMEDIATIONS, "action" => planned_action(f.planned), "outcome" => outcome.as_str()).increment(1);
            for rule in &f.rule_ids {
                counter!(names::FINDINGS, "rule_id" => *rule).increment(1);
            }
            info!(
                user = %f.key.user_name, access_key_id = %f.key.access_key_id, rules = ?f.rule_ids,
                age_days = f.age_days, unused_days = f.unused_days, planned = ?f.planned,
                outcome = outcome.as_str(), exemption = f.exemption.as_deref().unwrap_or("-"), detail = %detail,
                "IAM key finding."
            );
            report.results.push((f, outcome, detail));
        }
        report.calls = self.calls;
        gauge!(names::IAM_KEYS_SEEN).set(report.keys as f64);
        gauge!(names::IAM_LAST_SWEEP).set(Utc::now().timestamp() as f64);
        Ok(report)
    }

    async fn users(&mut self) -> Result<Vec<(String, String, String)>, String> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            self.pace().await;
            let page = self
                .iam
                .list_users()
                .set_marker(marker.clone())
                .max_items(1000)
                .send()
                .await
                .map_err(|e| err(&e))?;
            for u in page.users() {
                out.push((u.user_name().to_owned(), u.arn().to_owned(), u.path().to_owned()));
            }
            if !page.is_truncated() {
                return Ok(out);
            }
            marker = page.marker().map(str::to_owned);
        }
    }

    /// Users whose report line shows a key worth a closer look, and the number of keys seen.
    async fn report_hints(&mut self, now: DateTime<Utc>) -> Result<(HashSet<String>, usize), String> {
        let mut csv = None;
        for _ in 0..30 {
            self.pace().await;
            match self.iam.get_credential_report().send().await {
                Ok(r)
                    if r.generated_time()
                        .is_some_and(|t| (now - time(t)).num_hours() < 4) =>
                {
                    csv = r
                        .content
                        .map(|c| String::from_utf8_lossy(c.as_ref()).into_owned());
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.code(),
                        Some("ReportNotPresent" | "ReportExpired" | "ReportInProgress")
                    ) => {}
                Err(e) => return Err(err(&e)),
            }
            self.pace().await;
            self.iam
                .generate_credential_report()
                .send()
                .await
                .map_err(|e| err(&e))?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let csv = csv.ok_or("the credential report was not ready after 30 tries")?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let col = |n: &str| header.iter().position(|h| *h == n);
        let parse = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut hinted = HashSet::new();
        let mut keys = 0;
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let cell = |n: &str| col(n).and_then(|i| cells.get(i).copied()).unwrap_or("N/A");
            for n in 1..=2 {
                let rotated = parse(cell(&format!("access_key_{n}_last_rotated")));
                let Some(created) = rotated else { continue };
                keys += 1;
                let active = cell(&format!("access_key_{n}_active")).eq_ignore_ascii_case("true");
                let used = parse(cell(&format!("access_key_{n}_last_used_date")));
                let probe = KeyInfo {
                    user_name: String::new(),
                    user_arn: String::new(),
                    user_path: String::new(),
                    user_tags: vec![],
                    access_key_id: String::new(),
                    active,
                    created,
                    last_used: used.map(|date| LastUse {
                        date,
                        service: String::new(),
                        region: String::new(),
                    }),
                    inactive_since: None,
                };
                let stale = !super::evaluate(&probe, now, &self.policy).is_empty();
                if stale && (active || self.policy.action == super::KeyAction::Delete) {
                    hinted.insert(cell("user").to_owned());
                }
            }
        }
        Ok((hinted, keys))
    }

    async fn user_keys(
        &mut self,
        name: &str,
        arn: &str,
        path: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyInfo>, String> {
        self.pace().await;
        let listed = self
            .iam
            .list_access_keys()
            .user_name(name)
            .send()
            .await
            .map_err(|e| err(&e))?;
        let mut out = Vec::new();
        for m in listed.access_key_metadata() {
            let Some(id) = m.access_key_id() else { continue };
            let active = m.status() == Some(&StatusType::Active);
            let created = m.create_date().map(time).unwrap_or(now);
            self.pace().await;
            let last_used = match self.iam.get_access_key_last_used().access_key_id(id).send().await {
                Ok(r) => r.access_key_last_used().and_then(|u| {
                    u.last_used_date().map(|d| LastUse {
                        date: time(d),
                        service: u.service_name().to_owned(),
                        region: u.region().to_owned(),
                    })
                }),
                Err(e) => {
                    warn!(access_key_id = id, error = %err(&e), "Cannot read a key's last use; treating it as unknown.");
                    continue;
                }
            };
            let inactive_since = if !active && self.policy.action == super::KeyAction::Delete {
                self.inactive_since(id, created, now).await
            } else {
                None
            };
            out.push(KeyInfo {
                user_name: name.to_owned(),
                user_arn: arn.to_owned(),
                user_path: path.to_owned(),
                user_tags: vec![],
                access_key_id: id.to_owned(),
                active,
                created,
                last_used,
                inactive_since,
            });
        }
        Ok(out)
    }

    async fn inactive_since(
        &mut self,
        key_id: &str,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
        let attr = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::ResourceName)
            .attribute_value(key_id)
            .build()
            .ok()?;
        let mut pages = self
            .cloudtrail
            .lookup_events()
            .lookup_attributes(attr)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.ok()?;
            for e in page.events() {
                let Some(rec) = e
                    .cloud_trail_event()
                    .and_then(|t| crate::event::Record::parse(t).ok())
                else {
                    continue;
                };
                if rec.name() == "UpdateAccessKey"
                    && rec.succeeded()
                    && rec.request_str("accessKeyId") == Some(key_id)
                {
                    // Newest first: the latest status change decides.
                    return (rec.request_str("status") == Some("Inactive"))
                        .then(|| e.event_time().map(time))
                        .flatten();
                }
            }
        }
        let horizon = now - chrono::Duration::days(90);
        (created < horizon).then_some(horizon)
    }

    async fn tags(&mut self, user: &str) -> Vec<(String, String)> {
        self.pace().await;
        match self.iam.list_user_tags().user_name(user).send().await {
            Ok(t) => t
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
            Err(e) => {
                warn!(user, error = %err(&e), "Cannot read user tags; tag exemptions cannot apply.");
                vec![]
            }
        }
    }

    async fn status(&mut self, user: &str, key: &str) -> Option<StatusType> {
        self.pace().await;
        let l = self.iam.list_access_keys().user_name(user).send().await.ok()?;
        l.access_key_metadata()
            .iter()
            .find(|m| m.access_key_id() == Some(key))
            .and_then(|m| m.status().cloned())
    }

    async fn act(&mut self, f: &KeyFinding) -> (Outcome, String) {
        let (user, key) = (f.key.user_name.clone(), f.key.access_key_id.clone());
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
                format!("dry run: would {}", planned_action(f.planned)),
            ),
            Planned::Deactivate => {
                self.pace().await;
                if let Err(e) = self
                    .iam
                    .update_access_key()
                    .user_name(&user)
                    .access_key_id(&key)
                    .status(StatusType::Inactive)
                    .send()
                    .await
                {
                    return (Outcome::Failed, format!("UpdateAccessKey failed: {}", err(&e)));
                }
                match self.status(&user, &key).await {
                    Some(StatusType::Inactive) => (Outcome::Applied, "deactivated (UpdateAccessKey to Inactive, verified); reactivate it with aws iam update-access-key --status Active if this was a mistake".into()),
                    other => (Outcome::Failed, format!("UpdateAccessKey succeeded but the key is {other:?}")),
                }
            }
            Planned::Delete => {
                self.pace().await;
                if let Err(e) = self
                    .iam
                    .delete_access_key()
                    .user_name(&user)
                    .access_key_id(&key)
                    .send()
                    .await
                {
                    return (Outcome::Failed, format!("DeleteAccessKey failed: {}", err(&e)));
                }
                match self.status(&user, &key).await {
                    None => (
                        Outcome::Applied,
                        "deleted (it had been inactive long enough; verified gone)".into(),
                    ),
                    Some(s) => (
                        Outcome::Failed,
                        format!(
                            "DeleteAccessKey succeeded but the key is still listed ({})",
                            s.as_str()
                        ),
                    ),
                }
            }
        }
    }
}

pub fn planned_action(p: Planned) -> &'static str {
    match p {
        Planned::Notify | Planned::Exempt | Planned::WaitBeforeDelete => "notify",
        Planned::Deactivate | Planned::BlastRadius => "deactivate",
        Planned::Delete => "delete",
    }
}

/// The notification for one key finding.
pub fn render(f: &KeyFinding, outcome: Outcome, detail: &str, dry_run: bool) -> Message {
    let k = &f.key;
    let rules = f.rule_ids.join(", ");
    let what = match (f.planned, outcome) {
        (_, Outcome::DryRun) => format!("would {}", planned_action(f.planned)),
        (Planned::Deactivate, Outcome::Applied) => "deactivated".into(),
        (Planned::Delete, Outcome::Applied) => "deleted".into(),
        (_, Outcome::Failed) => format!("{} FAILED", planned_action(f.planned)),
        (Planned::Exempt, _) => "exempt".into(),
        (Planned::BlastRadius, _) => "NOT changed (blast radius)".into(),
        _ => "stale".into(),
    };
    let reason = if f.rule_ids.contains(&super::UNUSED) {
        if f.never_used {
            format!("never used, created {}d ago", f.age_days)
        } else {
            format!("unused {}d", f.unused_days)
        }
    } else {
        format!("{}d old", f.age_days)
    };
    let subject = clean_subject(&format!(
        "[MEDIUM] IAM key {} of {}: {what}, {reason}",
        k.access_key_id, k.user_name
    ));
    let last_use = match &k.last_used {
        Some(u) => format!("{} ({} in {})", u.date.to_rfc3339(), u.service, u.region),
        None => "never used (counted from its creation)".into(),
    };
    let mut fields = BTreeMap::new();
    fields.insert("1 Rules", rules.clone());
    fields.insert("2 User", format!("{} ({})", k.user_name, k.user_arn));
    fields.insert(
        "3 Access key",
        format!(
            "{} ({})",
            k.access_key_id,
            if k.active { "Active" } else { "Inactive" }
        ),
    );
    fields.insert(
        "4 Age",
        format!("{} days (created {})", f.age_days, k.created.to_rfc3339()),
    );
    fields.insert("5 Last use", last_use);
    fields.insert(
        "6 Exemption",
        f.exemption.clone().unwrap_or_else(|| "none".into()),
    );
    fields.insert("7 Action", planned_action(f.planned).into());
    fields.insert("8 Outcome", format!("{}: {detail}", outcome.as_str()));
    let mut text = String::from("An IAM access key breaks the CIS rotation/usage rules.\n\n");
    for (k, v) in &fields {
        text.push_str(&format!("  {:<13} {v}\n", &k[2..]));
    }
    if dry_run {
        text.push_str("\n(trailguard is in dry-run mode: it changes nothing)\n");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let json = json!({
        "version": 1, "notification_id": id, "rule_id": f.rule_ids.first(), "rule_ids": f.rule_ids,
        "severity": "medium", "outcome": outcome.as_str(), "dry_run": dry_run, "finding": f,
        "action": planned_action(f.planned), "detail": detail,
    });
    Message {
        id: id.clone(),
        subject,
        text,
        json,
        attributes: vec![
            (
                "rule_id",
                f.rule_ids.first().copied().unwrap_or_default().to_owned(),
            ),
            ("severity", "medium".into()),
            ("outcome", outcome.as_str().into()),
            ("notification_id", id),
        ],
    }
}
