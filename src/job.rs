//! The unit of work: a finding, what the policy decided, and what remediation did. Pure data,
//! persisted by [`crate::state`] between the steps of the protocol described there.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::{Action, Finding};

/// How a remediation ended (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action was taken and verified.
    Applied,
    /// Nothing to do: the key was already in the wanted state.
    NotNeeded,
    /// Dry run: the action was not taken.
    DryRun,
    /// trailguard cannot act on this (another account's key, no key named).
    NotActionable,
    /// The action failed.
    Failed,
}

impl Outcome {
    pub const ALL: &'static [Outcome] = &[
        Outcome::Applied,
        Outcome::NotNeeded,
        Outcome::DryRun,
        Outcome::NotActionable,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NotNeeded => "not_needed",
            Outcome::DryRun => "dry_run",
            Outcome::NotActionable => "not_actionable",
            Outcome::Failed => "failed",
        }
    }

    /// The wanted state holds (or, in a dry run, would): nothing left to retry.
    pub fn settled(self) -> bool {
        !matches!(self, Outcome::Failed)
    }
}

/// Which action a remediation was (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CancelKeyDeletion,
    EnableKey,
    Notify,
    Deactivate,
    Delete,
}

impl ActionKind {
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::CancelKeyDeletion,
        ActionKind::EnableKey,
        ActionKind::Notify,
        ActionKind::Deactivate,
        ActionKind::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CancelKeyDeletion => "cancel_key_deletion",
            ActionKind::EnableKey => "enable_key",
            ActionKind::Notify => "notify",
            ActionKind::Deactivate => "deactivate",
            ActionKind::Delete => "delete",
        }
    }
}

/// What a remediation did, for logs and notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    pub action: ActionKind,
    pub outcome: Outcome,
    /// One sentence a person can act on.
    pub detail: String,
    pub state_before: Option<String>,
    pub state_after: Option<String>,
    pub deletion_date: Option<String>,
    /// The AWS calls made, in order, with their result.
    pub steps: Vec<String>,
}

impl Remediation {
    /// A remediation of `action` that has not succeeded (yet).
    pub fn new(action: ActionKind) -> Self {
        Self {
            action,
            outcome: Outcome::Failed,
            detail: String::new(),
            state_before: None,
            state_after: None,
            deletion_date: None,
            steps: Vec::new(),
        }
    }
}

/// A finding's work: remediation (if its rule or the policy asks for one), then notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Derived from the event and the rule ([`crate::outbox::notification_id`]): the same
    /// finding read twice is the same job, and its notification carries the same id.
    pub id: String,
    pub finding: Finding,
    pub created: DateTime<Utc>,
    /// Set once the remediation has run (or when there is none to run).
    pub remediation: Option<Remediation>,
    pub remediated: bool,
    /// How many further matches this notification stands for (aggregation).
    pub more: u64,
    /// The protection-policy decision, with the line that made it.
    #[serde(default)]
    pub policy: Option<String>,
    /// When the remediation began (AWS time): a key verified rescued then was pending before.
    /// Recorded before the first change, so a job that has it and is not `remediated` was cut
    /// by a restart and is resumed ([`crate::actions::Remediator::resume`]).
    #[serde(default)]
    pub remediation_started: Option<DateTime<Utc>>,
    /// The key's use, looked up in event history (scheduled deletions, disables, reminders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
    /// What the usage policy decided (`kms.on_schedule_deletion_of_used_key`), once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_policy: Option<String>,
    /// The key's aliases as KMS reported them, when the event named none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<AliasLookup>,
    /// For a finding decided again ([`Kept::recheck`]): the id of the job first decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck_of: Option<String>,
}

/// A key's aliases, looked up through KMS for a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum AliasLookup {
    Found {
        aliases: Vec<String>,
    },
    /// The lookup failed (or took too long): the error type.
    Unknown {
        error_type: String,
    },
}

impl Job {
    /// The job for a new finding.
    pub fn new(finding: Finding, now: DateTime<Utc>) -> Self {
        let id = crate::outbox::notification_id(&[&finding.event_id, &finding.rule_id, "finding"]);
        let remediated = !finding.actions.iter().any(|a| a.remediates());
        Self {
            id,
            finding,
            created: now,
            remediation: None,
            remediated,
            more: 0,
            policy: None,
            remediation_started: None,
            usage: None,
            usage_policy: None,
            aliases: None,
            recheck_of: None,
        }
    }

    /// The action this job still has to take, if any.
    pub fn pending_action(&self) -> Option<Action> {
        if self.remediated {
            return None;
        }
        self.finding.actions.iter().copied().find(|a| a.remediates())
    }
}

/// A finding the protection policy decided without action (the key was not protected, or an
/// exemption covered it, or its protection was unknown), kept while a change of its key's
/// aliases or tags that CloudTrail has not delivered yet could still change that decision:
/// `cloudtrail.max_delivery_delay` (and a lookback) after the event and the decision. When
/// such a change is read, the finding is decided again ([`Kept::recheck`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// The job as it was before the decision (the rule's own actions).
    pub job: Job,
    pub decided: DateTime<Utc>,
}

impl Kept {
    /// The job that decides the finding again: a new job, whose id is derived from the first
    /// one's (read again, it is the same job; its notification is its own).
    pub fn recheck(&self, now: DateTime<Utc>) -> Job {
        let first = &self.job;
        let mut job = Job::new(first.finding.clone(), now);
        job.id = crate::outbox::notification_id(&[&first.id, "recheck"]);
        job.recheck_of = Some(first.id.clone());
        job
    }

    /// Whether no change read from now on can concern it: both the event and the decision are
    /// older than `horizon` (now less the lookback span).
    pub fn expired(&self, horizon: DateTime<Utc>) -> bool {
        let event = self
            .job
            .finding
            .event_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        event.unwrap_or(self.decided).max(self.decided) < horizon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(event: &str, decided: DateTime<Utc>) -> Kept {
        let text = serde_json::json!({"eventID": "s-1", "eventTime": event, "eventSource": "kms.amazonaws.com",
            "eventName": "ScheduleKeyDeletion", "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
            "requestParameters": {"keyId": "k"}})
        .to_string();
        let mut job = Job::new(crate::rules::evaluate_json(&text).remove(0), decided);
        job.policy = Some("decided".into());
        Kept { job, decided }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_recheck_is_a_new_undecided_job_with_an_id_derived_from_the_first() {
        let k = kept("2026-11-25T12:00:00Z", at("2026-11-25T12:00:30Z"));
        let a = k.recheck(at("2026-11-25T12:01:00Z"));
        let b = k.recheck(at("2026-11-25T12:05:00Z"));
        assert_eq!(a.id, b.id, "deterministic: read again, the same job");
        assert_ne!(
            a.id, k.job.id,
            "its notification does not replace the first one's"
        );
        assert_eq!(a.recheck_of.as_deref(), Some(k.job.id.as_str()));
        assert_eq!(a.policy, None);
        assert_eq!(a.finding, k.job.finding);
    }

    #[test]
    fn a_kept_finding_expires_once_event_and_decision_are_past_the_horizon() {
        let k = kept("2026-11-25T12:00:00Z", at("2026-11-25T12:30:00Z"));
        assert!(
            !k.expired(at("2026-11-25T12:20:00Z")),
            "decided late: kept from the decision"
        );
        assert!(k.expired(at("2026-11-25T12:31:00Z")));
    }
}
