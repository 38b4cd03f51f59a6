//! The worker: job → protection policy → aggregation → remediation → outbox. One at a time, in
//! the order findings arrive; it never waits on a notification (the sender does that).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::actions::Remediator;
use crate::aggregate::{self, Decision, Window};
use crate::clock::Clock;
use crate::job::Job;
use crate::notify;
use crate::outbox::Entry;
use crate::plan::{self, KeyFacts};
use crate::rules;
use crate::state::Store;
use crate::telemetry::{self, NotificationOutcome};

pub struct Worker<R> {
    pub remediator: R,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub dry_run: bool,
    pub window: Duration,
    pub policy: plan::Policy,
    pub refresh: Duration,
    /// Wakes the sender when something is queued.
    pub outbox: Arc<Notify>,
    pub windows: HashMap<String, Window>,
    /// Key aliases and tags for the policy, with when they were read.
    pub facts: HashMap<String, (Instant, KeyFacts)>,
}

impl<R: Remediator> Worker<R> {
    /// Handles `resumed` (jobs left by the last run), then jobs as they come, until `shutdown`
    /// or the pollers are gone. A job that has started always finishes.
    pub async fn run(
        mut self,
        resumed: Vec<Job>,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        shutdown: CancellationToken,
    ) {
        if !resumed.is_empty() {
            info!(
                count = resumed.len(),
                "Resuming unfinished jobs from the last run."
            );
        }
        for job in resumed {
            self.process(job).await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                job = jobs.recv() => match job {
                    Some(job) => self.process(job).await,
                    None => break,
                },
                _ = tick.tick() => self.close_windows(false),
            }
        }
        self.close_windows(true);
        info!("Worker stopped.");
    }

    pub async fn process(&mut self, mut job: Job) {
        if !self.policy.is_empty() && job.policy.is_none() {
            self.apply_policy(&mut job).await;
        }
        let now = self.clock.now();
        let key = aggregate::window_key(&job);
        if aggregate::decide(self.windows.get(&key), &job, now, self.window) == Decision::Fold
            && let Some(w) = self.windows.get_mut(&key)
        {
            w.more += 1;
            telemetry::notification(NotificationOutcome::Aggregated);
            if let Err(e) = self.store.fold(&job.id, &key, w) {
                error!(error = %e, "Cannot record an aggregated finding.");
            }
            return;
        }
        if let Some(action) = job.pending_action() {
            job.remediation_started = Some(self.clock.now());
            let f = &job.finding;
            let r = self
                .remediator
                .remediate(action, f.key_arn.as_deref(), f.account.as_deref())
                .await;
            telemetry::remediation(r.action, r.outcome);
            let key_arn = f.key_arn.as_deref().unwrap_or("-");
            if r.outcome.settled() {
                info!(rule_id = %f.rule_id, key_arn, action = r.action.as_str(), outcome = r.outcome.as_str(), detail = %r.detail, "Remediation finished.");
            } else {
                error!(rule_id = %f.rule_id, key_arn, action = r.action.as_str(), outcome = r.outcome.as_str(), detail = %r.detail, "Remediation failed.");
            }
            job.remediation = Some(r);
            job.remediated = true;
            if let Err(e) = self.store.put_job(&job) {
                error!(error = %e, "Cannot record the remediation outcome.");
            }
        }
        let now = self.clock.now();
        if let Some(old) = self.windows.remove(&key) {
            self.close(&key, old, now);
        }
        let entry = Entry::new(notify::kms::render(&job, self.dry_run), now);
        let window = (!self.window.is_zero()).then(|| Window::open(job.clone(), now));
        let result = self
            .store
            .finish(Some(&job.id), &entry, window.as_ref().map(|w| (key.as_str(), w)));
        if let Err(e) = result {
            error!(error = %e, notification_id = %entry.id(), "Cannot queue a notification; the job is retried at the next start.");
            return;
        }
        if let Some(w) = window {
            self.windows.insert(key, w);
        }
        self.outbox.notify_one();
    }

    /// Closes expired windows (all of them when `all`), queueing their summaries.
    fn close_windows(&mut self, all: bool) {
        let now = self.clock.now();
        let expired: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, w)| all || w.expired(now, self.window))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(w) = self.windows.remove(&k) {
                self.close(&k, w, now);
            }
        }
    }

    fn close(&mut self, key: &str, w: Window, now: chrono::DateTime<chrono::Utc>) {
        let summary = w
            .summary(now)
            .map(|job| Entry::new(notify::kms::render(&job, self.dry_run), now));
        if let Err(e) = self.store.close_window(key, summary.as_ref()) {
            error!(error = %e, "Cannot close an aggregation window.");
            return;
        }
        if summary.is_some() {
            self.outbox.notify_one();
        }
    }

    /// Applies the KMS protection policy to a finding: decides its actions and records why.
    async fn apply_policy(&mut self, job: &mut Job) {
        let Some(arn) = job.finding.key_arn.clone() else {
            return;
        };
        if job.finding.rule_id != rules::KEY_DISABLED && job.finding.rule_id != rules::KEY_DELETION_SCHEDULED
        {
            return;
        }
        let cached = self
            .facts
            .get(&arn)
            .filter(|(at, _)| at.elapsed() < self.refresh)
            .map(|(_, f)| f.clone());
        let facts = match cached {
            Some(f) => f,
            None => match self
                .remediator
                .key_facts(&arn, self.policy.needs_aliases(), self.policy.needs_tags())
                .await
            {
                Ok(f) => {
                    self.facts.insert(arn.clone(), (Instant::now(), f.clone()));
                    f
                }
                Err(e) => {
                    // Without facts the policy cannot tell whether the key is protected: notify,
                    // act on nothing, and say why.
                    warn!(key_arn = %arn, error = %e, "Cannot read the key's aliases or tags for the protection policy.");
                    job.policy = Some(format!(
                        "could not read the key's aliases/tags ({}); nothing reverted",
                        e.short()
                    ));
                    return;
                }
            },
        };
        if let Some(d) = plan::decide(&self.policy, &job.finding, &facts, self.clock.now()) {
            info!(rule_id = %job.finding.rule_id, key_arn = %arn, actions = ?d.actions, policy = %d.reason, "Protection policy decided.");
            job.remediated = !d.actions.iter().any(|a| a.remediates());
            job.finding.actions = d.actions;
            job.policy = Some(d.reason);
            if let Err(e) = self.store.put_job(job) {
                error!(error = %e, "Cannot record the policy decision.");
            }
        }
    }
}
#[cfg(test)]
mod tests;
