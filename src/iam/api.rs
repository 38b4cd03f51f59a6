//! The IAM calls the sweep makes: the seam between the sweep's decisions and AWS
//! ([`crate::aws::iam`] implements it, paced to `iam.max_requests_per_second`).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::LastUse;
use crate::aws::AwsError;

/// A user as `ListUsers` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub arn: String,
    pub path: String,
}

/// An access key as `ListAccessKeys` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub active: bool,
    pub created: Option<DateTime<Utc>>,
}

/// The account's credential report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialReport {
    pub generated: Option<DateTime<Utc>>,
    pub csv: Vec<u8>,
}

pub trait IamApi: Send + Sync + 'static {
    /// Every user (all pages).
    fn list_users(&self) -> impl Future<Output = Result<Vec<User>, AwsError>> + Send;
    fn list_access_keys(&self, user: &str) -> impl Future<Output = Result<Vec<AccessKey>, AwsError>> + Send;
    /// `None`: never used (or not since IAM began tracking, April 2015).
    fn last_used(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<LastUse>, AwsError>> + Send;
    fn user_tags(&self, user: &str) -> impl Future<Output = Result<Vec<(String, String)>, AwsError>> + Send;
    /// `UpdateAccessKey` to `Inactive`, always naming the user.
    fn deactivate(
        &self,
        user: &str,
        access_key_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete(&self, user: &str, access_key_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The latest credential report; `None` when there is none yet, it expired, or it is being
    /// generated.
    fn credential_report(&self) -> impl Future<Output = Result<Option<CredentialReport>, AwsError>> + Send;
    fn generate_credential_report(&self) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// IAM calls made so far (for the sweep's log line and benchmarks).
    fn calls(&self) -> u64 {
        0
    }
}
