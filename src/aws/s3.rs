//! [`ObjectApi`] over the S3 SDK client, in the bucket's region.

use bytes::Bytes;

use super::{Aws, AwsError, ErrorType, RetryPolicy, Service, call};
use crate::sources::ObjectApi;

#[derive(Debug, Clone)]
pub struct S3 {
    aws: Aws,
    /// Where the bucket is when the notification does not say.
    default_region: String,
}

impl S3 {
    pub fn new(aws: Aws, default_region: &str) -> Self {
        Self {
            aws,
            default_region: default_region.to_owned(),
        }
    }
}

impl ObjectApi for S3 {
    async fn get(&self, bucket: &str, key: &str, region: Option<&str>) -> Result<Bytes, AwsError> {
        let client = self.aws.s3(region.unwrap_or(&self.default_region));
        let out = call(&RetryPolicy::ACTION, Service::S3, "GetObject", || {
            client.get_object().bucket(bucket).key(key).send()
        })
        .await?;
        let body = out.body.collect().await.map_err(|e| {
            AwsError::local(
                Service::S3,
                "GetObject",
                ErrorType::Transport,
                format!("reading s3://{bucket}/{key}: {e}"),
            )
        })?;
        Ok(body.into_bytes())
    }
}
