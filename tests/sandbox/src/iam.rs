//! IAM over moto, with access keys that can be backdated.
//!
//! moto stamps an access key's `CreateDate` and last use with the wall clock and offers no way
//! to change them. Tests set both through `/_sandbox/iam/access-keys/<id>`; the sandbox then
//! rewrites `ListAccessKeys`, `GetAccessKeyLastUsed` and the credential report on the way back.
//! A later request signed with a backdated key marks it used now, as AWS would. Every IAM call
//! is recorded in us-east-1, where CloudTrail keeps IAM events.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use http::Response;
use serde_json::{Map, Value, json};

use crate::record;
use crate::server::{self, Ctx, Upstream};
use crate::state::{AccessKeyOverride, LastUsed};
use crate::wire::{self, Body};

const SOURCE: &str = "iam.amazonaws.com";

fn read_only(op: &str) -> bool {
    op.starts_with("Get") || op.starts_with("List") || op == "GenerateCredentialReport"
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    let mut params = wire::form(&ctx.body);
    if let Some(q) = ctx.parts.uri.query() {
        params.extend(wire::form(q.as_bytes()));
    }
    let op = ctx.operation.clone();
    let account = ctx.account();
    let mut call = server::call(ctx, SOURCE, "us-east-1", &account);
    call.read_only = read_only(&op);
    let mut rp = Map::new();
    for (k, v) in &params {
        if k != "Action" && k != "Version" {
            rp.insert(record::lower_camel(k), Value::String(v.clone()));
        }
    }
    call.request_parameters = if rp.is_empty() {
        Value::Null
    } else {
        Value::Object(rp)
    };

    let up = match ctx.forward().await {
        Ok(up) => up,
        Err(e) => return ctx.error(502, "ServiceFailure", &e),
    };
    let response = if up.status.is_success() {
        let text = String::from_utf8_lossy(&up.body).into_owned();
        call.response_elements = response_elements(&op, &text);
        let rewritten = match op.as_str() {
            "ListAccessKeys" => Some(rewrite_list(ctx, &text)),
            "GetAccessKeyLastUsed" => {
                wire::form_get(&params, "AccessKeyId").map(|id| rewrite_last_used(ctx, id, &text))
            }
            "GenerateCredentialReport" => {
                let mut st = ctx.shared.lock();
                if st.report_generated.is_none() || text.contains("<State>STARTED</State>") {
                    st.report_generated = Some(ctx.shared.now());
                }
                None
            }
            "GetCredentialReport" => Some(rewrite_report(ctx, &text).await),
            _ => None,
        };
        match rewritten {
            Some(body) => with_body(up, body),
            None => up.into_response(),
        }
    } else {
        let text = String::from_utf8_lossy(&up.body);
        let code = between(&text, "<Code>", "</Code>")
            .unwrap_or("ServiceFailure")
            .to_owned();
        let message = between(&text, "<Message>", "</Message>")
            .unwrap_or_default()
            .to_owned();
        call.error = Some((code, message));
        up.into_response()
    };
    ctx.record(call);
    response
}

fn with_body(up: Upstream, body: String) -> Response<Body> {
    Upstream {
        body: body.into(),
        ..up
    }
    .into_response()
}

pub fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// Replaces the text of the first `<tag>…</tag>` in `block`.
fn replace_tag(block: &str, tag: &str, value: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    match (block.find(&open), block.find(&close)) {
        (Some(a), Some(b)) if a < b => format!("{}{open}{value}{}", &block[..a], &block[b..]),
        _ => block.to_owned(),
    }
}

fn xml_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn overrides(ctx: &Ctx, key: &str) -> Option<AccessKeyOverride> {
    ctx.shared.lock().key_overrides.get(key).cloned()
}

fn rewrite_list(ctx: &Ctx, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(a) = rest.find("<member>") {
        let Some(b) = rest[a..].find("</member>").map(|b| a + b + "</member>".len()) else {
            break;
        };
        out.push_str(&rest[..a]);
        let mut member = rest[a..b].to_owned();
        if let Some(id) = between(&member, "<AccessKeyId>", "</AccessKeyId>")
            && let Some(date) = overrides(ctx, id.trim()).and_then(|o| o.create_date)
        {
            member = replace_tag(&member, "CreateDate", &xml_time(date));
        }
        out.push_str(&member);
        rest = &rest[b..];
    }
    out.push_str(rest);
    out
}

fn rewrite_last_used(ctx: &Ctx, key: &str, text: &str) -> String {
    let Some(last_used) = overrides(ctx, key).and_then(|o| o.last_used) else {
        return text.to_owned();
    };
    let block = match last_used {
        Some(LastUsed {
            date,
            service,
            region,
        }) => format!(
            "<AccessKeyLastUsed><LastUsedDate>{}</LastUsedDate><ServiceName>{}</ServiceName><Region>{}</Region></AccessKeyLastUsed>",
            xml_time(date),
            wire::xml_escape(&service),
            wire::xml_escape(&region)
        ),
        None => "<AccessKeyLastUsed><ServiceName>N/A</ServiceName><Region>N/A</Region></AccessKeyLastUsed>"
            .to_owned(),
    };
    match (
        text.find("<AccessKeyLastUsed>"),
        text.find("</AccessKeyLastUsed>"),
    ) {
        (Some(a), Some(b)) => format!(
            "{}{block}{}",
            &text[..a],
            &text[b + "</AccessKeyLastUsed>".len()..]
        ),
        _ => text.to_owned(),
    }
}

/// Applies overrides to the credential report's key columns. The CSV names users, not keys, so
/// the user's keys are listed (privately) to learn which key is `access_key_1` and `_2`.
async fn rewrite_report(ctx: &Ctx, text: &str) -> String {
    let mut text = text.to_owned();
    if let Some(t) = ctx.shared.lock().report_generated {
        text = replace_tag(&text, "GeneratedTime", &xml_time(t));
    }
    let Some(content) = between(&text, "<Content>", "</Content>") else {
        return text;
    };
    let Ok(csv) = STANDARD.decode(content.trim()) else {
        return text;
    };
    let csv = String::from_utf8_lossy(&csv).into_owned();
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    let Some(header) = lines.first().cloned() else {
        return text;
    };
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    for line in lines.iter_mut().skip(1) {
        let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
        let user = cells.first().cloned().unwrap_or_default();
        if user.is_empty() || user == "<root_account>" {
            continue;
        }
        let keys = user_keys(ctx, &user).await;
        for (i, key) in keys.iter().enumerate().take(2) {
            let Some(o) = overrides(ctx, key) else { continue };
            let n = i + 1;
            if let (Some(date), Some(c)) = (o.create_date, col(&format!("access_key_{n}_last_rotated"))) {
                cells[c] = xml_time(date).replace('Z', "+00:00");
            }
            if let Some(lu) = o.last_used {
                let (d, r, s) = match lu {
                    Some(l) => (xml_time(l.date).replace('Z', "+00:00"), l.region, l.service),
                    None => ("N/A".into(), "N/A".into(), "N/A".into()),
                };
                for (suffix, v) in [("date", d), ("region", r), ("service", s)] {
                    if let Some(c) = col(&format!("access_key_{n}_last_used_{suffix}")) {
                        cells[c] = v;
                    }
                }
            }
        }
        *line = cells.join(",");
    }
    let encoded = STANDARD.encode(lines.join("\n") + "\n");
    replace_tag(&text, "Content", &encoded)
}

async fn user_keys(ctx: &Ctx, user: &str) -> Vec<String> {
    let Ok(up) = crate::moto::query(
        &ctx.shared,
        &ctx.parts,
        &[
            ("Action", "ListAccessKeys"),
            ("Version", "2010-05-08"),
            ("UserName", user),
        ],
    )
    .await
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&up.body);
    text.split("<AccessKeyId>")
        .skip(1)
        .filter_map(|s| s.split("</AccessKeyId>").next())
        .map(|s| s.trim().to_owned())
        .collect()
}

/// `responseElements` as CloudTrail writes them for the IAM calls trailguard watches.
fn response_elements(op: &str, text: &str) -> Value {
    match op {
        "CreateAccessKey" => {
            let get =
                |t: &str| between(text, &format!("<{t}>"), &format!("</{t}>")).map(|s| s.trim().to_owned());
            let create = get("CreateDate")
                .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
                .map(|d| record::display_date(d.with_timezone(&Utc)));
            json!({ "accessKey": {
                "accessKeyId": get("AccessKeyId"),
                "createDate": create,
                "status": get("Status"),
                "userName": get("UserName"),
            }})
        }
        _ => Value::Null,
    }
}

/// Marks a backdated key as used now when a request is signed with it.
pub fn mark_used(shared: &crate::state::Shared, access_key_id: &str, service: &str, region: &str) {
    let now = shared.now();
    let mut st = shared.lock();
    if let Some(o) = st.key_overrides.get_mut(access_key_id)
        && o.last_used.is_some()
    {
        o.last_used = Some(Some(LastUsed {
            date: now,
            service: service.to_owned(),
            region: region.to_owned(),
        }));
    }
}
