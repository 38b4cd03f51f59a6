//! [`Notifier`] over SNS: one `Publish` per message with `MessageStructure=json`: the text body
//! as `default` (and for e-mail), the JSON document for machine protocols (`sqs`, `lambda`,
//! `http`, `https`, `email-json`), and message attributes for subscription filter policies.
//! One attempt per call: the outbox has its own schedule.

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use super::{Aws, AwsError, ErrorType, RetryPolicy, Service, call};
use crate::arn::Arn;
use crate::notify::{Message, Notifier};

#[derive(Debug, Clone)]
pub struct Sns {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl Sns {
    /// The topic lives in the region its ARN names.
    pub fn new(aws: &Aws, topic_arn: String) -> Self {
        let region = Arn::parse(&topic_arn)
            .map(|a| a.region.to_owned())
            .unwrap_or_default();
        Self {
            client: aws.sns(&region),
            topic_arn,
        }
    }
}

impl Notifier for Sns {
    async fn publish(&self, m: &Message) -> Result<String, AwsError> {
        let machine = m.json.to_string();
        let body = json!({
            "default": m.text,
            "email": m.text,
            "sqs": machine,
            "lambda": machine,
            "http": machine,
            "https": machine,
            "email-json": machine,
        })
        .to_string();
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&m.subject)
            .message_structure("json")
            .message(body);
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
        let out = call(&RetryPolicy::ONCE, Service::Sns, "Publish", || req.clone().send()).await?;
        Ok(out.message_id.unwrap_or_default())
    }
}
