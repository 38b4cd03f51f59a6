//! Logs, metrics and the health endpoints.
//!
//! Metric names are in [`names`], label values are enums (every label set a series can have is
//! created at zero when the daemon starts, so an alert on `increase()` sees the first
//! occurrence after a restart), and each thing that can happen has one function here that
//! records it. Nothing else calls the `metrics` macros.

pub mod config;
mod health;
pub mod names;
mod server;

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use health::Health;
pub use server::{bind, probe, serve};

use crate::aws::{AwsError, ErrorType, Service};
use crate::job::{ActionKind, Outcome};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How a poll (one slice) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    Ok,
    Throttled,
    Failed,
}

impl PollOutcome {
    pub const ALL: &'static [PollOutcome] = &[PollOutcome::Ok, PollOutcome::Throttled, PollOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Ok => "ok",
            PollOutcome::Throttled => "throttled",
            PollOutcome::Failed => "failed",
        }
    }
}

/// What happened to a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Published (SNS accepted it).
    Sent,
    /// An attempt failed; it stays in the outbox.
    Failed,
    /// Held back by aggregation; counted in the window's summary.
    Aggregated,
    /// No topic configured: written to the log.
    Logged,
}

impl NotificationOutcome {
    pub const ALL: &'static [NotificationOutcome] = &[
        NotificationOutcome::Sent,
        NotificationOutcome::Failed,
        NotificationOutcome::Aggregated,
        NotificationOutcome::Logged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationOutcome::Sent => "sent",
            NotificationOutcome::Failed => "failed",
            NotificationOutcome::Aggregated => "aggregated",
            NotificationOutcome::Logged => "logged",
        }
    }
}

/// How an IAM sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    Ok,
    Failed,
}

impl SweepOutcome {
    pub const ALL: &'static [SweepOutcome] = &[SweepOutcome::Ok, SweepOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            SweepOutcome::Ok => "ok",
            SweepOutcome::Failed => "failed",
        }
    }
}

/// The label values known at start, for the series created at zero.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub pollers: Vec<String>,
    pub regions: Vec<String>,
    pub rule_ids: Vec<String>,
    pub dry_run: bool,
}

/// Installs the Prometheus recorder, describes every metric, and creates every known series.
pub fn install_metrics(known: &Known, start_unix: f64) -> PrometheusHandle {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the metrics recorder is installed once");
    describe();
    gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(names::START_TIME).set(start_unix);
    gauge!(names::DRY_RUN).set(if known.dry_run { 1.0 } else { 0.0 });
    gauge!(names::CLOCK_SKEW).set(0.0);
    pollers(&known.pollers);
    for r in &known.regions {
        counter!(names::LOOKUP_REQUESTS, "region" => r.clone()).absolute(0);
    }
    for id in &known.rule_ids {
        counter!(names::FINDINGS, "rule_id" => id.clone()).absolute(0);
    }
    for a in ActionKind::ALL {
        for o in Outcome::ALL {
            counter!(names::REMEDIATIONS, "action" => a.as_str(), "outcome" => o.as_str()).absolute(0);
        }
    }
    for o in NotificationOutcome::ALL {
        counter!(names::NOTIFICATIONS, "outcome" => o.as_str()).absolute(0);
    }
    for s in Service::ALL {
        for t in ErrorType::ALL {
            counter!(names::AWS_ERRORS, "service" => s.as_str(), "error_type" => t.as_str()).absolute(0);
        }
    }
    for o in SweepOutcome::ALL {
        counter!(names::IAM_SWEEPS, "outcome" => o.as_str()).absolute(0);
    }
    counter!(names::STATE_QUARANTINED).absolute(0);
    counter!(names::OUTSIDE_POLICY).absolute(0);
    gauge!(names::LEASE_HELD).set(0.0);
    outbox(0, Duration::ZERO);
    handle
}

fn describe() {
    for (name, kind, help) in names::ALL {
        match kind {
            names::Kind::Counter => describe_counter!(*name, *help),
            names::Kind::Gauge => describe_gauge!(*name, *help),
        }
    }
}

pub fn aws_error(e: &AwsError) {
    counter!(names::AWS_ERRORS, "service" => e.service.as_str(), "error_type" => e.error_type.as_str())
        .increment(1);
    if e.error_type == ErrorType::AccessDenied {
        tracing::error!(service = e.service.as_str(), operation = e.operation, error_type = e.error_type.as_str(), error = %e, "AWS denied a call: check trailguard's IAM policy and the key policy.");
    }
}

pub fn lookup_request(region: &str) {
    counter!(names::LOOKUP_REQUESTS, "region" => region.to_owned()).increment(1);
}

pub fn poll(poller: &str, outcome: PollOutcome) {
    counter!(names::POLLS, "region" => poller.to_owned(), "outcome" => outcome.as_str()).increment(1);
}

/// A slice was read and recorded: its counts, and where the poller stands.
pub fn slice_read(
    poller: &str,
    read: u64,
    duplicate: u64,
    malformed: u64,
    head_unix: f64,
    lag: Duration,
    now_unix: f64,
) {
    gauge!(names::HEAD, "region" => poller.to_owned()).set(head_unix);
    counter!(names::EVENTS_READ, "region" => poller.to_owned()).increment(read);
    counter!(names::EVENTS_DUPLICATE, "region" => poller.to_owned()).increment(duplicate);
    counter!(names::EVENTS_MALFORMED, "region" => poller.to_owned()).increment(malformed);
    gauge!(names::LAG, "region" => poller.to_owned()).set(lag.as_secs_f64());
    gauge!(names::LAST_SUCCESS, "region" => poller.to_owned()).set(now_unix);
}

pub fn lag(poller: &str, lag: Duration) {
    gauge!(names::LAG, "region" => poller.to_owned()).set(lag.as_secs_f64());
}

pub fn finding(rule_id: &str) {
    counter!(names::FINDINGS, "rule_id" => rule_id.to_owned()).increment(1);
}

pub fn remediation(action: ActionKind, outcome: Outcome) {
    counter!(names::REMEDIATIONS, "action" => action.as_str(), "outcome" => outcome.as_str()).increment(1);
}

pub fn notification(outcome: NotificationOutcome) {
    counter!(names::NOTIFICATIONS, "outcome" => outcome.as_str()).increment(1);
}

/// The outbox's size and the age of its oldest entry.
pub fn outbox(pending: usize, oldest: Duration) {
    gauge!(names::NOTIFICATIONS_PENDING).set(pending as f64);
    gauge!(names::NOTIFICATIONS_OLDEST).set(oldest.as_secs_f64());
}

pub fn iam_sweep(outcome: SweepOutcome, keys: Option<usize>, now_unix: f64) {
    counter!(names::IAM_SWEEPS, "outcome" => outcome.as_str()).increment(1);
    if let Some(keys) = keys {
        gauge!(names::IAM_KEYS_SEEN).set(keys as f64);
        gauge!(names::IAM_LAST_SWEEP).set(now_unix);
    }
}

pub fn clock_skew(seconds: f64) {
    gauge!(names::CLOCK_SKEW).set(seconds);
}

pub fn lease_held(held: bool) {
    gauge!(names::LEASE_HELD).set(if held { 1.0 } else { 0.0 });
}

pub fn facts_refreshed(now_unix: f64) {
    gauge!(names::FACTS_REFRESHED).set(now_unix);
}

pub fn accounts(n: usize) {
    gauge!(names::ACCOUNTS).set(n as f64);
}

pub fn assume_role_failed(account: &str, error_type: ErrorType) {
    counter!(names::ASSUME_ROLE_FAILURES, "account" => account.to_owned(), "error_type" => error_type.as_str())
        .increment(1);
}

/// What happened to SQS messages of a queue source (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    Received,
    /// Everything it carried was handled: deleted.
    Deleted,
    /// Nothing in it for trailguard (S3's test event, a digest file): deleted.
    Skipped,
    /// Its work failed: left in the queue to be received again.
    Retried,
    /// Failed on its last receive before the queue's redrive policy moves it to the DLQ.
    DeadLettered,
    /// Given back at shutdown, unfinished, for another consumer.
    Released,
}

impl QueueOutcome {
    pub const ALL: &'static [QueueOutcome] = &[
        QueueOutcome::Received,
        QueueOutcome::Deleted,
        QueueOutcome::Skipped,
        QueueOutcome::Retried,
        QueueOutcome::DeadLettered,
        QueueOutcome::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueOutcome::Received => "received",
            QueueOutcome::Deleted => "deleted",
            QueueOutcome::Skipped => "skipped",
            QueueOutcome::Retried => "retried",
            QueueOutcome::DeadLettered => "dead_lettered",
            QueueOutcome::Released => "released",
        }
    }
}

/// Creates a queue source's series at zero.
pub fn queue_source(source: &str) {
    for o in QueueOutcome::ALL {
        counter!(names::QUEUE_MESSAGES, "source" => source.to_owned(), "outcome" => o.as_str()).absolute(0);
    }
    for o in ["read", "failed"] {
        counter!(names::QUEUE_FILES, "source" => source.to_owned(), "outcome" => o).absolute(0);
    }
    for n in [
        names::EVENTS_READ,
        names::EVENTS_DUPLICATE,
        names::EVENTS_MALFORMED,
    ] {
        counter!(n, "region" => source.to_owned()).absolute(0);
    }
    queue_held(source, 0, Duration::ZERO);
}

pub fn queue_messages(source: &str, outcome: QueueOutcome, n: usize) {
    counter!(names::QUEUE_MESSAGES, "source" => source.to_owned(), "outcome" => outcome.as_str())
        .increment(n as u64);
}

/// Messages held, and the age of the oldest message received or held.
pub fn queue_held(source: &str, held: usize, oldest: Duration) {
    gauge!(names::QUEUE_HELD, "source" => source.to_owned()).set(held as f64);
    gauge!(names::QUEUE_OLDEST, "source" => source.to_owned()).set(oldest.as_secs_f64());
}

pub fn queue_file(source: &str, ok: bool) {
    let outcome = if ok { "read" } else { "failed" };
    counter!(names::QUEUE_FILES, "source" => source.to_owned(), "outcome" => outcome).increment(1);
}

/// Events a queue source read: new, duplicates, unreadable.
pub fn queue_events(source: &str, read: u64, duplicate: u64, malformed: u64) {
    counter!(names::EVENTS_READ, "region" => source.to_owned()).increment(read);
    counter!(names::EVENTS_DUPLICATE, "region" => source.to_owned()).increment(duplicate);
    counter!(names::EVENTS_MALFORMED, "region" => source.to_owned()).increment(malformed);
}

/// Creates the series of pollers known only once the accounts and regions are.
pub fn pollers(names: &[String]) {
    for p in names {
        for o in PollOutcome::ALL {
            counter!(names::POLLS, "region" => p.clone(), "outcome" => o.as_str()).absolute(0);
        }
        for n in [
            names::EVENTS_READ,
            names::EVENTS_DUPLICATE,
            names::EVENTS_MALFORMED,
        ] {
            counter!(n, "region" => p.clone()).absolute(0);
        }
    }
}

pub fn outside_policy() {
    counter!(names::OUTSIDE_POLICY).increment(1);
}

pub fn quarantined(n: usize) {
    counter!(names::STATE_QUARANTINED).increment(n as u64);
}

/// Sets up tracing to stderr (journald and awslogs both take it from there).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
