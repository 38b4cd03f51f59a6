//! [`Notifier`] over SNS: one `Publish` per message with `MessageStructure` String, so the
//! message attributes (`rule_id`, `severity`, `outcome`, `notification_id`) are delivered to
//! every subscriber (AWS drops them from JSON-structured messages) and subscription filter
//! policies on them work. The body is the JSON document or the text (`notify.message_format`).
//! A FIFO topic (`.fifo`) gets a message group per rule and the `notification_id` as
//! deduplication id, so SNS itself drops a resend within its 5-minute window.
//! One attempt per call: the outbox has its own schedule.

use aws_sdk_sns::types::MessageAttributeValue;

use super::{Aws, AwsError, ErrorType, RetryPolicy, Service, call};
use crate::arn::Arn;
use crate::notify::config::MessageFormat;
use crate::notify::message::SNS_LIMIT;
use crate::notify::{Message, Notifier};

#[derive(Debug, Clone)]
pub struct Sns {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    format: MessageFormat,
    fifo: bool,
}

impl Sns {
    /// The topic lives in the region its ARN names.
    pub fn new(aws: &Aws, topic_arn: String, format: MessageFormat) -> Self {
        let region = Arn::parse(&topic_arn)
            .map(|a| a.region.to_owned())
            .unwrap_or_default();
        Self {
            client: aws.sns(&region),
            fifo: topic_arn.ends_with(".fifo"),
            topic_arn,
            format,
        }
    }
}

/// The body for `format`, within SNS's limit (the text is cut if it must be; it never is for
/// messages trailguard renders, whose fields are bounded).
pub fn body(m: &Message, format: MessageFormat) -> String {
    let mut body = match format {
        MessageFormat::Json => m.json.to_string(),
        MessageFormat::Text => m.text.clone(),
    };
    let room = SNS_LIMIT - 4096 - m.subject.len();
    if body.len() > room {
        let mut cut = room;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    body
}

impl Notifier for Sns {
    async fn publish(&self, m: &Message) -> Result<String, AwsError> {
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&m.subject)
            .message(body(m, self.format));
        for (name, value) in &m.attributes {
            let attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| {
                    AwsError::local(Service::Sns, "Publish", ErrorType::Validation, e.to_string())
                })?;
            req = req.message_attributes(name, attr);
        }
        if self.fifo {
            let group = m
                .attributes
                .iter()
                .find(|(k, _)| k == "rule_id")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "trailguard".into());
            req = req.message_group_id(group).message_deduplication_id(&m.id);
        }
        let out = call(&RetryPolicy::ONCE, Service::Sns, "Publish", || req.clone().send()).await?;
        Ok(out.message_id.unwrap_or_default())
    }
}
