//! The SQS and S3 calls a queue source makes ([`crate::aws::sqs`], [`crate::aws::s3`]).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::aws::AwsError;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// `SentTimestamp`: when the message reached the queue.
    pub sent: Option<DateTime<Utc>>,
}

/// What the queue's attributes say about redelivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueInfo {
    /// `RedrivePolicy.maxReceiveCount`: after this many receives a message goes to the DLQ.
    pub max_receive_count: Option<u32>,
    pub dead_letter_target: Option<String>,
    pub visibility_timeout: Option<Duration>,
}

/// An SQS queue.
pub trait QueueApi: Send + Sync + 'static {
    /// Long-polls for up to `max` messages, hidden from other consumers for `visibility`.
    fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<QueueMessage>, AwsError>> + Send;

    /// Deletes messages (`(message_id, receipt_handle)`, at most 10); returns the ids that
    /// could not be deleted.
    fn delete(
        &self,
        messages: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;

    /// Hides messages (at most 10) for `visibility` from now.
    fn extend(
        &self,
        messages: &[(String, String)],
        visibility: Duration,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    fn info(&self) -> impl Future<Output = Result<QueueInfo, AwsError>> + Send;
}

/// S3 objects (log files).
pub trait ObjectApi: Send + Sync + 'static {
    /// The object's bytes, as stored (a log file is gzip'd).
    fn get(
        &self,
        bucket: &str,
        key: &str,
        region: Option<&str>,
    ) -> impl Future<Output = Result<Bytes, AwsError>> + Send;
}
