//! CloudTrail events delivered to EventBridge rules, with rule states and a central bus.

use std::time::Duration;

use aws_sdk_eventbridge::types::{RuleState, Target};
use serde_json::{Value, json};

use crate::common::*;

/// Waits until every record offered to EventBridge has been evaluated (or lost).
async fn settled(sb: &trailguard_sandbox::Sandbox) -> Value {
    eventually(Duration::from_secs(10), || async {
        let s = control(sb, "GET", "/_sandbox/eventbridge", json!({})).await;
        let done = s["processed"].as_u64().unwrap() + s["lost"].as_u64().unwrap();
        (s["offered"].as_u64().unwrap() > 0 && done == s["offered"].as_u64().unwrap()).then_some(s)
    })
    .await
    .expect("EventBridge deliveries settle")
}

async fn rule(
    eb: &aws_sdk_eventbridge::Client,
    name: &str,
    bus: Option<&str>,
    state: RuleState,
    pattern: Value,
    target: &str,
) {
    eb.put_rule()
        .name(name)
        .set_event_bus_name(bus.map(str::to_owned))
        .state(state)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule(name)
        .set_event_bus_name(bus.map(str::to_owned))
        .targets(Target::builder().id("t").arn(target).build().unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn rule_states_decide_which_cloudtrail_events_reach_the_queue() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"eventbridge_delay_ms": 20, "lookup_events_rate": 0}),
    )
    .await;
    let conf = sdk(&sb, ADMIN, "eu-west-1").await;
    let (kms, sqs, eb) = (
        aws_sdk_kms::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
        aws_sdk_eventbridge::Client::new(&conf),
    );
    let (all_url, all_arn) = queue(&sqs, "all-management").await;
    let (plain_url, plain_arn) = queue(&sqs, "enabled").await;
    let (off_url, off_arn) = queue(&sqs, "disabled").await;
    let pattern = json!({"source": ["aws.kms"], "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": ["kms.amazonaws.com"],
                   "$or": [{"errorMessage": [{"suffix": "is pending deletion."}]},
                           {"eventName": ["DisableKey", "ScheduleKeyDeletion"], "errorCode": [{"exists": false}]}]}});
    rule(
        &eb,
        "all",
        None,
        RuleState::EnabledWithAllCloudtrailManagementEvents,
        pattern.clone(),
        &all_arn,
    )
    .await;
    rule(
        &eb,
        "plain",
        None,
        RuleState::Enabled,
        pattern.clone(),
        &plain_arn,
    )
    .await;
    rule(&eb, "off", None, RuleState::Disabled, pattern, &off_arn).await;

    let doomed = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let blob = kms
        .encrypt()
        .key_id(doomed.key_id())
        .plaintext(b"x".as_slice().into())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    kms.schedule_key_deletion()
        .key_id(doomed.key_id())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    kms.decrypt().ciphertext_blob(blob).send().await.unwrap_err();
    let other = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    kms.disable_key().key_id(other.key_id()).send().await.unwrap();
    let stats = settled(&sb).await;
    assert_eq!(stats["offered"], 6, "every KMS record was offered: {stats}");

    let names = |msgs: &[Value]| {
        let mut n: Vec<String> = msgs
            .iter()
            .map(|m| m["detail"]["eventName"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let all = drain(&sqs, &all_url).await;
    assert_eq!(names(&all), ["Decrypt", "DisableKey", "ScheduleKeyDeletion"]);
    assert_eq!(
        names(&drain(&sqs, &plain_url).await),
        ["DisableKey", "ScheduleKeyDeletion"],
        "ENABLED leaves out read-only management events such as the failed Decrypt"
    );
    assert!(drain(&sqs, &off_url).await.is_empty(), "DISABLED matches nothing");

    // The envelope is AWS's, and its detail is the record event history holds.
    let decrypt = all
        .iter()
        .find(|m| m["detail"]["eventName"] == "Decrypt")
        .unwrap();
    assert_eq!(decrypt["version"], "0");
    assert_eq!(decrypt["detail-type"], "AWS API Call via CloudTrail");
    assert_eq!(decrypt["source"], "aws.kms");
    assert_eq!(decrypt["account"], ACCOUNT);
    assert_eq!(decrypt["region"], "eu-west-1");
    assert_eq!(decrypt["resources"], json!([]));
    assert_eq!(decrypt["time"], decrypt["detail"]["eventTime"]);
    assert!(uuid::Uuid::parse_str(decrypt["id"].as_str().unwrap()).is_ok());
    assert_ne!(decrypt["id"], decrypt["detail"]["eventID"]);
    assert_eq!(decrypt["detail"]["errorCode"], "KMSInvalidStateException");
    assert_eq!(decrypt["detail"]["readOnly"], true);
    let history = control(
        &sb,
        "GET",
        "/_sandbox/cloudtrail/records?account=123456789012&region=eu-west-1",
        json!({}),
    )
    .await;
    let stored = history["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["eventID"] == decrypt["detail"]["eventID"])
        .unwrap();
    assert_eq!(&decrypt["detail"], stored, "the record unchanged");

    // Best effort: with a loss probability of 1 nothing arrives, and the loss is counted.
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"eventbridge_delay_ms": 20, "eventbridge_loss_probability": 1.0}),
    )
    .await;
    let third = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    kms.disable_key().key_id(third.key_id()).send().await.unwrap();
    let stats = settled(&sb).await;
    assert_eq!(stats["lost"], 2, "{stats}");
    assert!(drain(&sqs, &all_url).await.is_empty());
}

#[tokio::test]
async fn a_member_accounts_rule_forwards_to_the_central_bus() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"eventbridge_delay_ms": 20}),
    )
    .await;
    let org = sb.create_accounts(1, None).await.unwrap();
    let member = org.accounts[0].clone();
    let central = sdk(&sb, ADMIN, "us-east-1").await;
    let sts = aws_sdk_sts::Client::new(&central);
    let creds = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{member}:role/trailguard"))
        .role_session_name("ops")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let member_conf = sdk_with(
        &sb,
        aws_sdk_kms::config::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "assumed",
        ),
        "us-east-1",
    )
    .await;

    // The central account: a bus whose rule sends everything from the member to a queue.
    let eb_central = aws_sdk_eventbridge::Client::new(&central);
    let sqs = aws_sdk_sqs::Client::new(&central);
    let bus = eb_central
        .create_event_bus()
        .name("central")
        .send()
        .await
        .unwrap()
        .event_bus_arn
        .unwrap();
    let (url, arn) = queue(&sqs, "central-alerts").await;
    rule(
        &eb_central,
        "from-members",
        Some("central"),
        RuleState::Enabled,
        json!({"account": [&member]}),
        &arn,
    )
    .await;
    // The member: a rule on its default bus targeting the central bus.
    let eb_member = aws_sdk_eventbridge::Client::new(&member_conf);
    rule(
        &eb_member,
        "to-central",
        None,
        RuleState::Enabled,
        json!({"source": ["aws.kms"], "detail": {"eventName": ["DisableKey"]}}),
        &bus,
    )
    .await;

    let kms = aws_sdk_kms::Client::new(&member_conf);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    assert!(
        key.arn().unwrap().contains(&format!(":{member}:key/")),
        "{:?}",
        key.arn()
    );
    kms.disable_key().key_id(key.key_id()).send().await.unwrap();

    let (got, others) = wait_for(&sqs, &url, Duration::from_secs(10), |m| {
        m["detail"]["eventName"] == "DisableKey"
    })
    .await;
    let got = got.expect("the member's DisableKey reaches the central queue");
    assert!(
        others.is_empty(),
        "only what the member's rule forwards: {others:?}"
    );
    assert_eq!(got["account"], member.as_str(), "the original account is kept");
    assert_eq!(got["detail"]["recipientAccountId"], member.as_str());
    assert_eq!(got["detail"]["userIdentity"]["type"], "AssumedRole");
    assert_eq!(
        got["detail"]["userIdentity"]["arn"],
        format!("arn:aws:sts::{member}:assumed-role/trailguard/ops")
    );
    settled(&sb).await;
    assert!(
        drain(&sqs, &url).await.is_empty(),
        "CreateKey stays in the member account"
    );
}
