//! The reminders loop: every `kms.reminder_interval`, each key pending deletion that trailguard
//! follows is checked with `DescribeKey`, and a due reminder is queued as a job for the worker,
//! with the key's use since it was scheduled (the promise is in [`crate::usage::reminders`]).
//!
//! Cost per check: one `DescribeKey` per key followed; per reminder, one usage lookup (at most
//! `kms.usage_lookup_pages` `LookupEvents` requests, at background priority).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::worker::UsageLookup;
use crate::actions::KeyApi;
use crate::arn::KeyArn;
use crate::aws::{ErrorType, Place};
use crate::clock::Clock;
use crate::job::Job;
use crate::sources::usage::UsageQuery;
use crate::state::Store;
use crate::telemetry::{self, SweepOutcome};
use crate::usage::reminders::{self, PendingKey};
use crate::usage::{Usage, UsagePolicy, Who};

pub struct Reminders<K> {
    pub keys: K,
    pub lookups: Arc<dyn UsageLookup>,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub usage: UsagePolicy,
    /// The accounts trailguard guards (it reads their event history).
    pub accounts: Vec<String>,
    /// The worker's queue.
    pub jobs: mpsc::UnboundedSender<Job>,
}

impl<K: KeyApi> Reminders<K> {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.usage.reminder_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let outcome = self.check().await;
                    if outcome.0 == SweepOutcome::Failed {
                        warn!("Some keys pending deletion could not be checked; they are checked again next time.");
                    }
                    telemetry::keys::reminder_check(outcome.0, outcome.1);
                }
            }
        }
    }

    /// One check of every key followed: (outcome, keys still followed).
    pub async fn check(&self) -> (SweepOutcome, usize) {
        let (keys, bad) = match self.store.pending_keys() {
            Ok(k) => k,
            Err(e) => {
                error!(error = %e, "Cannot read the keys pending deletion.");
                return (SweepOutcome::Failed, 0);
            }
        };
        for q in &bad {
            error!(table = q.table, key = %q.key, error = %q.error, "A stored entry does not decode; moved to quarantine.");
        }
        telemetry::quarantined(bad.len());
        let mut outcome = SweepOutcome::Ok;
        let mut followed = 0;
        for key in keys {
            match self.check_key(key).await {
                Ok(true) => followed += 1,
                Ok(false) => {}
                Err(()) => {
                    outcome = SweepOutcome::Failed;
                    followed += 1;
                }
            }
        }
        (outcome, followed)
    }

    fn forget(&self, arn: &str, why: &str) {
        info!(key_arn = %arn, reason = why, "No longer following the key for reminders.");
        if let Err(e) = self.store.forget_pending(arn) {
            error!(error = %e, "Cannot forget a key no longer pending deletion.");
        }
    }

    /// Checks one key: Ok(still followed), Err on a failure (tried again next time).
    async fn check_key(&self, key: PendingKey) -> Result<bool, ()> {
        let Some(arn) = KeyArn::parse(key.key_arn()) else {
            self.forget(key.key_arn(), "not a key ARN");
            return Ok(false);
        };
        let desc = match self.keys.describe_key(&arn).await {
            Ok(d) => d,
            Err(e) if e.error_type == ErrorType::NotFound => {
                self.forget(&arn.arn, "the key no longer exists");
                return Ok(false);
            }
            Err(e) => {
                warn!(key_arn = %arn.arn, error = %e, "Cannot read a key pending deletion.");
                return Err(());
            }
        };
        if !desc.state.pending_deletion() {
            self.forget(&arn.arn, "the key is no longer pending deletion");
            return Ok(false);
        }
        // NOTE: PendingReplicaDeletion has no date until its replicas are gone: nothing to count
        // down to yet.
        let Some(deletion) = desc.deletion_date else {
            return Ok(true);
        };
        let now = self.clock.now();
        if now >= deletion {
            self.forget(&arn.arn, "the deletion date has passed");
            return Ok(false);
        }
        let Some(due) = reminders::due(&self.usage.reminders, deletion, now, &key.reminded) else {
            return Ok(true);
        };
        let usage = self.usage_since(&key, &arn, now).await;
        telemetry::keys::usage_lookup(&usage);
        let job = reminders::job(&key, &due, deletion, usage, now);
        let mut sent = key.clone();
        sent.reminded.extend(&due.settles);
        if let Err(e) = self.store.remind(&job, &sent) {
            error!(error = %e, "Cannot queue a reminder; it is tried again next time.");
            return Err(());
        }
        info!(key_arn = %arn.arn, deletion_date = %deletion, point = %crate::usage::human(due.point), "Reminder of a deletion date queued.");
        telemetry::keys::reminder();
        let _ = self.jobs.send(job); // without a worker, the job is resumed at the next start
        Ok(true)
    }

    async fn usage_since(&self, key: &PendingKey, arn: &KeyArn, now: chrono::DateTime<chrono::Utc>) -> Usage {
        let from = key.scheduled_at;
        if !self.usage.enabled() {
            return Usage::unknown(from, now, "usage lookups are off (kms.usage_window = \"0s\")");
        }
        if !self.accounts.contains(&arn.account) {
            return Usage::unknown(
                from,
                now,
                format!(
                    "the key is in account {}, which trailguard does not guard: its event history is not read",
                    arn.account
                ),
            );
        }
        self.lookups
            .usage(UsageQuery {
                place: Place::new(&arn.account, &arn.region),
                key_arn: arn.arn.clone(),
                from,
                to: now,
                scheduler: Who {
                    principal: key.finding.principal_arn.clone(),
                    session_issuer: key.finding.session_issuer_arn.clone(),
                },
                pages: self.usage.pages,
                deadline: super::worker::LOOKUP_DEADLINE,
            })
            .await
    }
}

#[cfg(test)]
mod tests;
