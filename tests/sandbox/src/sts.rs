//! STS `AssumeRole` as strict as AWS, over moto.
//!
//! moto hands out credentials for any role ARN, existing or not, and checks neither the trust
//! policy nor `ExternalId`. Before an `AssumeRole` reaches moto the sandbox reads the role from
//! moto's IAM in the target account and refuses, with AWS's `AccessDenied` (HTTP 403, `User:
//! <caller ARN> is not authorized to perform: sts:AssumeRole on resource: <role ARN>`), when:
//!
//! - the role does not exist in that account;
//! - no `Allow` statement of its trust policy grants `sts:AssumeRole` to the caller (principal
//!   `*`, the caller's account id or root ARN, or the caller's user or role ARN), or a `Deny`
//!   statement does;
//! - the allowing statement's `sts:ExternalId` condition (`StringEquals`/`StringLike`) is not met
//!   by the request's `ExternalId`, missing or wrong. Other condition keys are not evaluated.
//!
//! moto issues the credentials in the role's account, so calls signed with them act there. The
//! sandbox registers the new access key as that assumed role: records of its calls carry
//! `userIdentity.type` `AssumedRole` with the session ARN and land in that account's history.

use http::Response;
use serde_json::Value;

use crate::iam::between;
use crate::record;
use crate::server::Ctx;
use crate::state::IdentitySpec;
use crate::wire::{self, Body};

/// A role ARN's parts: (account, role name).
pub fn parse_role_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty())
        .then(|| (account.to_owned(), name.to_owned()))
}

/// Who is asking, as a trust policy sees it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account: String,
    /// The ARNs a policy may name for this caller (user ARN, or role ARN and session ARN).
    pub arns: Vec<String>,
    /// The ARN AWS names in its error message.
    pub arn: String,
}

fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn action_matches(statement: &Value) -> bool {
    statement
        .get("Action")
        .map(one_or_many)
        .unwrap_or_default()
        .iter()
        .any(|a| {
            a.as_str()
                .is_some_and(|a| matches!(a.to_ascii_lowercase().as_str(), "sts:assumerole" | "sts:*" | "*"))
        })
}

fn principal_matches(statement: &Value, who: &Principal) -> bool {
    match statement.get("Principal") {
        Some(Value::String(s)) => s == "*",
        Some(Value::Object(m)) => m.get("AWS").map(one_or_many).unwrap_or_default().iter().any(|p| {
            p.as_str().is_some_and(|p| {
                p == "*"
                    || p == who.account
                    || p == format!("arn:aws:iam::{}:root", who.account)
                    || who.arns.iter().any(|a| a == p)
            })
        }),
        _ => false,
    }
}

/// Whether the statement's `sts:ExternalId` conditions hold for `external_id`.
fn external_id_matches(statement: &Value, external_id: Option<&str>) -> bool {
    let Some(conditions) = statement.get("Condition").and_then(Value::as_object) else {
        return true;
    };
    for (operator, block) in conditions {
        let Some(block) = block.as_object() else {
            continue;
        };
        for (key, expected) in block {
            if !key.eq_ignore_ascii_case("sts:ExternalId") {
                continue;
            }
            let Some(given) = external_id else {
                return false;
            };
            let like = operator.starts_with("StringLike");
            let ok = one_or_many(expected).iter().filter_map(|e| e.as_str()).any(|e| {
                if like {
                    crate::pattern::wildcard(e, given)
                } else {
                    e == given
                }
            });
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Evaluates a trust policy for `sts:AssumeRole`.
pub fn trust_allows(policy: &Value, who: &Principal, external_id: Option<&str>) -> bool {
    let statements = policy.get("Statement").map(one_or_many).unwrap_or_default();
    let holds = |effect: &str| {
        statements.iter().any(|s| {
            s.get("Effect").and_then(Value::as_str) == Some(effect)
                && action_matches(s)
                && principal_matches(s, who)
                && external_id_matches(s, external_id)
        })
    };
    holds("Allow") && !holds("Deny")
}

fn caller(ctx: &Ctx) -> Principal {
    let st = ctx.shared.lock();
    let spec = st.identities.get(&ctx.scope.access_key_id);
    let account = record::caller_account(spec, &ctx.shared.default_account).to_owned();
    match spec {
        Some(IdentitySpec::AssumedRole {
            role_name,
            session_name,
            ..
        }) => {
            let session = format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}");
            Principal {
                arns: vec![
                    format!("arn:aws:iam::{account}:role/{role_name}"),
                    session.clone(),
                ],
                arn: session,
                account,
            }
        }
        Some(IdentitySpec::Root { .. }) => {
            let arn = format!("arn:aws:iam::{account}:root");
            Principal {
                arns: vec![arn.clone()],
                arn,
                account,
            }
        }
        Some(IdentitySpec::IAMUser { user_name, .. }) => {
            let arn = format!("arn:aws:iam::{account}:user/{user_name}");
            Principal {
                arns: vec![arn.clone()],
                arn,
                account,
            }
        }
        None => {
            let arn = format!("arn:aws:iam::{account}:user/sandbox");
            Principal {
                arns: vec![arn.clone()],
                arn,
                account,
            }
        }
    }
}

/// The role's trust policy from moto, if the role exists in `account`.
async fn trust_policy(ctx: &Ctx, account: &str, role_name: &str) -> Option<Value> {
    let up = crate::moto::query_as(
        &ctx.shared,
        account,
        "us-east-1",
        "iam",
        &[
            ("Action", "GetRole"),
            ("Version", "2010-05-08"),
            ("RoleName", role_name),
        ],
    )
    .await
    .ok()?;
    if !up.status.is_success() {
        return None;
    }
    let text = String::from_utf8_lossy(&up.body);
    let raw = between(&text, "<AssumeRolePolicyDocument>", "</AssumeRolePolicyDocument>")?.trim();
    let raw = if raw.starts_with('{') {
        xml_unescape(raw)
    } else {
        wire::percent_decode(raw)
    };
    Some(serde_json::from_str(&raw).unwrap_or(Value::Null))
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    if ctx.operation != "AssumeRole" {
        return ctx.pass().await;
    }
    let mut form = wire::form(&ctx.body);
    if let Some(q) = ctx.parts.uri.query() {
        form.extend(wire::form(q.as_bytes()));
    }
    let role_arn = wire::form_get(&form, "RoleArn").unwrap_or_default().to_owned();
    let session = wire::form_get(&form, "RoleSessionName")
        .unwrap_or_default()
        .to_owned();
    let external_id = wire::form_get(&form, "ExternalId");
    let who = caller(ctx);
    let denied = || {
        ctx.error(
            403,
            "AccessDenied",
            &format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                who.arn
            ),
        )
    };
    let Some((account, role_name)) = parse_role_arn(&role_arn) else {
        return ctx.error(
            400,
            "ValidationError",
            &format!("{role_arn} is not a valid role ARN"),
        );
    };
    let Some(policy) = trust_policy(ctx, &account, &role_name).await else {
        return denied();
    };
    if !trust_allows(&policy, &who, external_id) {
        return denied();
    }
    let up = match ctx.forward().await {
        Ok(up) => up,
        Err(e) => return ctx.error(502, "InternalError", &e),
    };
    if up.status.is_success() {
        let text = String::from_utf8_lossy(&up.body);
        if let Some(key) = between(&text, "<AccessKeyId>", "</AccessKeyId>") {
            ctx.shared.set_identity(
                key.trim(),
                IdentitySpec::AssumedRole {
                    role_name,
                    session_name: session,
                    account_id: Some(account),
                },
            );
        }
    }
    up.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(account: &str) -> Principal {
        let arn = format!("arn:aws:iam::{account}:user/ops");
        Principal {
            account: account.into(),
            arns: vec![arn.clone()],
            arn,
        }
    }

    #[test]
    fn role_arns() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::111122223333:role/path/trailguard"),
            Some(("111122223333".into(), "trailguard".into()))
        );
        assert_eq!(parse_role_arn("arn:aws:iam::1111:role/x"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::111122223333:user/x"), None);
    }

    #[test]
    fn trust_policy_principals_and_external_ids() {
        let trust = |principal: Value, condition: Value| json!({"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", "Condition": condition}]});
        let mgmt = user("123456789012");
        let root = json!({"AWS": "arn:aws:iam::123456789012:root"});
        assert!(trust_allows(&trust(root.clone(), Value::Null), &mgmt, None));
        assert!(!trust_allows(
            &trust(root.clone(), Value::Null),
            &user("999988887777"),
            None
        ));
        assert!(!trust_allows(
            &trust(json!({"Service": "lambda.amazonaws.com"}), Value::Null),
            &mgmt,
            None
        ));
        assert!(trust_allows(
            &trust(json!({"AWS": ["123456789012"]}), Value::Null),
            &mgmt,
            None
        ));
        let ext = json!({"StringEquals": {"sts:ExternalId": "s3cret"}});
        assert!(trust_allows(
            &trust(root.clone(), ext.clone()),
            &mgmt,
            Some("s3cret")
        ));
        assert!(!trust_allows(
            &trust(root.clone(), ext.clone()),
            &mgmt,
            Some("wrong")
        ));
        assert!(!trust_allows(&trust(root.clone(), ext), &mgmt, None));
        let deny = json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::123456789012:user/ops"}, "Action": "sts:*"}]});
        assert!(!trust_allows(&deny, &mgmt, None));
        assert!(trust_allows(&deny, &user("210987654321"), None));
    }
}
