//! The daemon: the only module that knows every other. It wires:
//!
//! ```text
//! pollers (per account and region, + IAM)  ──jobs──▶  worker  ──outbox (store)──▶  sender ──▶ SNS
//!   cursor → slice → LookupEvents                       policy → aggregation →
//!   → rules → jobs (one transaction)                    remediation (KMS, in the
//! queue consumers (EventBridge, S3 log files) ──jobs──▶   key's account and region)
//!   SQS → records → rules → jobs; delete once handled (acks)
//! IAM sweep loops (per account)  ──────────────────────────outbox (store)──────▶
//! ```
//!
//! Each box is a task with `run(self, shutdown)`; a `TaskTracker` waits for them all. Where
//! trailguard acts (accounts, regions, pollers) is resolved once it knows who it is
//! ([`estate`]), and again when the organization's accounts change. With `lease.table`, the
//! pollers and IAM sweeps run only in the instance holding the lease; queue consumers, the
//! worker and the sender run in every replica (SQS shares the messages out).

mod acks;
mod consumer;
pub mod estate;
mod lease;
mod poller;
mod reminders;
mod sender;
mod sweep;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use acks::{Acks, Tracker};
pub use consumer::Consumer;
pub use estate::{Estate, PollerSpec, known_pollers, pollers};
pub use poller::read_log_file;
pub use poller::{Batch, Poller, evaluate};
pub use reminders::Reminders;
pub use sender::Sender;
pub use sweep::SweepLoop;
pub use worker::{EventHistory, Keys, MemberRole, Own, UsageLookup, Worker};

use crate::accounts::Scope;
use crate::actions::kms::KmsRemediator;
use crate::arn;
use crate::aws::sts::{Identity, caller_identity};
use crate::aws::{self, Aws, AwsError, Limiter, Place, Roles};
use crate::config::Config;
use crate::cursor::Cursor;
use crate::iam::sweep::Sweeper;
use crate::job::Job;
use crate::notify::{LogNotifier, Message, Notifier};
use crate::state::{StateError, Store};
use crate::telemetry::{self, Health};

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

/// What one run of the pipeline works with.
struct Run<'a> {
    aws: Aws,
    identity: &'a Identity,
    estate: Estate,
}

impl Daemon {
    /// Who trailguard is; retried until it answers (or shutdown), since nothing can be done
    /// without it. Meanwhile the daemon is alive but not ready.
    async fn identity(&self, shutdown: &CancellationToken) -> Option<Identity> {
        let region = estate::home_region(&self.config, &self.aws, self.config.partition());
        loop {
            self.health.attempted("sts");
            match caller_identity(&self.aws, &region).await {
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

    /// Runs until `shutdown`, then lets the work in flight finish. Fails only if the state
    /// cannot be trusted.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StateError> {
        self.health.set_pollers(&["sts".to_owned()]);
        let Some(identity) = self.identity(&shutdown).await else {
            return Ok(());
        };
        let partition = arn::Arn::parse(&identity.arn)
            .map(|a| a.partition.to_owned())
            .unwrap_or_else(|| self.config.partition().to_owned());
        let home = estate::home_region(&self.config, &self.aws, &partition);
        let aws = match &self.config.accounts {
            Some(a) => self.aws.with_roles(Roles {
                own_account: identity.account.clone(),
                partition: partition.clone(),
                template: a.role_arn_template.clone(),
                external_id: a.external_id.clone(),
                session_name: a.session_name.clone(),
                sts_region: home.clone(),
            }),
            None => self.aws.clone(),
        };
        loop {
            let Some(accounts) =
                estate::accounts(&self.config, &aws, &identity.account, &home, &shutdown).await
            else {
                return Ok(());
            };
            let estate = estate::estate(
                &self.config,
                &aws,
                &identity.account,
                &partition,
                accounts.clone(),
            )
            .await;
            let generation = shutdown.child_token();
            let watcher = tokio::spawn(estate::watch_accounts(
                self.config.clone(),
                aws.clone(),
                identity.account.clone(),
                home.clone(),
                accounts,
                generation.clone(),
            ));
            let result = self
                .work(
                    Run {
                        aws: aws.clone(),
                        identity: &identity,
                        estate,
                    },
                    generation,
                )
                .await;
            watcher.abort();
            if shutdown.is_cancelled() || result.is_err() {
                return result;
            }
            info!("The organization's accounts changed: the pipeline restarts with them.");
        }
    }

    /// The pipeline, until `shutdown`.
    async fn work(&self, run: Run<'_>, shutdown: CancellationToken) -> Result<(), StateError> {
        let clock = self.aws.clock().clone();
        let cfg = &self.config;
        let specs = pollers(cfg, &run.estate);
        let queue_names: Vec<String> = cfg.sources.queues.iter().map(|q| q.name.clone()).collect();
        telemetry::pollers(&specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        telemetry::accounts(run.estate.accounts.len());
        let leased = cfg.lease.table.is_some() && (!specs.is_empty() || cfg.iam.is_some());
        let mut watched = queue_names.clone();
        if !leased {
            watched.extend(specs.iter().map(|s| s.name.clone()));
            telemetry::lease_held(true); // It acts: the lease alerts must count it.
        }
        self.health.set_pollers(&watched);

        let (resumed, bad) = self.store.jobs()?;
        let (windows, bad_windows) = self.store.windows()?;
        for q in bad.iter().chain(&bad_windows) {
            error!(table = q.table, key = %q.key, error = %q.error, "A stored entry does not decode; moved to quarantine.");
        }
        telemetry::quarantined(bad.len() + bad_windows.len());

        let tracker = TaskTracker::new();
        let wake = Arc::new(Notify::new());
        let acks = Acks::default();
        let scope = Scope::default();
        if cfg.accounts.is_some() {
            scope.set(run.estate.accounts.keys().cloned());
        }
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
                acks: acks.clone(),
            }
            .run(shutdown.clone()),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let limiter = Arc::new(Limiter::new(cfg.cloudtrail.max_requests_per_second));
        let lookup = aws::cloudtrail::CloudTrail::new(run.aws.clone(), limiter);
        // Usage lookups share the pollers' limiter, at background priority.
        let lookups: Arc<dyn UsageLookup> = Arc::new(EventHistory {
            api: lookup.clone(),
            own: Own::new(run.identity),
        });
        let leader = Leader {
            daemon: self,
            run: &run,
            specs,
            lookup,
            tx: tx.clone(),
            wake: wake.clone(),
            watched: queue_names,
        };
        if leased {
            tracker.spawn(leader.clone_parts().lead(shutdown.clone()));
        } else {
            leader.spawn_all(&tracker, shutdown.clone())?;
        }
        if !cfg.sources.queues.is_empty() {
            let shared = consumer::Shared {
                rules: cfg.rules.clone(),
                store: self.store.clone(),
                health: self.health.clone(),
                clock: clock.clone(),
                jobs: tx.clone(),
                seen: Arc::new(Mutex::new(self.store.seen(consumer::SEEN)?)),
                acks: acks.clone(),
                scope: scope.clone(),
            };
            for q in &cfg.sources.queues {
                let region = q
                    .region
                    .clone()
                    .unwrap_or_else(|| estate::home_region(cfg, &self.aws, &run.estate.partition));
                let c = Consumer {
                    queue: aws::sqs::Sqs::new(&self.aws, &region, &q.queue_url),
                    objects: aws::s3::S3::new(self.aws.clone(), &region),
                    source: q.clone(),
                    shared: shared.clone(),
                };
                tracker.spawn(c.run(shutdown.clone()));
            }
        }
        if !cfg.kms.usage.reminders.is_empty() {
            tracker.spawn(
                Reminders {
                    keys: aws::kms::Kms::new(run.aws.clone()),
                    lookups: lookups.clone(),
                    store: self.store.clone(),
                    clock: clock.clone(),
                    usage: cfg.kms.usage.clone(),
                    accounts: run.estate.accounts.keys().cloned().collect(),
                    jobs: tx.clone(),
                }
                .run(shutdown.clone()),
            );
        }
        drop(tx);
        let mut remediator = KmsRemediator::new(
            aws::kms::Kms::new(run.aws.clone()),
            cfg.dry_run,
            cfg.kms.enable_after_cancel,
        );
        remediator.scope = scope;
        let mut own = Own::new(run.identity);
        own.member_role = cfg.accounts.as_ref().map(|a| MemberRole {
            template: a.role_arn_template.clone(),
            partition: run.estate.partition.clone(),
            session_name: a.session_name.clone(),
        });
        let worker = Worker {
            remediator,
            store: self.store.clone(),
            clock,
            dry_run: cfg.dry_run,
            window: cfg.notify.aggregation_window,
            policy: cfg.kms.policy.clone(),
            refresh: cfg.kms.refresh_interval,
            outbox: wake,
            windows: windows.into_iter().collect::<HashMap<_, _>>(),
            places: run
                .estate
                .accounts
                .iter()
                .flat_map(|(a, regions)| regions.iter().map(move |r| Place::new(a, r)))
                .collect(),
            own,
            known: HashMap::new(),
            keys: Keys::new(cfg.kms.usage.clone(), Some(lookups)),
            acks,
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

/// The tasks only one instance runs: the pollers and the IAM sweeps.
struct Leader<'a> {
    daemon: &'a Daemon,
    run: &'a Run<'a>,
    specs: Vec<PollerSpec>,
    lookup: aws::cloudtrail::CloudTrail,
    tx: mpsc::UnboundedSender<Job>,
    wake: Arc<Notify>,
    /// What the health checks watch besides the pollers (the queue consumers).
    watched: Vec<String>,
}

/// The same, owned, for a task of its own.
struct OwnedLeader {
    config: Config,
    store: Arc<Store>,
    health: Arc<Health>,
    aws: Aws,
    identity: Identity,
    estate: Estate,
    specs: Vec<PollerSpec>,
    lookup: aws::cloudtrail::CloudTrail,
    tx: mpsc::UnboundedSender<Job>,
    wake: Arc<Notify>,
    watched: Vec<String>,
}

impl Leader<'_> {
    fn clone_parts(&self) -> OwnedLeader {
        OwnedLeader {
            config: self.daemon.config.clone(),
            store: self.daemon.store.clone(),
            health: self.daemon.health.clone(),
            aws: self.run.aws.clone(),
            identity: self.run.identity.clone(),
            estate: self.run.estate.clone(),
            specs: self.specs.clone(),
            lookup: self.lookup.clone(),
            tx: self.tx.clone(),
            wake: self.wake.clone(),
            watched: self.watched.clone(),
        }
    }

    fn spawn_all(&self, tracker: &TaskTracker, shutdown: CancellationToken) -> Result<(), StateError> {
        self.clone_parts().spawn_all(tracker, shutdown)
    }
}

impl OwnedLeader {
    /// Starts the pollers and the IAM sweeps.
    fn spawn_all(&self, tracker: &TaskTracker, shutdown: CancellationToken) -> Result<(), StateError> {
        let cfg = &self.config;
        let clock = self.aws.clock().clone();
        let now = clock.now();
        for s in &self.specs {
            let cursor = match self.store.cursor(&s.name)? {
                Some(c) => c,
                None => {
                    let from = cfg.cloudtrail.start_from.map(|f| f.resolve(now));
                    let c = Cursor::fresh(now, &cfg.cloudtrail.schedule, from);
                    info!(poller = %s.name, from = ?c.head, "New poller: reading from here.");
                    c
                }
            };
            let poller = Poller {
                place: Place::new(&s.account, &s.region),
                name: s.name.clone(),
                event_source: s.event_source,
                api: self.lookup.clone(),
                rules: cfg.rules.clone(),
                store: self.store.clone(),
                health: self.health.clone(),
                clock: clock.clone(),
                schedule: cfg.cloudtrail.schedule,
                poll_interval: cfg.cloudtrail.poll_interval,
                cursor,
                seen: self.store.seen(&s.name)?,
                jobs: self.tx.clone(),
            };
            tracker.spawn(poller.run(shutdown.clone()));
        }
        let Some(iam) = &cfg.iam else {
            return Ok(());
        };
        let home = arn::iam_home_region(&self.estate.partition);
        let n = self.estate.accounts.len().max(1) as u32;
        for (i, account) in self.estate.accounts.keys().enumerate() {
            let own = *account == self.identity.account;
            let mut sweeper = Sweeper::new(
                aws::iam::Iam::new(self.aws.clone(), Some(account), home, iam.max_requests_per_second),
                self.lookup.clone(),
                Place::new(account, home),
                iam.policy.clone(),
                cfg.dry_run,
                iam.credential_report_min_users,
            );
            sweeper.delete_wait = cfg.cloudtrail.schedule.max_delivery_delay;
            if own {
                sweeper.own_key = self.identity.access_key_id.clone();
            }
            let sweeps = SweepLoop {
                sweeper,
                interval: iam.sweep_interval,
                store: self.store.clone(),
                clock: clock.clone(),
                outbox: self.wake.clone(),
            };
            // Many accounts' sweeps are spread over the interval rather than run at once.
            let after = iam.sweep_interval / n * i as u32;
            tracker.spawn(sweeps.run(after, shutdown.clone()));
        }
        Ok(())
    }

    /// Stands by until the lease is won, runs the pollers and sweeps while it is held, and
    /// stands by again when it is lost; releases it at shutdown.
    async fn lead(self, shutdown: CancellationToken) {
        let cfg = &self.config;
        let Some(table) = cfg.lease.table.clone() else {
            return;
        };
        let region = estate::home_region(cfg, &self.aws, &self.estate.partition);
        let lease = lease::Lease {
            api: aws::lease::DynamoLease::new(&self.aws, &region, &table),
            account: self.identity.account.clone(),
            config: cfg.lease.clone(),
            clock: self.aws.clock().clone(),
            health: self.health.clone(),
            standby: cfg.sources.queues.is_empty(),
        };
        let mut leading = self.watched.clone();
        leading.extend(self.specs.iter().map(|s| s.name.clone()));
        loop {
            let Some(held) = lease.wait(&shutdown).await else {
                return;
            };
            self.health.set_pollers(&leading);
            let work = shutdown.child_token();
            let keeper = tokio::spawn(lease.clone().keep(held, work.clone()));
            let tasks = TaskTracker::new();
            if let Err(e) = self.spawn_all(&tasks, work.clone()) {
                error!(error = %e, "The state cannot be trusted: giving up the lease.");
                work.cancel();
            }
            tasks.close();
            tokio::select! {
                _ = work.cancelled() => {}
                _ = tasks.wait() => {}
            }
            work.cancel();
            tasks.wait().await;
            let _ = keeper.await;
            telemetry::lease_held(false);
            self.health.set_pollers(&self.watched);
            if shutdown.is_cancelled() {
                lease.release().await;
                return;
            }
        }
    }
}
