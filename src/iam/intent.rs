//! A change of an access key written down before it is made: the sweep's write-ahead record.
//! Pure: the store keeps intents, the sweep loop ([`crate::pipeline::SweepLoop`]) writes one
//! before each `UpdateAccessKey` / `DeleteAccessKey` and removes it in the transaction that
//! queues the change's message.
//!
//! An intent still there at the next sweep means the process stopped between the call and
//! that transaction (a `kill -9`, an OOM kill, a lost host) or the message could not be queued.
//! The key's status then tells what happened ([`Intent::settle`]), and that is notified, so no
//! change trailguard made goes unreported, whatever stopped it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::KeyFinding;
use crate::job::{ActionKind, Outcome};

/// A change the sweep is about to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub account: String,
    pub user: String,
    pub access_key_id: String,
    /// [`ActionKind::Deactivate`] or [`ActionKind::Delete`].
    pub action: ActionKind,
    /// The sweep that decided it (part of its message's `notification_id`).
    pub sweep: String,
    /// When it was written, just before the call.
    pub at: DateTime<Utc>,
    pub rule_ids: Vec<String>,
    /// The finding as its message reports it.
    pub finding: serde_json::Value,
}

/// What `ListAccessKeys` shows of the key now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    /// Not listed for the user, or the user is gone.
    Gone,
}

impl Intent {
    pub fn new(account: &str, f: &KeyFinding, sweep: &str, at: DateTime<Utc>) -> Self {
        Self {
            account: account.to_owned(),
            user: f.key.user_name.clone(),
            access_key_id: f.key.access_key_id.clone(),
            action: super::sweep::planned_action(f.planned),
            sweep: sweep.to_owned(),
            at,
            rule_ids: f.rule_ids.iter().map(|r| (*r).to_owned()).collect(),
            finding: serde_json::to_value(f).unwrap_or_default(),
        }
    }

    /// The store's key: access key ids are unique, the account keeps one account's sweep from
    /// settling another's.
    pub fn key(&self) -> String {
        key(&self.account, &self.access_key_id)
    }

    /// What the change came to, judged by the key's status after the interruption: the outcome
    /// and a sentence for the message. The status cannot tell trailguard's call from someone
    /// else's change since; the sentence says so, and nothing is recorded as trailguard's
    /// deactivation on this evidence (a later deletion needs event history's).
    ///
    /// A deactivation that finds the key Active again is judged by event history:
    /// `deactivated` is the `UpdateAccessKey` to `Inactive` of the key found there since the
    /// intent (when, by whom), if any. Without one, the change did not take effect (the caller
    /// waits out CloudTrail's delivery delay before concluding so).
    pub fn settle(
        &self,
        status: KeyStatus,
        deactivated: Option<(DateTime<Utc>, Option<String>)>,
    ) -> (Outcome, String) {
        let when = self.at.to_rfc3339();
        let stopped = format!(
            "trailguard stopped after it began {} (sweep {}, at {when}) and before it recorded the result",
            match self.action {
                ActionKind::Delete => "DeleteAccessKey",
                _ => "UpdateAccessKey to Inactive",
            },
            self.sweep
        );
        match (self.action, status) {
            (ActionKind::Delete, KeyStatus::Gone) => (
                Outcome::Applied,
                format!("deleted: {stopped}; the key is gone now (event history shows who deleted it)"),
            ),
            (ActionKind::Delete, s) => (
                Outcome::Failed,
                format!(
                    "not deleted: {stopped}; the key is still listed ({}), and is decided again",
                    s.as_str()
                ),
            ),
            (_, KeyStatus::Inactive) => (
                Outcome::Applied,
                format!(
                    "deactivated: {stopped}; the key is Inactive now (event history shows who deactivated it); reactivate it with aws iam update-access-key --status Active if this was a mistake"
                ),
            ),
            (_, KeyStatus::Active) => match deactivated {
                Some((t, who)) => (
                    Outcome::Applied,
                    format!(
                        "deactivated, and reactivated since: {stopped}; event history shows UpdateAccessKey to Inactive on {} by {}, and the key is Active now: someone turned it back on",
                        t.to_rfc3339(),
                        who.as_deref().unwrap_or("?")
                    ),
                ),
                None => (
                    Outcome::Failed,
                    format!(
                        "not deactivated: {stopped}; the key is Active and event history shows no UpdateAccessKey to Inactive since; it is decided again"
                    ),
                ),
            },
            (_, KeyStatus::Gone) => (Outcome::NotNeeded, format!("{stopped}; the key no longer exists")),
        }
    }
}

/// The store's key of an intent.
pub fn key(account: &str, access_key_id: &str) -> String {
    format!("{account}\u{0}{access_key_id}")
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
            KeyStatus::Gone => "gone",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(action: ActionKind) -> Intent {
        Intent {
            account: "111122223333".into(),
            user: "app".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            action,
            sweep: "2026-11-26T08:00:00+00:00".into(),
            at: DateTime::UNIX_EPOCH,
            rule_ids: vec!["iam_access_key_unused".into()],
            finding: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_status_after_an_interruption_says_what_the_change_came_to() {
        use ActionKind::{Deactivate, Delete};
        use KeyStatus::{Active, Gone, Inactive};
        for (action, status, outcome, says) in [
            (Deactivate, Inactive, Outcome::Applied, "deactivated: "),
            (
                Deactivate,
                Active,
                Outcome::Failed,
                "no UpdateAccessKey to Inactive since",
            ),
            (Deactivate, Gone, Outcome::NotNeeded, "no longer exists"),
            (Delete, Gone, Outcome::Applied, "deleted: "),
            (Delete, Inactive, Outcome::Failed, "still listed (Inactive)"),
            (Delete, Active, Outcome::Failed, "still listed (Active)"),
        ] {
            let (o, detail) = intent(action).settle(status, None);
            assert_eq!(o, outcome, "{action:?} {status:?}: {detail}");
            assert!(detail.contains(says), "{action:?} {status:?}: {detail}");
            assert!(detail.contains("sweep 2026-11-26T08:00:00+00:00"), "{detail}");
        }
    }

    #[test]
    fn a_deactivation_undone_before_the_restart_is_reported_as_made_from_event_history() {
        let by = Some("arn:aws:sts::111122223333:assumed-role/trailguard/i-1".to_owned());
        let (o, detail) =
            intent(ActionKind::Deactivate).settle(KeyStatus::Active, Some((DateTime::UNIX_EPOCH, by)));
        assert_eq!(o, Outcome::Applied, "{detail}");
        assert!(
            detail.contains("someone turned it back on") && detail.contains("assumed-role/trailguard"),
            "{detail}"
        );
    }

    #[test]
    fn one_accounts_intents_are_apart_from_anothers() {
        let a = intent(ActionKind::Deactivate);
        let mut b = a.clone();
        b.account = "444455556666".into();
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), key("111122223333", "AKIAEXAMPLE"));
    }
}
