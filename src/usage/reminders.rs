//! Reminders before a deletion date. Pure: which reminder is due, and the job that carries it.
//!
//! # The promise
//!
//! Keys trailguard saw scheduled for deletion (and did not rescue) are kept in the state store
//! with the reminders already sent. Every `kms.reminder_interval` each is checked with
//! `DescribeKey`: a key no longer pending deletion (cancelled, or deleted) is forgotten; for one
//! still pending, the reminder points (`kms.reminders`, e.g. `["7d", "1d"]`) that have come
//! (`deletion date - point <= now`) and were not sent are due. One reminder goes out, for the
//! latest of them (the closest to the deletion date), with the key's use since it was
//! scheduled, and every due point is marked sent in the same transaction that queues it. So a
//! restart never sends a point twice, and points missed while trailguard was down are sent once,
//! when it comes back, if the deletion date has not passed.
//!
//! Keys are the ones trailguard saw scheduled: a deletion scheduled while it was not reading
//! (beyond `cloudtrail.start_from`) is not reminded of; `trailguard keys audit` lists every key
//! pending deletion.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DELETION_REMINDER, Usage, human};
use crate::job::Job;
use crate::rules::{Finding, Severity};

/// A key trailguard saw scheduled for deletion, and the reminders sent about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingKey {
    /// The `ScheduleKeyDeletion` finding (its event, caller and key).
    pub finding: Finding,
    /// When it was scheduled (the event's time).
    pub scheduled_at: DateTime<Utc>,
    /// Reminder points already sent (or passed over for a later one), in seconds.
    #[serde(default)]
    pub reminded: Vec<u64>,
}

impl PendingKey {
    pub fn key_arn(&self) -> &str {
        self.finding.key_arn.as_deref().unwrap_or_default()
    }
}

/// A reminder that is due: the point it is for, and every point it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub point: Duration,
    pub settles: Vec<u64>,
}

/// The reminder due for a key deleted at `deletion` (see the module docs), if any.
pub fn due(
    points: &[Duration],
    deletion: DateTime<Utc>,
    now: DateTime<Utc>,
    reminded: &[u64],
) -> Option<Due> {
    if now >= deletion {
        return None;
    }
    let left = (deletion - now).to_std().unwrap_or_default();
    let settles: Vec<u64> = points
        .iter()
        .map(|p| p.as_secs())
        .filter(|p| *p >= left.as_secs() && !reminded.contains(p))
        .collect();
    let point = *settles.iter().min()?;
    Some(Due {
        point: Duration::from_secs(point),
        settles,
    })
}

/// The job that carries a reminder: the scheduling finding under [`DELETION_REMINDER`], with the
/// deletion date, the use since scheduling, and an id of its own (one per key, scheduling event
/// and point, so a resend after a crash is the same notification).
pub fn job(key: &PendingKey, due: &Due, deletion: DateTime<Utc>, usage: Usage, now: DateTime<Utc>) -> Job {
    let mut f = key.finding.clone();
    f.rule_id = DELETION_REMINDER.into();
    f.description = format!(
        "A KMS key scheduled for deletion is deleted in {} (reminder kms.reminders: {})",
        human((deletion - now).to_std().unwrap_or_default()),
        human(due.point)
    );
    f.severity = if usage.calls > 0 {
        Severity::High
    } else {
        Severity::Medium
    };
    f.actions = vec![crate::rules::Action::Notify];
    f.deletion_date = Some(deletion.to_rfc3339());
    f.key_state = Some("PendingDeletion".into());
    let mut j = Job::new(f, now);
    j.id = crate::outbox::notification_id(&[
        &key.finding.event_id,
        DELETION_REMINDER,
        &due.point.as_secs().to_string(),
    ]);
    j.usage = Some(usage);
    j
}
