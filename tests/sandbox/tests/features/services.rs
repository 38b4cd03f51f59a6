//! Services later work needs: more KMS calls recorded as CloudTrail records them, DynamoDB and
//! S3 conditional writes (the building blocks of a lease), and SQS behaviour through the sandbox.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_kms::types::Tag;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn more_kms_calls_are_recorded_with_their_read_only_flag() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;
    let kms = aws_sdk_kms::Client::new(&sdk(&sb, ADMIN, "us-east-1").await);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn().unwrap().to_owned();

    // With no policy given, the key policy is AWS's default.
    let policy = kms
        .get_key_policy()
        .key_id(&arn)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    let policy: Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(
        policy["Statement"],
        json!([{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}])
    );
    let mut tightened = policy.clone();
    tightened["Statement"][0]["Sid"] = json!("Root only");
    kms.put_key_policy()
        .key_id(&arn)
        .policy(tightened.to_string())
        .send()
        .await
        .unwrap();
    kms.list_keys().send().await.unwrap();
    kms.create_alias()
        .alias_name("alias/guarded")
        .target_key_id(key.key_id())
        .send()
        .await
        .unwrap();
    let aliases = kms.list_aliases().key_id(&arn).send().await.unwrap();
    assert_eq!(aliases.aliases()[0].alias_name(), Some("alias/guarded"));
    assert!(
        !kms.get_key_rotation_status()
            .key_id(&arn)
            .send()
            .await
            .unwrap()
            .key_rotation_enabled()
    );
    kms.enable_key_rotation().key_id(&arn).send().await.unwrap();
    assert!(
        kms.get_key_rotation_status()
            .key_id(&arn)
            .send()
            .await
            .unwrap()
            .key_rotation_enabled()
    );
    kms.tag_resource()
        .key_id(&arn)
        .tags(
            Tag::builder()
                .tag_key("team")
                .tag_value("payments")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags = kms.list_resource_tags().key_id(&arn).send().await.unwrap();
    assert_eq!(tags.tags()[0].tag_value(), "payments");
    kms.untag_resource()
        .key_id(&arn)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    kms.delete_alias()
        .alias_name("alias/guarded")
        .send()
        .await
        .unwrap();

    let history = control(
        &sb,
        "GET",
        "/_sandbox/cloudtrail/records?account=123456789012&region=us-east-1",
        json!({}),
    )
    .await;
    let records = history["Records"].as_array().unwrap();
    let find = |name: &str| {
        records
            .iter()
            .find(|r| r["eventName"] == name)
            .unwrap_or_else(|| panic!("{name} recorded"))
    };
    for (name, read_only, names_key) in [
        ("GetKeyPolicy", true, true),
        ("PutKeyPolicy", false, true),
        ("ListKeys", true, false),
        ("ListAliases", true, true),
        ("GetKeyRotationStatus", true, true),
        ("EnableKeyRotation", false, true),
        ("TagResource", false, true),
        ("UntagResource", false, true),
        ("ListResourceTags", true, true),
        ("CreateAlias", false, true),
        ("DeleteAlias", false, true),
    ] {
        let r = find(name);
        assert_eq!(r["readOnly"], read_only, "{name}");
        assert_eq!(r["eventSource"], "kms.amazonaws.com");
        assert!(r.get("errorCode").is_none(), "{name}: {r}");
        let arns: Vec<&str> = r["resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["ARN"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(arns.contains(&arn.as_str()), names_key, "{name}: {arns:?}");
    }
    assert_eq!(
        find("TagResource")["requestParameters"]["tags"],
        json!([{"tagKey": "team", "tagValue": "payments"}])
    );
    assert_eq!(
        find("PutKeyPolicy")["requestParameters"]["policyName"],
        Value::Null
    );
    let alias_arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:alias/guarded");
    assert_eq!(find("DeleteAlias")["resources"][0]["ARN"], alias_arn.as_str());
    assert_eq!(find("CreateAlias")["resources"][1]["ARN"], alias_arn.as_str());
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[tokio::test]
async fn dynamodb_conditional_writes_make_a_lease() {
    let sb = sandbox().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk(&sb, ADMIN, "us-east-1").await);
    ddb.create_table()
        .table_name("leases")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    // Acquire: only if nobody holds it or the holder's lease has expired.
    let acquire = |owner: &str, now: i64| {
        ddb.put_item()
            .table_name("leases")
            .item("pk", s("poller"))
            .item("owner", s(owner))
            .item("expires", n(now + 30))
            .item("version", n(1))
            .condition_expression("attribute_not_exists(pk) OR expires < :now")
            .expression_attribute_values(":now", n(now))
            .send()
    };
    acquire("a", 1000).await.unwrap();
    let err = acquire("b", 1010).await.unwrap_err().into_service_error();
    assert!(err.is_conditional_check_failed_exception(), "{err:?}");
    // Renew: compare-and-swap on owner and version.
    let renew = |owner: &str, version: i64, now: i64| {
        ddb.update_item()
            .table_name("leases")
            .key("pk", s("poller"))
            .update_expression("SET expires = :exp, version = :next")
            .condition_expression("#o = :me AND version = :v")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":next", n(version + 1))
            .expression_attribute_values(":exp", n(now + 30))
            .send()
    };
    renew("a", 1, 1015).await.unwrap();
    assert!(
        renew("a", 1, 1016)
            .await
            .unwrap_err()
            .into_service_error()
            .is_conditional_check_failed_exception()
    );
    assert!(
        renew("b", 2, 1016)
            .await
            .unwrap_err()
            .into_service_error()
            .is_conditional_check_failed_exception()
    );
    // After expiry another owner takes over.
    acquire("b", 1046).await.unwrap();
    let err = ddb
        .delete_item()
        .table_name("leases")
        .key("pk", s("poller"))
        .condition_expression("#o = :me")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":me", s("a"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_conditional_check_failed_exception(),
        "the old holder cannot release it"
    );

    // Sixteen candidates race for a free lease: exactly one wins.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let ddb = ddb.clone();
            tokio::spawn(async move {
                ddb.put_item()
                    .table_name("leases")
                    .item("pk", s("race"))
                    .item("owner", s(&format!("r{i}")))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(sb.state().counter("dynamodb.PutItem"), 19);
}

#[tokio::test]
async fn s3_conditional_writes_answer_as_aws() {
    let sb = sandbox().await;
    let conf = sdk(&sb, ADMIN, "us-east-1").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("leases").send().await.unwrap();
    let put = |body: &'static str| {
        s3.put_object()
            .bucket("leases")
            .key("poller.json")
            .body(body.as_bytes().to_vec().into())
    };
    let first = put(r#"{"owner":"a"}"#).if_none_match("*").send().await.unwrap();
    let status = |e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>| {
        e.raw_response().map(|r| r.status().as_u16())
    };
    let err = put(r#"{"owner":"b"}"#)
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(412));
    assert_eq!(err.into_service_error().meta().code(), Some("PreconditionFailed"));
    let etag = first.e_tag().unwrap().to_owned();
    let renewed = put(r#"{"owner":"a","n":2}"#)
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_ne!(renewed.e_tag().unwrap(), etag);
    let err = put(r#"{"owner":"b"}"#).if_match(&etag).send().await.unwrap_err();
    assert_eq!(status(&err), Some(412), "a stale etag loses");
    let err = s3
        .put_object()
        .bucket("leases")
        .key("missing.json")
        .body(b"x".to_vec().into())
        .if_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchKey"));
    let err = put("x")
        .if_none_match(renewed.e_tag().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(501), "only If-None-Match: * is implemented");
    // The SDK's default addressing against an IP endpoint works as well as path-style.
    let default_style = aws_sdk_s3::Client::new(&conf);
    let body = default_style
        .get_object()
        .bucket("leases")
        .key("poller.json")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap();
    assert_eq!(body.to_vec(), br#"{"owner":"a","n":2}"#);

    let racers: Vec<_> = (0..16)
        .map(|i| {
            let s3 = s3.clone();
            tokio::spawn(async move {
                s3.put_object()
                    .bucket("leases")
                    .key("race.json")
                    .body(format!("r{i}").into_bytes().into())
                    .if_none_match("*")
                    .send()
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(sb.state().counter("s3.PutObject"), 22);
}

#[tokio::test]
async fn sqs_visibility_redrive_long_polling_and_attributes() {
    let sb = sandbox().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk(&sb, ADMIN, "us-east-1").await);
    let (dlq_url, dlq_arn) = queue(&sqs, "trail-dlq").await;
    let url = sqs
        .create_queue()
        .queue_name("trail-notes")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}).to_string(),
        )
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let before = chrono::Utc::now().timestamp_millis();
    sqs.send_message()
        .queue_url(&url)
        .message_body("object")
        .send()
        .await
        .unwrap();
    let receive = || {
        sqs.receive_message()
            .queue_url(&url)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(0)
            .send()
    };
    let attrs =
        |m: &aws_sdk_sqs::types::Message, a: MessageSystemAttributeName| m.attributes().unwrap()[&a].clone();
    let first = receive().await.unwrap().messages.unwrap().remove(0);
    assert_eq!(
        attrs(&first, MessageSystemAttributeName::ApproximateReceiveCount),
        "1"
    );
    let sent: i64 = attrs(&first, MessageSystemAttributeName::SentTimestamp)
        .parse()
        .unwrap();
    assert!(
        (sent - before).abs() < 5_000,
        "SentTimestamp is epoch milliseconds"
    );
    assert!(
        receive().await.unwrap().messages.unwrap_or_default().is_empty(),
        "invisible for 30 s"
    );
    // Giving it back at once makes it visible again.
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(first.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let second = receive().await.unwrap().messages.unwrap().remove(0);
    assert_eq!(
        attrs(&second, MessageSystemAttributeName::ApproximateReceiveCount),
        "2"
    );
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(second.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    // Past maxReceiveCount it moves to the dead-letter queue.
    assert!(receive().await.unwrap().messages.unwrap_or_default().is_empty());
    let dead = drain(&sqs, &dlq_url).await;
    assert_eq!(dead.len(), 1);

    // Long polling: a receive waits for a message sent while it waits.
    let sender = {
        let sqs = sqs.clone();
        let url = url.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqs.send_message()
                .queue_url(&url)
                .message_body("late")
                .send()
                .await
                .unwrap();
        })
    };
    let t = Instant::now();
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages()[0].body(), Some("late"));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "answered when the message came, not at the timeout"
    );
    sender.await.unwrap();
}

/// A deleted message stays deleted, a sent one is kept and a received one is not delivered
/// twice within its visibility, however the calls interleave (moto changes a queue's messages
/// outside its lock; the sandbox makes each change one step, as on AWS). Three rounds, since a
/// race need not show in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_deletes_receives_and_sends_at_once_lose_nothing_and_repeat_nothing() {
    let sb = sandbox().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk(&sb, ADMIN, "us-east-1").await);
    for round in 0..3 {
        let (url, _) = queue(&sqs, &format!("busy-{round}")).await;
        let send = |batch: usize| {
            let (sqs, url) = (sqs.clone(), url.clone());
            async move {
                let mut req = sqs.send_message_batch().queue_url(&url);
                for i in 0..10 {
                    req = req.entries(
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(format!("m{i}"))
                            .message_body(format!("{batch}-{i}"))
                            .build()
                            .unwrap(),
                    );
                }
                let out = req.send().await.unwrap();
                assert!(out.failed.is_empty(), "{out:?}");
            }
        };
        for batch in 0..100 {
            send(batch).await;
        }
        // Four receivers at once take the 1,000 messages, each exactly once.
        let mut receivers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (sqs, url) = (sqs.clone(), url.clone());
            receivers.spawn(async move {
                let mut got = Vec::new();
                loop {
                    let out = sqs
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .visibility_timeout(600)
                        .send()
                        .await
                        .unwrap();
                    if out.messages().is_empty() {
                        return got;
                    }
                    got.extend(out.messages().iter().map(|m| {
                        (
                            m.message_id().unwrap().to_owned(),
                            m.receipt_handle().unwrap().to_owned(),
                        )
                    }));
                }
            });
        }
        let mut received = Vec::new();
        while let Some(r) = receivers.join_next().await {
            received.extend(r.unwrap());
        }
        let ids: std::collections::BTreeSet<_> = received.iter().map(|(id, _)| id).collect();
        assert_eq!(
            (received.len(), ids.len()),
            (1000, 1000),
            "round {round}: (deliveries, distinct messages) to receivers at once"
        );
        // Delete them while 500 new ones arrive.
        let mut tasks = tokio::task::JoinSet::new();
        for (n, chunk) in received.chunks(10).enumerate() {
            let (sqs, url, chunk) = (sqs.clone(), url.clone(), chunk.to_vec());
            tasks.spawn(async move {
                let mut req = sqs.delete_message_batch().queue_url(&url);
                for (i, (_, h)) in chunk.iter().enumerate() {
                    req = req.entries(
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(format!("d{i}"))
                            .receipt_handle(h)
                            .build()
                            .unwrap(),
                    );
                }
                let out = req.send().await.unwrap();
                assert!(out.failed.is_empty(), "{out:?}");
                assert_eq!(out.successful.len(), 10);
            });
            if n % 2 == 0 {
                tasks.spawn(send(1000 + n));
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let counts = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let count = |a: QueueAttributeName| counts.attributes().unwrap()[&a].parse::<u32>().unwrap();
        assert_eq!(
            (
                count(QueueAttributeName::ApproximateNumberOfMessages),
                count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            ),
            (500, 0),
            "round {round}: (visible, in flight) after 1,000 deletes beside 500 sends"
        );
    }
}
