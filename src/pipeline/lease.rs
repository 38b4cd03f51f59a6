//! Standing by and holding the lease (see [`crate::lease`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::lease::{Claim, Holder, LeaseApi, LeaseConfig};
use crate::telemetry::{self, Health};

#[derive(Clone)]
pub(super) struct Lease<L> {
    pub api: L,
    pub account: String,
    pub config: LeaseConfig,
    pub clock: Clock,
    pub health: Arc<Health>,
    /// Whether standing by leaves the daemon idle (not ready); false when queue sources keep it
    /// working without the lease.
    pub standby: bool,
}

impl<L: LeaseApi + Clone> Lease<L> {
    /// Stands by until the lease is ours (`None`: shutdown first).
    pub async fn wait(&self, shutdown: &CancellationToken) -> Option<Holder> {
        let mut said = String::new();
        loop {
            let now = self.clock.now();
            let until = now + chrono::Duration::from_std(self.config.duration).unwrap_or_default();
            let why = match self
                .api
                .claim(&self.account, &self.config.holder, now, until)
                .await
            {
                Ok(Claim::Held(h)) => {
                    info!(holder = %self.config.holder, until = %h.expires_at, "Holding the lease: acting.");
                    if self.standby {
                        self.health.set_standby(None);
                    }
                    telemetry::lease_held(true);
                    return Some(h);
                }
                Ok(Claim::Taken(other)) => format!(
                    "{} holds the lease of account {} until {}",
                    other.holder, self.account, other.expires_at
                ),
                Err(e) => format!("cannot reach the lease table: {e}"),
            };
            if why != said {
                warn!(holder = %self.config.holder, reason = %why, "Standing by: another trailguard acts for this account.");
                said = why.clone();
            }
            if self.standby {
                self.health.set_standby(Some(why));
            }
            telemetry::lease_held(false);
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(self.config.duration / 3) => {}
            }
        }
    }

    /// Renews the lease every third of its duration; cancels `work` when it is lost, or when it
    /// could not be renewed and would expire before the next try.
    pub async fn keep(self, mut held: Holder, work: CancellationToken) {
        let third = self.config.duration / 3;
        loop {
            tokio::select! {
                _ = work.cancelled() => return,
                _ = tokio::time::sleep(third) => {}
            }
            let now = self.clock.now();
            let until = now + chrono::Duration::from_std(self.config.duration).unwrap_or_default();
            // A renewal may hang or be retried for longer than the lease lasts: stop acting
            // before it expires (with a margin for the two hosts' estimates of AWS time),
            // whatever the call is doing, since another instance may take it then.
            let safety = chrono::Duration::from_std(third / 2).unwrap_or_default();
            let left = (held.expires_at - safety - now).to_std().unwrap_or_default();
            let claimed = tokio::select! {
                r = self.api.claim(&self.account, &self.config.holder, now, until) => r,
                _ = tokio::time::sleep(left) => {
                    error!("The lease could not be renewed in time: stopping before it expires.");
                    work.cancel();
                    return;
                }
            };
            match claimed {
                Ok(Claim::Held(h)) => held = h,
                Ok(Claim::Taken(other)) => {
                    error!(holder = %other.holder, "The lease was taken over: stopping.");
                    work.cancel();
                    return;
                }
                Err(e) => {
                    let margin = chrono::Duration::from_std(third).unwrap_or_default();
                    if self.clock.now() + margin >= held.expires_at {
                        error!(error = %e, "Cannot renew the lease before it expires: stopping.");
                        work.cancel();
                        return;
                    }
                    warn!(error = %e, "Cannot renew the lease; trying again.");
                }
            }
        }
    }

    /// Gives the lease up (SIGTERM), so the next instance takes over at once.
    pub async fn release(&self) {
        match self.api.release(&self.account, &self.config.holder).await {
            Ok(()) => info!("Lease released."),
            Err(e) => warn!(error = %e, "Cannot release the lease; it expires on its own."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;
    use chrono::{DateTime, TimeZone, Utc};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Grants the first claim; every renewal hangs (a DynamoDB connection that never answers,
    /// or throttling retried past the lease's end).
    #[derive(Clone, Default)]
    struct Hangs(Arc<AtomicUsize>);

    impl LeaseApi for Hangs {
        async fn claim(
            &self,
            _: &str,
            holder: &str,
            _: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<Claim, AwsError> {
            if self.0.fetch_add(1, Ordering::SeqCst) > 0 {
                std::future::pending::<()>().await;
            }
            Ok(Claim::Held(Holder {
                holder: holder.into(),
                expires_at: until,
                version: 1,
            }))
        }
        async fn release(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_hangs_stops_the_work_before_the_lease_expires() {
        let clock = Clock::starting_at(Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap());
        let lease = Lease {
            api: Hangs::default(),
            account: "111122223333".into(),
            config: LeaseConfig {
                table: Some("t".into()),
                duration: Duration::from_secs(30),
                holder: "a".into(),
            },
            clock: clock.clone(),
            health: Health::new(&[], Duration::from_secs(15)),
            standby: true,
        };
        let held = lease.wait(&CancellationToken::new()).await.unwrap();
        let work = CancellationToken::new();
        tokio::spawn(lease.keep(held.clone(), work.clone()));
        tokio::select! {
            _ = work.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(120)) => {}
        }
        assert!(
            work.is_cancelled(),
            "still acting two minutes after the lease expired"
        );
        assert!(
            clock.now() < held.expires_at,
            "stopped at {}, after the lease expired at {}: another instance may already act",
            clock.now(),
            held.expires_at
        );
    }
}
