//! SQS over moto, with S3 event notifications delivered in AWS's shape.
//!
//! moto writes S3 notifications into queues itself, differently from S3: the object key is
//! `quote_plus`-encoded (`/` becomes `%2F`; AWS leaves `/` as is), `eventTime` has microseconds
//! and no zone (AWS: `2026-01-01T00:00:00.123Z`), and `userIdentity`, `requestParameters`,
//! `responseElements` and `s3.object.sequencer` are missing; the test event's `Time` has the same
//! format and no `RequestId`/`HostId`. When such a message is received through the sandbox
//! (JSON protocol, as the SDKs use), its body is rewritten to AWS's shape, with the clock offset
//! applied to the times, and `MD5OfBody` recomputed. The rewrite is a pure function of moto's
//! stored body, so a message received twice reads the same both times.

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use http::Response;
use md5::Digest as _;
use serde_json::{Value, json};

use crate::server::{self, Ctx};
use crate::wire::{self, Body};

/// AWS's key encoding in notifications: form encoding that keeps `/`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'/' | b'-' | b'_' | b'.' | b'~' | b'*' => out.push(b as char),
            b if b.is_ascii_alphanumeric() => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// moto's naive local time (UTC here) moved by the offset, in AWS's format; `None` if already
/// in AWS's format or unreadable.
fn aws_time(moto_time: &str, offset: f64) -> Option<(String, DateTime<Utc>)> {
    if moto_time.ends_with('Z') {
        return None;
    }
    let t = NaiveDateTime::parse_from_str(moto_time, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()?
        .and_utc();
    let t = t + chrono::Duration::milliseconds((offset * 1000.0).round() as i64);
    Some((t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), t))
}

fn hash_hex(parts: &[&str], len: usize) -> String {
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// Rewrites an S3 notification body moto wrote to AWS's shape; `None` for any other body.
pub fn aws_s3_notification(body: &str, offset: f64) -> Option<String> {
    let mut v: Value = serde_json::from_str(body).ok()?;
    if v["Service"] == "Amazon S3" && v["Event"] == "s3:TestEvent" {
        let (time, _) = aws_time(v["Time"].as_str()?, offset)?;
        let seed = format!("{}{}", v["Bucket"], time);
        v["Time"] = json!(time);
        v["RequestId"] = json!(hash_hex(&[&seed, "r"], 16));
        v["HostId"] = json!(base64::engine::general_purpose::STANDARD.encode(hash_hex(&[&seed, "h"], 32)));
        return Some(v.to_string());
    }
    let records = v.get_mut("Records")?.as_array_mut()?;
    if records.is_empty() || !records.iter().all(|r| r["eventSource"] == "aws:s3") {
        return None;
    }
    for r in records.iter_mut() {
        let (time, t) = aws_time(r["eventTime"].as_str()?, offset)?;
        let etag = r["s3"]["object"]["eTag"].as_str().unwrap_or_default().to_owned();
        let key = wire::percent_decode(r["s3"]["object"]["key"].as_str().unwrap_or_default());
        let seed = format!("{etag}{time}{key}");
        r["eventTime"] = json!(time);
        r["s3"]["object"]["key"] = json!(encode_key(&key));
        r["s3"]["object"]["sequencer"] = json!(format!("{:018X}", t.timestamp_micros()));
        r["userIdentity"] = json!({ "principalId": format!("AWS:AIDA{}", hash_hex(&[&seed, "p"], 17)) });
        r["requestParameters"] = json!({ "sourceIPAddress": "127.0.0.1" });
        r["responseElements"] = json!({
            "x-amz-request-id": hash_hex(&[&seed, "r"], 16),
            "x-amz-id-2": base64::engine::general_purpose::STANDARD.encode(hash_hex(&[&seed, "h"], 32)),
        });
    }
    Some(v.to_string())
}

pub async fn handle(ctx: &Ctx) -> Response<Body> {
    if ctx.operation != "ReceiveMessage" || wire::target(&ctx.parts.headers).is_none() {
        return ctx.pass().await;
    }
    let up = match server::forward(&ctx.shared.moto_url, &ctx.parts, ctx.body.clone()).await {
        Ok(up) => up,
        Err(e) => return ctx.error(502, "InternalFailure", &e),
    };
    let Some(mut out) = up.json().filter(|_| up.status.is_success()) else {
        return up.into_response();
    };
    let offset = ctx.shared.clock_offset();
    let mut changed = false;
    for m in out["Messages"].as_array_mut().into_iter().flatten() {
        let Some(body) = m["Body"].as_str().and_then(|b| aws_s3_notification(b, offset)) else {
            continue;
        };
        m["MD5OfBody"] = json!(hex_lower(&md5::Md5::digest(body.as_bytes())));
        m["Body"] = json!(body);
        changed = true;
    }
    if !changed {
        return up.into_response();
    }
    server::Upstream {
        body: out.to_string().into(),
        ..up
    }
    .into_response()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_notifications_become_aws_shaped() {
        let moto = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-25T16:19:15.232431", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "c", "bucket": {"name": "b", "arn": "arn:aws:s3:::b"},
                   "object": {"key": "AWSLogs%2Fo-x%2F1%2Fa+b%3Dc.json.gz", "size": 5, "eTag": "5d41"}}}]}"#;
        let aws: Value = serde_json::from_str(&aws_s3_notification(moto, -1800.0).unwrap()).unwrap();
        let r = &aws["Records"][0];
        assert_eq!(r["s3"]["object"]["key"], "AWSLogs/o-x/1/a+b%3Dc.json.gz");
        assert_eq!(r["eventTime"], "2026-11-25T15:49:15.232Z");
        assert_eq!(r["s3"]["object"]["sequencer"].as_str().unwrap().len(), 18);
        assert!(r["responseElements"]["x-amz-request-id"].is_string());
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(
            aws_s3_notification(moto, -1800.0),
            aws_s3_notification(moto, -1800.0),
            "stable"
        );
        assert_eq!(aws_s3_notification(r#"{"Message": "x"}"#, 0.0), None);
        let test = r#"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T16:19:15.208582", "Bucket": "b"}"#;
        let t: Value = serde_json::from_str(&aws_s3_notification(test, 0.0).unwrap()).unwrap();
        assert_eq!(t["Time"], "2026-11-25T16:19:15.208Z");
        assert!(t["RequestId"].is_string() && t["HostId"].is_string());
    }
}
