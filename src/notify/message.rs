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

/// The most characters any one field taken from an event may have in a message. CloudTrail
/// itself caps `userAgent` and `errorMessage` at 1 KB; anything longer was not written by it.
pub const MAX_FIELD: usize = 1024;

/// SNS's limit on one message: body, subject and attributes, in bytes.
pub const SNS_LIMIT: usize = 262_144;

/// Characters that would let a field forge lines or reorder text in a notification.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// An attacker-controlled string made safe to show: control, line-separator and bidi
/// characters replaced with `�`, and at most `max` characters, saying how much was cut.
pub fn clean(s: &str, max: usize) -> String {
    let total = s.chars().count();
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
        .collect();
    if total > max {
        out.push_str(&format!("…[{} more characters cut]", total - max));
    }
    out
}

impl Message {
    /// A message with the attributes subscription filters see: `rule_id`, `severity`,
    /// `outcome` and the `notification_id` (`id`).
    pub fn new(
        id: String,
        subject: String,
        text: String,
        json: serde_json::Value,
        rule_id: &str,
        severity: &str,
        outcome: &str,
    ) -> Self {
        let attributes = vec![
            ("rule_id".into(), rule_id.to_owned()),
            ("severity".into(), severity.to_owned()),
            ("outcome".into(), outcome.to_owned()),
            ("notification_id".into(), id.clone()),
        ];
        Self {
            id,
            subject,
            text,
            json,
            attributes,
        }
    }

    /// What the message weighs against [`SNS_LIMIT`] in the larger of its two forms.
    pub fn size(&self) -> usize {
        let attrs: usize = self
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + "String".len())
            .sum();
        self.subject.len() + attrs + self.json.to_string().len().max(self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_forge_lines_or_grow_without_bound() {
        assert_eq!(clean("a\nOutcome: applied", 100), "a\u{fffd}Outcome: applied");
        assert_eq!(clean("evil\u{202e}txt", 100), "evil\u{fffd}txt");
        let long = "x".repeat(100_000);
        let c = clean(&long, MAX_FIELD);
        assert!(
            c.len() < 1100 && c.ends_with("[98976 more characters cut]"),
            "{}",
            &c[1000..]
        );
    }
}
