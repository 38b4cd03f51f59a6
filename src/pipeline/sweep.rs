//! The IAM sweep loop: a sweep at start, then every `iam.sweep_interval`; each finding's
//! message goes to the outbox, with the deactivations it reports, in one transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::iam::sweep::{Sweeper, planned_action};
use crate::iam::{IamApi, Planned};
use crate::job::Outcome;
use crate::notify;
use crate::outbox::Entry;
use crate::sources::LookupApi;
use crate::state::Store;
use crate::telemetry::{self, SweepOutcome};

pub struct SweepLoop<I, L> {
    pub sweeper: Sweeper<I, L>,
    pub interval: Duration,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub outbox: Arc<Notify>,
}

impl<I: IamApi, L: LookupApi> SweepLoop<I, L> {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let started = tokio::time::Instant::now();
            let now = self.clock.now();
            let deactivated = self.store.deactivations().unwrap_or_else(|e| {
                error!(error = %e, "Cannot read trailguard's record of deactivated keys; no key is deleted on its evidence this sweep.");
                Default::default()
            });
            match self.sweeper.sweep(now, &deactivated).await {
                Ok(report) => {
                    info!(
                        users = report.users,
                        keys = report.keys,
                        findings = report.results.len(),
                        calls = report.calls,
                        credential_report = report.used_credential_report,
                        "IAM sweep completed."
                    );
                    let sweep_id = now.to_rfc3339();
                    let mut entries = Vec::new();
                    let mut new_deactivations = Vec::new();
                    for r in &report.results {
                        let f = &r.finding;
                        telemetry::remediation(planned_action(f.planned), r.outcome);
                        for rule in &f.rule_ids {
                            telemetry::finding(rule);
                        }
                        info!(
                            user = %f.key.user_name, access_key_id = %f.key.access_key_id, rules = ?f.rule_ids,
                            age_days = f.age_days, unused_days = f.unused_days, planned = ?f.planned,
                            outcome = r.outcome.as_str(), exemption = f.exemption.as_deref().unwrap_or("-"), detail = %r.detail,
                            "IAM key finding."
                        );
                        if f.planned == Planned::Deactivate && r.outcome == Outcome::Applied {
                            new_deactivations.push((f.key.access_key_id.clone(), now));
                        }
                        let msg =
                            notify::iam::render(f, r.outcome, &r.detail, self.sweeper.dry_run, &sweep_id);
                        entries.push(Entry::new(msg, now));
                    }
                    if !report.skipped.is_empty() {
                        entries.push(Entry::new(
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
                    match self.store.enqueue(&entries, &new_deactivations) {
                        Ok(()) => self.outbox.notify_one(),
                        Err(e) => error!(error = %e, "Cannot queue the sweep's notifications."),
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
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(started + self.interval) => {}
            }
        }
    }
}
