//! Notifications: what they say ([`kms`], [`iam`], pure rendering into a [`Message`]) and who
//! sends them (a [`Notifier`]; SNS's is [`crate::aws::sns`]). Messages go through the outbox
//! ([`crate::outbox`]) and its sender, never straight from the worker.

pub mod config;
pub mod iam;
pub mod kms;
pub mod message;
pub mod usage;

use std::future::Future;

pub use message::{Message, clean_subject};

use crate::aws::AwsError;

/// Where notifications go.
pub trait Notifier: Send + Sync + 'static {
    /// Publishes one message; returns the service's message id.
    fn publish(&self, m: &Message) -> impl Future<Output = Result<String, AwsError>> + Send;
}

impl<N: Notifier> Notifier for std::sync::Arc<N> {
    async fn publish(&self, m: &Message) -> Result<String, AwsError> {
        (**self).publish(m).await
    }
}

/// Without a topic, notifications are written to the log only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    async fn publish(&self, m: &Message) -> Result<String, AwsError> {
        tracing::info!(notification_id = %m.id, subject = %m.subject, body = %m.text, "Notification (no SNS topic configured).");
        Ok(String::new())
    }
}
