//! Safe remediation, end to end: each test is named after the wrong action (or the talked-out-of
//! action) it prevents. Every run also checks that trailguard's audit refused nothing
//! (`Guard::terminate`).

// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use trailguard_sandbox::wire::Service;
use trailguard_sandbox::{Fault, IdentitySpec};

const INTRUDER: &str = "AKIAINTRUDERTEST";
const KEY_ADMIN: &str = "AKIAKEYADMINTEST";

async fn intruder(world: &World) -> aws_sdk_kms::Client {
    world.sb.state().set_identity(
        INTRUDER,
        IdentitySpec::AssumedRole {
            role_name: "dev".into(),
            session_name: "mallory".into(),
            account_id: None,
        },
    );
    aws_sdk_kms::Client::new(&sdk(&world.sb, INTRUDER).await)
}

/// Waits for `n` IAM notifications (after a completed sweep) and returns them.
async fn after_sweep(world: &World, guard: &Guard, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut notes: Vec<Value> = Vec::new();
    loop {
        notes.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
        let iam = notes
            .iter()
            .filter(|b| b["rule_id"].as_str().is_some_and(|r| r.starts_with("iam_")))
            .count();
        let swept = guard.metric("trailguard_iam_sweeps_total{outcome=\"ok\"}").await >= 1.0;
        if swept && iam >= n {
            return notes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{iam} of {n} IAM notifications:\n{notes:#?}\n{}",
            guard.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_deactivated_minutes_ago_is_not_deleted_while_its_event_is_undelivered() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "old-app", 200, Some(150)).await;
    // An admin deactivates it; CloudTrail has not delivered the event yet.
    let mut settings = world.sb.state().lock().settings.clone();
    settings.visibility_delay_seconds = 3600.0;
    world.sb.state().set_settings(settings);
    iam.update_access_key()
        .user_name("old-app")
        .access_key_id(&key)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let port = free_port();
    let config = world.config(
        "[iam]\nenabled = true\naction = \"delete\"\ndelete_after_inactive = \"30d\"\n",
        port,
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let notes = after_sweep(&world, &guard, 1).await;
    assert_eq!(
        key_status(&iam, "old-app", &key).await.as_deref(),
        Some("Inactive"),
        "not deleted"
    );
    assert_eq!(world.sb.state().counter("iam.DeleteAccessKey"), 0);
    let note = notes
        .iter()
        .find(|b| b["finding"]["key"]["access_key_id"] == key)
        .unwrap_or_else(|| panic!("no note: {notes:#?}"));
    assert_eq!(note["finding"]["planned"], "wait_before_delete");
    assert!(
        note["detail"]
            .as_str()
            .unwrap()
            .contains("inactive since unknown"),
        "{note:#}"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exempt_users_key_is_not_deactivated_when_its_tags_cannot_be_read() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "break-glass", 200, None).await;
    iam.tag_user()
        .user_name("break-glass")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("trailguard:exempt")
                .value("true")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // A user whose keys cannot be listed (the first ListAccessKeys fails) is skipped too, and the
    // sweep goes on to the others.
    let other = iam_user(&world, &iam, "zz-stale", 200, None).await;
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["ListUserTags".into()],
            error_rate: 1.0,
            status: 403,
            code: Some("AccessDenied".into()),
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config("[iam]\nenabled = true\naction = \"deactivate\"\n", port);
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let notes = after_sweep(&world, &guard, 1).await;
    assert_eq!(
        key_status(&iam, "break-glass", &key).await.as_deref(),
        Some("Active")
    );
    assert_eq!(
        key_status(&iam, "zz-stale", &other).await.as_deref(),
        Some("Active")
    );
    assert_eq!(world.sb.state().counter("iam.UpdateAccessKey"), 0);
    let skipped = notes
        .iter()
        .find(|b| b["rule_id"] == "iam_sweep_incomplete")
        .unwrap_or_else(|| panic!("skipped users not reported: {notes:#?}"));
    let text = skipped["text"].as_str().unwrap();
    assert!(
        text.contains("break-glass") && text.contains("tags could not be read"),
        "{text}"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn trailguard_never_deactivates_the_key_it_signs_with() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let own = iam_user(&world, &iam, "trailguard", 200, Some(120)).await;
    let port = free_port();
    let config = world.config("[iam]\nenabled = true\naction = \"deactivate\"\n", port);
    let mut guard = Guard::start_as(&world, &config, port, &[], &own);
    guard.wait_ready().await;
    let notes = after_sweep(&world, &guard, 1).await;
    assert_eq!(
        key_status(&iam, "trailguard", &own).await.as_deref(),
        Some("Active")
    );
    let note = notes
        .iter()
        .find(|b| b["finding"]["key"]["access_key_id"] == own)
        .unwrap_or_else(|| panic!("{notes:#?}"));
    assert_eq!(note["finding"]["planned"], "exempt");
    assert!(
        note["finding"]["exemption"]
            .as_str()
            .unwrap()
            .contains("trailguard's own access key")
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

const PROTECT_ALIASES: &str = "[kms]\nprotected_keys = [\"alias/prod-*\", \"tag:trailguard:protect=true\"]\n\
    on_disable = \"enable_key\"\non_schedule_deletion = \"cancel_key_deletion\"\n\
    allowed_principals = [\"arn:aws:iam::123456789012:role/KeyAdmin\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_key_is_rescued_though_its_alias_was_deleted_after_the_schedule() {
    let world = World::new().await;
    let mallory = intruder(&world).await;
    let key = aliased_key(&world, "alias/prod-db").await;
    // The intruder schedules the deletion, then tidies up: the alias goes (DeleteAlias works on
    // a key pending deletion). trailguard starts afterwards and reads both events.
    mallory
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    mallory
        .delete_alias()
        .alias_name("alias/prod-db")
        .send()
        .await
        .unwrap();
    let port = free_port();
    let config = world.config(PROTECT_ALIASES, port);
    let mut guard = Guard::start_with(
        &world,
        &config,
        port,
        &[],
        GUARD,
        &[("TRAILGUARD__CLOUDTRAIL__START_FROM", "10m")],
    );
    guard.wait_ready().await;
    let mut seen = Vec::new();
    let note = note_for(&world, "kms_key_deletion_scheduled", &key, &mut seen).await;
    assert_eq!(note["remediation"]["outcome"], "applied", "{note:#}");
    assert_eq!(world.key_state(&key).await, ("Disabled".to_owned(), false));
    let removed = note_for(&world, "kms_protection_removed", &key, &mut seen).await;
    assert!(
        removed["policy"]
            .as_str()
            .unwrap()
            .contains("keeps treating the key as protected"),
        "{removed:#}"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_key_untagged_then_disabled_by_a_stranger_is_re_enabled() {
    let world = World::new().await;
    let mallory = intruder(&world).await;
    let key = world
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    world
        .kms
        .tag_resource()
        .key_id(&key)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("trailguard:protect")
                .tag_value("true")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config(PROTECT_ALIASES, port), port, &[]);
    guard.wait_ready().await;
    mallory
        .untag_resource()
        .key_id(&key)
        .tag_keys("trailguard:protect")
        .send()
        .await
        .unwrap();
    mallory.disable_key().key_id(&key).send().await.unwrap();
    let mut seen = Vec::new();
    let note = note_for(&world, "kms_key_disabled", &key, &mut seen).await;
    assert_eq!(note["remediation"]["action"], "enable_key", "{note:#}");
    assert_eq!(world.key_state(&key).await.0, "Enabled");
    note_for(&world, "kms_protection_removed", &key, &mut seen).await;
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_alias_lookup_does_not_unprotect_a_key_known_to_be_protected() {
    let world = World::new().await;
    let mallory = intruder(&world).await;
    let key = aliased_key(&world, "alias/prod-ledger").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config(PROTECT_ALIASES, port), port, &[]);
    guard.wait_ready().await;
    let refreshed = "trailguard_kms_facts_refreshed_timestamp_seconds";
    eventually(Duration::from_secs(10), || async {
        (guard.metric(refreshed).await > 0.0).then_some(())
    })
    .await
    .expect("the keys' aliases were read once");
    // KMS's alias and tag reads fail from now on.
    world.sb.state().set_fault(
        Service::Kms,
        Fault {
            operations: vec!["ListAliases".into(), "ListResourceTags".into()],
            error_rate: 1.0,
            ..Default::default()
        },
    );
    mallory.disable_key().key_id(&key).send().await.unwrap();
    let note = note_for(&world, "kms_key_disabled", &key, &mut Vec::new()).await;
    assert_eq!(note["remediation"]["outcome"], "applied", "{note:#}");
    assert_eq!(world.key_state(&key).await.0, "Enabled");
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn using_an_exempt_key_does_not_cancel_its_approved_deletion() {
    let world = World::new().await;
    // The exempt alias was given by ops-admin, whom kms.allowed_principals lists: an exemption
    // matches only aliases and tags an allowed principal gave the key.
    let (arn, ciphertext) = world.doomed_key("alias/retired-reports").await;
    let port = free_port();
    let until = (Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d");
    let config = world.config(
        &format!(
            "[kms]\nprotected_keys = [\"alias/prod-*\"]\nallowed_principals = [\"arn:aws:iam::123456789012:user/ops-admin\"]\n[[kms.exemptions]]\nkey = \"alias/retired-*\"\nexpires = \"{until}\"\nreason = \"crypto-shredding, CHG-7\"\n"
        ),
        port,
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    let note = note_for(&world, "kms_pending_deletion_use", &arn, &mut Vec::new()).await;
    assert!(
        note["policy"]
            .as_str()
            .unwrap()
            .contains("approves this key's deletion"),
        "{note:#}"
    );
    assert_eq!(note["severity"], "critical", "still loud");
    assert_eq!(world.sb.state().counter("kms.CancelKeyDeletion"), 0);
    assert_eq!(world.key_state(&arn).await, ("PendingDeletion".to_owned(), true));
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn trailguards_own_failed_enable_key_raises_no_alarm_and_no_second_rescue() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/orders").await;
    let port = free_port();
    let mut guard = Guard::start(
        &world,
        &world.config("[kms]\nenable_after_cancel = true\n", port),
        port,
        &[],
    );
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(15), || async {
        (world.key_state(&arn).await.0 == "Enabled").then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("not rescued:\n{}", guard.logs()));
    // KMS is eventually consistent: trailguard's EnableKey right after the cancel can fail with
    // "... is pending deletion.", and CloudTrail records that, signed with trailguard's key.
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let record = json!({"eventVersion": "1.08", "eventID": "own-enable-1", "eventTime": now, "eventSource": "kms.amazonaws.com",
        "eventName": "EnableKey", "awsRegion": "us-east-1", "recipientAccountId": "123456789012",
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{arn} is pending deletion."),
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/sandbox", "accountId": "123456789012", "accessKeyId": GUARD},
        "requestParameters": {"keyId": arn}});
    world
        .sb
        .state()
        .inject_records(record.to_string().as_bytes(), Some(0.0), false)
        .unwrap();
    let head = "trailguard_cloudtrail_head_timestamp_seconds{region=\"us-east-1\"}";
    eventually(Duration::from_secs(20), || async {
        (guard.metric(head).await >= Utc::now().timestamp() as f64 - 1.0).then_some(())
    })
    .await
    .expect("read past the injected record");
    assert_eq!(
        world.sb.state().counter("kms.CancelKeyDeletion"),
        1,
        "no second rescue"
    );
    let uses: Vec<_> = world
        .notifications()
        .await
        .into_iter()
        .filter(|(_, b, _)| b["rule_id"] == "kms_pending_deletion_use")
        .collect();
    assert!(
        uses.iter()
            .all(|(_, b, _)| b["finding"]["event_id"] != "own-enable-1"),
        "no alarm about trailguard's own call"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rescue_is_retried_by_the_next_use_instead_of_being_folded() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/invoices").await;
    world.sb.state().set_fault(
        Service::Kms,
        Fault {
            operations: vec!["CancelKeyDeletion".into()],
            fail_next: 4,
            ..Default::default()
        },
    );
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext.clone())
        .send()
        .await
        .unwrap_err();
    let first = world
        .wait_notes("kms_pending_deletion_use", 1, Duration::from_secs(20))
        .await
        .expect("notified");
    assert_eq!(first[0].1["remediation"]["outcome"], "failed", "{:#}", first[0].1);
    // More uses, within the aggregation window: the next one retries the rescue.
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(20), || async {
        let (state, pending) = world.key_state(&arn).await;
        (state == "Disabled" && !pending).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never rescued:\n{}", guard.logs()));
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_scheduled_again_after_its_rescue_is_rescued_again_whatever_the_order_read() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/catalog").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let before_rescue = Utc::now() - chrono::Duration::seconds(30);
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext.clone())
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(15), || async {
        (!world.key_state(&arn).await.1).then_some(())
    })
    .await
    .expect("first rescue");
    // Scheduled again; used again; and a straggler from before the first rescue arrives now.
    world
        .kms
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    let straggler = json!({"eventVersion": "1.08", "eventID": "straggler-use", "eventTime": before_rescue.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "awsRegion": "us-east-1", "recipientAccountId": "123456789012",
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{arn} is pending deletion."),
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/batch/n", "accountId": "123456789012"}});
    world
        .sb
        .state()
        .inject_records(straggler.to_string().as_bytes(), Some(0.0), false)
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        (world.sb.state().counter("kms.CancelKeyDeletion") == 2 && !world.key_state(&arn).await.1)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("not rescued again:\n{}", guard.logs()));
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_arn_in_allowed_principals_covers_the_roles_sessions() {
    let world = World::new().await;
    world.sb.state().set_identity(
        KEY_ADMIN,
        IdentitySpec::AssumedRole {
            role_name: "KeyAdmin".into(),
            session_name: "bob".into(),
            account_id: None,
        },
    );
    let admin = aws_sdk_kms::Client::new(&sdk(&world.sb, KEY_ADMIN).await);
    let key = aliased_key(&world, "alias/prod-search").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config(PROTECT_ALIASES, port), port, &[]);
    guard.wait_ready().await;
    admin.disable_key().key_id(&key).send().await.unwrap();
    let note = note_for(&world, "kms_key_disabled", &key, &mut Vec::new()).await;
    assert!(
        note["policy"]
            .as_str()
            .unwrap()
            .contains("kms.allowed_principals[0] (arn:aws:iam::123456789012:role/KeyAdmin)"),
        "{note:#}"
    );
    assert_eq!(
        world.key_state(&key).await.0,
        "Disabled",
        "an allowed change is not reverted"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_filters_see_the_attributes_which_json_structured_messages_would_lose() {
    let world = World::new().await;
    // AWS (and the sandbox) drops attributes from a JSON-structured publish.
    let sns = aws_sdk_sns::Client::new(&sdk(&world.sb, ADMIN).await);
    let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value("x")
        .build()
        .unwrap();
    sns.publish()
        .topic_arn(&world.topic_arn)
        .message_structure("json")
        .message(json!({"default": "d"}).to_string())
        .message_attributes("rule_id", attr)
        .send()
        .await
        .unwrap();
    let raw = world.notifications_raw().await;
    assert_eq!(raw.len(), 1);
    assert!(raw[0]["MessageAttributes"].is_null(), "dropped: {:#}", raw[0]);
    // A queue subscribed with a filter policy on severity gets only the critical messages.
    let critical = world
        .subscribe_queue("critical-only", json!({"severity": ["critical"]}))
        .await;
    let (arn, ciphertext) = world.doomed_key("alias/payroll").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    // Both messages reach the unfiltered queue: the critical use and the high "scheduled".
    let mut all: Vec<(String, Value, Value)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let has = |got: &[(String, Value, Value)], r: &str| got.iter().any(|(_, b, _)| b["rule_id"] == r);
    while !(has(&all, "kms_pending_deletion_use") && has(&all, "kms_key_deletion_scheduled")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{all:#?}\n{}",
            guard.logs()
        );
        all.extend(world.notifications().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let used = all
        .iter()
        .find(|(_, b, _)| b["rule_id"] == "kms_pending_deletion_use")
        .unwrap();
    assert_eq!(used.2["severity"]["Value"], "critical");
    assert_eq!(used.2["rule_id"]["Value"], "kms_pending_deletion_use");
    // Fan-out to the filtered queue is not in step with the unfiltered one: wait for it.
    let mut filtered = eventually(Duration::from_secs(10), || async {
        let got = world.drain(&critical).await;
        (!got.is_empty()).then_some(got)
    })
    .await
    .unwrap_or_default();
    filtered.extend(world.drain(&critical).await);
    assert_eq!(filtered.len(), 1, "only the critical message: {filtered:#?}");
    assert_eq!(
        serde_json::from_str::<Value>(filtered[0]["Message"].as_str().unwrap()).unwrap()["finding"]["key_arn"],
        arn
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_kb_user_agent_is_cut_and_the_message_stays_far_below_256_kb() {
    let world = World::new().await;
    let (arn, _) = world.doomed_key("alias/telemetry").await;
    let agent = format!("aws-cli/2.0\nOutcome: applied\u{202e}{}", "A".repeat(100 * 1024));
    let record = json!({"eventVersion": "1.08", "eventID": "big-agent", "eventTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "awsRegion": "us-east-1", "recipientAccountId": "123456789012",
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{arn} is pending deletion."), "userAgent": agent,
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/web/i-1", "accountId": "123456789012"}});
    world
        .sb
        .state()
        .inject_records(record.to_string().as_bytes(), Some(0.0), false)
        .unwrap();
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let message = world
        .wait_notes("kms_pending_deletion_use", 1, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no message:\n{}", guard.logs()))
        .remove(0)
        .3;
    let body = message["Message"].as_str().unwrap();
    assert!(body.len() < 64 * 1024, "{} bytes", body.len());
    let doc: Value = serde_json::from_str(body).unwrap();
    let ua = doc["finding"]["user_agent"].as_str().unwrap();
    assert!(
        ua.contains("more characters cut]") && !ua.contains('\n') && !ua.contains('\u{202e}'),
        "{}",
        &ua[..80]
    );
    assert!(
        !doc["text"].as_str().unwrap().contains("\nOutcome: applied"),
        "no forged line"
    );
    assert_eq!(world.key_state(&arn).await, ("Disabled".to_owned(), false));
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_topic_gets_every_message_once_with_its_notification_id() {
    let world = World::new().await;
    let fifo = world.fifo_topic("trailguard-alerts.fifo").await;
    let (_arn, ciphertext) = world.doomed_key("alias/fifo").await;
    let port = free_port();
    let config = world.config("", port).to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&world.topic_arn, &fifo.0);
    std::fs::write(&config, text).unwrap();
    let mut guard = Guard::start(&world, std::path::Path::new(&config), port, &[]);
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    // Every drain is kept: the two messages may come in two drains.
    let mut got: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{got:#?} on the FIFO queue:\n{}",
            guard.logs()
        );
        got.extend(world.drain(&fifo.1).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        got.iter()
            .all(|m| m["MessageAttributes"]["notification_id"]["Value"].is_string()),
        "{got:#?}"
    );
    assert_eq!(
        guard
            .metric("trailguard_notifications_total{outcome=\"failed\"}")
            .await,
        0.0
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}
