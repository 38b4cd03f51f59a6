//! A hung endpoint, and a clock offset on the AWS side.

use std::time::{Duration, Instant};

use aws_sdk_kms::error::SdkError;
use aws_smithy_types::timeout::TimeoutConfig;
use chrono::Utc;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_hung_endpoint_times_out_and_clearing_lets_the_next_call_through() {
    let sb = sandbox().await;
    let conf = sdk(&sb, ADMIN, "us-east-1").await;
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(Duration::from_millis(500))
        .build();
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&conf)
            .timeout_config(timeouts)
            .build(),
    );
    // The same client with room to spare, for the calls that must succeed on a loaded machine.
    let patient = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&conf)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build(),
    );
    // moto loads a service on first use, which can take longer than the timeout.
    patient.list_keys().send().await.unwrap();
    control(
        &sb,
        "POST",
        "/_sandbox/faults/kms",
        json!({"hang": true, "operations": ["ListKeys"]}),
    )
    .await;

    let t = Instant::now();
    let err = kms.list_keys().send().await.unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(t.elapsed() >= Duration::from_millis(500));
    // Other operations of the service are served.
    patient.create_key().send().await.unwrap();

    // A caller with no timeout waits until the fault is cleared, and then gets no answer.
    let waiting = {
        let sb_addr = sb.addr();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(sb_addr).await.unwrap();
            let body = "{}";
            let req = format!(
                "POST / HTTP/1.1\r\nhost: {sb_addr}\r\nx-amz-target: TrentService.ListKeys\r\ncontent-type: application/x-amz-json-1.1\r\nauthorization: AWS4-HMAC-SHA256 Credential=AKIAADMIN/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            out
        })
    };
    let held = eventually(Duration::from_secs(5), || async {
        (sb.state().counter("kms.ListKeys") == 3).then_some(())
    })
    .await;
    assert!(held.is_some(), "the raw request reached the sandbox");
    assert!(!waiting.is_finished(), "a hung request is not answered");
    control(&sb, "DELETE", "/_sandbox/faults/kms", json!({})).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("clearing the fault lets go of the connection")
        .unwrap();
    assert!(
        answer.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&answer)
    );

    let t = Instant::now();
    kms.list_keys()
        .send()
        .await
        .expect("served once the fault is cleared");
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(sb.state().counter("kms.ListKeys"), 4, "hung calls are counted");

    // With fail_next, only the selected calls hang.
    control(
        &sb,
        "POST",
        "/_sandbox/faults/kms",
        json!({"hang": true, "fail_next": 1}),
    )
    .await;
    let err = kms.list_keys().send().await.unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    patient
        .list_keys()
        .send()
        .await
        .expect("only the next call hangs");
}

fn date_of(headers: &[(String, String)]) -> chrono::DateTime<Utc> {
    let d = &headers
        .iter()
        .find(|(k, _)| k == "date")
        .expect("a Date header")
        .1;
    chrono::DateTime::parse_from_rfc2822(&d.replace("GMT", "+0000"))
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn a_clock_offset_moves_the_aws_side_of_time() {
    let sb = sandbox().await;
    // The host clock is 30 minutes fast: AWS's now is 30 minutes behind it.
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"clock_offset_seconds": -1800, "lookup_events_rate": 0}),
    )
    .await;
    let conf = sdk(&sb, ADMIN, "us-east-1").await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let ct = aws_sdk_cloudtrail::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let near = |t: chrono::DateTime<Utc>, want: chrono::DateTime<Utc>| (t - want).num_seconds().abs() <= 5;
    let aws_now = || Utc::now() - chrono::Duration::seconds(1800);

    // Every response's Date header: the control API, KMS through the sandbox, SQS from moto.
    let (_, h, _) = raw(&sb, "GET", "/_sandbox/health", &[], "").await;
    assert!(near(date_of(&h), aws_now()), "{h:?}");
    let auth = |svc: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIAADMIN/20260101/us-east-1/{svc}/aws4_request, SignedHeaders=host, Signature=0"
        )
    };
    let (status, h, _) = raw(
        &sb,
        "POST",
        "/",
        &[
            ("x-amz-target", "AmazonSQS.ListQueues"),
            ("content-type", "application/x-amz-json-1.0"),
            ("authorization", &auth("sqs")),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 200);
    assert!(near(date_of(&h), aws_now()), "moto's Date is overwritten: {h:?}");
    let (_, h, _) = raw(
        &sb,
        "POST",
        "/",
        &[
            ("x-amz-target", "TrentService.ListKeys"),
            ("content-type", "application/x-amz-json-1.1"),
            ("authorization", &auth("kms")),
        ],
        "{}",
    )
    .await;
    assert!(near(date_of(&h), aws_now()), "{h:?}");

    // eventTime, and event history's default window.
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let events = ct.lookup_events().send().await.unwrap();
    let rec: serde_json::Value =
        serde_json::from_str(events.events()[0].cloud_trail_event().unwrap()).unwrap();
    let event_time = chrono::DateTime::parse_from_rfc3339(rec["eventTime"].as_str().unwrap())
        .unwrap()
        .to_utc();
    assert!(near(event_time, aws_now()), "eventTime {event_time}");
    assert!(
        near(
            key.creation_date()
                .map(|d| chrono::DateTime::from_timestamp(d.secs(), 0).unwrap())
                .unwrap(),
            aws_now()
        ),
        "moto's key dates are shifted too"
    );
    // A poller trusting the host clock asks for the last minute and finds nothing; with only a
    // start time, that start is after AWS's now and the request is refused.
    let host_minute_ago = aws_smithy_types::DateTime::from_secs(Utc::now().timestamp() - 60);
    let host_window = ct
        .lookup_events()
        .start_time(host_minute_ago)
        .end_time(aws_smithy_types::DateTime::from_secs(Utc::now().timestamp()))
        .send()
        .await
        .unwrap();
    assert!(host_window.events().is_empty());
    let err = ct
        .lookup_events()
        .start_time(host_minute_ago)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_time_range_exception(), "{err:?}");

    // The credential report says when AWS made it.
    iam.generate_credential_report().send().await.unwrap();
    iam.generate_credential_report().send().await.unwrap();
    let report = iam.get_credential_report().send().await.unwrap();
    let generated = chrono::DateTime::from_timestamp(report.generated_time.unwrap().secs(), 0).unwrap();
    assert!(near(generated, aws_now()), "report generated {generated}");

    // Retention counts from AWS's now: a host clock 30 minutes slow keeps a record that is
    // 90 days less 10 minutes old, a fast one (AWS 30 minutes ahead of the host) drops it.
    let old = Utc::now() - chrono::Duration::days(90) + chrono::Duration::minutes(10);
    let rec = json!([{"eventVersion": "1.08", "eventID": "edge", "eventName": "DisableKey", "eventSource": "kms.amazonaws.com",
                      "awsRegion": "us-east-1", "recipientAccountId": ACCOUNT,
                      "eventTime": old.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}]);
    control(&sb, "POST", "/_sandbox/cloudtrail/records?delay_seconds=0", rec).await;
    let has_edge = |ct: aws_sdk_cloudtrail::Client| async move {
        let ev = ct.lookup_events().send().await.unwrap();
        ev.events().iter().any(|e| e.event_id() == Some("edge"))
    };
    assert!(has_edge(ct.clone()).await);
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"clock_offset_seconds": 1800, "lookup_events_rate": 0}),
    )
    .await;
    assert!(!has_edge(ct.clone()).await);
}
