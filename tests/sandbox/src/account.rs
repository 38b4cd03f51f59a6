//! The Account API's `ListRegions` (REST-JSON, `POST /listRegions`), which moto does not serve:
//! every region of the partition, `ENABLED_BY_DEFAULT` or `ENABLED` when in the sandbox's
//! `enabled_regions` setting, `DISABLED` otherwise; filtered by `RegionOptStatusContains`,
//! paged by `MaxResults` (1 to 50, default 20) and `NextToken`, as AWS does.

use serde_json::{Value, json};

use crate::server::Ctx;
use crate::wire;
use crate::wire::Body;

/// The regions enabled by default in an account of the `aws` partition.
pub const DEFAULT_ENABLED: &[&str] = &[
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Regions an account must opt in to.
const OPT_IN: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-south-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ca-west-1",
    "eu-central-2",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
    "me-south-1",
];

/// `/listRegions` → `ListRegions`.
pub fn operation(path: &str) -> String {
    let name = path.trim_start_matches('/');
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => "Unknown".into(),
    }
}

pub fn handle(ctx: &Ctx) -> http::Response<Body> {
    if ctx.operation != "ListRegions" {
        return ctx.error(
            400,
            "UnknownOperationException",
            &format!("{} is not supported by the sandbox", ctx.operation),
        );
    }
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&ctx.body) {
            Ok(v) => v,
            Err(e) => return ctx.error(400, "ValidationException", &e.to_string()),
        }
    };
    let max = body.get("MaxResults").and_then(Value::as_i64).unwrap_or(20);
    if !(1..=50).contains(&max) {
        return ctx.error(
            400,
            "ValidationException",
            "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 50",
        );
    }
    let wanted: Vec<&str> = body
        .get("RegionOptStatusContains")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let enabled = ctx.shared.lock().settings.enabled_regions.clone();
    let mut all: Vec<(String, &str)> = DEFAULT_ENABLED
        .iter()
        .chain(OPT_IN)
        .map(|r| {
            let status = if !enabled.iter().any(|e| e == r) {
                "DISABLED"
            } else if DEFAULT_ENABLED.contains(r) {
                "ENABLED_BY_DEFAULT"
            } else {
                "ENABLED"
            };
            ((*r).to_owned(), status)
        })
        .collect();
    all.sort();
    all.retain(|(_, s)| wanted.is_empty() || wanted.contains(s));
    let start: usize = match body.get("NextToken").and_then(Value::as_str) {
        Some(t) => match t.parse() {
            Ok(n) => n,
            Err(_) => return ctx.error(400, "ValidationException", "invalid NextToken"),
        },
        None => 0,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max as usize)
        .map(|(r, s)| json!({"RegionName": r, "RegionOptStatus": s}))
        .collect();
    let next = start + page.len();
    let mut out = json!({ "Regions": page });
    if next < all.len() {
        out["NextToken"] = json!(next.to_string());
    }
    wire::json_ok(&out)
}
