//! The sandbox, tested through the real aws-sdk-rust clients.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_sdk_kms::config::Credentials;
use aws_smithy_types::DateTime as SmithyTime;
use aws_smithy_types::retry::RetryConfig;
use serde_json::{Value, json};
use trailguard_sandbox::Sandbox;

const ACCOUNT: &str = "123456789012";

async fn sandbox() -> Sandbox {
    Sandbox::start_default()
        .await
        .expect("sandbox starts (run tests/setup.sh first)")
}

async fn sdk(sb: &Sandbox, access_key: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(access_key, "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// A raw HTTP exchange with the sandbox, for the control API and wire-level checks.
async fn raw(sb: &Sandbox, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sb.addr()).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        sb.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn control(sb: &Sandbox, method: &str, path: &str, body: Value) -> Value {
    let (status, text) = raw(
        sb,
        method,
        path,
        &[("content-type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "control {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn attr(key: &str, value: &str) -> LookupAttribute {
    LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::from(key))
        .attribute_value(value)
        .build()
        .unwrap()
}

fn record_of(e: &aws_sdk_cloudtrail::types::Event) -> Value {
    serde_json::from_str(e.cloud_trail_event().unwrap()).unwrap()
}

async fn kms_events(ct: &aws_sdk_cloudtrail::Client) -> Vec<aws_sdk_cloudtrail::types::Event> {
    ct.lookup_events()
        .lookup_attributes(attr("EventSource", "kms.amazonaws.com"))
        .send()
        .await
        .unwrap()
        .events
        .unwrap_or_default()
}

fn code<E: aws_sdk_kms::error::ProvideErrorMetadata>(e: &E) -> (String, String) {
    (
        e.code().unwrap_or_default().to_owned(),
        e.message().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn encrypt_on_key_pending_deletion_fails_and_is_recorded() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/identities",
        json!({"access_key_id": "AKIAAPPROLE", "identity": {"type": "AssumedRole", "role_name": "billing-app", "session_name": "i-0abc"}}),
    )
    .await;
    let admin = aws_sdk_kms::Client::new(&sdk(&sb, "AKIAADMIN", "eu-west-1").await);
    let app = aws_sdk_kms::Client::new(&sdk(&sb, "AKIAAPPROLE", "eu-west-1").await);
    let ct = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "eu-west-1").await);

    let key = admin.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn().unwrap().to_owned();
    let blob = app
        .encrypt()
        .key_id(&arn)
        .plaintext(b"secret".as_slice().into())
        .send()
        .await
        .unwrap();
    let ciphertext = blob.ciphertext_blob.unwrap();

    // ScheduleKeyDeletion by ARN answers as AWS does: ARN, state and window.
    let sched = admin
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(sched.key_id(), Some(arn.as_str()));
    assert_eq!(sched.key_state().map(|s| s.as_str()), Some("PendingDeletion"));
    assert_eq!(sched.pending_window_in_days(), Some(7));

    let err = app
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_kms_invalid_state_exception(), "{err:?}");
    assert_eq!(code(&err).1, format!("{arn} is pending deletion."));
    let err = app
        .generate_data_key()
        .key_id(key.key_id())
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err.into_service_error()).1,
        format!("{arn} is pending deletion.")
    );

    // The failed Decrypt is in event history, newest first, with who called and which key.
    let events = kms_events(&ct).await;
    let names: Vec<_> = events.iter().map(|e| e.event_name().unwrap()).collect();
    assert_eq!(
        names,
        [
            "GenerateDataKey",
            "Decrypt",
            "ScheduleKeyDeletion",
            "Encrypt",
            "CreateKey"
        ]
    );
    let decrypt = record_of(&events[1]);
    assert_eq!(decrypt["errorCode"], "KMSInvalidStateException");
    assert_eq!(decrypt["errorMessage"], format!("{arn} is pending deletion."));
    assert_eq!(decrypt["awsRegion"], "eu-west-1");
    assert_eq!(decrypt["readOnly"], true);
    assert_eq!(decrypt["userIdentity"]["type"], "AssumedRole");
    assert_eq!(
        decrypt["userIdentity"]["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/billing-app/i-0abc")
    );
    assert_eq!(
        decrypt["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"],
        format!("arn:aws:iam::{ACCOUNT}:role/billing-app")
    );
    assert_eq!(decrypt["resources"][0]["ARN"], arn);
    assert_eq!(decrypt["resources"][0]["type"], "AWS::KMS::Key");
    assert_eq!(decrypt["recipientAccountId"], ACCOUNT);
    assert!(
        decrypt["requestParameters"].get("ciphertextBlob").is_none(),
        "blobs are never logged"
    );
    assert_eq!(events[1].username(), Some("i-0abc"));
    assert_eq!(events[1].read_only(), Some("true"));
    assert_eq!(events[1].resources()[0].resource_name(), Some(arn.as_str()));

    let encrypt = record_of(&events[3]);
    assert!(encrypt.get("errorCode").is_none());
    assert!(
        encrypt["requestParameters"].get("plaintext").is_none(),
        "plaintext is never logged"
    );
    let schedule = record_of(&events[2]);
    assert_eq!(schedule["responseElements"]["keyState"], "PendingDeletion");
    assert_eq!(schedule["responseElements"]["keyId"], arn);
    assert_eq!(schedule["requestParameters"]["pendingWindowInDays"], 7);
    assert_eq!(schedule["userIdentity"]["type"], "IAMUser");

    // Nothing leaks into another region.
    let ct_us = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    assert!(kms_events(&ct_us).await.is_empty());
}

#[tokio::test]
async fn key_states_and_arns_as_aws() {
    let sb = sandbox().await;
    let kms = aws_sdk_kms::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn().unwrap().to_owned();

    // ARNs are accepted by the calls moto fails on.
    kms.disable_key().key_id(&arn).send().await.unwrap();
    let err = kms
        .encrypt()
        .key_id(&arn)
        .plaintext(b"x".as_slice().into())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_disabled_exception(), "{err:?}");
    assert_eq!(code(&err).1, format!("{arn} is disabled."));

    let err = kms
        .cancel_key_deletion()
        .key_id(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_kms_invalid_state_exception(), "{err:?}");
    assert_eq!(code(&err).1, format!("{arn} is not pending deletion."));

    for days in [6, 31] {
        let err = kms
            .schedule_key_deletion()
            .key_id(&arn)
            .pending_window_in_days(days)
            .send()
            .await
            .unwrap_err();
        let (c, m) = code(&err.into_service_error());
        assert_eq!(c, "ValidationException");
        assert!(m.contains(&format!("Value '{days}'")), "{m}");
    }
    let state = |k: &aws_sdk_kms::Client| {
        let k = k.clone();
        let arn = arn.clone();
        async move {
            k.describe_key()
                .key_id(&arn)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
        }
    };
    assert_eq!(
        state(&kms).await.key_state().unwrap().as_str(),
        "Disabled",
        "a refused schedule changes nothing"
    );

    kms.enable_key().key_id(&arn).send().await.unwrap();
    kms.schedule_key_deletion().key_id(&arn).send().await.unwrap();
    let m = state(&kms).await;
    assert_eq!(m.key_state().unwrap().as_str(), "PendingDeletion");
    assert!(m.deletion_date().is_some());

    for (what, err) in [
        (
            "enable",
            kms.enable_key()
                .key_id(&arn)
                .send()
                .await
                .map(|_| ())
                .unwrap_err()
                .into_service_error()
                .to_string(),
        ),
        (
            "disable",
            kms.disable_key()
                .key_id(&arn)
                .send()
                .await
                .map(|_| ())
                .unwrap_err()
                .into_service_error()
                .to_string(),
        ),
        (
            "schedule",
            kms.schedule_key_deletion()
                .key_id(&arn)
                .send()
                .await
                .map(|_| ())
                .unwrap_err()
                .into_service_error()
                .to_string(),
        ),
    ] {
        assert!(err.contains("is pending deletion"), "{what}: {err}");
    }
    let err = kms
        .create_grant()
        .key_id(&arn)
        .grantee_principal("arn:aws:iam::123456789012:role/x")
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_kms_invalid_state_exception(), "{err:?}");

    let cancel = kms.cancel_key_deletion().key_id(&arn).send().await.unwrap();
    assert_eq!(
        cancel.key_id(),
        Some(arn.as_str()),
        "CancelKeyDeletion answers with the key ARN"
    );
    let m = state(&kms).await;
    assert_eq!(
        m.key_state().unwrap().as_str(),
        "Disabled",
        "a cancelled key is left Disabled"
    );
    assert!(m.deletion_date().is_none());

    // Refused calls are recorded like any other.
    let ct = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    let failed: Vec<Value> = kms_events(&ct)
        .await
        .iter()
        .map(record_of)
        .filter(|r| r.get("errorCode").is_some())
        .collect();
    assert_eq!(failed.len(), 8, "{failed:#?}");
    let cancel_rec = kms_events(&ct)
        .await
        .iter()
        .map(record_of)
        .find(|r| r["eventName"] == "CancelKeyDeletion" && r.get("errorCode").is_none())
        .unwrap();
    assert_eq!(cancel_rec["responseElements"]["keyId"], arn);
}

#[tokio::test]
async fn lookup_events_pages_newest_first_and_binds_tokens() {
    let sb = sandbox().await;
    let conf = sdk(&sb, "AKIAADMIN", "us-east-1").await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let ct = aws_sdk_cloudtrail::Client::new(&conf);
    for _ in 0..7 {
        kms.create_key().send().await.unwrap();
    }
    // Stay under the 2 requests/s quota while walking the pages.
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;
    let mut ids = Vec::new();
    let mut times = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = ct
            .lookup_events()
            .lookup_attributes(attr("EventName", "CreateKey"))
            .max_results(3)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        for e in out.events() {
            ids.push(e.event_id().unwrap().to_owned());
            times.push(*e.event_time().unwrap());
        }
        // A record arriving mid-walk must not shift or repeat items.
        if pages == 1 {
            kms.create_key().send().await.unwrap();
        }
        token = out.next_token.clone();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 7);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 7);
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // The paginator sees all eight now.
    let all: Vec<_> = ct
        .lookup_events()
        .lookup_attributes(attr("EventName", "CreateKey"))
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 8);

    // A token only works with the parameters it came from.
    let first = ct
        .lookup_events()
        .lookup_attributes(attr("EventName", "CreateKey"))
        .max_results(2)
        .send()
        .await
        .unwrap();
    let tok = first.next_token.unwrap();
    let err = ct
        .lookup_events()
        .lookup_attributes(attr("EventName", "Encrypt"))
        .max_results(2)
        .next_token(&tok)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_invalid_next_token_exception());
    let err = ct
        .lookup_events()
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_invalid_next_token_exception());

    // Inclusive time bounds: an exact EventTime as both ends finds that event.
    let t = *all[3].event_time().unwrap();
    let exact = ct.lookup_events().start_time(t).end_time(t).send().await.unwrap();
    assert!(exact.events().iter().any(|e| e.event_id() == all[3].event_id()));
}

#[tokio::test]
async fn lookup_events_validation_errors() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;
    let ct = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    let e = ct
        .lookup_events()
        .lookup_attributes(attr("EventName", "A"))
        .lookup_attributes(attr("EventSource", "B"))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_lookup_attributes_exception());
    let e = ct
        .lookup_events()
        .lookup_attributes(attr("Color", "red"))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_lookup_attributes_exception());
    for n in [0, 51] {
        let e = ct.lookup_events().max_results(n).send().await.unwrap_err();
        assert!(
            e.into_service_error().is_invalid_max_results_exception(),
            "MaxResults {n}"
        );
    }
    let e = ct
        .lookup_events()
        .start_time(SmithyTime::from_secs(2_000))
        .end_time(SmithyTime::from_secs(1_000))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_time_range_exception());

    // Every attribute key works.
    for key in [
        "EventId",
        "EventName",
        "ReadOnly",
        "Username",
        "ResourceType",
        "ResourceName",
        "EventSource",
        "AccessKeyId",
    ] {
        ct.lookup_events()
            .lookup_attributes(attr(key, "x"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    }

    // botocore's long X-Amz-Target form is accepted too, and times are epoch-second numbers.
    let kms = aws_sdk_kms::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    kms.create_key().send().await.unwrap();
    let (status, body) = raw(
        &sb,
        "POST",
        "/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAADMIN/20260101/us-east-1/cloudtrail/aws4_request, SignedHeaders=host, Signature=0"),
        ],
        r#"{"MaxResults":5}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["Events"][0]["EventTime"].is_number());
    assert!(v["Events"][0]["CloudTrailEvent"].is_string());
    assert_eq!(v["Events"][0]["ReadOnly"], "false");
}

#[tokio::test]
async fn lookup_events_throttles_above_two_per_second() {
    let sb = sandbox().await;
    let ct = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    let ct_other_region = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "eu-west-1").await);
    let mut throttled = 0;
    for _ in 0..6 {
        if let Err(e) = ct.lookup_events().send().await {
            let e = e.into_service_error();
            assert_eq!(
                code(&e),
                ("ThrottlingException".to_owned(), "Rate exceeded".to_owned())
            );
            throttled += 1;
        }
    }
    assert!(
        throttled >= 3,
        "6 requests in well under a second: at most ~2 pass, {throttled} throttled"
    );
    // The quota is per region.
    ct_other_region.lookup_events().send().await.unwrap();
    // At one request per second nothing is throttled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        ct.lookup_events().send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let counters = control(&sb, "GET", "/_sandbox/counters", json!({})).await;
    assert_eq!(counters["cloudtrail.LookupEvents"], 10);

    // A test can also dial in random throttling.
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0, "throttle_probability": 1.0}),
    )
    .await;
    let e = ct_other_region.lookup_events().send().await.unwrap_err();
    assert_eq!(code(&e.into_service_error()).0, "ThrottlingException");
}

#[tokio::test]
async fn visibility_delay_and_retention() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0, "visibility_delay_seconds": 60}),
    )
    .await;
    let conf = sdk(&sb, "AKIAADMIN", "us-east-1").await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let ct = aws_sdk_cloudtrail::Client::new(&conf);
    kms.create_key().send().await.unwrap();
    assert!(kms_events(&ct).await.is_empty(), "not visible before the delay");
    // A minute later on the AWS side's clock (no sleeping, however slow moto was).
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0, "visibility_delay_seconds": 60, "clock_offset_seconds": 61}),
    )
    .await;
    assert_eq!(kms_events(&ct).await.len(), 1, "visible after the delay");
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;

    // Delays over 15 minutes: a record 16 minutes old delivered 20 minutes late is still hidden;
    // one 20 minutes old with a 15-minute delay is already out.
    let now = chrono::Utc::now();
    let rec = |id: &str, age_min: i64| {
        json!({"eventVersion": "1.08", "eventID": id, "eventName": "DisableKey", "eventSource": "kms.amazonaws.com",
               "awsRegion": "us-east-1", "recipientAccountId": ACCOUNT,
               "eventTime": (now - chrono::Duration::minutes(age_min)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
    };
    control(
        &sb,
        "POST",
        "/_sandbox/cloudtrail/records?delay_seconds=1200",
        json!([rec("late-1", 16)]),
    )
    .await;
    control(
        &sb,
        "POST",
        "/_sandbox/cloudtrail/records?delay_seconds=900",
        json!([rec("late-2", 20)]),
    )
    .await;
    // Retention: 91 days ago is gone.
    control(
        &sb,
        "POST",
        "/_sandbox/cloudtrail/records?delay_seconds=0",
        json!([rec("ancient", 91 * 24 * 60)]),
    )
    .await;
    let ids: Vec<_> = kms_events(&ct)
        .await
        .iter()
        .map(|e| e.event_id().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"late-2".to_owned()));
    assert!(!ids.contains(&"late-1".to_owned()));
    assert!(!ids.contains(&"ancient".to_owned()));
}

#[tokio::test]
async fn injected_real_records_are_served_by_account_and_region() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/cloudtrail/elastic-integrations-aws-cloudtrail"
    );
    let disable = std::fs::read_to_string(format!("{dir}/test-disable-key-json.log")).unwrap();
    let original: Value = serde_json::from_str(disable.lines().next().unwrap()).unwrap();
    let (status, body) = raw(
        &sb,
        "POST",
        "/_sandbox/cloudtrail/records?retime=1",
        &[],
        &disable,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A CloudTrail log file, as {"Records": [...]}.
    let kms_doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/cloudtrail/awsdocs-examples/aws-kms-developer-guide.ndjson"
    ))
    .unwrap();
    let records: Vec<Value> = kms_doc
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let injected = control(
        &sb,
        "POST",
        "/_sandbox/cloudtrail/records?retime=1",
        json!({ "Records": records }),
    )
    .await;
    assert_eq!(injected["injected"].as_u64().unwrap() as usize, records.len());

    let region = original["awsRegion"].as_str().unwrap();
    let account = original["recipientAccountId"]
        .as_str()
        .or(original["userIdentity"]["accountId"].as_str())
        .unwrap();
    control(&sb, "POST", "/_sandbox/identities", json!({"access_key_id": "AKIAOTHER", "identity": {"type": "IAMUser", "user_name": "reader", "account_id": account}})).await;
    let ct = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAOTHER", region).await);
    let found = ct
        .lookup_events()
        .lookup_attributes(attr("EventId", original["eventID"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        found.events().len(),
        1,
        "the record is found in its own account and region"
    );
    let mut served = record_of(&found.events()[0]);
    let served_time = served["eventTime"].take();
    let mut original = original;
    original["eventTime"].take();
    assert_eq!(served, original, "served unchanged but for the retimed eventTime");
    let age = chrono::Utc::now()
        - chrono::DateTime::parse_from_rfc3339(served_time.as_str().unwrap())
            .unwrap()
            .to_utc();
    assert!(age.num_seconds().abs() < 60, "retimed to now");
}

#[tokio::test]
async fn iam_access_keys_can_be_backdated() {
    let sb = sandbox().await;
    let conf = sdk(&sb, "AKIAADMIN", "us-east-1").await;
    let iam = aws_sdk_iam::Client::new(&conf);
    iam.create_user().user_name("alice").send().await.unwrap();
    iam.create_user().user_name("bob").send().await.unwrap();
    let old = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let never = iam
        .create_access_key()
        .user_name("bob")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();

    let created = chrono::Utc::now() - chrono::Duration::days(120);
    let used = chrono::Utc::now() - chrono::Duration::days(1);
    control(
        &sb,
        "POST",
        &format!("/_sandbox/iam/access-keys/{}", old.access_key_id()),
        json!({"create_date": created, "last_used": {"date": used, "service": "s3", "region": "eu-west-1"}}),
    )
    .await;
    control(
        &sb,
        "POST",
        &format!("/_sandbox/iam/access-keys/{}", never.access_key_id()),
        json!({"create_date": created, "last_used": null}),
    )
    .await;

    let listed = iam.list_access_keys().user_name("alice").send().await.unwrap();
    let meta = &listed.access_key_metadata()[0];
    assert_eq!(meta.create_date().unwrap().secs(), created.timestamp());

    let lu = iam
        .get_access_key_last_used()
        .access_key_id(old.access_key_id())
        .send()
        .await
        .unwrap();
    let lu = lu.access_key_last_used.unwrap();
    assert_eq!(lu.last_used_date().unwrap().secs(), used.timestamp());
    assert_eq!((lu.service_name(), lu.region()), ("s3", "eu-west-1"));
    let nu = iam
        .get_access_key_last_used()
        .access_key_id(never.access_key_id())
        .send()
        .await
        .unwrap()
        .access_key_last_used
        .unwrap();
    assert!(nu.last_used_date().is_none());
    assert_eq!((nu.service_name(), nu.region()), ("N/A", "N/A"));

    // The credential report carries the same facts.
    iam.generate_credential_report().send().await.unwrap();
    iam.generate_credential_report().send().await.unwrap();
    let report = iam.get_credential_report().send().await.unwrap();
    let csv = String::from_utf8(report.content.unwrap().into_inner()).unwrap();
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let alice: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("alice,"))
        .unwrap()
        .split(',')
        .collect();
    assert!(
        alice[col("access_key_1_last_rotated")].starts_with(&created.format("%Y-%m-%dT%H:%M:%S").to_string())
    );
    assert!(
        alice[col("access_key_1_last_used_date")].starts_with(&used.format("%Y-%m-%dT%H:%M:%S").to_string())
    );
    assert_eq!(alice[col("access_key_1_last_used_service")], "s3");
    let bob: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("bob,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(bob[col("access_key_1_last_used_date")], "N/A");
    let generated = report.generated_time.unwrap().secs();
    assert!(
        (chrono::Utc::now().timestamp() - generated).abs() < 60,
        "the report says when it was made"
    );

    // Using the backdated key marks it used now.
    let as_alice = aws_sdk_iam::Client::new(&sdk(&sb, old.access_key_id(), "us-east-1").await);
    let _ = as_alice.list_users().send().await;
    let lu = iam
        .get_access_key_last_used()
        .access_key_id(old.access_key_id())
        .send()
        .await
        .unwrap()
        .access_key_last_used
        .unwrap();
    assert!(lu.last_used_date().unwrap().secs() > used.timestamp() + 3600);

    // IAM calls are recorded in us-east-1, whatever region the client signs for.
    let iam_eu = aws_sdk_iam::Client::new(&sdk(&sb, "AKIAADMIN", "eu-west-1").await);
    iam_eu
        .update_access_key()
        .user_name("alice")
        .access_key_id(old.access_key_id())
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let ct = aws_sdk_cloudtrail::Client::new(&sdk(&sb, "AKIAADMIN", "us-east-1").await);
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;
    let upd = ct
        .lookup_events()
        .lookup_attributes(attr("EventName", "UpdateAccessKey"))
        .send()
        .await
        .unwrap();
    let r = record_of(&upd.events()[0]);
    assert_eq!(r["eventSource"], "iam.amazonaws.com");
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(
        r["requestParameters"],
        json!({"userName": "alice", "accessKeyId": old.access_key_id(), "status": "Inactive"})
    );
    let created_rec = ct
        .lookup_events()
        .lookup_attributes(attr("EventName", "CreateAccessKey"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        record_of(&created_rec.events()[0])["responseElements"]["accessKey"]["userName"],
        "bob"
    );
}

#[tokio::test]
async fn faults_latency_outage_and_reset() {
    let sb = sandbox().await;
    let conf = sdk(&sb, "AKIAADMIN", "us-east-1").await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let sns = aws_sdk_sns::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);

    control(
        &sb,
        "POST",
        "/_sandbox/faults/kms",
        json!({"fail_next": 1, "status": 503, "operations": ["CreateKey"]}),
    )
    .await;
    let err = kms.create_key().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    kms.create_key().send().await.expect("only the next call fails");

    control(&sb, "POST", "/_sandbox/faults/kms", json!({"latency_ms": 400})).await;
    let t = Instant::now();
    kms.list_keys().send().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400));

    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name("q")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    control(
        &sb,
        "POST",
        "/_sandbox/faults/sns",
        json!({"error_rate": 1.0, "operations": ["Publish"]}),
    )
    .await;
    let err = sns
        .publish()
        .topic_arn(&topic)
        .message("hi")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(err.into_service_error().meta().code(), Some("InternalError"));
    control(&sb, "DELETE", "/_sandbox/faults", json!({})).await;
    sns.publish()
        .topic_arn(&topic)
        .message("hi")
        .send()
        .await
        .unwrap();
    sqs.get_queue_attributes().queue_url(&queue).send().await.unwrap();

    let counters = control(&sb, "GET", "/_sandbox/counters", json!({})).await;
    assert_eq!(counters["sns.Publish"], 2);
    assert_eq!(counters["kms.CreateKey"], 2);

    control(&sb, "POST", "/_sandbox/reset", json!({})).await;
    assert!(
        kms.list_keys().send().await.unwrap().keys().is_empty(),
        "moto was reset"
    );
    let ct = aws_sdk_cloudtrail::Client::new(&conf);
    assert!(
        kms_events(&ct)
            .await
            .iter()
            .all(|e| e.event_name() == Some("ListKeys")),
        "history was reset"
    );
    let counters = control(&sb, "GET", "/_sandbox/counters", json!({})).await;
    assert_eq!(counters.get("kms.CreateKey"), None);
}
