//! What a notification is, once rendered. Pure data: it is stored in the outbox as is.

use serde::{Deserialize, Serialize};

/// SNS requires subjects shorter than 100 characters, without line breaks.
pub const MAX_SUBJECT: usize = 99;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The `notification_id`: stable for what the message is about.
    pub id: String,
    pub subject: String,
    /// For people (e-mail, the `default` protocol).
    pub text: String,
    /// For machines (`sqs`, `lambda`, `http(s)`, `email-json`).
    pub json: serde_json::Value,
    /// For subscription filter policies: `rule_id`, `severity`, `outcome`, `notification_id`.
    pub attributes: Vec<(String, String)>,
}

/// A subject SNS accepts: no control characters, fewer than 100 characters.
pub fn clean_subject(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.chars().count() > MAX_SUBJECT {
        out = out.chars().take(MAX_SUBJECT - 1).collect::<String>() + "…";
    }
    out
}
