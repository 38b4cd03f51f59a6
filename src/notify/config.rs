//! `[notify]`: where notifications go and how they are aggregated.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arn::Arn;
use crate::validate::{Field, Problems, choice, duration};

crate::validated!(RawNotify => NotifyConfig, NotifyConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawNotify {
    pub sns_topic_arn: Field<String>,
    pub aggregation_window: Field<String>,
    pub message_format: Field<String>,
}

/// What a published message's body is. Both are published with `MessageStructure` String, so
/// the message attributes (`rule_id`, `severity`, `outcome`, `notification_id`) reach every
/// subscriber and subscription filter policies work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageFormat {
    /// The JSON document (with the text in its `text` field): for SQS, Lambda, HTTP, `email-json`.
    #[default]
    Json,
    /// The text a person reads: for e-mail.
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub sns_topic_arn: Option<String>,
    pub aggregation_window: Duration,
    pub message_format: MessageFormat,
}

impl NotifyConfig {
    pub fn from_raw(raw: RawNotify, p: &mut Problems) -> Self {
        let sns_topic_arn = raw
            .sns_topic_arn
            .get("notify.sns_topic_arn", p)
            .filter(|a| !a.trim().is_empty());
        if let Some(arn) = &sns_topic_arn {
            match Arn::parse(arn) {
                Some(a)
                    if a.service == "sns"
                        && !a.region.is_empty()
                        && !a.account.is_empty()
                        && !a.resource.is_empty()
                        && !a.resource.contains(':') => {}
                _ => p.push(
                    "notify.sns_topic_arn",
                    format!("not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME): {arn:?}"),
                ),
            }
        }
        let aggregation_window = duration(
            p,
            "notify.aggregation_window",
            raw.aggregation_window,
            "5m",
            (Duration::ZERO, Duration::from_secs(24 * 3600)),
            "",
        );
        let message_format = choice(
            p,
            "notify.message_format",
            raw.message_format,
            &[("json", MessageFormat::Json), ("text", MessageFormat::Text)],
            MessageFormat::Json,
        );
        Self {
            sns_topic_arn,
            aggregation_window,
            message_format,
        }
    }
}
