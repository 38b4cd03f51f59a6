//! [`QueueApi`] over the SQS SDK client. Receives and batch calls are single attempts under
//! [`RetryPolicy::LOOKUP`] (throttling and 5xx retried with backoff).

use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    QueueAttributeName,
};

use super::{Aws, AwsError, ErrorType, RetryPolicy, Service, call};
use crate::sources::{QueueApi, QueueInfo, QueueMessage};

#[derive(Debug, Clone)]
pub struct Sqs {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Sqs {
    pub fn new(aws: &Aws, region: &str, url: &str) -> Self {
        Self {
            client: aws.sqs(region),
            url: url.to_owned(),
        }
    }
}

/// A long poll answers after `wait` when the queue stays empty: the attempt and read timeouts
/// every client gets (20 s, [`super::timeouts`]) would cut off SQS's longest wait (20 s) just as
/// it answers, and every receive on an idle queue would fail and back off. Receives get the wait
/// plus the usual margin.
fn long_poll(wait: Duration) -> aws_sdk_sqs::config::Builder {
    let base = super::timeouts();
    let attempt = wait + Duration::from_secs(10);
    aws_sdk_sqs::config::Builder::default().timeout_config(
        aws_smithy_types::timeout::TimeoutConfig::builder()
            .connect_timeout(base.connect_timeout().unwrap_or(Duration::from_secs(3)))
            .read_timeout(attempt)
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt + Duration::from_secs(5))
            .build(),
    )
}

fn secs(d: Duration) -> i32 {
    d.as_secs().min(12 * 3600) as i32
}

/// Batch entry ids must be unique within a request and at most 80 characters of
/// `[A-Za-z0-9_-]`: the position in the batch is.
fn entry_id(i: usize) -> String {
    format!("m{i}")
}

impl QueueApi for Sqs {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, AwsError> {
        let out = call(&RetryPolicy::LOOKUP, Service::Sqs, "ReceiveMessage", || {
            self.client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(max)
                .wait_time_seconds(secs(wait))
                .visibility_timeout(secs(visibility))
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .customize()
                .config_override(long_poll(wait))
                .send()
        })
        .await?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let attrs = m.attributes.unwrap_or_default();
                let attr =
                    |name: MessageSystemAttributeName| attrs.get(&name).and_then(|v| v.parse::<i64>().ok());
                Some(QueueMessage {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .unwrap_or(1)
                        .max(1) as u32,
                    sent: attr(MessageSystemAttributeName::SentTimestamp)
                        .and_then(chrono::DateTime::from_timestamp_millis),
                })
            })
            .collect())
    }

    async fn delete(&self, messages: &[(String, String)]) -> Result<Vec<String>, AwsError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .receipt_handle(receipt)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let out = call(&RetryPolicy::ACTION, Service::Sqs, "DeleteMessageBatch", || {
            self.client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.clone()))
                .send()
        })
        .await?;
        Ok(failed_ids(messages, out.failed.iter().map(|f| f.id.as_str())))
    }

    async fn extend(
        &self,
        messages: &[(String, String)],
        visibility: Duration,
    ) -> Result<Vec<String>, AwsError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .map(|(i, (_, receipt))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .receipt_handle(receipt)
                    .visibility_timeout(secs(visibility))
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let out = call(
            &RetryPolicy::ACTION,
            Service::Sqs,
            "ChangeMessageVisibilityBatch",
            || {
                self.client
                    .change_message_visibility_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries.clone()))
                    .send()
            },
        )
        .await?;
        Ok(failed_ids(messages, out.failed.iter().map(|f| f.id.as_str())))
    }

    async fn info(&self) -> Result<QueueInfo, AwsError> {
        let out = call(&RetryPolicy::ACTION, Service::Sqs, "GetQueueAttributes", || {
            self.client
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .attribute_names(QueueAttributeName::VisibilityTimeout)
                .send()
        })
        .await?;
        let attrs = out.attributes.unwrap_or_default();
        let mut info = QueueInfo {
            visibility_timeout: attrs
                .get(&QueueAttributeName::VisibilityTimeout)
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs),
            ..QueueInfo::default()
        };
        if let Some(policy) = attrs.get(&QueueAttributeName::RedrivePolicy) {
            let v: serde_json::Value = serde_json::from_str(policy).map_err(|e| {
                AwsError::local(
                    Service::Sqs,
                    "GetQueueAttributes",
                    ErrorType::Other,
                    format!("RedrivePolicy is not JSON: {e}"),
                )
            })?;
            info.max_receive_count = match &v["maxReceiveCount"] {
                serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            };
            info.dead_letter_target = v["deadLetterTargetArn"].as_str().map(str::to_owned);
        }
        Ok(info)
    }
}

/// The message ids of a batch's failed entries (entry ids are `m<index>`).
fn failed_ids<'a>(messages: &[(String, String)], failed: impl Iterator<Item = &'a str>) -> Vec<String> {
    failed
        .filter_map(|id| {
            let i: usize = id.strip_prefix('m')?.parse().ok()?;
            messages.get(i).map(|(id, _)| id.clone())
        })
        .collect()
}
