//! Metric names: `trailguard_<subsystem>_<noun>_<unit>[_total]`. The only place they are written
//! (`tests/deploy.rs` checks that the alerts and the dashboard use only these).

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
