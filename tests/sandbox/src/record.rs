//! CloudTrail records for the calls that pass through the sandbox, shaped like the records AWS
//! writes for KMS and IAM (see the KMS and CloudTrail guides' examples).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::state::IdentitySpec;

/// Parameters CloudTrail never logs: data, not metadata.
const BLOB_PARAMETERS: [&str; 6] = [
    "Plaintext",
    "CiphertextBlob",
    "Message",
    "Signature",
    "Mac",
    "PublicKey",
];

/// What a caller looked like on the wire.
#[derive(Debug, Clone)]
pub struct Caller {
    pub access_key_id: String,
    pub source_ip: String,
    pub user_agent: Option<String>,
}

/// One API call, ready to be written down.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub event_source: &'a str,
    pub event_name: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub time: DateTime<Utc>,
    pub request_parameters: Value,
    pub response_elements: Value,
    pub error: Option<(String, String)>,
    pub resources: Vec<(String, String)>,
    pub read_only: bool,
    pub request_id: String,
}

/// `userIdentity` for a caller: its registered identity, or an IAM user named `sandbox`.
pub fn user_identity(
    spec: Option<&IdentitySpec>,
    access_key_id: &str,
    default_account: &str,
    time: DateTime<Utc>,
) -> Value {
    let pid = |prefix: &str, name: &str| format!("{prefix}{}", stable_id(name));
    match spec {
        None => json!({
            "type": "IAMUser",
            "principalId": pid("AIDA", "sandbox"),
            "arn": format!("arn:aws:iam::{default_account}:user/sandbox"),
            "accountId": default_account,
            "accessKeyId": access_key_id,
            "userName": "sandbox",
        }),
        Some(IdentitySpec::IAMUser {
            user_name,
            account_id,
        }) => {
            let acct = account_id.as_deref().unwrap_or(default_account);
            json!({
                "type": "IAMUser",
                "principalId": pid("AIDA", user_name),
                "arn": format!("arn:aws:iam::{acct}:user/{user_name}"),
                "accountId": acct,
                "accessKeyId": access_key_id,
                "userName": user_name,
            })
        }
        Some(IdentitySpec::AssumedRole {
            role_name,
            session_name,
            account_id,
        }) => {
            let acct = account_id.as_deref().unwrap_or(default_account);
            let role_id = pid("AROA", role_name);
            json!({
                "type": "AssumedRole",
                "principalId": format!("{role_id}:{session_name}"),
                "arn": format!("arn:aws:sts::{acct}:assumed-role/{role_name}/{session_name}"),
                "accountId": acct,
                "accessKeyId": access_key_id,
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": role_id,
                        "arn": format!("arn:aws:iam::{acct}:role/{role_name}"),
                        "accountId": acct,
                        "userName": role_name,
                    },
                    "attributes": {
                        "creationDate": iso(time),
                        "mfaAuthenticated": "false",
                    },
                },
            })
        }
        Some(IdentitySpec::Root { account_id }) => {
            let acct = account_id.as_deref().unwrap_or(default_account);
            json!({
                "type": "Root",
                "principalId": acct,
                "arn": format!("arn:aws:iam::{acct}:root"),
                "accountId": acct,
                "accessKeyId": access_key_id,
            })
        }
    }
}

/// The account a caller belongs to.
pub fn caller_account<'a>(spec: Option<&'a IdentitySpec>, default_account: &'a str) -> &'a str {
    let acct = match spec {
        Some(IdentitySpec::IAMUser { account_id, .. })
        | Some(IdentitySpec::AssumedRole { account_id, .. })
        | Some(IdentitySpec::Root { account_id }) => account_id.as_deref(),
        None => None,
    };
    acct.unwrap_or(default_account)
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The "display" date format CloudTrail uses inside responseElements (`Apr 12, 2021, 6:58:30 PM`).
pub fn display_date(t: DateTime<Utc>) -> String {
    t.format("%b %-d, %Y, %-I:%M:%S %p").to_string()
}

/// Request parameters as CloudTrail logs them: lowerCamelCase top-level names, no data blobs.
pub fn request_parameters(params: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (k, v) in params {
        if BLOB_PARAMETERS.contains(&k.as_str()) {
            continue;
        }
        let v = match (k.as_str(), v) {
            // Tags are logged as `[{"tagKey": .., "tagValue": ..}]`; other nested values (an
            // encryption context) keep the caller's keys.
            ("Tags", Value::Array(tags)) => Value::Array(
                tags.iter()
                    .map(|t| match t {
                        Value::Object(m) => {
                            Value::Object(m.iter().map(|(tk, tv)| (lower_camel(tk), tv.clone())).collect())
                        }
                        other => other.clone(),
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(lower_camel(k), v);
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

pub fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Builds the record.
pub fn build(call: Call<'_>, identity: Value, caller: &Caller) -> Value {
    let mut r = Map::new();
    r.insert("eventVersion".into(), json!("1.08"));
    r.insert("userIdentity".into(), identity);
    r.insert("eventTime".into(), json!(iso(call.time)));
    r.insert("eventSource".into(), json!(call.event_source));
    r.insert("eventName".into(), json!(call.event_name));
    r.insert("awsRegion".into(), json!(call.region));
    r.insert("sourceIPAddress".into(), json!(caller.source_ip));
    if let Some(ua) = &caller.user_agent {
        let mut ua = ua.clone();
        ua.truncate(1024);
        r.insert("userAgent".into(), json!(ua));
    }
    if let Some((code, message)) = &call.error {
        r.insert("errorCode".into(), json!(code));
        r.insert("errorMessage".into(), json!(message));
    }
    r.insert("requestParameters".into(), call.request_parameters);
    r.insert("responseElements".into(), call.response_elements);
    r.insert("requestID".into(), json!(call.request_id));
    r.insert("eventID".into(), json!(uuid::Uuid::new_v4().to_string()));
    r.insert("readOnly".into(), json!(call.read_only));
    if !call.resources.is_empty() {
        let resources: Vec<Value> = call
            .resources
            .iter()
            .map(|(ty, arn)| json!({ "accountId": call.account, "type": ty, "ARN": arn }))
            .collect();
        r.insert("resources".into(), Value::Array(resources));
    }
    r.insert("eventType".into(), json!("AwsApiCall"));
    r.insert("managementEvent".into(), json!(true));
    r.insert("recipientAccountId".into(), json!(call.account));
    r.insert("eventCategory".into(), json!("Management"));
    Value::Object(r)
}

/// A deterministic principal-id suffix for a name (17 upper-case hex digits).
fn stable_id(name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}{}", h % 10)
}
