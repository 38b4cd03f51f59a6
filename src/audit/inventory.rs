//! Gathering what the audit reads, region by region: `ListKeys` and `ListAliases` (paged), then
//! per key, at most `concurrency` at once: `DescribeKey` (AWS-managed keys are skipped),
//! `GetKeyPolicy`, `GetKeyRotationStatus` (symmetric keys with KMS key material only, as AWS
//! answers `UnsupportedOperationException` for the others), and for keys pending deletion their
//! recent use (`LookupEvents`, paced well below the region's quota so a running daemon keeps its
//! share). Every call goes through the AWS layer's retry policy.
//!
//! Cost for N customer-managed keys in a region: `ceil(N/1000)` `ListKeys` + `ceil(aliases/100)`
//! `ListAliases` + N `DescribeKey` + N `GetKeyPolicy` + up to N `GetKeyRotationStatus`, plus up
//! to `kms.usage_lookup_pages` `LookupEvents` per key pending deletion.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{AuditFinding, AuditPolicy, KeyInfo, findings, unreadable};
use crate::arn::KeyArn;
use crate::aws::{AwsError, Place};
use crate::sources::LookupApi;
use crate::sources::usage::{UsageQuery, key_usage};
use crate::usage::Who;

/// What `DescribeKey` says, as far as the audit reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub arn: String,
    pub state: String,
    pub deletion_date: Option<DateTime<Utc>>,
    pub key_spec: String,
    pub origin: String,
    /// `CUSTOMER` or `AWS`.
    pub key_manager: String,
}

/// The KMS calls of the audit (the AWS implementation is in [`crate::aws::kms`]).
pub trait Inventory: Send + Sync + 'static {
    /// Every key id of the region.
    fn keys(&self, region: &str) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    /// Every alias of the region, with the id of its key.
    fn aliases(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Vec<(String, Option<String>)>, AwsError>> + Send;
    fn describe(&self, key: &KeyArn) -> impl Future<Output = Result<KeyMeta, AwsError>> + Send;
    /// The `default` key policy's JSON text.
    fn policy(&self, key: &KeyArn) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn rotation(&self, key: &KeyArn) -> impl Future<Output = Result<bool, AwsError>> + Send;
}

/// How the audit runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub account: String,
    pub policy: AuditPolicy,
    pub concurrency: usize,
    /// `LookupEvents` pages per key pending deletion (0: no usage lookups).
    pub usage_pages: usize,
}

/// One region's result.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<AuditFinding>,
    /// Customer-managed keys audited.
    pub keys: usize,
    /// AWS-managed keys skipped.
    pub aws_managed: usize,
    /// Reads that failed (the audit is incomplete).
    pub failures: usize,
}

fn short(e: &AwsError) -> String {
    e.short()
}

async fn one_key<I: Inventory, L: LookupApi>(
    api: Arc<I>,
    lookup: Option<Arc<L>>,
    key: KeyArn,
    aliases: Result<Vec<String>, String>,
    s: Arc<Settings>,
    now: DateTime<Utc>,
) -> Result<Option<KeyInfo>, AuditFinding> {
    let meta = api
        .describe(&key)
        .await
        .map_err(|e| unreadable(&key.arn, "the key (DescribeKey)", &short(&e)))?;
    if meta.key_manager == "AWS" {
        return Ok(None);
    }
    let pending = meta.state.starts_with("Pending") && meta.state.ends_with("Deletion");
    let policy = api.policy(&key).await.map_err(|e| short(&e));
    let rotation = if KeyInfo::rotates(&meta.key_spec, &meta.origin) && !pending {
        Some(api.rotation(&key).await.map_err(|e| short(&e)))
    } else {
        None
    };
    let usage = match lookup.filter(|_| pending && s.usage_pages > 0) {
        Some(l) => {
            let from = now - chrono::Duration::from_std(s.policy.usage_window).unwrap_or_default();
            let q = UsageQuery {
                place: Place::new(&key.account, &key.region),
                key_arn: key.arn.clone(),
                from,
                to: now,
                scheduler: Who::default(),
                pages: s.usage_pages,
                deadline: Duration::from_secs(120),
            };
            Some(key_usage(&*l, &q, &|_| false).await)
        }
        None => None,
    };
    Ok(Some(KeyInfo {
        arn: key.arn.clone(),
        account: key.account.clone(),
        region: key.region.clone(),
        state: meta.state,
        deletion_date: meta.deletion_date,
        key_spec: meta.key_spec,
        origin: meta.origin,
        policy,
        rotation,
        aliases,
        usage,
    }))
}

/// Audits one region; `progress(done, total)` is called as keys finish.
pub async fn region<I: Inventory, L: LookupApi>(
    api: Arc<I>,
    lookup: Option<Arc<L>>,
    region: &str,
    s: Arc<Settings>,
    now: DateTime<Utc>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Report {
    let mut report = Report::default();
    let ids = match api.keys(region).await {
        Ok(ids) => ids,
        Err(e) => {
            report.failures += 1;
            let place = format!(
                "arn:{}:kms:{region}:{}:key/*",
                crate::arn::partition_of(region),
                s.account
            );
            report
                .findings
                .push(unreadable(&place, "the region's keys (ListKeys)", &short(&e)));
            return report;
        }
    };
    let aliases = api.aliases(region).await.map_err(|e| short(&e));
    if aliases.is_err() {
        report.failures += 1;
    }
    let permits = Arc::new(Semaphore::new(s.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for id in &ids {
        let key = match KeyArn::parse(id) {
            Some(k) => k,
            None => KeyArn::from_id(region, &s.account, id),
        };
        let of_key = aliases.as_ref().map_err(Clone::clone).map(|all| {
            let mut a: Vec<String> = all
                .iter()
                .filter(|(_, target)| target.as_deref() == Some(key.key_id.as_str()))
                .map(|(name, _)| name.clone())
                .collect();
            a.sort();
            a
        });
        let (api, lookup, s, permits) = (api.clone(), lookup.clone(), s.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            one_key(api, lookup, key, of_key, s, now).await
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        done += 1;
        progress(done, ids.len());
        match joined {
            Ok(Ok(Some(info))) => {
                report.keys += 1;
                report.failures += usize::from(info.policy.is_err())
                    + usize::from(matches!(info.rotation, Some(Err(_))))
                    + usize::from(info.usage.as_ref().is_some_and(|u| u.pages == 0));
                report.findings.extend(findings(&info, &s.policy));
            }
            Ok(Ok(None)) => report.aws_managed += 1,
            Ok(Err(f)) => {
                report.failures += 1;
                report.findings.push(f);
            }
            Err(e) => {
                report.failures += 1;
                report.findings.push(unreadable(region, "a key", &e.to_string()));
            }
        }
    }
    report
        .findings
        .sort_by(|a, b| a.key_arn.cmp(&b.key_arn).then(b.severity.cmp(&a.severity)));
    report
}
