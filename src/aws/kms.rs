//! [`KeyApi`] over the KMS SDK client, in the key's own region.

use aws_sdk_kms::types::KeyState as SdkKeyState;

use super::{Aws, AwsError, ErrorType, RetryPolicy, SdkError, SdkErrorKind, Service, call, chrono_time};
use crate::actions::{KeyApi, KeyDescription, KeyState};
use crate::arn::KeyArn;

#[derive(Debug, Clone)]
pub struct Kms {
    aws: Aws,
}

impl Kms {
    pub fn new(aws: Aws) -> Self {
        Self { aws }
    }
}

/// One KMS call under the action policy.
async fn kms<T, E: SdkErrorKind, Fut>(op: &'static str, send: impl FnMut() -> Fut) -> Result<T, AwsError>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
{
    call(&RetryPolicy::ACTION, Service::Kms, op, send).await
}

impl KeyApi for Kms {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyDescription, AwsError> {
        let c = self.aws.kms(&key.region);
        let out = kms("DescribeKey", || c.describe_key().key_id(&key.arn).send()).await?;
        let m = out.key_metadata.ok_or_else(|| {
            AwsError::local(
                Service::Kms,
                "DescribeKey",
                ErrorType::Other,
                "no key metadata in the answer",
            )
        })?;
        let state = m.key_state.as_ref().map(SdkKeyState::as_str).unwrap_or("Enabled");
        Ok(KeyDescription {
            state: KeyState::parse(state),
            deletion_date: m.deletion_date.as_ref().map(chrono_time),
        })
    }

    async fn cancel_key_deletion(&self, key: &KeyArn) -> Result<(), AwsError> {
        let c = self.aws.kms(&key.region);
        kms("CancelKeyDeletion", || {
            c.cancel_key_deletion().key_id(&key.arn).send()
        })
        .await?;
        Ok(())
    }

    async fn enable_key(&self, key: &KeyArn) -> Result<(), AwsError> {
        let c = self.aws.kms(&key.region);
        kms("EnableKey", || c.enable_key().key_id(&key.arn).send()).await?;
        Ok(())
    }

    async fn list_aliases(&self, key: &KeyArn) -> Result<Vec<String>, AwsError> {
        let c = self.aws.kms(&key.region);
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = kms("ListAliases", || {
                c.list_aliases()
                    .key_id(&key.arn)
                    .set_marker(marker.clone())
                    .send()
            })
            .await?;
            out.extend(
                page.aliases()
                    .iter()
                    .filter_map(|a| a.alias_name().map(str::to_owned)),
            );
            match page.next_marker.filter(|_| page.truncated) {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    async fn list_resource_tags(&self, key: &KeyArn) -> Result<Vec<(String, String)>, AwsError> {
        let c = self.aws.kms(&key.region);
        let out = kms("ListResourceTags", || {
            c.list_resource_tags().key_id(&key.arn).send()
        })
        .await?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
            .collect())
    }
}
