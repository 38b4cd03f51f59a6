//! The IAM sweep loop: a sweep at start, then every `iam.sweep_interval` (sooner when a
//! deletion decision is due for its re-check). A change of a key (a deactivation, a deletion)
//! has its message put in the outbox, with the deactivation it reports, as soon as the call
//! has succeeded, before it is verified, in one transaction: a sweep cut short by a crash has
//! said what it did. A failed call or verification is queued at once too; the other findings'
//! messages when the sweep ends.
//!
//! Each change is written down before its call ([`crate::iam::intent`]) and the note removed in
//! the transaction that queues its message. A note found at the start of a sweep is a change a
//! crash (or a failed write) left unreported: the key's status says what it came to, and that
//! is notified before the sweep decides anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::iam::intent::{self, Intent, KeyStatus};
use crate::iam::sweep::{Step, SweepResult, Sweeper, planned_action};
use crate::iam::{IamApi, Planned};
use crate::job::{ActionKind, Outcome};
use crate::notify;
use crate::outbox::Entry;
use crate::sources::LookupApi;
use crate::state::Store;
use crate::telemetry::{self, SweepOutcome};

fn delay(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::minutes(15))
}

pub struct SweepLoop<I, L> {
    pub sweeper: Sweeper<I, L>,
    pub interval: Duration,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub outbox: Arc<Notify>,
}

/// What a sweep has still to queue when it ends.
#[derive(Default)]
struct Queued {
    entries: Vec<Entry>,
    deactivated: Vec<(String, DateTime<Utc>)>,
    /// The intents the entries account for: (key, sweep).
    settled: Vec<(String, String)>,
}

impl<I: IamApi, L: LookupApi> SweepLoop<I, L> {
    /// Accounts for the changes an earlier run left open at once, then sweeps after `after`
    /// (many accounts' sweeps are spread over the interval) and every interval.
    pub async fn run(self, after: Duration, shutdown: CancellationToken) {
        let mut waiting = self.reconcile(self.clock.now()).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(after) => {}
        }
        let mut first = true;
        loop {
            let started = tokio::time::Instant::now();
            let now = self.clock.now();
            let deactivated = self.store.deactivations().unwrap_or_else(|e| {
                error!(error = %e, "Cannot read trailguard's record of deactivated keys; no key is deleted on its evidence this sweep.");
                Default::default()
            });
            let pending = self.store.pending_deletes().unwrap_or_else(|e| {
                error!(error = %e, "Cannot read the deletions decided before; they are decided again.");
                HashMap::new()
            });
            if !std::mem::take(&mut first) {
                waiting = self.reconcile(now).await;
            }
            let sweep_id = now.to_rfc3339();
            let mut queued = Queued::default();
            let swept = self
                .sweeper
                .sweep(now, &deactivated, &pending, |step| match step {
                    Step::Intend(f) => self.intend(f, &sweep_id),
                    Step::Done(r) => self.found(r, now, &sweep_id, &mut queued),
                })
                .await;
            let mut next = started + self.interval;
            match swept {
                Ok(report) => {
                    info!(
                        users = report.users,
                        keys = report.keys,
                        findings = report.results.len(),
                        calls = report.calls,
                        credential_report = report.used_credential_report,
                        "IAM sweep completed."
                    );
                    if !report.skipped.is_empty() {
                        queued.entries.push(Entry::new(
                            notify::iam::skipped(&report.skipped, &sweep_id, self.clock.host_now()),
                            now,
                        ));
                    }
                    let seen_active: Vec<String> = report
                        .active
                        .iter()
                        .filter(|k| deactivated.contains_key(*k))
                        .cloned()
                        .collect();
                    if let Err(e) = self.store.forget_deactivations(&seen_active) {
                        error!(error = %e, "Cannot update the record of deactivated keys.");
                    }
                    if let Err(e) = self
                        .store
                        .update_pending_deletes(&report.pending, &report.settled)
                    {
                        error!(error = %e, "Cannot record the deletions decided; they are decided again at the next sweep.");
                    }
                    // A deletion decision is re-checked at its due time, not a whole interval on.
                    let wait = self.sweeper.delete_wait;
                    // So is a change begun before an interruption that waits for event history.
                    let decided = report.pending.iter().map(|(_, p)| p.due(wait));
                    if let Some(due) = decided.chain(waiting).min() {
                        let after = (due - now)
                            .to_std()
                            .unwrap_or_default()
                            .max(Duration::from_secs(1));
                        next = next.min(started + after);
                    }
                    telemetry::iam_sweep(
                        SweepOutcome::Ok,
                        Some(report.keys),
                        self.clock.host_now().timestamp() as f64,
                    );
                }
                Err(e) => {
                    telemetry::iam_sweep(SweepOutcome::Failed, None, 0.0);
                    warn!(error = %e, "IAM sweep failed; it runs again at the next interval.");
                }
            }
            if !queued.entries.is_empty() || !queued.deactivated.is_empty() {
                match self
                    .store
                    .enqueue(&queued.entries, &queued.deactivated, &queued.settled)
                {
                    Ok(()) => self.outbox.notify_one(),
                    Err(e) => error!(error = %e, "Cannot queue the sweep's notifications."),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Accounts for the changes begun before an interruption: each key's status now, notified.
    /// An intent whose key cannot be read stays for the next sweep. Returns when the first of
    /// those that wait for event history can be concluded.
    async fn reconcile(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let intents = match self.store.intents() {
            Ok((intents, bad)) => {
                telemetry::quarantined(bad.len());
                for q in bad {
                    error!(key = %q.key, error = %q.error, "A record of an IAM change begun does not decode; moved to quarantine. The change it noted may have been made: see event history for the key.");
                }
                intents
            }
            Err(e) => {
                error!(error = %e, "Cannot read the IAM changes begun before; they are accounted for at the next sweep.");
                return None;
            }
        };
        let mut waiting: Option<DateTime<Utc>> = None;
        for i in intents.iter().filter(|i| i.account == self.sweeper.account()) {
            let status = match self.sweeper.key_status(&i.user, &i.access_key_id).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(user = %i.user, access_key_id = %i.access_key_id, error = %e, "Cannot read a key that a change begun before an interruption was about; tried again at the next sweep.");
                    continue;
                }
            };
            // A key Active again: did the deactivation happen? Event history says, once
            // CloudTrail has had its delivery delay to show it.
            let mut deactivated = None;
            if status == KeyStatus::Active && i.action == ActionKind::Deactivate {
                match self.sweeper.deactivation_since(&i.access_key_id, i.at).await {
                    Ok(Some(found)) => deactivated = Some(found),
                    Ok(None) if now - i.at < delay(self.sweeper.delete_wait) => {
                        let due = i.at + delay(self.sweeper.delete_wait);
                        waiting = Some(waiting.map_or(due, |w| w.min(due)));
                        info!(user = %i.user, access_key_id = %i.access_key_id, "A key a change begun before an interruption was about is Active; waiting for event history to show whether the change was made.");
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(user = %i.user, access_key_id = %i.access_key_id, error = %e, "Cannot read the event history of a key a change begun before an interruption was about; tried again at the next sweep.");
                        continue;
                    }
                }
            }
            let (outcome, detail) = i.settle(status, deactivated);
            telemetry::remediation(i.action, outcome);
            warn!(
                user = %i.user, access_key_id = %i.access_key_id, action = i.action.as_str(),
                begun = %i.at, sweep = %i.sweep, outcome = outcome.as_str(), detail = %detail,
                "IAM change begun before an interruption, accounted for."
            );
            let entry = Entry::new(notify::iam::interrupted(i, outcome, &detail), now);
            match self.store.enqueue(&[entry], &[], &[(i.key(), i.sweep.clone())]) {
                Ok(()) => self.outbox.notify_one(),
                Err(e) => {
                    error!(error = %e, "Cannot queue the message of a change begun before an interruption; tried again at the next sweep.")
                }
            }
        }
        waiting
    }

    /// A change is about to be made: written down first, or not made.
    fn intend(&self, f: &crate::iam::KeyFinding, sweep_id: &str) -> bool {
        let i = Intent::new(self.sweeper.account(), f, sweep_id, self.clock.now());
        match self.store.intend(&i) {
            Ok(true) => true,
            Ok(false) => {
                warn!(user = %i.user, access_key_id = %i.access_key_id, "An earlier change of this key is not accounted for yet; the key is left as it is until it is.");
                false
            }
            Err(e) => {
                error!(user = %i.user, access_key_id = %i.access_key_id, error = %e, "Cannot write down an IAM change before making it; the key is left as it is.");
                false
            }
        }
    }

    /// One finding, as soon as it is known: logged and counted; its message queued now if the
    /// key was changed (or a change was tried), else at the end of the sweep. Returns whether
    /// the message is in the outbox.
    fn found(&self, r: &SweepResult, now: DateTime<Utc>, sweep_id: &str, queued: &mut Queued) -> bool {
        let f = &r.finding;
        if !r.made {
            telemetry::remediation(planned_action(f.planned), r.outcome);
            for rule in &f.rule_ids {
                telemetry::finding(rule);
            }
        }
        info!(
            user = %f.key.user_name, access_key_id = %f.key.access_key_id, rules = ?f.rule_ids,
            age_days = f.age_days, unused_days = f.unused_days, planned = ?f.planned,
            outcome = r.outcome.as_str(), exemption = f.exemption.as_deref().unwrap_or("-"), detail = %r.detail,
            "IAM key finding."
        );
        if r.notified {
            return true; // queued when the change was made
        }
        let deactivated: Vec<(String, DateTime<Utc>)> = (f.planned == Planned::Deactivate
            && r.outcome == Outcome::Applied)
            .then(|| (f.key.access_key_id.clone(), now))
            .into_iter()
            .collect();
        let msg = notify::iam::render(f, r.outcome, &r.detail, self.sweeper.dry_run, sweep_id);
        let entry = Entry::new(msg, now);
        // A change's message accounts for this sweep's intent, unless whether the change was
        // made is still open.
        let settled: Vec<(String, String)> = (matches!(f.planned, Planned::Deactivate | Planned::Delete)
            && !self.sweeper.dry_run
            && !r.keep_intent)
            .then(|| {
                (
                    intent::key(self.sweeper.account(), &f.key.access_key_id),
                    sweep_id.to_owned(),
                )
            })
            .into_iter()
            .collect();
        let changed = matches!(f.planned, Planned::Deactivate | Planned::Delete)
            && matches!(r.outcome, Outcome::Applied | Outcome::Failed);
        if changed {
            match self
                .store
                .enqueue(std::slice::from_ref(&entry), &deactivated, &settled)
            {
                Ok(()) => {
                    self.outbox.notify_one();
                    return true;
                }
                Err(e) => {
                    error!(error = %e, "Cannot queue a finding's notification; retried when the sweep ends.")
                }
            }
        }
        if r.made {
            return false; // the verified result is queued instead
        }
        queued.entries.push(entry);
        queued.deactivated.extend(deactivated);
        queued.settled.extend(settled);
        false
    }
}
