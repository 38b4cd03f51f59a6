//! What an SQS message of a queue source carries. Pure.
//!
//! - `eventbridge_sqs`: an EventBridge event "AWS API Call via CloudTrail" whose `detail` is the
//!   CloudTrail record, unchanged; `account` and `region` come from the envelope.
//! - `s3_sqs`: an S3 event notification (`{"Records":[{"s3":{...}}]}`) naming new log files of
//!   an (organization) trail; also CloudTrail's own SNS notification
//!   (`{"s3Bucket":..., "s3ObjectKey":[...]}`). Digest files, other objects and S3's
//!   `s3:TestEvent` are skipped.
//!
//! Either body may arrive wrapped in an SNS notification (a topic fanned out to the queue
//! without raw message delivery); the wrapper is taken off first.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A log file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The object key, URL-decoded.
    pub key: String,
    /// The bucket's region, if the notification says.
    pub region: Option<String>,
}

/// What a message asks of trailguard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One CloudTrail record (EventBridge), with the envelope's account and region.
    Record {
        record: String,
        account: Option<String>,
        region: Option<String>,
    },
    /// Log files to read (S3).
    Objects(Vec<ObjectRef>),
    /// Nothing to do, and why (a test event, a digest file, another detail-type).
    Skip(String),
}

/// Why a message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

#[derive(Deserialize)]
struct SnsWrapper<'a> {
    #[serde(rename = "Type")]
    kind: Option<&'a str>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// Takes off an SNS notification wrapper, if there is one.
fn unwrap_sns(body: &str) -> std::borrow::Cow<'_, str> {
    if body.contains("\"TopicArn\"")
        && let Ok(w) = serde_json::from_str::<SnsWrapper>(body)
        && w.kind == Some("Notification")
        && let Some(m) = w.message
    {
        return m.into();
    }
    body.into()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "detail-type")]
    detail_type: Option<&'a str>,
    source: Option<String>,
    account: Option<&'a str>,
    region: Option<&'a str>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Recipient {
    #[serde(rename = "recipientAccountId")]
    recipient: Option<String>,
}

/// The CloudTrail detail-types EventBridge delivers.
const CLOUDTRAIL_TYPES: &[&str] = &[
    "AWS API Call via CloudTrail",
    "AWS Service Event via CloudTrail",
    "AWS Console Sign In via CloudTrail",
];

/// Reads an `eventbridge_sqs` message.
pub fn eventbridge(body: &str) -> Result<Body, Malformed> {
    let body = unwrap_sns(body);
    let env: Envelope =
        serde_json::from_str(&body).map_err(|e| Malformed(format!("not an EventBridge event: {e}")))?;
    let Some(kind) = env.detail_type else {
        return Err(Malformed("not an EventBridge event: no detail-type".into()));
    };
    if !CLOUDTRAIL_TYPES.contains(&kind) {
        return Ok(Body::Skip(format!(
            "detail-type {kind:?} is not a CloudTrail event"
        )));
    }
    let detail = env
        .detail
        .ok_or_else(|| Malformed("an EventBridge event without detail".into()))?;
    if !detail.get().trim_start().starts_with('{') {
        return Err(Malformed("the event's detail is not a CloudTrail record".into()));
    }
    // EventBridge refuses `aws.*` sources from `PutEvents` and sets `account` to the sender:
    // only those two are trustworthy, so the record must agree with them.
    let source = env.source.unwrap_or_default();
    if !source.starts_with("aws.") {
        return Ok(Body::Skip(format!(
            "source {source:?} is not an AWS service: not CloudTrail's (put by an account?)"
        )));
    }
    if let (Some(account), Ok(r)) = (env.account, serde_json::from_str::<Recipient>(detail.get()))
        && let Some(recipient) = r.recipient.filter(|r| r != account)
    {
        return Ok(Body::Skip(format!(
            "the record names account {recipient} but EventBridge delivered it from {account}: not trusted"
        )));
    }
    Ok(Body::Record {
        record: detail.get().to_owned(),
        account: env.account.map(str::to_owned),
        region: env.region.map(str::to_owned),
    })
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Option<Vec<S3Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "s3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "s3ObjectKey")]
    s3_object_key: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    #[serde(rename = "awsRegion")]
    region: Option<String>,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Named,
    object: Key,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

/// Whether an object key is a CloudTrail log file: `.../CloudTrail/REGION/Y/M/D/ACCT_CloudTrail_REGION_...json.gz`
/// (and not a digest, `.../CloudTrail-Digest/...`, or anything else in the bucket).
pub fn is_log_file(key: &str) -> bool {
    if key.contains("/CloudTrail-Digest/") {
        return false;
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    key.contains("/CloudTrail/") && name.contains("_CloudTrail_") && name.ends_with(".json.gz")
}

/// Decodes an S3 notification's object key (URL-encoded as form data: `+` is a space).
pub fn decode_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads an `s3_sqs` message.
pub fn s3(body: &str) -> Result<Body, Malformed> {
    let body = unwrap_sns(body);
    let n: S3Notification =
        serde_json::from_str(&body).map_err(|e| Malformed(format!("not an S3 notification: {e}")))?;
    if n.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Body::Skip("S3's test event".into()));
    }
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    if let (Some(bucket), Some(keys)) = (n.s3_bucket, n.s3_object_key) {
        // CloudTrail's own notification: keys are not encoded.
        for key in keys {
            if is_log_file(&key) {
                objects.push(ObjectRef {
                    bucket: bucket.clone(),
                    key,
                    region: None,
                });
            } else {
                skipped.push(key);
            }
        }
    } else {
        let Some(records) = n.records else {
            return Err(Malformed("not an S3 notification: no Records".into()));
        };
        for r in records {
            let Some(s3) = r.s3 else {
                return Err(Malformed("an S3 notification record without s3".into()));
            };
            let key = decode_key(&s3.object.key);
            let created = r
                .event_name
                .as_deref()
                .is_none_or(|e| e.trim_start_matches("s3:").starts_with("ObjectCreated:"));
            if created && is_log_file(&key) {
                objects.push(ObjectRef {
                    bucket: s3.bucket.name,
                    key,
                    region: r.region,
                });
            } else {
                skipped.push(key);
            }
        }
    }
    if objects.is_empty() {
        return Ok(Body::Skip(format!(
            "no CloudTrail log file (digest or other objects: {})",
            skipped.join(", ")
        )));
    }
    Ok(Body::Objects(objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "trail/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/eu-west-1/2026/11/25/111122223333_CloudTrail_eu-west-1_20261125T1005Z_abcdEFGH12345678.json.gz";
    const DIGEST: &str = "trail/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail-Digest/eu-west-1/2026/11/25/111122223333_CloudTrail-Digest_eu-west-1_org-trail_us-east-1_20261125T100500Z.json.gz";

    #[test]
    fn an_eventbridge_event_carries_its_record_account_and_region() {
        let body = r#"{"version":"0","id":"6a7e8feb","detail-type":"AWS API Call via CloudTrail","source":"aws.kms","account":"111122223333","time":"2026-11-25T10:00:00Z","region":"eu-west-1","resources":[],"detail":{"eventID":"e1","eventName":"Decrypt","errorMessage":"x is pending deletion."}}"#;
        let Body::Record {
            record,
            account,
            region,
        } = eventbridge(body).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            record,
            r#"{"eventID":"e1","eventName":"Decrypt","errorMessage":"x is pending deletion."}"#
        );
        assert_eq!(account.as_deref(), Some("111122223333"));
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        let wrapped = serde_json::json!({"Type":"Notification","TopicArn":"arn:aws:sns:eu-west-1:111122223333:t","Message":body}).to_string();
        assert!(matches!(eventbridge(&wrapped).unwrap(), Body::Record { .. }));
    }

    #[test]
    fn other_events_are_skipped_and_garbage_is_malformed() {
        let other = r#"{"detail-type":"EC2 Instance State-change Notification","detail":{}}"#;
        assert!(matches!(eventbridge(other).unwrap(), Body::Skip(_)));
        assert!(eventbridge("not json").is_err());
        assert!(eventbridge(r#"{"detail-type":"AWS API Call via CloudTrail","detail":"x"}"#).is_err());
        assert!(eventbridge(r#"{"id":"x"}"#).is_err());
    }

    #[test]
    fn an_s3_notification_names_log_files_and_skips_digests() {
        let encoded = LOG.replace("_abcd", "_ab%2Bd").replace("trail/", "my+trail/");
        let body = serde_json::json!({"Records":[
            {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put",
             "s3":{"bucket":{"name":"org-trail","arn":"arn:aws:s3:::org-trail"},"object":{"key":encoded,"size":1}}},
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"org-trail"},"object":{"key":DIGEST}}}
        ]})
        .to_string();
        let Body::Objects(o) = s3(&body).unwrap() else {
            panic!()
        };
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].bucket, "org-trail");
        assert!(
            o[0].key.starts_with("my trail/") && o[0].key.contains("_ab+d"),
            "{}",
            o[0].key
        );
        assert_eq!(o[0].region.as_deref(), Some("us-east-1"));
        let only_digest =
            serde_json::json!({"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":DIGEST}}}]})
                .to_string();
        assert!(matches!(s3(&only_digest).unwrap(), Body::Skip(_)));
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T10:00:00.000Z","Bucket":"org-trail"}"#;
        assert_eq!(s3(test).unwrap(), Body::Skip("S3's test event".into()));
        let cloudtrail_sns = serde_json::json!({"s3Bucket":"org-trail","s3ObjectKey":[LOG]}).to_string();
        assert!(matches!(s3(&cloudtrail_sns).unwrap(), Body::Objects(o) if o[0].key == LOG));
        assert!(s3("{}").is_err());
        assert!(s3("[1,2]").is_err());
    }

    #[test]
    fn keys_decode_as_form_data() {
        assert_eq!(decode_key("a+b%2Fc%3d"), "a b/c=");
        assert_eq!(decode_key("100%"), "100%");
        assert_eq!(decode_key("%zz"), "%zz");
        assert!(is_log_file(LOG));
        assert!(!is_log_file(DIGEST));
        assert!(!is_log_file(
            "trail/AWSLogs/o-1/111122223333/CloudTrail/eu-west-1/notes.txt"
        ));
    }
}
