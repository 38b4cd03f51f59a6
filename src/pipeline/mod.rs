//! The daemon: the only module that knows every other. It wires:
//!
//! ```text
//! poller (per region, + IAM)  ──jobs──▶  worker  ──outbox (store)──▶  sender ──▶ SNS
//!   cursor → slice → LookupEvents          policy → aggregation →
//!   → rules → jobs (one transaction)       remediation (KMS)
//! IAM sweep loop  ─────────────────────────────outbox (store)──────▶
//! ```
//!
//! Each box is a task with `run(self, shutdown)`; a `TaskTracker` waits for them all. The
//! poller list is built once ([`pollers`]) and shared with health and metrics.

mod lease;
mod poller;
mod sender;
mod sweep;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use poller::{Batch, Poller, evaluate};
pub use sender::Sender;
pub use sweep::SweepLoop;
pub use worker::{Own, Worker};

use crate::actions::kms::KmsRemediator;
use crate::arn;
use crate::aws::sts::{Identity, caller_identity};
use crate::aws::{self, Aws, AwsError, Limiter, Place};
use crate::config::Config;
use crate::cursor::Cursor;
use crate::iam::sweep::Sweeper;
use crate::notify::{LogNotifier, Message, Notifier};
use crate::state::{StateError, Store};
use crate::telemetry::{self, Health};

/// One poller: its name (metrics, health, state), the event source it reads and its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerSpec {
    pub name: String,
    pub region: String,
    pub event_source: &'static str,
}

/// The pollers a configuration runs: KMS in every region, and IAM's events (recorded in the
/// partition's IAM home region) when the IAM sweep is on.
pub fn pollers(config: &Config) -> Vec<PollerSpec> {
    let mut out: Vec<PollerSpec> = config
        .regions
        .iter()
        .map(|r| PollerSpec {
            name: r.clone(),
            region: r.clone(),
            event_source: "kms.amazonaws.com",
        })
        .collect();
    if config.iam.is_some() {
        let home = arn::iam_home_region(config.partition());
        out.push(PollerSpec {
            name: format!("{home}/iam"),
            region: home.to_owned(),
            event_source: "iam.amazonaws.com",
        });
    }
    out
}

/// SNS, or the log when no topic is configured.
#[derive(Debug, Clone)]
enum AnyNotifier {
    Sns(aws::sns::Sns),
    Log(LogNotifier),
}

impl Notifier for AnyNotifier {
    async fn publish(&self, m: &Message) -> Result<String, AwsError> {
        match self {
            AnyNotifier::Sns(s) => s.publish(m).await,
            AnyNotifier::Log(l) => l.publish(m).await,
        }
    }
}

pub struct Daemon {
    pub config: Config,
    pub store: Arc<Store>,
    pub health: Arc<Health>,
    pub aws: Aws,
}

impl Daemon {
    /// Who trailguard is; retried until it answers (or shutdown), since nothing can be done
    /// without it. Meanwhile the daemon is alive but not ready.
    async fn identity(&self, specs: &[PollerSpec], shutdown: &CancellationToken) -> Option<Identity> {
        let region = &specs.first()?.region;
        loop {
            for s in specs {
                self.health.attempted(&s.name);
            }
            match caller_identity(&self.aws, region).await {
                Ok(id) => {
                    info!(account = %id.account, arn = %id.arn, "Running as this identity.");
                    return Some(id);
                }
                Err(e) => {
                    error!(error = %e, "Cannot tell who trailguard runs as (sts:GetCallerIdentity); retrying in 10s.")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }

    /// Runs until `shutdown`, then lets the work in flight finish. With `lease.table`, acts only
    /// while holding the account's lease, standing by otherwise. Fails only if the state cannot
    /// be trusted.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StateError> {
        let specs = pollers(&self.config);
        let Some(identity) = self.identity(&specs, &shutdown).await else {
            return Ok(());
        };
        let Some(table) = self.config.lease.table.clone() else {
            telemetry::lease_held(true);
            return self.work(&specs, &identity, shutdown).await;
        };
        let region = self.config.regions.first().cloned().unwrap_or_default();
        let lease = lease::Lease {
            api: aws::lease::DynamoLease::new(&self.aws, &region, &table),
            account: identity.account.clone(),
            config: self.config.lease.clone(),
            clock: self.aws.clock().clone(),
            health: self.health.clone(),
        };
        loop {
            let Some(held) = lease.wait(&shutdown).await else {
                return Ok(());
            };
            let work = shutdown.child_token();
            let keeper = tokio::spawn(lease.clone().keep(held, work.clone()));
            let result = self.work(&specs, &identity, work.clone()).await;
            work.cancel();
            let _ = keeper.await;
            telemetry::lease_held(false);
            if shutdown.is_cancelled() || result.is_err() {
                lease.release().await;
                return result;
            }
        }
    }

    /// The pipeline, until `shutdown` (or the lease is lost).
    async fn work(
        &self,
        specs: &[PollerSpec],
        identity: &Identity,
        shutdown: CancellationToken,
    ) -> Result<(), StateError> {
        let clock = self.aws.clock().clone();
        let now = clock.now();
        let cfg = &self.config;
        let mut starts = Vec::new();
        for s in specs {
            let cursor = match self.store.cursor(&s.name)? {
                Some(c) => c,
                None => {
                    let from = cfg.cloudtrail.start_from.map(|f| f.resolve(now));
                    let c = Cursor::fresh(now, &cfg.cloudtrail.schedule, from);
                    info!(poller = %s.name, from = ?c.head, "New poller: reading from here.");
                    c
                }
            };
            starts.push((s.clone(), cursor, self.store.seen(&s.name)?));
        }
        let (resumed, bad) = self.store.jobs()?;
        let (windows, bad_windows) = self.store.windows()?;
        for q in bad.iter().chain(&bad_windows) {
            error!(table = q.table, key = %q.key, error = %q.error, "A stored entry does not decode; moved to quarantine.");
        }
        telemetry::quarantined(bad.len() + bad_windows.len());

        let tracker = TaskTracker::new();
        let wake = Arc::new(Notify::new());
        let limiter = Arc::new(Limiter::new(cfg.cloudtrail.max_requests_per_second));
        let lookup = aws::cloudtrail::CloudTrail::new(self.aws.clone(), limiter);
        let notifier = match &cfg.notify.sns_topic_arn {
            Some(arn) => AnyNotifier::Sns(aws::sns::Sns::new(
                &self.aws,
                arn.clone(),
                cfg.notify.message_format,
            )),
            None => AnyNotifier::Log(LogNotifier),
        };
        tracker.spawn(
            Sender {
                notifier,
                store: self.store.clone(),
                clock: clock.clone(),
                wake: wake.clone(),
                topic: cfg.notify.sns_topic_arn.is_some(),
            }
            .run(shutdown.clone()),
        );
        if let Some(iam) = &cfg.iam {
            let home = arn::iam_home_region(cfg.partition());
            let mut sweeper = Sweeper::new(
                aws::iam::Iam::new(self.aws.clone(), home, iam.max_requests_per_second),
                lookup.clone(),
                Place::new(&identity.account, home),
                iam.policy.clone(),
                cfg.dry_run,
                iam.credential_report_min_users,
            );
            sweeper.own_key = identity.access_key_id.clone();
            sweeper.delete_wait = cfg.cloudtrail.schedule.max_delivery_delay;
            tracker.spawn(
                SweepLoop {
                    sweeper,
                    interval: iam.sweep_interval,
                    store: self.store.clone(),
                    clock: clock.clone(),
                    outbox: wake.clone(),
                }
                .run(shutdown.clone()),
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for (spec, cursor, seen) in starts {
            let poller = Poller {
                place: Place::new(&identity.account, &spec.region),
                name: spec.name,
                event_source: spec.event_source,
                api: lookup.clone(),
                rules: cfg.rules.clone(),
                store: self.store.clone(),
                health: self.health.clone(),
                clock: clock.clone(),
                schedule: cfg.cloudtrail.schedule,
                poll_interval: cfg.cloudtrail.poll_interval,
                cursor,
                seen,
                jobs: tx.clone(),
            };
            tracker.spawn(poller.run(shutdown.clone()));
        }
        drop(tx);
        let worker = Worker {
            remediator: KmsRemediator::new(
                aws::kms::Kms::new(self.aws.clone()),
                cfg.dry_run,
                cfg.kms.enable_after_cancel,
            ),
            store: self.store.clone(),
            clock,
            dry_run: cfg.dry_run,
            window: cfg.notify.aggregation_window,
            policy: cfg.kms.policy.clone(),
            refresh: cfg.kms.refresh_interval,
            outbox: wake,
            windows: windows.into_iter().collect::<HashMap<_, _>>(),
            regions: cfg.regions.clone(),
            account: identity.account.clone(),
            own: Own::new(identity),
            known: HashMap::new(),
        };
        tracker.spawn(worker.run(resumed, rx, shutdown.clone()));
        tracker.close();
        tracker.wait().await;
        if shutdown.is_cancelled() {
            info!("Every task has stopped.");
        } else {
            warn!("Every task has stopped before shutdown was asked.");
        }
        Ok(())
    }
}
