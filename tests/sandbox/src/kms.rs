//! KMS as AWS behaves, over moto.
//!
//! Before a call reaches moto, the sandbox looks the key up (a `DescribeKey` moto answers
//! privately) and applies AWS's key-state table, which moto does not enforce:
//!
//! | call                                   | PendingDeletion               | Disabled              |
//! |----------------------------------------|-------------------------------|-----------------------|
//! | cryptographic operations, `CreateGrant` | `KMSInvalidStateException`    | `DisabledException`   |
//! | `DisableKey`, `EnableKey`, `ScheduleKeyDeletion`, alias and tag changes | `KMSInvalidStateException` | ok |
//! | `CancelKeyDeletion`                    | ok                            | `KMSInvalidStateException` (not pending) |
//!
//! with AWS's messages (`<key ARN> is pending deletion.`, `<key ARN> is disabled.`). Key ARNs
//! are rewritten to bare key ids before moto sees them (moto answers 500 to ARNs on several
//! operations), `PendingWindowInDays` must be 7–30, and responses carry the key ARN, `KeyState`
//! and `PendingWindowInDays` as AWS's do. Calls that change a key's state are checked and
//! applied one at a time per account and region, so two concurrent `CancelKeyDeletion`s of one
//! key cannot both succeed. Every call, allowed or refused, is recorded.

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use http::Response;
use serde_json::{Map, Value, json};

use crate::record;
use crate::server::{self, Ctx};
use crate::wire::Body;

const SOURCE: &str = "kms.amazonaws.com";

/// Operations that use key material: refused on disabled and pending-deletion keys.
const CRYPTOGRAPHIC: [&str; 17] = [
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "ReplicateKey",
    "UpdatePrimaryRegion",
    "DeriveSharedSecret",
    "GetParametersForImport",
];

/// Management operations refused while a key is pending deletion.
const NOT_WHILE_PENDING: [&str; 9] = [
    "DisableKey",
    "EnableKey",
    "ScheduleKeyDeletion",
    "CreateAlias",
    "TagResource",
    "UntagResource",
    "UpdateKeyDescription",
    "EnableKeyRotation",
    "DisableKeyRotation",
];

/// Read-only calls, as CloudTrail marks them.
fn read_only(op: &str) -> bool {
    op.starts_with("Describe")
        || op.starts_with("Get")
        || op.starts_with("List")
        || matches!(
            op,
            "Encrypt"
                | "Decrypt"
                | "ReEncrypt"
                | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext"
                | "GenerateDataKeyPair"
                | "GenerateDataKeyPairWithoutPlaintext"
                | "GenerateMac"
                | "VerifyMac"
                | "Sign"
                | "Verify"
                | "GenerateRandom"
                | "DeriveSharedSecret"
        )
}

/// What the sandbox knows of a key from moto.
#[derive(Debug, Clone)]
pub struct KeyMeta {
    pub key_id: String,
    pub arn: String,
    pub state: String,
}

/// The request fields that name a key, for each operation.
fn key_fields(op: &str) -> &'static [&'static str] {
    match op {
        "CreateAlias" | "UpdateAlias" => &["TargetKeyId"],
        "ReEncrypt" => &["SourceKeyId", "DestinationKeyId"],
        "CreateKey" | "ListKeys" | "GenerateRandom" | "ListRetirableGrants" | "RetireGrant" => &[],
        "DeleteAlias" => &["AliasName"],
        _ => &["KeyId"],
    }
}

/// moto's ciphertext starts with the id of the key that made it; AWS derives the key the same
/// way for symmetric `Decrypt` without `KeyId`.
fn key_from_ciphertext(body: &Map<String, Value>) -> Option<String> {
    let blob = body.get("CiphertextBlob")?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(blob).ok()?;
    let id = std::str::from_utf8(raw.get(..36)?).ok()?;
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        .then(|| id.to_owned())
}

async fn describe(ctx: &Ctx, reference: &str) -> Option<KeyMeta> {
    let up = crate::moto::json(
        &ctx.shared,
        &ctx.parts,
        "TrentService.DescribeKey",
        &json!({ "KeyId": reference }),
    )
    .await
    .ok()?;
    if !up.status.is_success() {
        return None;
    }
    let meta = up.json()?.get("KeyMetadata")?.clone();
    Some(KeyMeta {
        key_id: meta.get("KeyId")?.as_str()?.to_owned(),
        arn: meta.get("Arn")?.as_str()?.to_owned(),
        state: meta
            .get("KeyState")
            .and_then(Value::as_str)
            .unwrap_or("Enabled")
            .to_owned(),
    })
}

/// Operations that move a key between states.
fn changes_state(op: &str) -> bool {
    matches!(
        op,
        "CancelKeyDeletion" | "ScheduleKeyDeletion" | "EnableKey" | "DisableKey"
    )
}

/// AWS's answer for an operation on a key in a given state, if it refuses.
pub fn refusal(op: &str, key: &KeyMeta) -> Option<(&'static str, String)> {
    let pending = match key.state.as_str() {
        "PendingDeletion" => Some("pending deletion"),
        "PendingReplicaDeletion" => Some("pending replica deletion"),
        _ => None,
    };
    if op == "CancelKeyDeletion" {
        return pending.is_none().then(|| {
            (
                "KMSInvalidStateException",
                format!("{} is not pending deletion.", key.arn),
            )
        });
    }
    if let Some(what) = pending
        && (CRYPTOGRAPHIC.contains(&op) || NOT_WHILE_PENDING.contains(&op))
    {
        return Some(("KMSInvalidStateException", format!("{} is {what}.", key.arn)));
    }
    if key.state == "Disabled" && CRYPTOGRAPHIC.contains(&op) {
        return Some(("DisabledException", format!("{} is disabled.", key.arn)));
    }
    None
}

fn window_error(body: &Map<String, Value>) -> Option<String> {
    let days = body.get("PendingWindowInDays")?.as_i64()?;
    let bound = if days < 7 {
        "greater than or equal to 7"
    } else if days > 30 {
        "less than or equal to 30"
    } else {
        return None;
    };
    Some(format!(
        "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value {bound}"
    ))
}

fn moto_error(up: &server::Upstream) -> (String, String) {
    let v = up.json().unwrap_or(Value::Null);
    let code = v
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or("InternalFailure");
    let code = code.rsplit('#').next().unwrap_or(code).to_owned();
    let msg = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&up.body).chars().take(300).collect());
    (code, msg)
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    let op = ctx.operation.clone();
    let region = ctx.region().to_owned();
    let account = ctx.account();
    let mut body = match serde_json::from_slice::<Value>(&ctx.body) {
        Ok(Value::Object(m)) => m,
        _ => return ctx.error(400, "SerializationException", "request body is not a JSON object"),
    };
    let request_parameters = record::request_parameters(&body);
    // AWS made `PolicyName` optional (it defaults to `default`); moto still requires it.
    if matches!(op.as_str(), "GetKeyPolicy" | "PutKeyPolicy") && !body.contains_key("PolicyName") {
        body.insert("PolicyName".into(), json!("default"));
    }

    // A call that changes a key's state reads the state and changes it in one step, as KMS
    // does (moto checks and writes in two, on several threads): two concurrent
    // `CancelKeyDeletion`s on one key must not both succeed.
    let lock = changes_state(&op).then(|| ctx.shared.write_lock(&format!("kms/{account}/{region}")));
    let _held = match &lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };

    // Which keys the call is about, resolved through moto.
    let mut keys = Vec::new();
    for field in key_fields(&op) {
        let reference = match body.get(*field).and_then(Value::as_str) {
            Some(r) => Some(r.to_owned()),
            None if (op == "Decrypt" && *field == "KeyId") || *field == "SourceKeyId" => {
                key_from_ciphertext(&body)
            }
            None => None,
        };
        let Some(reference) = reference else { continue };
        if let Some(meta) = describe(ctx, &reference).await {
            if body.contains_key(*field) && reference.starts_with("arn:") && reference.contains(":key/") {
                body.insert((*field).to_owned(), Value::String(meta.key_id.clone()));
            }
            keys.push(meta);
        }
    }

    let refused = if op == "ScheduleKeyDeletion" {
        window_error(&body).map(|m| ("ValidationException", m))
    } else {
        None
    }
    .or_else(|| keys.iter().find_map(|k| refusal(&op, k)));

    let mut call = server::call(ctx, SOURCE, &region, &account);
    call.request_parameters = request_parameters;
    call.read_only = read_only(&op);

    let response = match refused {
        Some((code, message)) => {
            call.error = Some((code.to_owned(), message.clone()));
            ctx.error(400, code, &message)
        }
        None => {
            let mut parts = ctx.parts.clone();
            parts.headers.remove("content-length");
            let up = match server::forward(
                &ctx.shared.moto_url,
                &parts,
                Value::Object(body.clone()).to_string().into(),
            )
            .await
            {
                Ok(up) => up,
                Err(e) => return ctx.error(502, "KMSInternalException", &e),
            };
            if up.status.is_success() {
                let mut out = up.json().unwrap_or(Value::Null);
                shift_dates(&mut out, ctx.shared.clock_offset());
                let (out, elements, created) = fix_response(&op, &body, out, &keys);
                call.response_elements = elements;
                if let Some(meta) = created {
                    keys.push(meta);
                }
                wire_ok(&out, &up)
            } else {
                let (code, message) = moto_error(&up);
                call.error = Some((code, message));
                up.into_response()
            }
        }
    };
    call.resources = keys
        .iter()
        .map(|k| ("AWS::KMS::Key".to_owned(), k.arn.clone()))
        .collect();
    // Alias calls name the alias too, as CloudTrail does (`arn:aws:kms:<region>:<account>:alias/..`).
    if matches!(op.as_str(), "CreateAlias" | "UpdateAlias" | "DeleteAlias")
        && let Some(alias) = body.get("AliasName").and_then(Value::as_str)
    {
        let alias_arn = format!("arn:aws:kms:{region}:{account}:{alias}");
        if op == "DeleteAlias" {
            call.resources.insert(0, ("AWS::KMS::Key".to_owned(), alias_arn));
        } else {
            call.resources.push(("AWS::KMS::Key".to_owned(), alias_arn));
        }
    }
    ctx.record(call);
    response
}

/// Moves moto's timestamps (`CreationDate`, `DeletionDate`, ...: epoch seconds in fields named
/// `*Date`) by the clock offset, so they agree with the AWS side's clock.
fn shift_dates(v: &mut Value, offset: f64) {
    if offset == 0.0 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                match item.as_f64() {
                    Some(secs) if k.ends_with("Date") && item.is_number() => *item = json!(secs + offset),
                    _ => shift_dates(item, offset),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| shift_dates(i, offset)),
        _ => {}
    }
}

fn wire_ok(out: &Value, up: &server::Upstream) -> Response<Body> {
    let mut resp = crate::wire::json_ok(out);
    if let Some(rid) = up.headers.get("x-amzn-requestid") {
        resp.headers_mut().insert("x-amzn-requestid", rid.clone());
    }
    resp
}

/// Brings moto's answer to AWS's shape; returns it, the record's `responseElements`, and the
/// key a `CreateKey` made.
fn fix_response(
    op: &str,
    req: &Map<String, Value>,
    mut out: Value,
    keys: &[KeyMeta],
) -> (Value, Value, Option<KeyMeta>) {
    let arn = keys.first().map(|k| k.arn.clone());
    match op {
        "ScheduleKeyDeletion" => {
            let days = req
                .get("PendingWindowInDays")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            if let Some(arn) = &arn {
                out["KeyId"] = json!(arn);
            }
            out["KeyState"] = json!("PendingDeletion");
            out["PendingWindowInDays"] = json!(days);
            let deletion = out
                .get("DeletionDate")
                .and_then(Value::as_f64)
                .and_then(|s| Utc.timestamp_opt(s as i64, 0).single())
                .map(record::display_date);
            let elements = json!({
                "keyId": arn,
                "keyState": "PendingDeletion",
                "deletionDate": deletion,
                "pendingWindowInDays": days,
            });
            (out, elements, None)
        }
        "CancelKeyDeletion" => {
            if let Some(arn) = &arn {
                out["KeyId"] = json!(arn);
            }
            let elements = json!({ "keyId": arn });
            (out, elements, None)
        }
        "CreateKey" => {
            let meta = out.get("KeyMetadata").cloned().unwrap_or(Value::Null);
            let created = (|| {
                Some(KeyMeta {
                    key_id: meta.get("KeyId")?.as_str()?.to_owned(),
                    arn: meta.get("Arn")?.as_str()?.to_owned(),
                    state: "Enabled".into(),
                })
            })();
            let mut lowered = Map::new();
            if let Value::Object(m) = &meta {
                for (k, v) in m {
                    let v = match v.as_f64() {
                        Some(secs) if k.ends_with("Date") => json!(
                            Utc.timestamp_opt(secs as i64, 0)
                                .single()
                                .map(record::display_date)
                        ),
                        _ => v.clone(),
                    };
                    lowered.insert(record::lower_camel(k), v);
                }
            }
            (out, json!({ "keyMetadata": lowered }), created)
        }
        _ => (out, Value::Null, None),
    }
}
