//! The daemon: one poller per region feeding one worker. The only module that knows every other.
//!
//! poller (per region): cursor → window → `LookupEvents` pages → records → rules → jobs, stored
//! with the seen ids in one transaction (see [`crate::state`]) → worker.
//! worker: job → remediation (if the rule asks) → notification (aggregated per rule and key
//! within `notify.aggregation_window`) → job deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, gauge};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::actions::kms::KmsRemediator;
use crate::config::Config;
use crate::cursor::Seen;
use crate::event::Record;
use crate::notify::{self, sns::SnsNotifier};
use crate::rules::{self, Action};
use crate::sources::cloudtrail::{CloudTrailSource, PollError};
use crate::state::{Job, Store};
use crate::telemetry::{Health, names};

/// The name (cursor, health, metrics label) of the us-east-1 IAM event poller.
pub const IAM_POLLER: &str = "us-east-1/iam";

/// Runs the IAM sweep once at start, then every `interval`, until `shutdown`.
async fn run_sweeps(
    mut sweeper: crate::iam::sweep::Sweeper,
    interval: Duration,
    store: Arc<Store>,
    sns: Option<Arc<SnsNotifier>>,
    shutdown: CancellationToken,
) {
    loop {
        let started = Instant::now();
        match sweeper.sweep(Utc::now()).await {
            Ok(report) => {
                counter!(names::IAM_SWEEPS, "outcome" => "ok").increment(1);
                info!(
                    users = report.users,
                    keys = report.keys,
                    findings = report.results.len(),
                    calls = report.calls,
                    credential_report = report.used_credential_report,
                    "IAM sweep completed."
                );
                for (f, outcome, detail) in &report.results {
                    if f.planned == crate::iam::Planned::Deactivate
                        && *outcome == crate::state::Outcome::Applied
                        && let Err(e) = store.mark_deactivated(&f.key.access_key_id, Utc::now())
                    {
                        error!(error = %e, "Cannot record a deactivation.");
                    }
                    let msg = crate::iam::sweep::render(f, *outcome, detail, sweeper.dry_run);
                    publish(sns.as_deref(), &msg).await;
                }
            }
            Err(e) => {
                counter!(names::IAM_SWEEPS, "outcome" => "failed").increment(1);
                warn!(error = %e, "IAM sweep failed; it runs again at the next interval.");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(started + interval) => {}
        }
    }
}

/// Publishes a message that has no job behind it, retrying a few times.
async fn publish(sns: Option<&SnsNotifier>, msg: &notify::Message) {
    let Some(sns) = sns else {
        info!(notification_id = %msg.id, subject = %msg.subject, "Notification (no SNS topic configured).");
        counter!(names::NOTIFICATIONS, "outcome" => "logged").increment(1);
        return;
    };
    for attempt in 0..4u32 {
        match sns.publish(msg).await {
            Ok(id) => {
                info!(notification_id = %msg.id, message_id = %id, subject = %msg.subject, "Notification sent.");
                counter!(names::NOTIFICATIONS, "outcome" => "sent").increment(1);
                return;
            }
            Err(e) => {
                counter!(names::NOTIFICATIONS, "outcome" => "failed").increment(1);
                warn!(notification_id = %msg.id, attempt, error = %e, "Notification failed.");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}

pub struct Daemon {
    pub config: Config,
    pub store: Arc<Store>,
    pub health: Arc<Health>,
    pub sdk: aws_config::SdkConfig,
}

impl Daemon {
    /// Runs until `shutdown`, then lets the job in flight finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(self.store.seen()?));
        let mut sources: Vec<(String, String, &str)> = self
            .config
            .regions
            .iter()
            .map(|r| (r.clone(), r.clone(), "kms.amazonaws.com"))
            .collect();
        if self.config.iam.is_some() {
            // IAM events are recorded in us-east-1 only.
            sources.push((IAM_POLLER.to_owned(), "us-east-1".to_owned(), "iam.amazonaws.com"));
        }
        let sns = self
            .config
            .sns_topic_arn
            .clone()
            .map(|arn| Arc::new(SnsNotifier::new(&self.sdk, arn)));
        if let Some(iam) = &self.config.iam {
            let sweeper = crate::iam::sweep::Sweeper::new(
                &self.sdk,
                iam.policy.clone(),
                self.config.dry_run,
                iam.credential_report_min_users,
                iam.max_requests_per_second,
            );
            tracker.spawn(run_sweeps(
                sweeper,
                iam.sweep_interval,
                self.store.clone(),
                sns.clone(),
                shutdown.clone(),
            ));
        }
        for (name, region, event_source) in sources {
            let poller = Poller {
                region: name,
                source: CloudTrailSource::new(
                    &self.sdk,
                    &region,
                    event_source,
                    self.config.max_requests_per_second,
                ),
                config: self.config.clone(),
                store: self.store.clone(),
                seen: seen.clone(),
                health: self.health.clone(),
                jobs: tx.clone(),
            };
            tracker.spawn(poller.run(shutdown.clone()));
        }
        drop(tx);
        let worker = Worker {
            kms: KmsRemediator::new(
                self.sdk.clone(),
                self.config.dry_run,
                self.config.enable_after_cancel,
            ),
            sns,
            store: self.store.clone(),
            dry_run: self.config.dry_run,
            window: self.config.aggregation_window,
            open: HashMap::new(),
            retry: HashMap::new(),
            policy: self.config.kms_policy.clone(),
            refresh: self.config.kms_refresh_interval,
            facts: HashMap::new(),
        };
        tracker.spawn(worker.run(rx, shutdown.clone()));
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

struct Poller {
    region: String,
    source: CloudTrailSource,
    config: Config,
    store: Arc<Store>,
    seen: Arc<Mutex<Seen>>,
    health: Arc<Health>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl Poller {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut cursor = match self.store.cursor(&self.region) {
            Ok(c) => c,
            Err(e) => {
                error!(region = %self.region, error = %e, "Cannot read the poll cursor; starting from the lookback window.");
                Default::default()
            }
        };
        loop {
            let started = Instant::now();
            let window = cursor.next_window(Utc::now(), &self.config.schedule);
            self.health.attempted(&self.region);
            match self.source.read(&window, &shutdown).await {
                Ok(records) => {
                    let read = records.len();
                    if let Err(e) = self.handle(records) {
                        error!(region = %self.region, error = %e, "Cannot record events; the window will be read again.");
                        counter!(names::POLLS, "region" => self.region.clone(), "outcome" => "failed")
                            .increment(1);
                    } else {
                        cursor.complete(&window);
                        let pruned = {
                            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                            seen.prune(cursor.seen_horizon(Utc::now(), &self.config.schedule))
                        };
                        match self.store.advance(&self.region, &cursor, &pruned) {
                            Ok(()) => {
                                self.health.succeeded(&self.region);
                                counter!(names::POLLS, "region" => self.region.clone(), "outcome" => "ok")
                                    .increment(1);
                                gauge!(names::LAST_SUCCESS, "region" => self.region.clone())
                                    .set(Utc::now().timestamp() as f64);
                                tracing::debug!(region = %self.region, read, lookback = window.lookback, start = %window.start, end = %window.end, "Poll completed.");
                            }
                            Err(e) => {
                                error!(region = %self.region, error = %e, "Cannot save the poll cursor.")
                            }
                        }
                    }
                }
                Err(PollError::Shutdown) => break,
                Err(e) => {
                    let outcome = if matches!(e, PollError::Throttled { .. }) {
                        "throttled"
                    } else {
                        "failed"
                    };
                    counter!(names::POLLS, "region" => self.region.clone(), "outcome" => outcome)
                        .increment(1);
                    warn!(region = %self.region, error = %e, "Poll failed; the same window will be read again.");
                }
            }
            if let Some(lag) = cursor.lag(Utc::now()) {
                gauge!(names::LAG, "region" => self.region.clone()).set(lag.as_secs_f64());
            }
            let next = started + self.config.poll_interval;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
        info!(region = %self.region, "Poller stopped.");
    }

    /// Evaluates new records, stores seen ids and jobs atomically, and hands jobs to the worker.
    fn handle(&self, mut records: Vec<String>) -> Result<(), crate::state::StateError> {
        // Pages come newest first; handle events in the order they happened.
        records.reverse();
        let mut new_seen = Vec::new();
        let mut jobs = Vec::new();
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for text in &records {
                let record = match Record::parse(text) {
                    Ok(r) => r,
                    Err(e) => {
                        counter!(names::EVENTS_MALFORMED, "region" => self.region.clone()).increment(1);
                        warn!(region = %self.region, error = %e, record = %text.chars().take(200).collect::<String>(), "Malformed event skipped.");
                        continue;
                    }
                };
                let id = record.event_id().to_owned();
                if id.is_empty() {
                    counter!(names::EVENTS_MALFORMED, "region" => self.region.clone()).increment(1);
                    warn!(region = %self.region, record = %text.chars().take(200).collect::<String>(), "Event without an eventID skipped.");
                    continue;
                }
                if seen.contains(&id) || new_seen.iter().any(|(s, _)| s == &id) {
                    counter!(names::EVENTS_DUPLICATE, "region" => self.region.clone()).increment(1);
                    continue;
                }
                let time = record
                    .event_time
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(Utc::now);
                new_seen.push((id, time));
                counter!(names::EVENTS_READ, "region" => self.region.clone()).increment(1);
                for finding in self.config.rules.findings(text).unwrap_or_default() {
                    counter!(names::FINDINGS, "rule_id" => finding.rule_id.clone()).increment(1);
                    info!(
                        rule_id = %finding.rule_id,
                        event_id = %finding.event_id,
                        key_arn = finding.key_arn.as_deref().unwrap_or("-"),
                        principal = finding.principal_arn.as_deref().unwrap_or("-"),
                        event_name = %finding.event_name,
                        "Rule matched."
                    );
                    let needs_action = finding
                        .actions
                        .iter()
                        .any(|a| matches!(a, Action::CancelKeyDeletion | Action::EnableKey));
                    jobs.push(Job {
                        id: uuid::Uuid::new_v4().to_string(),
                        finding,
                        created: Utc::now(),
                        remediation: None,
                        remediated: !needs_action,
                        more: 0,
                        notify_attempts: 0,
                        policy: None,
                    });
                }
            }
        }
        self.store.record_page(&new_seen, &jobs)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for (id, t) in &new_seen {
                seen.insert(id, *t);
            }
        }
        for job in jobs {
            let _ = self.jobs.send(job);
        }
        Ok(())
    }
}

/// An aggregation window for one (rule, key): matches after the first are counted, not sent.
struct Open {
    opened: Instant,
    opened_at: DateTime<Utc>,
    first: Job,
    more: u64,
}

struct Worker {
    kms: KmsRemediator,
    sns: Option<Arc<SnsNotifier>>,
    store: Arc<Store>,
    dry_run: bool,
    window: Duration,
    open: HashMap<(String, String), Open>,
    /// Notifications that failed: next attempt time and the job.
    retry: HashMap<String, (Instant, Job)>,
    policy: crate::plan::Policy,
    refresh: Duration,
    /// Key aliases and tags for the policy, with when they were read.
    facts: HashMap<String, (Instant, crate::plan::KeyFacts)>,
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>, shutdown: CancellationToken) {
        match self.store.jobs() {
            Ok(pending) => {
                if !pending.is_empty() {
                    info!(
                        count = pending.len(),
                        "Resuming unfinished jobs from the last run."
                    );
                }
                for job in pending {
                    // Already aggregated once: never fold a resumed job into a window.
                    self.process(job, false).await;
                }
            }
            Err(e) => error!(error = %e, "Cannot read unfinished jobs."),
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // NOTE: shutdown is only checked between jobs: a rescue and its notification that
            // have started always finish.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                job = jobs.recv() => match job {
                    Some(job) => self.process(job, true).await,
                    None => break,
                },
                _ = tick.tick() => {
                    self.flush(false).await;
                    self.retry_failed(false).await;
                }
            }
        }
        self.flush(true).await;
        self.retry_failed(true).await;
        info!(pending = self.retry.len(), "Worker stopped.");
    }

    async fn process(&mut self, mut job: Job, aggregate: bool) {
        let f = &job.finding;
        let key = (
            f.rule_id.clone(),
            f.key_arn.clone().unwrap_or_else(|| f.event_id.clone()),
        );
        if f.rule_id == rules::KEY_DELETION_SCHEDULED {
            // A key scheduled again after its rescue must be rescued again when next used; a
            // schedule from before the rescue (read late, or in the same poll) changes nothing.
            if let Some(arn) = &f.key_arn {
                let use_key = (rules::PENDING_DELETION_USE.to_owned(), arn.clone());
                let scheduled = f
                    .event_time
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                let newer = self
                    .open
                    .get(&use_key)
                    .is_some_and(|o| scheduled.is_some_and(|t| t > o.opened_at));
                if newer && let Some(open) = self.open.remove(&use_key) {
                    self.summarize(open).await;
                }
            }
        }
        if !self.policy.is_empty() && job.policy.is_none() {
            self.apply_policy(&mut job).await;
        }
        // Aggregation holds back messages, never actions: a job is folded into an open window
        // only if it needs no action, or if it is one more failed use of a key whose rescue the
        // window already ran (a newer schedule closes that window, above). A protected key
        // disabled again after trailguard re-enabled it is a new change, and is reverted again.
        let foldable = job.remediated || job.finding.rule_id == rules::PENDING_DELETION_USE;
        if aggregate
            && foldable
            && !self.window.is_zero()
            && let Some(open) = self.open.get_mut(&key)
        {
            open.more += 1;
            counter!(names::NOTIFICATIONS, "outcome" => "aggregated").increment(1);
            if let Err(e) = self.store.remove_job(&job.id) {
                error!(error = %e, "Cannot remove an aggregated job.");
            }
            return;
        }
        if !job.remediated {
            let (arn, account) = (job.finding.key_arn.as_deref(), job.finding.account.as_deref());
            let r = if job.finding.actions.contains(&Action::CancelKeyDeletion) {
                self.kms.rescue(arn, account).await
            } else {
                self.kms.enable(arn, account).await
            };
            counter!(names::REMEDIATIONS, "action" => r.action.clone(), "outcome" => r.outcome.as_str())
                .increment(1);
            let ok = !matches!(r.outcome, crate::state::Outcome::Failed);
            if ok {
                info!(rule_id = %job.finding.rule_id, key_arn = job.finding.key_arn.as_deref().unwrap_or("-"), action = %r.action, outcome = r.outcome.as_str(), detail = %r.detail, "Remediation finished.");
            } else {
                error!(rule_id = %job.finding.rule_id, key_arn = job.finding.key_arn.as_deref().unwrap_or("-"), action = %r.action, outcome = r.outcome.as_str(), detail = %r.detail, "Remediation failed.");
            }
            job.remediation = Some(r);
            job.remediated = true;
            if let Err(e) = self.store.put_job(&job) {
                error!(error = %e, "Cannot record the remediation outcome.");
            }
        }
        if aggregate && !self.window.is_zero() {
            self.open.insert(
                key,
                Open {
                    opened: Instant::now(),
                    opened_at: Utc::now(),
                    first: job.clone(),
                    more: 0,
                },
            );
        }
        self.send(job).await;
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
                .kms
                .facts(&arn, self.policy.needs_aliases(), self.policy.needs_tags())
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
                        "could not read the key's aliases/tags ({e}); nothing reverted"
                    ));
                    return;
                }
            },
        };
        if let Some(d) = crate::plan::decide(&self.policy, &job.finding, &facts, Utc::now()) {
            info!(rule_id = %job.finding.rule_id, key_arn = %arn, actions = ?d.actions, policy = %d.reason, "Protection policy decided.");
            job.remediated = !d
                .actions
                .iter()
                .any(|a| matches!(a, Action::CancelKeyDeletion | Action::EnableKey));
            job.finding.actions = d.actions;
            job.policy = Some(d.reason);
            if let Err(e) = self.store.put_job(job) {
                error!(error = %e, "Cannot record the policy decision.");
            }
        }
    }

    /// Sends the summary of every window that has closed (all of them when `all`).
    async fn flush(&mut self, all: bool) {
        let window = self.window;
        let closed: Vec<(String, String)> = self
            .open
            .iter()
            .filter(|(_, o)| all || o.opened.elapsed() >= window)
            .map(|(k, _)| k.clone())
            .collect();
        for k in closed {
            if let Some(open) = self.open.remove(&k) {
                self.summarize(open).await;
            }
        }
    }

    /// Sends the count of matches a closed window held back, if any.
    async fn summarize(&mut self, open: Open) {
        if open.more == 0 {
            return;
        }
        let mut summary = open.first;
        summary.id = uuid::Uuid::new_v4().to_string();
        summary.more = open.more;
        summary.created = Utc::now();
        if let Err(e) = self.store.put_job(&summary) {
            error!(error = %e, "Cannot store a summary notification.");
        }
        self.send(summary).await;
    }

    async fn send(&mut self, mut job: Job) {
        let msg = notify::render(&job, self.dry_run);
        let Some(sns) = &self.sns else {
            info!(notification_id = %msg.id, subject = %msg.subject, "Notification (no SNS topic configured).");
            counter!(names::NOTIFICATIONS, "outcome" => "logged").increment(1);
            let _ = self.store.remove_job(&job.id);
            return;
        };
        match sns.publish(&msg).await {
            Ok(message_id) => {
                info!(notification_id = %msg.id, message_id = %message_id, subject = %msg.subject, "Notification sent.");
                counter!(names::NOTIFICATIONS, "outcome" => "sent").increment(1);
                self.retry.remove(&job.id);
                if let Err(e) = self.store.remove_job(&job.id) {
                    error!(error = %e, "Cannot remove a finished job; its notification may be sent again after a restart.");
                }
            }
            Err(e) => {
                job.notify_attempts += 1;
                let backoff =
                    Duration::from_secs(1u64 << job.notify_attempts.min(8)).min(Duration::from_secs(300));
                warn!(notification_id = %msg.id, attempts = job.notify_attempts, error = %e, retry_in_s = backoff.as_secs(), "Notification failed; will retry.");
                counter!(names::NOTIFICATIONS, "outcome" => "failed").increment(1);
                let _ = self.store.put_job(&job);
                self.retry.insert(job.id.clone(), (Instant::now() + backoff, job));
            }
        }
        gauge!(names::NOTIFICATIONS_PENDING).set(self.retry.len() as f64);
    }

    async fn retry_failed(&mut self, all: bool) {
        let due: Vec<String> = self
            .retry
            .iter()
            .filter(|(_, (at, _))| all || *at <= Instant::now())
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some((_, job)) = self.retry.remove(&id) {
                self.send(job).await;
            }
        }
    }
}
