//! Publishing notifications to SNS.
//!
//! One `Publish` per message with `MessageStructure=json`: the text body as `default` (and for
//! e-mail), the JSON document for machine protocols (`sqs`, `lambda`, `http`, `https`,
//! `email-json`), and message attributes for subscription filter policies.

use aws_sdk_sns::Client;
use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use super::Message;
use crate::telemetry;

pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(base: &aws_config::SdkConfig, topic_arn: String) -> Self {
        // The topic lives in the region its ARN names.
        let region = topic_arn.split(':').nth(3).unwrap_or("us-east-1").to_owned();
        let conf = aws_sdk_sns::config::Builder::from(base)
            .region(aws_sdk_sns::config::Region::new(region))
            .build();
        Self {
            client: Client::from_conf(conf),
            topic_arn,
        }
    }

    pub async fn publish(&self, m: &Message) -> Result<String, String> {
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
                .map_err(|e| e.to_string())?;
            req = req.message_attributes(*name, attr);
        }
        match req.send().await {
            Ok(out) => Ok(out.message_id.unwrap_or_default()),
            Err(e) => {
                let code = e
                    .as_service_error()
                    .and_then(|s| s.code())
                    .unwrap_or("transport")
                    .to_owned();
                telemetry::aws_error("sns", &code);
                Err(match e.as_service_error() {
                    Some(s) => format!("{code}: {}", s.message().unwrap_or_default()),
                    None => format!("request failed: {e}"),
                })
            }
        }
    }
}
