//! The organization trail: records land in S3 at CloudTrail's keys, and S3 tells a queue.

use std::io::Read as _;
use std::time::Duration;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use serde_json::{Value, json};

use crate::common::*;

async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

fn gunzip(data: &[u8]) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Decodes an S3 notification's key (form encoding: `+` is a space, `%XX` a byte).
fn notification_key(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_kms_call_lands_in_the_org_trail_and_s3_notifies_the_queue() {
    let sb = sandbox().await;
    let conf = sdk(&sb, ADMIN, "us-east-1").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let bucket = "org-trail-logs";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let (url, queue_arn) = queue(&sqs, "trail-objects").await;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    // S3 first sends a test event, which readers must skip.
    let test_event = drain(&sqs, &url).await;
    assert_eq!(test_event.len(), 1, "{test_event:?}");
    assert_eq!(test_event[0]["Service"], "Amazon S3");
    assert_eq!(test_event[0]["Event"], "s3:TestEvent");
    assert_eq!(test_event[0]["Bucket"], bucket);
    assert!(chrono::DateTime::parse_from_rfc3339(test_event[0]["Time"].as_str().unwrap()).is_ok());
    assert!(test_event[0]["RequestId"].is_string());

    control(
        &sb,
        "POST",
        "/_sandbox/org-trail",
        json!({"bucket": bucket, "prefix": "trail", "org_id": "o-a1b2c3d4e5", "interval_seconds": 0.3, "digests": true}),
    )
    .await;
    let kms = aws_sdk_kms::Client::new(&sdk(&sb, ADMIN, "eu-west-1").await);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();

    let is_log = |m: &Value| {
        m["Records"][0]["s3"]["object"]["key"]
            .as_str()
            .is_some_and(|k| !notification_key(k).contains("/CloudTrail-Digest/"))
    };
    let (note, _) = wait_for(&sqs, &url, Duration::from_secs(10), is_log).await;
    let note = note.expect("a notification for the log file within an interval");
    let r = &note["Records"][0];
    assert_eq!(r["eventSource"], "aws:s3");
    // AWS's shape, not moto's: `/` is not encoded, times are UTC with milliseconds, and a
    // sequencer orders events on one key.
    let raw_key = r["s3"]["object"]["key"].as_str().unwrap();
    assert!(raw_key.starts_with("trail/AWSLogs/"), "{raw_key}");
    let event_time = r["eventTime"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(event_time).is_ok() && event_time.ends_with('Z'),
        "{event_time}"
    );
    assert!(r["s3"]["object"]["sequencer"].is_string());
    assert!(r["responseElements"]["x-amz-request-id"].is_string());
    assert_eq!(r["eventName"], "ObjectCreated:Put");
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(r["s3"]["bucket"]["name"], bucket);
    assert_eq!(r["s3"]["bucket"]["arn"], format!("arn:aws:s3:::{bucket}"));
    let key_name = notification_key(r["s3"]["object"]["key"].as_str().unwrap());
    let prefix = format!("trail/AWSLogs/o-a1b2c3d4e5/{ACCOUNT}/CloudTrail/eu-west-1/");
    assert!(key_name.starts_with(&prefix), "{key_name}");
    let file = key_name.rsplit('/').next().unwrap();
    let stamp = file
        .strip_prefix(&format!("{ACCOUNT}_CloudTrail_eu-west-1_"))
        .and_then(|f| f.strip_suffix(".json.gz"))
        .unwrap_or_else(|| panic!("{file}"));
    let (time, random) = stamp.split_once('_').unwrap();
    let at = chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%MZ").unwrap();
    assert_eq!(
        &key_name[prefix.len()..prefix.len() + 10],
        at.format("%Y/%m/%d").to_string()
    );
    assert_eq!(random.len(), 16);
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));

    let body = object(&s3, bucket, &key_name).await;
    assert_eq!(
        r["s3"]["object"]["size"],
        body.len(),
        "the notification gives the object's size"
    );
    let log = gunzip(&body);
    let records = log["Records"].as_array().unwrap();
    let create = records
        .iter()
        .find(|r| r["eventName"] == "CreateKey")
        .expect("CreateKey in the log file");
    assert_eq!(create["resources"][0]["ARN"], key.arn().unwrap());
    assert_eq!(create["recipientAccountId"], ACCOUNT);

    // A digest file sits beside the logs, under CloudTrail-Digest/.
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!(
            "trail/AWSLogs/o-a1b2c3d4e5/{ACCOUNT}/CloudTrail-Digest/eu-west-1/"
        ))
        .send()
        .await
        .unwrap();
    let digest_key = listed.contents()[0].key().unwrap().to_owned();
    let digest = gunzip(&object(&s3, bucket, &digest_key).await);
    assert_eq!(digest["logFiles"][0]["s3Object"], key_name.as_str());
    assert_eq!(digest["awsAccountId"], ACCOUNT);

    // S3 calls go through the sandbox and are counted like any other service's.
    for op in [
        "s3.CreateBucket",
        "s3.PutBucketNotificationConfiguration",
        "s3.GetObject",
        "s3.ListObjectsV2",
    ] {
        assert!(sb.state().counter(op) >= 1, "{op}");
    }
    // Nothing more is held, and a flush with nothing new writes nothing.
    let flushed = control(&sb, "POST", "/_sandbox/org-trail/flush", json!({})).await;
    assert_eq!(flushed["written"], json!([]));
}
