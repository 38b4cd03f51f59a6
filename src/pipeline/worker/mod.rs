//! The worker: job → own-call check → protection policy → aggregation → audit → remediation →
//! outbox. One at a time, in the order findings arrive; it never waits on a notification (the
//! sender does that). The policy side (protection as of the event, trailguard's own calls, the
//! audit of every action) is in [`policy`].

mod keys;
mod policy;
mod recheck;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use keys::{EventHistory, Keys, LOOKUP_DEADLINE, UsageLookup};
pub use policy::{MemberRole, Own};

use super::acks::{Acks, window_handle};
use crate::actions::Remediator;
use crate::aggregate::{self, Decision, Window};
use crate::aws::Place;
use crate::clock::Clock;
use crate::job::Job;
use crate::notify;
use crate::outbox::Entry;
use crate::plan::{self, KeyFacts};
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
    /// Where the keys are (accounts and regions), for the periodic snapshot of their aliases
    /// and tags.
    pub places: Vec<Place>,
    /// trailguard's own identity: its calls never trigger an action.
    pub own: Own,
    /// Wakes the sender when something is queued.
    pub outbox: Arc<Notify>,
    pub windows: HashMap<String, Window>,
    /// The last facts snapshotted per key (to store only changes).
    pub known: HashMap<String, KeyFacts>,
    /// Usage lookups, the used-key policy, aliases and keys pending deletion.
    pub keys: Keys,
    /// Queue messages waiting on jobs (see `pipeline::acks`).
    pub acks: Acks,
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
        self.refresh_facts().await;
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
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + self.refresh, self.refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut looked_up = self.keys.results();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                job = jobs.recv() => match job {
                    Some(job) => self.process(job).await,
                    None => break,
                },
                Some((id, usage)) = looked_up.recv() => self.resume(id, usage).await,
                _ = tick.tick() => self.close_windows(false),
                _ = refresh.tick() => self.refresh_facts().await,
            }
        }
        self.close_windows(true);
        info!("Worker stopped.");
    }

    pub async fn process(&mut self, mut job: Job) {
        self.alias_event(&job);
        if !self.decide(&mut job).await {
            // Nothing to act on and nothing to say (trailguard's own failed call, an alias
            // removed from a key that was not protected).
            if let Err(e) = self.store.drop_job(&job.id) {
                error!(error = %e, "Cannot remove a finished job.");
            }
            self.acks.done(&job.id);
            return;
        }
        // A rescue by the protection policy never waits for a usage lookup: the use is looked
        // up after it, for the notification only.
        if job.pending_action().is_none() && self.park(&job) {
            return; // picked up again once its key's use is known
        }
        self.decide_usage(&mut job).await;
        let now = self.clock.now();
        let key = aggregate::window_key(&job);
        if job.remediation.is_none()
            && aggregate::decide(self.windows.get(&key), &job, now, self.window) == Decision::Fold
            && let Some(w) = self.windows.get_mut(&key)
        {
            w.more += 1;
            telemetry::notification(NotificationOutcome::Aggregated);
            match self.store.fold(&job.id, &key, w) {
                Ok(()) => self.acks.moved(&job.id, &window_handle(&key)),
                Err(e) => {
                    error!(error = %e, "Cannot record an aggregated finding.");
                    self.acks.failed(&job.id);
                }
            }
            // A deletion scheduled again (after a cancel) within the window is still followed.
            self.track(&job);
            return;
        }
        if let Some(action) = job.pending_action() {
            // Recorded before the first change: a run a restart cuts is resumed from the key's
            // state (a rescue cancelled but not re-enabled yet), not started afresh.
            let resumed = job.remediation_started.is_some();
            if !resumed {
                job.remediation_started = Some(self.clock.now());
                if let Err(e) = self.store.put_job(&job) {
                    error!(error = %e, "Cannot record that the remediation began.");
                }
            }
            let r = match self.audit(&job) {
                Some(refused) => refused,
                None => {
                    let (f, r) = (&job.finding, &self.remediator);
                    let (key, account) = (f.key_arn.as_deref(), f.account.as_deref());
                    if resumed {
                        r.resume(action, key, account).await
                    } else {
                        r.remediate(action, key, account).await
                    }
                }
            };
            telemetry::remediation(r.action, r.outcome);
            let (f, key_arn) = (&job.finding, job.finding.key_arn.as_deref().unwrap_or("-"));
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
        if job.remediation.is_some() && self.park(&job) {
            return; // rescued; the notification waits for the key's use
        }
        self.resolve_alias(&mut job).await;
        self.track(&job);
        let now = self.clock.now();
        if let Some(old) = self.windows.remove(&key) {
            self.close(&key, old, now);
        }
        let entry = Entry::new(notify::kms::render(&job, self.dry_run), now);
        let window = (!self.window.is_zero()).then(|| Window::open(job.clone(), now));
        self.acks.moved(&job.id, entry.id());
        let result = self
            .store
            .finish(Some(&job.id), &entry, window.as_ref().map(|w| (key.as_str(), w)));
        if let Err(e) = result {
            error!(error = %e, notification_id = %entry.id(), "Cannot queue a notification; the job is retried at the next start.");
            self.acks.failed(entry.id());
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
        let handle = window_handle(key);
        match &summary {
            Some(s) => self.acks.moved(&handle, s.id()),
            None => self.acks.done(&handle),
        }
        if let Err(e) = self.store.close_window(key, summary.as_ref()) {
            error!(error = %e, "Cannot close an aggregation window.");
            if let Some(s) = &summary {
                self.acks.failed(s.id());
            }
            return;
        }
        if summary.is_some() {
            self.outbox.notify_one();
        }
    }
}
