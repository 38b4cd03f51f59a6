//! Strict SNS `Publish`: what AWS refuses is refused, and JSON-structured messages reach an SQS
//! subscriber without message attributes.

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::Value;

use crate::common::*;

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

fn refusal<E: aws_sdk_sns::error::ProvideErrorMetadata>(e: &E) -> (String, String) {
    (
        e.code().unwrap_or_default().to_owned(),
        e.message().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn json_structured_publishes_are_checked_and_lose_their_attributes() {
    let sb = sandbox().await;
    let conf = sdk(&sb, ADMIN, "us-east-1").await;
    let sns = aws_sdk_sns::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let (url, arn) = queue(&sqs, "alerts-sub").await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&arn)
        .send()
        .await
        .unwrap();

    for (message, want) in [
        (
            r#"{"default": "x""#,
            "Invalid parameter: Message Structure - JSON message body failed to parse",
        ),
        (
            "[1, 2]",
            "Invalid parameter: Message Structure - JSON message body failed to parse",
        ),
        (
            r#"{"default": "a", "default": "b"}"#,
            "Invalid parameter: Message Structure - JSON message body failed to parse",
        ),
        (
            r#"{"sqs": "only sqs"}"#,
            "Invalid parameter: Message Structure - No default entry in JSON message body",
        ),
        (
            r#"{"default": {"nested": 1}}"#,
            "Invalid parameter: Message Structure - No default entry in JSON message body",
        ),
    ] {
        let err = sns
            .publish()
            .topic_arn(&topic)
            .message_structure("json")
            .message(message)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(
            refusal(&err),
            ("InvalidParameter".into(), want.into()),
            "{message}"
        );
    }
    assert!(
        drain(&sqs, &url).await.is_empty(),
        "refused publishes deliver nothing"
    );

    // String structure: attributes are delivered in the envelope.
    sns.publish()
        .topic_arn(&topic)
        .message("plain")
        .message_attributes("rule", attr("kms_pending_deletion_use"))
        .send()
        .await
        .unwrap();
    // JSON structure: the SQS subscriber gets its entry (non-string entries ignored), no attributes.
    sns.publish()
        .topic_arn(&topic)
        .message_structure("json")
        .message(r#"{"default": "for everyone", "sqs": "for queues", "email": {"not": "a string"}}"#)
        .message_attributes("rule", attr("kms_pending_deletion_use"))
        .send()
        .await
        .unwrap();
    let (Some(structured), others) = wait_for(&sqs, &url, std::time::Duration::from_secs(5), |m| {
        m["Message"] == "for queues"
    })
    .await
    else {
        panic!("the JSON-structured publish never arrived");
    };
    assert!(
        structured.get("MessageAttributes").is_none(),
        "AWS sends attributes only with the String structure: {structured}"
    );
    let mut rest = others;
    rest.extend(drain(&sqs, &url).await);
    let plain: Vec<&Value> = rest.iter().filter(|m| m["Message"] == "plain").collect();
    assert_eq!(plain.len(), 1, "{rest:?}");
    assert_eq!(
        plain[0]["MessageAttributes"]["rule"]["Value"],
        "kms_pending_deletion_use"
    );
}

#[tokio::test]
async fn publish_limits_subjects_and_fifo_groups_as_aws() {
    let sb = sandbox().await;
    let sns = aws_sdk_sns::Client::new(&sdk(&sb, ADMIN, "us-east-1").await);
    let topic = sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let publish = |message: String, subject: Option<String>| {
        let sns = sns.clone();
        let topic = topic.clone();
        async move {
            sns.publish()
                .topic_arn(topic)
                .message(message)
                .set_subject(subject)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| refusal(&e.into_service_error()))
        }
    };
    // 262,144 bytes is the limit, counted in bytes: 131,073 two-byte characters are too many
    // (moto counts characters and lets them through).
    publish("é".repeat(131_072), None).await.unwrap();
    let too_long = publish("é".repeat(131_073), None).await.unwrap_err();
    assert_eq!(
        too_long,
        (
            "InvalidParameter".into(),
            "Invalid parameter: Message too long".into()
        )
    );
    // Subject and attributes count too.
    let err = publish("x".repeat(262_100), Some("s".repeat(50)))
        .await
        .unwrap_err();
    assert_eq!(err.1, "Invalid parameter: Message too long");
    let err = sns
        .publish()
        .topic_arn(&topic)
        .message("x".repeat(262_000))
        .message_attributes("padding", attr(&"p".repeat(200)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(refusal(&err).1, "Invalid parameter: Message too long");
    let err = publish(String::new(), None).await.unwrap_err();
    assert_eq!(err.0, "InvalidParameter");

    publish("m".into(), Some("s".repeat(100))).await.unwrap();
    for subject in [
        "s".repeat(101),
        "line\nbreak".into(),
        "tab\there".into(),
        "cr\r".into(),
    ] {
        let err = publish("m".into(), Some(subject.clone())).await.unwrap_err();
        assert_eq!(
            err,
            ("InvalidParameter".into(), "Invalid parameter: Subject".into()),
            "{subject:?}"
        );
    }
    let err = sns
        .publish()
        .topic_arn(&topic)
        .message("m")
        .message_attributes("AWS.reserved", attr("v"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(refusal(&err).0, "InvalidParameterValue");

    // FIFO topics need a message group, with AWS's error.
    let fifo = sns
        .create_topic()
        .name("alerts.fifo")
        .attributes("FifoTopic", "true")
        .attributes("ContentBasedDeduplication", "true")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let err = sns
        .publish()
        .topic_arn(&fifo)
        .message("m")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        refusal(&err),
        (
            "InvalidParameter".into(),
            "Invalid parameter: The MessageGroupId parameter is required for FIFO topics".into()
        )
    );
    sns.publish()
        .topic_arn(&fifo)
        .message("m")
        .message_group_id("keys")
        .send()
        .await
        .unwrap();
    assert_eq!(
        sb.state().counter("sns.Publish"),
        13,
        "refused publishes are counted too"
    );
}
