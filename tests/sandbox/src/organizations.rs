//! AWS Organizations over moto, paged as AWS pages it, and a helper that builds an
//! organization of member accounts for tests.
//!
//! moto answers `ListAccounts` 100 accounts a page and accepts any `MaxResults`. AWS allows
//! `MaxResults` 1–20 and returns at most 20 a page: the sandbox reads every account from moto and
//! serves pages of `min(MaxResults, 20)` with its own opaque `NextToken`. `MaxResults` outside
//! 1–20 answers `InvalidInputException` (`Reason` `MIN_VALUE_EXCEEDED`/`MAX_VALUE_EXCEEDED`);
//! a token that is not the sandbox's answers `InvalidInputException` (`INVALID_PAGINATION_TOKEN`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::server::{self, Ctx};
use crate::state::Shared;
use crate::wire::{self, Body};

/// AWS's largest `ListAccounts` page.
pub const MAX_PAGE: i64 = 20;

fn invalid_input(reason: &str, message: &str) -> Response<Body> {
    let mut resp = wire::control_json(
        400,
        &json!({ "__type": "InvalidInputException", "Message": message, "Reason": reason }),
    );
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().expect("static"),
    );
    headers.insert(
        "x-amzn-errortype",
        "InvalidInputException".parse().expect("static"),
    );
    resp
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    if ctx.operation != "ListAccounts" {
        return ctx.pass().await;
    }
    let body: Value = serde_json::from_slice(&ctx.body).unwrap_or_else(|_| json!({}));
    let page = match body.get("MaxResults").filter(|v| !v.is_null()) {
        None => MAX_PAGE,
        Some(v) => match v.as_i64() {
            Some(n) if n < 1 => {
                return invalid_input(
                    "MIN_VALUE_EXCEEDED",
                    "You provided a value that is less than the minimum allowed value.",
                );
            }
            Some(n) if n > MAX_PAGE => {
                return invalid_input(
                    "MAX_VALUE_EXCEEDED",
                    "You provided a value that exceeds the maximum allowed value.",
                );
            }
            Some(n) => n,
            None => return invalid_input("INVALID_INPUT", "MaxResults must be a number."),
        },
    } as usize;
    let offset = match body.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => match URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.strip_prefix("accounts:").and_then(|n| n.parse::<usize>().ok()))
        {
            Some(o) => o,
            None => {
                return invalid_input(
                    "INVALID_PAGINATION_TOKEN",
                    "The provided pagination token is not valid.",
                );
            }
        },
    };
    let all = json!({ "MaxResults": 100_000 }).to_string();
    let up = match server::forward(&ctx.shared.moto_url, &ctx.parts, all.into()).await {
        Ok(up) => up,
        Err(e) => return ctx.error(502, "ServiceException", &e),
    };
    if !up.status.is_success() {
        return up.into_response();
    }
    let accounts = up
        .json()
        .and_then(|v| v["Accounts"].as_array().cloned())
        .unwrap_or_default();
    let end = (offset + page).min(accounts.len());
    let mut out = json!({ "Accounts": accounts.get(offset.min(end)..end).unwrap_or_default() });
    if end < accounts.len() {
        out["NextToken"] = json!(URL_SAFE_NO_PAD.encode(format!("accounts:{end}")));
    }
    wire::json_ok(&out)
}

/// `POST /_sandbox/organization/accounts`: member accounts, each with a role to assume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsRequest {
    pub count: usize,
    /// The role created in each member account (default `trailguard`).
    #[serde(default = "default_role")]
    pub role_name: String,
    /// When set, the role's trust policy requires this `sts:ExternalId`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The management account (default: the sandbox's default account).
    #[serde(default)]
    pub management_account: Option<String>,
}

fn default_role() -> String {
    "trailguard".into()
}

/// What [`create_accounts`] made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Organization {
    pub organization_id: String,
    pub management_account: String,
    /// The new member accounts, in creation order.
    pub accounts: Vec<String>,
    pub role_name: String,
}

async fn orgs(shared: &Shared, account: &str, op: &str, body: Value) -> Result<Value, String> {
    let target = format!("AWSOrganizationsV20161128.{op}");
    let up = crate::moto::json_as(shared, account, "us-east-1", "organizations", &target, &body).await?;
    let v = up.json().unwrap_or(Value::Null);
    if up.status.is_success() {
        Ok(v)
    } else {
        Err(format!("{op}: {} {v}", up.status))
    }
}

/// Creates the organization (if the management account has none) and `count` member accounts,
/// each with a role trusting the management account (and requiring the external id, if given).
pub async fn create_accounts(shared: &Shared, req: &AccountsRequest) -> Result<Organization, String> {
    let mgmt = req
        .management_account
        .clone()
        .unwrap_or_else(|| shared.default_account.clone());
    let org = match orgs(shared, &mgmt, "DescribeOrganization", json!({})).await {
        Ok(v) => v,
        Err(_) => {
            orgs(
                shared,
                &mgmt,
                "CreateOrganization",
                json!({ "FeatureSet": "ALL" }),
            )
            .await?
        }
    };
    let organization_id = org["Organization"]["Id"].as_str().unwrap_or_default().to_owned();
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": { "AWS": format!("arn:aws:iam::{mgmt}:root") },
        "Action": "sts:AssumeRole",
    });
    if let Some(ext) = &req.external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": ext } });
    }
    let trust = json!({ "Version": "2012-10-17", "Statement": [statement] }).to_string();
    let mut accounts = Vec::new();
    for _ in 0..req.count {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let made = orgs(
            shared,
            &mgmt,
            "CreateAccount",
            json!({ "AccountName": format!("member-{}", &n[..8]), "Email": format!("member-{}@example.com", &n[..8]) }),
        )
        .await?;
        let account = made["CreateAccountStatus"]["AccountId"]
            .as_str()
            .ok_or_else(|| format!("CreateAccount answered without an account id: {made}"))?
            .to_owned();
        let up = crate::moto::query_as(
            shared,
            &account,
            "us-east-1",
            "iam",
            &[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", &req.role_name),
                ("AssumeRolePolicyDocument", &trust),
            ],
        )
        .await?;
        if !up.status.is_success() {
            return Err(format!(
                "CreateRole in {account}: {}",
                String::from_utf8_lossy(&up.body)
            ));
        }
        accounts.push(account);
    }
    Ok(Organization {
        organization_id,
        management_account: mgmt,
        accounts,
        role_name: req.role_name.clone(),
    })
}
