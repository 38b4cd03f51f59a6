//! The sender: publishes what the outbox holds, in its own task, so actions never wait on
//! notifications. Each entry has its own backoff ([`crate::outbox::backoff`]); after a failed
//! attempt the whole sender also pauses for that long, so an SNS outage costs one attempt per
//! backoff step, not one per waiting message.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::acks::Acks;
use crate::clock::Clock;
use crate::notify::Notifier;
use crate::outbox::{self, Entry};
use crate::state::Store;
use crate::telemetry::{self, NotificationOutcome};

/// At shutdown, publishing what is due may take this long; the rest waits for the next start.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

pub struct Sender<N> {
    pub notifier: N,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub wake: Arc<Notify>,
    /// Whether messages go to a topic (else they are logged).
    pub topic: bool,
    /// Queue messages waiting on notifications (see `super::acks`).
    pub acks: Acks,
}

impl<N: Notifier> Sender<N> {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        // After a failure, nothing is tried until then, however often new messages wake us.
        let mut paused_until: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            let wait = match paused_until.filter(|p| *p > now) {
                Some(p) => p - now,
                None => {
                    let before = failures;
                    let wait = self.round(&mut failures).await.unwrap_or(Duration::from_secs(60));
                    paused_until = (failures > before).then(|| tokio::time::Instant::now() + wait);
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if tokio::time::timeout(FINAL_FLUSH, self.round(&mut 0))
            .await
            .is_err()
        {
            warn!("Notifications still waiting at shutdown are sent at the next start.");
        }
        info!("Sender stopped.");
    }

    /// Publishes every due entry (until one fails); returns how long to wait before the next.
    async fn round(&self, failures: &mut u32) -> Option<Duration> {
        let (entries, bad) = match self.store.outbox() {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "Cannot read the outbox.");
                return Some(Duration::from_secs(5));
            }
        };
        if !bad.is_empty() {
            telemetry::quarantined(bad.len());
            for q in &bad {
                error!(key = %q.key, error = %q.error, "An outbox entry does not decode; moved to quarantine.");
            }
        }
        let now = self.clock.now();
        let (due, next) = outbox::due(&entries, now);
        let mut sent = 0;
        for e in due {
            match self.notifier.publish(&e.message).await {
                Ok(message_id) => {
                    *failures = 0;
                    sent += 1;
                    let outcome = if self.topic {
                        NotificationOutcome::Sent
                    } else {
                        NotificationOutcome::Logged
                    };
                    telemetry::notification(outcome);
                    info!(notification_id = %e.id(), message_id = %message_id, subject = %e.message.subject, attempts = e.attempts + 1, "Notification sent.");
                    self.acks.done(e.id());
                    if let Err(err) = self.store.remove_entry(e.id()) {
                        error!(error = %err, notification_id = %e.id(), "Cannot remove a sent notification; it may be sent again, with the same id.");
                    }
                }
                Err(err) => {
                    *failures += 1;
                    telemetry::notification(NotificationOutcome::Failed);
                    let mut retry: Entry = e.clone();
                    retry.failed(self.clock.now(), err.short());
                    warn!(notification_id = %e.id(), attempts = retry.attempts, error = %err, retry_at = %retry.next_attempt, "Notification failed; it stays in the outbox.");
                    if let Err(err) = self.store.update_entry(&retry) {
                        error!(error = %err, "Cannot reschedule a notification.");
                    }
                    self.report(&entries, sent, now);
                    return Some(outbox::backoff(*failures));
                }
            }
        }
        self.report(&entries, sent, now);
        next.map(|t| (t - self.clock.now()).to_std().unwrap_or_default())
    }

    fn report(&self, entries: &[Entry], sent: usize, now: chrono::DateTime<chrono::Utc>) {
        let pending = entries.len().saturating_sub(sent);
        let oldest = entries
            .iter()
            .map(|e| e.age(now))
            .max()
            .filter(|_| pending > 0)
            .unwrap_or_default();
        telemetry::outbox(pending, oldest);
    }
}

#[cfg(test)]
mod tests;
