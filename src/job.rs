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
