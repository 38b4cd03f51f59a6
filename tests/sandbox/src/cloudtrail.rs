//! CloudTrail event history: the record store and `LookupEvents`.
//!
//! Semantics follow the API reference: at most one lookup attribute (eight keys), `MaxResults`
//! 1–50 (default 50), inclusive `StartTime`/`EndTime` (default: the last 90 days up to now),
//! newest first, and a `NextToken` that is only valid with the parameters it was issued for.
//! A token pins the page walk to what was visible when the first page was served, so records
//! that arrive meanwhile neither shift nor repeat items across pages.
//!
//! Records are kept per (account, region); a record older than 90 days is never returned.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

/// How long event history keeps a record.
pub const RETENTION_DAYS: i64 = 90;

const ATTRIBUTE_KEYS: [&str; 8] = [
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];

/// One record as event history holds it, with the fields lookups filter on.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    /// The account and region whose event history holds the record.
    pub account: String,
    pub region: String,
    pub event_time: DateTime<Utc>,
    pub visible_at: DateTime<Utc>,
    pub event_id: String,
    pub event_name: String,
    pub event_source: String,
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    pub read_only: Option<bool>,
    pub resources: Vec<(Option<String>, String)>,
    /// The record as JSON text, as `CloudTrailEvent` returns it.
    pub json: String,
}

#[derive(Debug, Default)]
pub struct EventStore {
    seq: u64,
    by_place: HashMap<(String, String), Vec<StoredEvent>>,
}

impl EventStore {
    /// Stores a record under its account and region. IAM, STS and sign-in records go to
    /// us-east-1, as CloudTrail has done for global services since November 2021.
    pub fn insert(
        &mut self,
        record: &Value,
        default_account: &str,
        now: DateTime<Utc>,
        delay: Duration,
    ) -> StoredEvent {
        self.seq += 1;
        let s = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
        let event_source = s("eventSource").unwrap_or_default();
        let region = if matches!(
            event_source.as_str(),
            "iam.amazonaws.com" | "sts.amazonaws.com" | "signin.amazonaws.com"
        ) {
            "us-east-1".to_owned()
        } else {
            s("awsRegion").unwrap_or_else(|| "us-east-1".into())
        };
        let identity = record.get("userIdentity");
        let account = s("recipientAccountId")
            .or_else(|| {
                identity
                    .and_then(|i| i.get("accountId"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| default_account.to_owned());
        let event_time = s("eventTime")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        let mut resources: Vec<(Option<String>, String)> = record
            .get("resources")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| {
                        let arn = r.get("ARN").or_else(|| r.get("arn")).and_then(Value::as_str)?;
                        Some((
                            r.get("type").and_then(Value::as_str).map(str::to_owned),
                            arn.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Event history derives IAM resources from the parameters (the access key, the user),
        // so `ResourceName = <access key id>` finds a key's history.
        if event_source == "iam.amazonaws.com" {
            let param = |k: &str| {
                record
                    .get("requestParameters")
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
            };
            if let Some(key) = param("accessKeyId") {
                resources.push((Some("AWS::IAM::AccessKey".into()), key.to_owned()));
            }
            if let Some(user) = param("userName") {
                resources.push((Some("AWS::IAM::User".into()), user.to_owned()));
            }
        }
        let ev = StoredEvent {
            seq: self.seq,
            account: account.clone(),
            region: region.clone(),
            event_time,
            visible_at: std::cmp::max(now, event_time + delay),
            event_id: s("eventID").unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            event_name: s("eventName").unwrap_or_default(),
            event_source,
            username: identity.and_then(username),
            access_key_id: identity
                .and_then(|i| i.get("accessKeyId"))
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            read_only: record
                .get("readOnly")
                .and_then(|v| v.as_bool().or_else(|| v.as_str().map(|s| s == "true"))),
            resources,
            json: record.to_string(),
        };
        self.by_place
            .entry((account, region))
            .or_default()
            .push(ev.clone());
        ev
    }

    pub fn len(&self) -> usize {
        self.by_place.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored record of one place, oldest first (for the control API).
    pub fn records(&self, account: &str, region: &str) -> Vec<&StoredEvent> {
        self.by_place
            .get(&(account.to_owned(), region.to_owned()))
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }
}

/// `Username` in event history: the user name, or for an assumed role the session name.
fn username(identity: &Value) -> Option<String> {
    if let Some(u) = identity.get("userName").and_then(Value::as_str) {
        return Some(u.to_owned());
    }
    match identity.get("type").and_then(Value::as_str) {
        Some("AssumedRole") => identity
            .get("arn")
            .and_then(Value::as_str)
            .and_then(|a| a.rsplit('/').next())
            .map(str::to_owned),
        Some("Root") => Some("root".to_owned()),
        _ => None,
    }
}

/// A `LookupEvents` failure: (error code, message).
pub type LookupError = (&'static str, String);

fn invalid(code: &'static str, msg: impl Into<String>) -> LookupError {
    (code, msg.into())
}

#[derive(Debug)]
struct Query {
    attribute: Option<(String, String)>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max_results: usize,
    fingerprint: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    /// Fingerprint of the parameters the token belongs to.
    p: String,
    /// Visibility cutoff of the walk (ms since epoch).
    v: i64,
    /// Last returned position: event time (ms) and sequence number.
    t: i64,
    s: u64,
}

fn epoch(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v.as_f64()?;
    Utc.timestamp_millis_opt((secs * 1000.0).round() as i64).single()
}

fn parse_query(body: &Value, now: DateTime<Utc>) -> Result<Query, LookupError> {
    if !body.is_object() {
        return Err(invalid(
            "SerializationException",
            "request body is not a JSON object",
        ));
    }
    let attribute = match body.get("LookupAttributes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.is_empty() => None,
        Some(Value::Array(list)) if list.len() > 1 => {
            return Err(invalid(
                "InvalidLookupAttributesException",
                "You can only specify one lookup attribute.",
            ));
        }
        Some(Value::Array(list)) => {
            let a = &list[0];
            let key = a.get("AttributeKey").and_then(Value::as_str).unwrap_or_default();
            let value = a
                .get("AttributeValue")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !ATTRIBUTE_KEYS.contains(&key) {
                return Err(invalid(
                    "InvalidLookupAttributesException",
                    format!(
                        "Lookup attribute key '{key}' is not valid. Valid keys: {}",
                        ATTRIBUTE_KEYS.join(", ")
                    ),
                ));
            }
            let weighted: usize = value
                .chars()
                .map(|c| if matches!(c, '_' | ' ' | ',' | '\n') { 2 } else { 1 })
                .sum();
            if value.is_empty() || weighted > 2000 {
                return Err(invalid(
                    "InvalidLookupAttributesException",
                    "Lookup attribute value must be between 1 and 2000 characters.",
                ));
            }
            Some((key.to_owned(), value.to_owned()))
        }
        Some(_) => {
            return Err(invalid(
                "InvalidLookupAttributesException",
                "LookupAttributes must be a list.",
            ));
        }
    };
    if let Some(cat) = body.get("EventCategory").filter(|v| !v.is_null())
        && cat.as_str() != Some("insight")
    {
        return Err(invalid(
            "InvalidEventCategoryException",
            "Event category is not valid. Valid value: insight",
        ));
    }
    let start = match body.get("StartTime").filter(|v| !v.is_null()) {
        Some(v) => epoch(v)
            .ok_or_else(|| invalid("InvalidTimeRangeException", "StartTime is not a valid timestamp."))?,
        None => now - Duration::days(RETENTION_DAYS),
    };
    let end = match body.get("EndTime").filter(|v| !v.is_null()) {
        Some(v) => epoch(v)
            .ok_or_else(|| invalid("InvalidTimeRangeException", "EndTime is not a valid timestamp."))?,
        None => now,
    };
    if start > end {
        return Err(invalid(
            "InvalidTimeRangeException",
            "Start time must be before or equal to end time.",
        ));
    }
    let max_results = match body.get("MaxResults").filter(|v| !v.is_null()) {
        None => 50,
        Some(v) => match v.as_i64() {
            Some(n @ 1..=50) => n as usize,
            _ => {
                return Err(invalid(
                    "InvalidMaxResultsException",
                    format!("MaxResults {v} is not valid; it must be between 1 and 50."),
                ));
            }
        },
    };
    let fingerprint = fnv(&format!(
        "{:?}|{:?}|{:?}|{:?}",
        attribute,
        body.get("StartTime"),
        body.get("EndTime"),
        body.get("EventCategory")
    ));
    Ok(Query {
        attribute,
        start,
        end,
        max_results,
        fingerprint,
    })
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn matches(ev: &StoredEvent, attribute: &Option<(String, String)>) -> bool {
    let Some((key, value)) = attribute else {
        return true;
    };
    match key.as_str() {
        "EventId" => &ev.event_id == value,
        "EventName" => &ev.event_name == value,
        "EventSource" => &ev.event_source == value,
        "Username" => ev.username.as_deref() == Some(value),
        "AccessKeyId" => ev.access_key_id.as_deref() == Some(value),
        "ReadOnly" => ev.read_only.map(|r| r.to_string()).as_deref() == Some(value),
        "ResourceType" => ev.resources.iter().any(|(t, _)| t.as_deref() == Some(value)),
        "ResourceName" => ev.resources.iter().any(|(_, n)| n == value),
        _ => false,
    }
}

/// Answers one `LookupEvents` request for (account, region).
pub fn lookup(
    store: &EventStore,
    account: &str,
    region: &str,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Value, LookupError> {
    let q = parse_query(body, now)?;
    let (asof, after) = match body
        .get("NextToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        None => (now, None),
        Some(tok) => {
            let bad = || invalid("InvalidNextTokenException", "Invalid NextToken.");
            let raw = URL_SAFE_NO_PAD.decode(tok).map_err(|_| bad())?;
            let t: Token = serde_json::from_slice(&raw).map_err(|_| bad())?;
            if t.p != q.fingerprint {
                return Err(invalid(
                    "InvalidNextTokenException",
                    "The NextToken was issued for a request with different parameters.",
                ));
            }
            let asof = Utc.timestamp_millis_opt(t.v).single().ok_or_else(bad)?;
            (asof, Some((t.t, t.s)))
        }
    };
    let horizon = now - Duration::days(RETENTION_DAYS);
    let mut hits: Vec<&StoredEvent> = store
        .by_place
        .get(&(account.to_owned(), region.to_owned()))
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.visible_at <= asof && e.event_time >= horizon)
        .filter(|e| e.event_time >= q.start && e.event_time <= q.end)
        .filter(|e| matches(e, &q.attribute))
        .filter(|e| match after {
            None => true,
            Some((t, s)) => (e.event_time.timestamp_millis(), e.seq) < (t, s),
        })
        .collect();
    hits.sort_by_key(|e| std::cmp::Reverse((e.event_time, e.seq)));
    let more = hits.len() > q.max_results;
    hits.truncate(q.max_results);
    let events: Vec<Value> = hits.iter().map(|e| event_json(e)).collect();
    let mut out = json!({ "Events": events });
    if more {
        let last = hits.last().expect("a full page has a last item");
        let token = Token {
            p: q.fingerprint,
            v: asof.timestamp_millis(),
            t: last.event_time.timestamp_millis(),
            s: last.seq,
        };
        out["NextToken"] =
            Value::String(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("token serializes")));
    }
    Ok(out)
}

fn event_json(e: &StoredEvent) -> Value {
    let mut v = json!({
        "EventId": e.event_id,
        "EventName": e.event_name,
        "EventTime": e.event_time.timestamp_millis() as f64 / 1000.0,
        "EventSource": e.event_source,
        "Resources": e.resources.iter().map(|(t, n)| json!({ "ResourceType": t, "ResourceName": n })).collect::<Vec<_>>(),
        "CloudTrailEvent": e.json,
    });
    if let Some(r) = e.read_only {
        v["ReadOnly"] = Value::String(r.to_string());
    }
    if let Some(k) = &e.access_key_id {
        v["AccessKeyId"] = Value::String(k.clone());
    }
    if let Some(u) = &e.username {
        v["Username"] = Value::String(u.clone());
    }
    v
}

/// Splits an injected body into records: a JSON array, a CloudTrail log file
/// (`{"Records": [...]}`), a single record, `lookup-events` output, or NDJSON.
pub fn parse_records(body: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(flatten(v));
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.extend(flatten(v));
    }
    Ok(out)
}

fn flatten(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.into_iter().flat_map(flatten).collect(),
        Value::Object(mut m) => {
            if let Some(Value::Array(records)) = m.remove("Records") {
                return records;
            }
            if let Some(Value::Array(events)) = m.remove("Events") {
                return events
                    .into_iter()
                    .filter_map(|e| {
                        e.get("CloudTrailEvent")
                            .and_then(Value::as_str)
                            .and_then(|s| serde_json::from_str(s).ok())
                    })
                    .collect();
            }
            vec![Value::Object(m)]
        }
        _ => Vec::new(),
    }
}

fn event_time(record: &Value) -> Option<DateTime<Utc>> {
    let t = record.get("eventTime")?.as_str()?;
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Shifts every record's `eventTime` by the same amount so that the newest is `now`.
pub fn retime(records: &mut [Value], now: DateTime<Utc>) {
    let Some(newest) = records.iter().filter_map(event_time).max() else {
        return;
    };
    let shift = now - newest;
    for r in records.iter_mut() {
        if let Some(t) = event_time(r) {
            r["eventTime"] = Value::String(crate::record::iso(t + shift));
        }
    }
}
