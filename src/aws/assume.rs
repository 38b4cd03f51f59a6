//! Credentials for another account: `sts:AssumeRole` into the role `accounts.role_arn_template`
//! names there, with `accounts.external_id`. The SDK's identity cache (one per account, see
//! [`super::Aws`]) keeps them until five minutes before they expire, so a role is assumed about
//! once an hour per account; a failure is that account's alone, reported with the role and the
//! reason, and tried again at the account's next call.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use tracing::warn;

use super::{AwsError, Service};

/// How long assumed credentials last (the role's maximum must allow it; one hour is the
/// default maximum, and the cap for role chaining).
const SESSION: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(super) struct AssumedRole {
    pub sts: aws_sdk_sts::Client,
    pub account: String,
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

impl AssumedRole {
    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(self.external_id.clone())
            .duration_seconds(SESSION.as_secs() as i32)
            .send()
            .await
            .map_err(|e| {
                let e = AwsError::from_sdk(Service::Sts, "AssumeRole", &e);
                crate::telemetry::assume_role_failed(&self.account, e.error_type);
                warn!(account = %self.account, role = %self.role_arn, error = %e, "Cannot assume the account's role; its calls fail until it can.");
                CredentialsError::provider_error(format!(
                    "cannot assume {} in account {}: {}",
                    self.role_arn,
                    self.account,
                    e.short()
                ))
            })?;
        let c = out
            .credentials
            .ok_or_else(|| CredentialsError::unhandled("AssumeRole answered without credentials"))?;
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(c.expiration.secs().max(0) as u64);
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "trailguard-assume-role",
        ))
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}
