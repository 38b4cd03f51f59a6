//! [`KeyApi`] over the KMS SDK client, in the key's own account and region.

use aws_sdk_kms::types::KeyState as SdkKeyState;

use super::{Aws, AwsError, ErrorType, RetryPolicy, SdkError, SdkErrorKind, Service, call, chrono_time};
use crate::actions::{KeyApi, KeyDescription, KeyState};
use crate::arn::KeyArn;

#[derive(Debug, Clone)]
pub struct Kms {
    aws: Aws,
}

impl Kms {
    /// `DescribeKey` in `account` (trailguard's own with `None`).
    async fn metadata(
        &self,
        account: Option<&str>,
        key: &KeyArn,
    ) -> Result<aws_sdk_kms::types::KeyMetadata, AwsError> {
        let c = self.aws.kms_in(account, &key.region);
        let out = kms("DescribeKey", || c.describe_key().key_id(&key.arn).send()).await?;
        out.key_metadata.ok_or_else(|| {
            AwsError::local(
                Service::Kms,
                "DescribeKey",
                ErrorType::Other,
                "no key metadata in the answer",
            )
        })
    }

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

/// Every alias (of one key, or of the region), with the key id it points to.
async fn aliases(
    c: &aws_sdk_kms::Client,
    key: Option<&str>,
) -> Result<Vec<(String, Option<String>)>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = kms("ListAliases", || {
            c.list_aliases()
                .set_key_id(key.map(str::to_owned))
                .set_marker(marker.clone())
                .send()
        })
        .await?;
        out.extend(
            page.aliases()
                .iter()
                .filter_map(|a| Some((a.alias_name()?.to_owned(), a.target_key_id().map(str::to_owned)))),
        );
        match page.next_marker.filter(|_| page.truncated) {
            Some(m) => marker = Some(m),
            None => return Ok(out),
        }
    }
}

impl KeyApi for Kms {
    async fn describe_key(&self, key: &KeyArn) -> Result<KeyDescription, AwsError> {
        let m = self.metadata(Some(&key.account), key).await?;
        let state = m.key_state.as_ref().map(SdkKeyState::as_str).unwrap_or("Enabled");
        Ok(KeyDescription {
            state: KeyState::parse(state),
            deletion_date: m.deletion_date.as_ref().map(chrono_time),
        })
    }

    async fn cancel_key_deletion(&self, key: &KeyArn) -> Result<(), AwsError> {
        let c = self.aws.kms_in(Some(&key.account), &key.region);
        kms("CancelKeyDeletion", || {
            c.cancel_key_deletion().key_id(&key.arn).send()
        })
        .await?;
        Ok(())
    }

    async fn enable_key(&self, key: &KeyArn) -> Result<(), AwsError> {
        let c = self.aws.kms_in(Some(&key.account), &key.region);
        kms("EnableKey", || c.enable_key().key_id(&key.arn).send()).await?;
        Ok(())
    }

    async fn list_aliases(&self, key: &KeyArn) -> Result<Vec<String>, AwsError> {
        Ok(
            aliases(&self.aws.kms_in(Some(&key.account), &key.region), Some(&key.arn))
                .await?
                .into_iter()
                .map(|(a, _)| a)
                .collect(),
        )
    }

    async fn region_aliases(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Vec<(String, Option<String>)>, AwsError> {
        aliases(&self.aws.kms_in(Some(account), region), None).await
    }

    async fn region_keys(&self, account: &str, region: &str) -> Result<Vec<String>, AwsError> {
        let c = self.aws.kms_in(Some(account), region);
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = kms("ListKeys", || c.list_keys().set_marker(marker.clone()).send()).await?;
            out.extend(page.keys().iter().filter_map(|k| k.key_id().map(str::to_owned)));
            match page.next_marker.filter(|_| page.truncated) {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    async fn list_resource_tags(&self, key: &KeyArn) -> Result<Vec<(String, String)>, AwsError> {
        let c = self.aws.kms_in(Some(&key.account), &key.region);
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

// What `trailguard keys audit` reads ([`crate::audit::inventory`]).

impl crate::audit::inventory::Inventory for Kms {
    async fn keys(&self, region: &str) -> Result<Vec<String>, AwsError> {
        let c = self.aws.kms(region);
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = kms("ListKeys", || {
                c.list_keys().limit(1000).set_marker(marker.clone()).send()
            })
            .await?;
            out.extend(
                page.keys()
                    .iter()
                    .filter_map(|k| k.key_arn().or(k.key_id()).map(str::to_owned)),
            );
            match page.next_marker.filter(|_| page.truncated) {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    async fn aliases(&self, region: &str) -> Result<Vec<(String, Option<String>)>, AwsError> {
        aliases(&self.aws.kms(region), None).await
    }

    async fn describe(&self, key: &KeyArn) -> Result<crate::audit::inventory::KeyMeta, AwsError> {
        let m = self.metadata(None, key).await?;
        Ok(crate::audit::inventory::KeyMeta {
            arn: m.arn().unwrap_or(&key.arn).to_owned(),
            state: m
                .key_state()
                .map(SdkKeyState::as_str)
                .unwrap_or("Enabled")
                .to_owned(),
            deletion_date: m.deletion_date().map(chrono_time),
            key_spec: m
                .key_spec()
                .map(|s| s.as_str())
                .unwrap_or("SYMMETRIC_DEFAULT")
                .to_owned(),
            origin: m.origin().map(|o| o.as_str()).unwrap_or("AWS_KMS").to_owned(),
            key_manager: m
                .key_manager()
                .map(|k| k.as_str())
                .unwrap_or("CUSTOMER")
                .to_owned(),
        })
    }

    async fn policy(&self, key: &KeyArn) -> Result<String, AwsError> {
        let c = self.aws.kms(&key.region);
        let out = kms("GetKeyPolicy", || {
            c.get_key_policy().key_id(&key.arn).policy_name("default").send()
        })
        .await?;
        Ok(out.policy.unwrap_or_default())
    }

    async fn rotation(&self, key: &KeyArn) -> Result<bool, AwsError> {
        let c = self.aws.kms(&key.region);
        let out = kms("GetKeyRotationStatus", || {
            c.get_key_rotation_status().key_id(&key.arn).send()
        })
        .await?;
        Ok(out.key_rotation_enabled)
    }
}
