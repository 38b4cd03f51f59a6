//! [`KeyApi`] over the KMS SDK client, in the key's own region.

use aws_sdk_kms::types::KeyState as SdkKeyState;

use super::{
    Aws, AwsError, ErrorType, RetryPolicy, SdkError, SdkErrorKind, Service, chrono_time, retry, sdk_err,
};
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

fn err<E: SdkErrorKind>(op: &'static str) -> impl Fn(SdkError<E>) -> AwsError {
    sdk_err(Service::Kms, op)
}

impl KeyApi for Kms {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyDescription, AwsError> {
        let client = self.aws.kms(&key.region);
        let out = retry(&RetryPolicy::ACTION, Service::Kms, "DescribeKey", || async {
            client
                .describe_key()
                .key_id(&key.arn)
                .send()
                .await
                .map_err(err("DescribeKey"))
        })
        .await?;
        let m = out.key_metadata.ok_or_else(|| {
            AwsError::local(
                Service::Kms,
                "DescribeKey",
                ErrorType::Other,
                "DescribeKey returned no metadata",
            )
        })?;
        let state = m.key_state.as_ref().map(SdkKeyState::as_str).unwrap_or("Enabled");
        Ok(KeyDescription {
            state: KeyState::parse(state),
            deletion_date: m.deletion_date.as_ref().map(chrono_time),
        })
    }

    async fn cancel_key_deletion(&self, key: &KeyArn) -> Result<(), AwsError> {
        let client = self.aws.kms(&key.region);
        retry(
            &RetryPolicy::ACTION,
            Service::Kms,
            "CancelKeyDeletion",
            || async {
                client
                    .cancel_key_deletion()
                    .key_id(&key.arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(err("CancelKeyDeletion"))
            },
        )
        .await
    }

    async fn enable_key(&self, key: &KeyArn) -> Result<(), AwsError> {
        let client = self.aws.kms(&key.region);
        retry(&RetryPolicy::ACTION, Service::Kms, "EnableKey", || async {
            client
                .enable_key()
                .key_id(&key.arn)
                .send()
                .await
                .map(|_| ())
                .map_err(err("EnableKey"))
        })
        .await
    }

    async fn list_aliases(&self, key: &KeyArn) -> Result<Vec<String>, AwsError> {
        let client = self.aws.kms(&key.region);
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = retry(&RetryPolicy::ACTION, Service::Kms, "ListAliases", || async {
                client
                    .list_aliases()
                    .key_id(&key.arn)
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .map_err(err("ListAliases"))
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
        let client = self.aws.kms(&key.region);
        let out = retry(&RetryPolicy::ACTION, Service::Kms, "ListResourceTags", || async {
            client
                .list_resource_tags()
                .key_id(&key.arn)
                .send()
                .await
                .map_err(err("ListResourceTags"))
        })
        .await?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
            .collect())
    }
}
