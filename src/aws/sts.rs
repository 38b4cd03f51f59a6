//! Who trailguard is: `GetCallerIdentity` at start. Its account keys the `LookupEvents` rate
//! limiter, and its ARN lets trailguard recognise its own calls in CloudTrail.

use super::{Aws, AwsError, ErrorType, RetryPolicy, Service, call};

/// The identity trailguard's credentials belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    /// The caller ARN (for a role: the session ARN).
    pub arn: String,
    /// The access key id trailguard signs with, if it has static credentials.
    pub access_key_id: Option<String>,
}

/// Asks STS, in `region`, who the credentials belong to.
pub async fn caller_identity(aws: &Aws, region: &str) -> Result<Identity, AwsError> {
    let client = aws.sts(region);
    let out = call(&RetryPolicy::ACTION, Service::Sts, "GetCallerIdentity", || {
        client.get_caller_identity().send()
    })
    .await?;
    let account = out.account.filter(|a| !a.is_empty()).ok_or_else(|| {
        AwsError::local(
            Service::Sts,
            "GetCallerIdentity",
            ErrorType::Other,
            "no account in the answer",
        )
    })?;
    Ok(Identity {
        account,
        arn: out.arn.unwrap_or_default(),
        access_key_id: aws.access_key_id().await,
    })
}
