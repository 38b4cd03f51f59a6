//! Remediation: what trailguard does to a key, and what it reports about it.
//!
//! The worker talks to a [`Remediator`]; the KMS one ([`kms::KmsRemediator`]) runs the steps
//! against a [`KeyApi`], whose AWS implementation is in [`crate::aws::kms`]. Both seams let the
//! decisions be tested without AWS.

pub mod config;
pub mod kms;

use std::future::Future;

use chrono::{DateTime, Utc};

pub use crate::job::{ActionKind, Outcome, Remediation};

use crate::arn::KeyArn;
use crate::aws::AwsError;
use crate::plan::KeyFacts;
use crate::rules::Action;

/// A KMS key state, as `DescribeKey` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingReplicaDeletion,
    Other(String),
}

impl KeyState {
    pub fn parse(s: &str) -> Self {
        match s {
            "Enabled" => KeyState::Enabled,
            "Disabled" => KeyState::Disabled,
            "PendingDeletion" => KeyState::PendingDeletion,
            "PendingReplicaDeletion" => KeyState::PendingReplicaDeletion,
            other => KeyState::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingReplicaDeletion => "PendingReplicaDeletion",
            KeyState::Other(s) => s,
        }
    }

    pub fn pending_deletion(&self) -> bool {
        matches!(self, KeyState::PendingDeletion | KeyState::PendingReplicaDeletion)
    }
}

/// What `DescribeKey` says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    pub state: KeyState,
    pub deletion_date: Option<DateTime<Utc>>,
}

/// The KMS calls remediation makes, in the key's own region (and account).
pub trait KeyApi: Send + Sync + 'static {
    fn describe_key(&self, key: &KeyArn) -> impl Future<Output = Result<KeyDescription, AwsError>> + Send;
    fn cancel_key_deletion(&self, key: &KeyArn) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn enable_key(&self, key: &KeyArn) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn list_aliases(&self, key: &KeyArn) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    fn list_resource_tags(
        &self,
        key: &KeyArn,
    ) -> impl Future<Output = Result<Vec<(String, String)>, AwsError>> + Send;
    /// Every alias in an account's region, with the id of the key it points to (if any).
    fn region_aliases(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Vec<(String, Option<String>)>, AwsError>> + Send;
    /// Every key id in an account's region.
    fn region_keys(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// What the worker asks of remediation.
pub trait Remediator: Send + Sync + 'static {
    /// Runs `action` on the key the finding names (`account`: where the event was recorded).
    fn remediate(
        &self,
        action: Action,
        key_arn: Option<&str>,
        account: Option<&str>,
    ) -> impl Future<Output = Remediation> + Send;

    /// As [`Remediator::remediate`], for a remediation a previous run began and did not finish
    /// (a restart cut it): it continues from where the key is.
    fn resume(
        &self,
        action: Action,
        key_arn: Option<&str>,
        account: Option<&str>,
    ) -> impl Future<Output = Remediation> + Send {
        self.remediate(action, key_arn, account)
    }

    /// The key's aliases and tags, for the protection policy.
    fn key_facts(
        &self,
        key_arn: &str,
        aliases: bool,
        tags: bool,
    ) -> impl Future<Output = Result<KeyFacts, AwsError>> + Send;

    /// Every key of `account` in `region` with its aliases (and tags, when asked): the periodic
    /// snapshot behind protection as of the event.
    fn region_facts(
        &self,
        region: &str,
        account: &str,
        tags: bool,
    ) -> impl Future<Output = Result<Vec<(String, KeyFacts)>, AwsError>> + Send;
}
