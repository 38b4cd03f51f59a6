//! Aggregation: one message per rule and key per `notify.aggregation_window`, then a summary
//! with the count of the rest. Pure: the worker keeps the windows (persisted, so counts survive a
//! restart) and passes `now` (AWS time).
//!
//! Aggregation holds back messages, never actions. A finding is folded into its rule-and-key
//! window only if:
//! - it asks for no remediation (notify only); or
//! - it is one more failed use of a key whose rescue the window already ran and verified, and
//!   the use happened before that rescue began (its `eventTime` is earlier). A use that failed
//!   after the rescue began means the key was pending deletion again (someone scheduled it
//!   again): it is rescued again, whatever order the events are read in.
//!
//! A finding whose remediation failed never holds back the next one: the next use retries it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::rules;

/// The window a finding belongs to: its rule and its key (or its event, without a key).
pub fn window_key(job: &Job) -> String {
    let f = &job.finding;
    format!(
        "{}\u{0}{}",
        f.rule_id,
        f.key_arn.as_deref().unwrap_or(&f.event_id)
    )
}

/// An open window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub opened_at: DateTime<Utc>,
    /// The finding the window's message was about, remediation included.
    pub first: Job,
    /// Matches held back since.
    pub more: u64,
    /// When the verified remediation of `first` began, if it succeeded (or was not needed).
    pub rescued_before: Option<DateTime<Utc>>,
}

impl Window {
    pub fn open(first: Job, now: DateTime<Utc>) -> Self {
        let rescued_before = first
            .remediation
            .as_ref()
            .filter(|r| r.outcome.settled())
            .and(first.remediation_started.or(Some(now)));
        Self {
            opened_at: now,
            first,
            more: 0,
            rescued_before,
        }
    }

    pub fn expired(&self, now: DateTime<Utc>, length: Duration) -> bool {
        now - self.opened_at >= chrono::Duration::from_std(length).unwrap_or_default()
    }

    /// The summary to send when the window closes, if it held anything back.
    pub fn summary(&self, now: DateTime<Utc>) -> Option<Job> {
        (self.more > 0).then(|| {
            let mut s = self.first.clone();
            s.id = crate::outbox::notification_id(&[
                &self.first.finding.event_id,
                &self.first.finding.rule_id,
                "summary",
                &self.opened_at.to_rfc3339(),
            ]);
            s.more = self.more;
            s.created = now;
            s
        })
    }
}

/// Uses before this were surely before the rescue began: `eventTime` is truncated to the
/// second, and trailguard's estimate of AWS's clock may be off by about a second, so a use in
/// the two seconds before the rescue's second is checked again rather than folded (the check
/// finds the key already rescued, or rescues it again).
fn fold_before(rescue: DateTime<Utc>) -> DateTime<Utc> {
    let whole = DateTime::from_timestamp(rescue.timestamp(), 0).unwrap_or(rescue);
    whole - chrono::Duration::seconds(2)
}

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Count it in the open window; no message, no action.
    Fold,
    /// Handle it: remediate if asked, notify, and open a window for what follows.
    Handle,
}

/// Decides, for `job`, given its window (if open) and the window length.
pub fn decide(window: Option<&Window>, job: &Job, now: DateTime<Utc>, length: Duration) -> Decision {
    if length.is_zero() {
        return Decision::Handle;
    }
    let Some(w) = window.filter(|w| !w.expired(now, length)) else {
        return Decision::Handle;
    };
    if job.pending_action().is_none() && job.remediation.is_none() {
        return Decision::Fold;
    }
    let is_use = job.finding.rule_id == rules::PENDING_DELETION_USE;
    let used_at = job
        .finding
        .event_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    match (is_use, w.rescued_before, used_at) {
        (true, Some(rescue), Some(used)) if used < fold_before(rescue) => Decision::Fold,
        _ => Decision::Handle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{ActionKind, Outcome, Remediation};
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn use_at(id: &str, at: i64) -> Job {
        let text = serde_json::json!({
            "eventID": id, "eventTime": t(at).to_rfc3339(), "eventSource": "kms.amazonaws.com",
            "eventName": "Decrypt", "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
            "errorCode": "KMSInvalidStateException",
            "errorMessage": "arn:aws:kms:eu-west-1:111122223333:key/k is pending deletion.",
        })
        .to_string();
        Job::new(rules::evaluate_json(&text).remove(0), t(at))
    }

    fn rescued(mut j: Job, outcome: Outcome, started: i64) -> Job {
        let mut r = Remediation::new(ActionKind::CancelKeyDeletion);
        r.outcome = outcome;
        j.remediation = Some(r);
        j.remediated = true;
        j.remediation_started = Some(t(started));
        j
    }

    const LEN: Duration = Duration::from_secs(300);

    #[test]
    fn uses_before_a_verified_rescue_are_folded() {
        let w = Window::open(rescued(use_at("a", 0), Outcome::Applied, 10), t(11));
        assert_eq!(decide(Some(&w), &use_at("b", 5), t(20), LEN), Decision::Fold);
        assert_eq!(
            decide(Some(&w), &use_at("c", 15), t(20), LEN),
            Decision::Handle,
            "a use after the rescue began means the key was scheduled again"
        );
        assert_eq!(
            decide(Some(&w), &use_at("d", 10), t(20), LEN),
            Decision::Handle,
            "the same second as the rescue: eventTime is truncated, so it may be after"
        );
    }

    #[test]
    fn a_failed_rescue_never_holds_back_the_next_use() {
        let w = Window::open(rescued(use_at("a", 0), Outcome::Failed, 10), t(11));
        assert_eq!(decide(Some(&w), &use_at("b", 5), t(20), LEN), Decision::Handle);
    }

    #[test]
    fn windows_close_and_summarise_with_a_stable_id() {
        let mut w = Window::open(rescued(use_at("a", 0), Outcome::Applied, 10), t(11));
        assert_eq!(
            decide(Some(&w), &use_at("b", 5), t(11 + 300), LEN),
            Decision::Handle
        );
        assert!(w.summary(t(400)).is_none(), "nothing held back, nothing to say");
        w.more = 3;
        let s = w.summary(t(400)).unwrap();
        assert_eq!(s.more, 3);
        assert_eq!(s.id, w.summary(t(999)).unwrap().id);
        assert_ne!(s.id, w.first.id);
    }

    #[test]
    fn zero_length_means_every_finding_is_handled() {
        let w = Window::open(rescued(use_at("a", 0), Outcome::Applied, 10), t(11));
        assert_eq!(
            decide(Some(&w), &use_at("b", 5), t(12), Duration::ZERO),
            Decision::Handle
        );
    }
}
