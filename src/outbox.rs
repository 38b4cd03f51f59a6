//! The notification outbox: what is waiting to be published, and when to try again. Pure: the
//! store ([`crate::state`]) keeps the entries, the sender ([`crate::pipeline`]) publishes them,
//! and every decision here takes `now`.
//!
//! # The promise
//!
//! Every notification, KMS or IAM, is written to the outbox in the same transaction that
//! finishes the work it reports, before anything is published. The sender publishes in the
//! order entries became due, and deletes an entry only after SNS accepted it. So:
//! - a notification is never lost to a crash or an SNS outage: it stays until published;
//! - it is repeated only if the process dies between SNS accepting it and the entry's deletion,
//!   and then with the same `notification_id`, derived from what the message is about (event id,
//!   rule id, kind), so subscribers can drop the repeat;
//! - actions never wait for notifications: the sender runs in its own task, with its own
//!   backoff ([`backoff`]: 2 s doubling to 5 minutes, so a 10-minute outage costs about 8
//!   attempts per message, and every message goes out within 5 minutes of the end of it).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::notify::message::Message;

/// The namespace of trailguard's notification ids (UUID v5).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7c1e_9f0a_54d2_4b8e_9a61_2f3c_8d4e_b105);

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A stable id for a notification about `parts` (e.g. event id, rule id, kind).
pub fn notification_id(parts: &[&str]) -> String {
    uuid::Uuid::new_v5(&NAMESPACE, parts.join("\u{0}").as_bytes()).to_string()
}

/// The wait before attempt `attempts + 1`, after `attempts` failures.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(1, 9)).min(MAX_BACKOFF)
}

/// One message waiting to be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub message: Message,
    pub created: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl Entry {
    pub fn new(message: Message, now: DateTime<Utc>) -> Self {
        Self {
            message,
            created: now,
            attempts: 0,
            next_attempt: now,
            last_error: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.message.id
    }

    /// Records a failed attempt and schedules the next.
    pub fn failed(&mut self, now: DateTime<Utc>, error: String) {
        self.attempts += 1;
        self.last_error = Some(error);
        self.next_attempt = now + chrono::Duration::from_std(backoff(self.attempts)).unwrap_or_default();
    }

    pub fn due(&self, now: DateTime<Utc>) -> bool {
        self.next_attempt <= now
    }

    /// How long it has waited.
    pub fn age(&self, now: DateTime<Utc>) -> Duration {
        (now - self.created).to_std().unwrap_or_default()
    }
}

/// The entries due at `now`, oldest first, and when the next one not yet due will be.
pub fn due(entries: &[Entry], now: DateTime<Utc>) -> (Vec<&Entry>, Option<DateTime<Utc>>) {
    let mut ready: Vec<&Entry> = entries.iter().filter(|e| e.due(now)).collect();
    ready.sort_by_key(|e| (e.next_attempt, e.created));
    let next = entries
        .iter()
        .filter(|e| !e.due(now))
        .map(|e| e.next_attempt)
        .min();
    (ready, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn msg(id: &str) -> Message {
        Message {
            id: id.into(),
            subject: "s".into(),
            text: "t".into(),
            json: serde_json::json!({}),
            attributes: vec![],
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = notification_id(&["e-1", "kms_pending_deletion_use", "finding"]);
        assert_eq!(
            a,
            notification_id(&["e-1", "kms_pending_deletion_use", "finding"])
        );
        assert_ne!(
            a,
            notification_id(&["e-1", "kms_pending_deletion_use", "summary"])
        );
        assert_ne!(notification_id(&["a", "bc"]), notification_id(&["ab", "c"]));
    }

    #[test]
    fn a_ten_minute_outage_costs_a_few_attempts_and_ends_within_five_minutes() {
        let mut e = Entry::new(msg("n"), t(0));
        let mut now = t(0);
        let outage_end = t(600);
        while now < outage_end {
            assert!(e.due(now));
            e.failed(now, "InternalError".into());
            now = e.next_attempt;
        }
        assert!(e.attempts <= 9, "{}", e.attempts);
        assert!(now - outage_end <= chrono::Duration::seconds(300));
    }

    #[test]
    fn due_entries_come_oldest_first() {
        let mut late = Entry::new(msg("late"), t(0));
        late.failed(t(0), "x".into());
        let early = Entry::new(msg("early"), t(-5));
        let entries = vec![late.clone(), early];
        let (ready, next) = due(&entries, t(1));
        assert_eq!(ready.iter().map(|e| e.id()).collect::<Vec<_>>(), ["early"]);
        assert_eq!(next, Some(late.next_attempt));
    }
}
