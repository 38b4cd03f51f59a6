//! SNS `Publish` as strict as AWS, over moto.
//!
//! moto accepts publishes AWS refuses, and delivers what AWS would not. Before a `Publish`
//! reaches moto the sandbox applies the Publish API reference:
//!
//! - `MessageStructure`, when given, must be `json`; the message must then be a JSON object
//!   without duplicate keys and with a string `"default"` (AWS: `InvalidParameter: Invalid
//!   parameter: Message Structure - JSON message body failed to parse` / `... - No default entry
//!   in JSON message body`). Keys whose values are not strings are ignored, as AWS ignores them.
//! - Message attributes are sent only with the String structure: a JSON-structured publish
//!   reaches moto without them, so subscribers' envelopes carry no `MessageAttributes`.
//! - The message, subject and every attribute's name, type and value together are at most
//!   262,144 bytes (`Invalid parameter: Message too long`); the message is not empty.
//! - `Subject`: at most 100 characters (AWS accepts exactly 100, whatever its docs say), no line
//!   breaks or other control characters.
//! - Attribute names: 1–256 of `A-Za-z0-9_-.`, no leading, trailing or doubled `.`, not starting
//!   with `AWS.` or `Amazon.`.
//! - FIFO topics (`.fifo`) need a `MessageGroupId` (AWS answers `InvalidParameter`, where moto
//!   answers `MissingParameter`).

use std::collections::{BTreeMap, HashSet};

use http::Response;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::Value;

use crate::server::{self, Ctx};
use crate::wire::{self, Body};

/// The most a publish may carry, in bytes (message, subject and attributes together).
pub const MAX_PUBLISH_BYTES: usize = 262_144;

/// A JSON object read with duplicate keys refused (`serde_json` keeps the last silently).
struct StrictObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(A::Error::custom(format!("duplicate key {k}")));
                    }
                    out.push((k, v));
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A refusal: (code, message).
type Refusal = (&'static str, String);

fn invalid(msg: impl Into<String>) -> Refusal {
    ("InvalidParameter", msg.into())
}

/// Checks a JSON-structured message; returns it with only the string-valued keys kept.
pub fn check_json_structure(message: &str) -> Result<String, Refusal> {
    let parsed: StrictObject = serde_json::from_str(message)
        .map_err(|_| invalid("Invalid parameter: Message Structure - JSON message body failed to parse"))?;
    let kept: serde_json::Map<String, Value> = parsed.0.into_iter().filter(|(_, v)| v.is_string()).collect();
    if !kept.contains_key("default") {
        return Err(invalid(
            "Invalid parameter: Message Structure - No default entry in JSON message body",
        ));
    }
    Ok(Value::Object(kept).to_string())
}

/// One `MessageAttributes.entry.N`.
#[derive(Debug, Default)]
struct Attribute {
    name: String,
    data_type: String,
    value: String,
}

fn attributes(form: &[(String, String)]) -> BTreeMap<String, Attribute> {
    let mut out: BTreeMap<String, Attribute> = BTreeMap::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("MessageAttributes.entry.") else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        let a = out.entry(n.to_owned()).or_default();
        match field {
            "Name" => a.name = v.clone(),
            "Value.DataType" => a.data_type = v.clone(),
            "Value.StringValue" | "Value.BinaryValue" => a.value = v.clone(),
            _ => {}
        }
    }
    out
}

fn check_attribute_name(name: &str) -> Result<(), Refusal> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err((
            "InvalidParameterValue",
            format!("The message attribute name '{name}' is invalid."),
        ))
    }
}

/// Applies AWS's Publish rules to a form; on success says whether to drop the attributes and
/// what the message should become.
fn check_publish(form: &[(String, String)]) -> Result<(bool, Option<String>), Refusal> {
    let get = |k: &str| wire::form_get(form, k);
    let message = get("Message").unwrap_or_default();
    if message.is_empty() {
        return Err(invalid("Invalid parameter: Empty message"));
    }
    let subject = get("Subject");
    if let Some(s) = subject
        && (s.chars().count() > 100 || s.chars().any(char::is_control))
    {
        return Err(invalid("Invalid parameter: Subject"));
    }
    let attrs = attributes(form);
    for a in attrs.values() {
        check_attribute_name(&a.name)?;
    }
    let size = message.len()
        + subject.map_or(0, str::len)
        + attrs
            .values()
            .map(|a| a.name.len() + a.data_type.len() + a.value.len())
            .sum::<usize>();
    if size > MAX_PUBLISH_BYTES {
        return Err(invalid("Invalid parameter: Message too long"));
    }
    let target = get("TopicArn").or_else(|| get("TargetArn")).unwrap_or_default();
    if target.ends_with(".fifo") && get("MessageGroupId").is_none_or(str::is_empty) {
        return Err(invalid(
            "Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
        ));
    }
    match get("MessageStructure") {
        None => Ok((false, None)),
        Some("json") => {
            let kept = check_json_structure(message)?;
            Ok((!attrs.is_empty(), (kept != message).then_some(kept)))
        }
        Some(_) => Err(invalid("Invalid parameter: MessageStructure")),
    }
}

fn encode_form(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                wire::percent_encode(k, false),
                wire::percent_encode(v, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    if ctx.operation != "Publish" {
        return ctx.pass().await;
    }
    let form = wire::form(&ctx.body);
    match check_publish(&form) {
        Err((code, message)) => ctx.error(400, code, &message),
        Ok((false, None)) => ctx.pass().await,
        Ok((drop_attributes, message)) => {
            let form: Vec<(String, String)> = form
                .into_iter()
                .filter(|(k, _)| !(drop_attributes && k.starts_with("MessageAttributes.")))
                .map(|(k, v)| match (&message, k.as_str()) {
                    (Some(m), "Message") => (k, m.clone()),
                    _ => (k, v),
                })
                .collect();
            match server::forward(&ctx.shared.moto_url, &ctx.parts, encode_form(&form).into()).await {
                Ok(up) => up.into_response(),
                Err(e) => ctx.error(502, "InternalError", &e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_structure_rules() {
        assert!(check_json_structure(r#"{"default":"x"}"#).is_ok());
        for bad in [
            r#"{"default":"x""#,
            "[]",
            "\"x\"",
            "null",
            r#"{"default":"a","default":"b"}"#,
        ] {
            let e = check_json_structure(bad).unwrap_err();
            assert!(e.1.ends_with("failed to parse"), "{bad}: {e:?}");
        }
        for no_default in [r#"{"sqs":"x"}"#, r#"{"default":{"a":1}}"#, r#"{"default":1}"#] {
            let e = check_json_structure(no_default).unwrap_err();
            assert!(
                e.1.ends_with("No default entry in JSON message body"),
                "{no_default}"
            );
        }
        assert_eq!(
            check_json_structure(r#"{"default":"x","sqs":{"a":1}}"#).unwrap(),
            r#"{"default":"x"}"#
        );
    }

    #[test]
    fn attribute_names() {
        for good in ["a", "trailguard.rule", "x-y_z"] {
            assert!(check_attribute_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "AWS.x",
            "amazon.y",
            "sp ace",
            &"n".repeat(257),
        ] {
            assert!(check_attribute_name(bad).is_err(), "{bad}");
        }
    }
}
