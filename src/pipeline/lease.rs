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
            match self
                .api
                .claim(&self.account, &self.config.holder, now, until)
                .await
            {
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
