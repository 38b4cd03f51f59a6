//! Metric names: `trailguard_<subsystem>_<noun>_<unit>[_total]`. The only place they are written
//! (`tests/deploy.rs` checks that the alerts and the dashboard use only these), with their help
//! text in [`ALL`].

pub const BUILD_INFO: &str = "trailguard_build_info";
pub const START_TIME: &str = "trailguard_start_time_seconds";
pub const DRY_RUN: &str = "trailguard_dry_run";
pub const POLLS: &str = "trailguard_cloudtrail_polls_total";
pub const LOOKUP_REQUESTS: &str = "trailguard_cloudtrail_requests_total";
pub const EVENTS_READ: &str = "trailguard_cloudtrail_events_total";
pub const EVENTS_DUPLICATE: &str = "trailguard_cloudtrail_duplicate_events_total";
pub const EVENTS_MALFORMED: &str = "trailguard_cloudtrail_malformed_events_total";
pub const LAG: &str = "trailguard_cloudtrail_lag_seconds";
pub const LAST_SUCCESS: &str = "trailguard_cloudtrail_last_success_timestamp_seconds";
pub const HEAD: &str = "trailguard_cloudtrail_head_timestamp_seconds";
pub const CLOCK_SKEW: &str = "trailguard_clock_skew_seconds";
pub const FINDINGS: &str = "trailguard_findings_total";
pub const REMEDIATIONS: &str = "trailguard_remediations_total";
pub const NOTIFICATIONS: &str = "trailguard_notifications_total";
pub const NOTIFICATIONS_PENDING: &str = "trailguard_notifications_pending";
pub const NOTIFICATIONS_OLDEST: &str = "trailguard_notifications_oldest_pending_age_seconds";
pub const AWS_ERRORS: &str = "trailguard_aws_errors_total";
pub const IAM_SWEEPS: &str = "trailguard_iam_sweeps_total";
pub const IAM_LAST_SWEEP: &str = "trailguard_iam_last_sweep_timestamp_seconds";
pub const IAM_KEYS_SEEN: &str = "trailguard_iam_access_keys";
pub const STATE_QUARANTINED: &str = "trailguard_state_quarantined_total";
pub const OUTSIDE_POLICY: &str = "trailguard_actions_outside_policy_total";
pub const LEASE_HELD: &str = "trailguard_lease_held";
pub const FACTS_REFRESHED: &str = "trailguard_kms_facts_refreshed_timestamp_seconds";
pub const USAGE_LOOKUPS: &str = "trailguard_kms_usage_lookups_total";
pub const REMINDER_CHECKS: &str = "trailguard_kms_reminder_checks_total";
pub const REMINDERS: &str = "trailguard_kms_reminders_total";
pub const KEYS_PENDING: &str = "trailguard_kms_keys_pending_deletion";
pub const ACCOUNTS: &str = "trailguard_accounts";
pub const ASSUME_ROLE_FAILURES: &str = "trailguard_sts_assume_role_failures_total";
pub const QUEUE_MESSAGES: &str = "trailguard_queue_messages_total";
pub const QUEUE_HELD: &str = "trailguard_queue_messages_held";
pub const QUEUE_OLDEST: &str = "trailguard_queue_oldest_message_age_seconds";
pub const QUEUE_FILES: &str = "trailguard_queue_log_files_total";

/// Whether a metric is a counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Every metric: name, kind, help.
pub const ALL: &[(&str, Kind, &str)] = &[
    (
        BUILD_INFO,
        Kind::Gauge,
        "trailguard build information (value is always 1)",
    ),
    (START_TIME, Kind::Gauge, "Unix time the daemon started"),
    (
        DRY_RUN,
        Kind::Gauge,
        "1 when trailguard runs in dry-run mode and changes nothing",
    ),
    (
        POLLS,
        Kind::Counter,
        "CloudTrail reads (slices) by poller and outcome (ok, throttled, failed)",
    ),
    (
        LOOKUP_REQUESTS,
        Kind::Counter,
        "LookupEvents requests sent, by region",
    ),
    (
        EVENTS_READ,
        Kind::Counter,
        "New CloudTrail events read, by poller",
    ),
    (
        EVENTS_DUPLICATE,
        Kind::Counter,
        "CloudTrail events read again and skipped as already handled, by poller",
    ),
    (
        EVENTS_MALFORMED,
        Kind::Counter,
        "CloudTrail events that could not be read and were skipped, by poller",
    ),
    (
        LAG,
        Kind::Gauge,
        "Seconds between now (AWS time) and the poller's head: how far behind it reads",
    ),
    (
        LAST_SUCCESS,
        Kind::Gauge,
        "Unix time of the last successful read, by poller",
    ),
    (
        HEAD,
        Kind::Gauge,
        "Unix time (eventTime) up to which the poller has read every event",
    ),
    (
        CLOCK_SKEW,
        Kind::Gauge,
        "AWS's clock minus the host's, in seconds, from AWS responses",
    ),
    (FINDINGS, Kind::Counter, "Rule matches, by rule id"),
    (
        REMEDIATIONS,
        Kind::Counter,
        "Remediations by action and outcome (applied, not_needed, dry_run, not_actionable, failed)",
    ),
    (
        NOTIFICATIONS,
        Kind::Counter,
        "Notifications by outcome (sent, failed, aggregated, logged)",
    ),
    (
        NOTIFICATIONS_PENDING,
        Kind::Gauge,
        "Notifications waiting in the outbox",
    ),
    (
        NOTIFICATIONS_OLDEST,
        Kind::Gauge,
        "Age in seconds of the oldest notification waiting in the outbox",
    ),
    (
        AWS_ERRORS,
        Kind::Counter,
        "Failed AWS calls (attempts) by service and error type",
    ),
    (
        IAM_SWEEPS,
        Kind::Counter,
        "IAM access-key sweeps by outcome (ok, failed)",
    ),
    (
        IAM_LAST_SWEEP,
        Kind::Gauge,
        "Unix time of the last complete IAM access-key sweep",
    ),
    (
        IAM_KEYS_SEEN,
        Kind::Gauge,
        "IAM access keys seen by the last sweep",
    ),
    (
        STATE_QUARANTINED,
        Kind::Counter,
        "State entries that did not decode and were moved aside",
    ),
    (
        LEASE_HELD,
        Kind::Gauge,
        "1 while this instance acts (holds the lease, or acts without lease.table); 0 while it stands by",
    ),
    (
        FACTS_REFRESHED,
        Kind::Gauge,
        "Unix time the protected keys' aliases and tags were last read from KMS in every region",
    ),
    (
        USAGE_LOOKUPS,
        Kind::Counter,
        "Lookups of a key's recent use in event history, by outcome (complete, partial: a lower bound, failed: unknown)",
    ),
    (
        REMINDER_CHECKS,
        Kind::Counter,
        "Checks of the keys pending deletion for due reminders, by outcome (ok, failed)",
    ),
    (
        REMINDERS,
        Kind::Counter,
        "Reminders queued before a key's deletion date",
    ),
    (
        KEYS_PENDING,
        Kind::Gauge,
        "Keys pending deletion that trailguard follows for reminders",
    ),
    (
        ACCOUNTS,
        Kind::Gauge,
        "AWS accounts trailguard guards (its own, accounts.ids, or the organization's)",
    ),
    (
        ASSUME_ROLE_FAILURES,
        Kind::Counter,
        "sts:AssumeRole calls into a guarded account's role that failed, by account and error type",
    ),
    (
        QUEUE_MESSAGES,
        Kind::Counter,
        "SQS messages of a queue source by outcome (received, deleted, skipped, retried, dead_lettered, released)",
    ),
    (
        QUEUE_HELD,
        Kind::Gauge,
        "SQS messages received and not yet deleted (their work is in progress), by source",
    ),
    (
        QUEUE_OLDEST,
        Kind::Gauge,
        "Age in seconds (since it reached the queue) of the oldest message received or still held, by source",
    ),
    (
        QUEUE_FILES,
        Kind::Counter,
        "Log files an s3_sqs source read, by outcome (read, failed)",
    ),
    (
        OUTSIDE_POLICY,
        Kind::Counter,
        "Actions trailguard's own audit refused as outside the policy (blocked; any non-zero value is a trailguard bug)",
    ),
];
