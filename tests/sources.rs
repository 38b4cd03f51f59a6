//! The queue sources one at a time and together: an organization trail's log files through S3
//! notifications, EventBridge and S3 delivering the same event, a poison message, and
//! `regions = ["all"]` for LookupEvents.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use serde_json::Value;
use trailguard_sandbox::wire::Service;
use trailguard_sandbox::{Fault, OrgTrailConfig, Settings};

const BUCKET: &str = "org-trail-logs";

async fn queue(world: &World, name: &str, max_receives: u32) -> (String, String) {
    queue_with_dlq(&world.sqs, name, None, max_receives).await
}

async fn arn(world: &World, url: &str) -> String {
    queue_attribute(&world.sqs, url, QueueAttributeName::QueueArn).await
}

/// The organization trail's bucket, notifying `queue_url` of each new object.
async fn org_trail(world: &World, queue_url: &str, interval_seconds: f64) {
    let conf = sdk(&world.sb, ADMIN).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(BUCKET)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn(world, queue_url).await)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    world.sb.set_org_trail(OrgTrailConfig {
        bucket: BUCKET.into(),
        prefix: Some("trail".into()),
        org_id: "o-a1b2c3d4e5".into(),
        interval_seconds,
        account: None,
        digests: true,
        trail_name: "org-trail".into(),
        home_region: "us-east-1".into(),
    });
}

fn sources(world: &World, list: &[(&str, &str)], extra: &str, port: u16) -> std::path::PathBuf {
    let mut text = String::new();
    for (kind, url) in list {
        text.push_str(&format!(
            "[[sources]]\nkind = \"{kind}\"\nqueue_url = \"{url}\"\nregion = \"us-east-1\"\nwait_time = \"1s\"\nvisibility_timeout = \"10s\"\n"
        ));
    }
    text.push_str(extra);
    let path = world.config("", port);
    let base = std::fs::read_to_string(&path)
        .unwrap()
        .replace("aggregation_window = \"30s\"", "aggregation_window = \"0s\"");
    std::fs::write(&path, format!("{base}{text}")).unwrap();
    path
}

/// Failed uses of `arn`; returns their event ids.
async fn failed_uses(world: &World, arn: &str, ct: &aws_smithy_types::Blob, n: usize) -> Vec<String> {
    for _ in 0..n {
        let e = world
            .app_kms
            .decrypt()
            .ciphertext_blob(ct.clone())
            .send()
            .await
            .expect_err("pending deletion");
        assert!(format!("{:?}", e.into_service_error()).contains("is pending deletion."));
    }
    let state = world.sb.state().lock();
    state
        .events
        .records(trailguard_sandbox::DEFAULT_ACCOUNT, "us-east-1")
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.json).ok())
        .filter(|r| {
            r["eventName"] == "Decrypt"
                && r["errorMessage"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("is pending deletion.") && m.contains(arn))
        })
        .map(|r| r["eventID"].as_str().unwrap().to_owned())
        .collect()
}

/// Notifications so far, by the event id of their finding.
async fn by_event(world: &World, seen: &mut Vec<Value>) -> HashMap<String, usize> {
    seen.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
    let mut out = HashMap::new();
    for b in seen.iter() {
        if let Some(id) = b["finding"]["event_id"].as_str() {
            *out.entry(id.to_owned()).or_default() += 1;
        }
    }
    out
}

/// Waits until every one of `ids` has been notified; returns the counts by event id.
async fn notified(
    world: &World,
    seen: &mut Vec<Value>,
    ids: &[String],
    limit: Duration,
    g: &Guard,
) -> HashMap<String, usize> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = by_event(world, seen).await;
        if ids.iter().all(|i| n.contains_key(i)) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} failed uses notified:\n{}",
            ids.iter().filter(|i| n.contains_key(*i)).count(),
            ids.len(),
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The organization trail as the only source (what remains when EventBridge, best effort,
/// drops events): its log files, read from S3 as their notifications arrive, bring each failed
/// use, and the key is rescued. S3's test event and the digest files are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_trail_alone_rescues_a_key_from_its_log_files() {
    let world = World::new().await;
    let (files, files_dlq) = queue(&world, "trail-files", 3).await;
    org_trail(&world, &files, 2.0).await;
    let port = free_port();
    let mut g = Guard::start(
        &world,
        &sources(&world, &[("s3_sqs", &files)], "", port),
        port,
        &[],
    );
    g.wait_ready().await;
    let (arn, ct) = world.doomed_key("alias/ledger").await;
    let ids = failed_uses(&world, &arn, &ct, 3).await;
    let mut seen = Vec::new();
    let got = notified(&world, &mut seen, &ids, Duration::from_secs(90), &g).await;
    assert!(ids.iter().all(|i| got[i] == 1), "{got:?}");
    assert_eq!(world.key_state(&arn).await, ("Disabled".to_owned(), false));
    let s = "source=\"s3:trail-files\"";
    assert!(
        g.metric(&format!(
            "trailguard_queue_log_files_total{{{s},outcome=\"read\"}}"
        ))
        .await
            >= 1.0
    );
    assert!(
        g.metric(&format!(
            "trailguard_queue_messages_total{{{s},outcome=\"skipped\"}}"
        ))
        .await
            >= 2.0,
        "the test event and the digests' notifications are skipped:\n{}",
        g.logs()
    );
    assert_eq!(
        g.metric(&format!(
            "trailguard_queue_messages_total{{{s},outcome=\"retried\"}}"
        ))
        .await,
        0.0
    );
    let empty = eventually(Duration::from_secs(30), || async {
        let a = world
            .sqs
            .get_queue_attributes()
            .queue_url(&files)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let n = |k: QueueAttributeName| a[&k].parse::<u64>().unwrap();
        (n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            == 0)
            .then_some(())
    })
    .await;
    assert!(empty.is_some(), "every notification deleted once read");
    assert!(world.drain(&files_dlq).await.is_empty());
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}

/// EventBridge brings an event in a second and the org trail brings it again minutes later:
/// it is handled once, by its `eventID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_by_eventbridge_and_s3_is_handled_once() {
    let world = World::new().await;
    let (events, _) = queue(&world, "kms-events", 3).await;
    let (files, _) = queue(&world, "trail-files", 3).await;
    forward_kms_events(&world, &events).await;
    // Files only when the test flushes the trail: after EventBridge has delivered.
    org_trail(&world, &files, 3600.0).await;
    let port = free_port();
    let config = sources(
        &world,
        &[("eventbridge_sqs", &events), ("s3_sqs", &files)],
        "",
        port,
    );
    let mut g = Guard::start(&world, &config, port, &[]);
    g.wait_ready().await;
    let (arn, ct) = world.doomed_key("alias/ledger").await;
    let ids = failed_uses(&world, &arn, &ct, 3).await;
    let mut seen = Vec::new();
    notified(&world, &mut seen, &ids, Duration::from_secs(60), &g).await;
    assert_eq!(world.key_state(&arn).await.0, "Disabled");
    world.sb.flush_org_trail().await.unwrap();
    let s = "source=\"s3:trail-files\"";
    let read = eventually(Duration::from_secs(60), || async {
        (g.metric(&format!(
            "trailguard_queue_log_files_total{{{s},outcome=\"read\"}}"
        ))
        .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(read.is_some(), "the log file is read:\n{}", g.logs());
    // A message is deleted only once all it carried is handled and notified: when the files
    // queue is empty, anything the file's records caused has been published.
    let settled = eventually(Duration::from_secs(60), || async {
        (queue_depth(&world.sqs, &files).await == 0).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the file's message is settled:\n{}", g.logs());
    let n = by_event(&world, &mut seen).await;
    for i in &ids {
        assert_eq!(n[i], 1, "one notification for {i}: {n:?}");
    }
    assert!(
        g.metric("trailguard_cloudtrail_duplicate_events_total{region=\"s3:trail-files\"}")
            .await
            >= 3.0,
        "the file's copies are counted as duplicates:\n{}",
        g.logs()
    );
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}

/// SNS is down while keys need rescue, and the source has few work slots (`max_in_flight =
/// 10`): messages whose work is done and whose notifications wait on SNS leave their slots, so
/// the source goes on receiving and every key is rescued during the outage. Each message is
/// still deleted only once its notifications are published, after the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_outage_does_not_stop_a_queue_source_from_rescuing_keys() {
    let world = World::new().await;
    let (events, _) = queue(&world, "kms-events", 3).await;
    forward_kms_events(&world, &events).await;
    let port = free_port();
    let config = sources(
        &world,
        &[("eventbridge_sqs", &events)],
        "max_in_flight = 10\n",
        port,
    );
    let mut g = Guard::start(&world, &config, port, &[]);
    g.wait_ready().await;
    world.sb.state().set_fault(
        Service::Sns,
        Fault {
            operations: vec!["Publish".into()],
            error_rate: 1.0,
            ..Default::default()
        },
    );
    // 25 deletions scheduled (each a finding to notify), then one failed use of each key.
    let mut keys = Vec::new();
    for i in 0..25 {
        keys.push(world.doomed_key(&format!("alias/app-{i}")).await);
    }
    let mut ids = Vec::new();
    for (arn, ct) in &keys {
        ids.extend(failed_uses(&world, arn, ct, 1).await);
    }
    assert_eq!(ids.len(), 25);
    let rescued = eventually(Duration::from_secs(90), || async {
        let mut n = 0;
        for (arn, _) in &keys {
            n += usize::from(world.key_state(arn).await.0 == "Disabled");
        }
        (n == keys.len()).then_some(())
    })
    .await;
    assert!(
        rescued.is_some(),
        "keys left pending deletion during the SNS outage:\n{}",
        g.logs()
    );
    assert!(
        world.sb.state().counter("sns.Publish") > 0,
        "the outage was in force: publishes were tried and failed"
    );
    let mut seen = Vec::new();
    assert!(
        by_event(&world, &mut seen).await.is_empty(),
        "nothing published during the outage"
    );
    world.sb.state().clear_faults();
    let n = notified(&world, &mut seen, &ids, Duration::from_secs(120), &g).await;
    assert!(ids.iter().all(|i| n[i] == 1), "{n:?}");
    let drained = eventually(Duration::from_secs(60), || async {
        (queue_depth(&world.sqs, &events).await == 0).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "every message deleted once published:\n{}",
        g.logs()
    );
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}

/// A message no source can read is retried, then moved to the dead-letter queue by SQS after
/// the redrive count, and counted; the messages behind it are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letter_queue_and_is_counted() {
    let world = World::new().await;
    let (events, dlq) = queue(&world, "kms-events", 2).await;
    forward_kms_events(&world, &events).await;
    world
        .sqs
        .send_message()
        .queue_url(&events)
        .message_body("{\"detail-type\": \"AWS API Call via CloudTrail\", \"detail\": 42}")
        .send()
        .await
        .unwrap();
    let port = free_port();
    let mut g = Guard::start(
        &world,
        &sources(&world, &[("eventbridge_sqs", &events)], "", port),
        port,
        &[],
    );
    g.wait_ready().await;
    let (arn, ct) = world.doomed_key("alias/ledger").await;
    failed_uses(&world, &arn, &ct, 1).await;
    let rescued = eventually(Duration::from_secs(60), || async {
        (world.key_state(&arn).await.0 == "Disabled").then_some(())
    })
    .await;
    assert!(
        rescued.is_some(),
        "the messages behind the poison are handled:\n{}",
        g.logs()
    );
    let s = "source=\"eventbridge:kms-events\"";
    let moved = eventually(Duration::from_secs(90), || async {
        let dead = g
            .metric(&format!(
                "trailguard_queue_messages_total{{{s},outcome=\"dead_lettered\"}}"
            ))
            .await;
        let in_dlq = world.drain(&dlq).await;
        (dead == 1.0 && !in_dlq.is_empty()).then_some(in_dlq)
    })
    .await
    .unwrap_or_else(|| panic!("the poison message reaches the DLQ, counted:\n{}", g.logs()));
    assert_eq!(moved[0]["detail"], 42);
    assert!(
        g.metric(&format!(
            "trailguard_queue_messages_total{{{s},outcome=\"retried\"}}"
        ))
        .await
            >= 1.0
    );
    assert!(g.logs().contains("dead-letter queue"), "{}", g.logs());
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}

/// `regions = ["all"]`: every region enabled in the account is polled, one the operator never
/// named included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_regions_means_every_enabled_region_of_the_account() {
    let world = World::new().await;
    world.sb.state().set_settings(Settings {
        enabled_regions: vec!["us-east-1".into(), "eu-west-1".into(), "ap-south-1".into()],
        ..Settings::default()
    });
    let port = free_port();
    let path = world.config("", port);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("regions = [\"us-east-1\"]", "regions = [\"all\"]");
    std::fs::write(&path, text).unwrap();
    let mut g = Guard::start(&world, &path, port, &[]);
    g.wait_ready().await;
    // The log line in colour: strip the escapes.
    let logs = g
        .logs()
        .replace("\u{1b}[0m", "")
        .replace("\u{1b}[2m", "")
        .replace("\u{1b}[3m", "");
    assert!(
        logs.contains("accounts=1 regions=3"),
        "{logs:?} {}",
        g.log.display()
    );
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(world.sb.endpoint_url())
        .region(aws_config::Region::new("ap-south-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(ADMIN, "x", None, None, "t"))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn().unwrap().to_owned();
    let ct = kms
        .encrypt()
        .key_id(&arn)
        .plaintext(b"x".as_slice().into())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    kms.schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let _ = kms
        .decrypt()
        .ciphertext_blob(ct)
        .send()
        .await
        .expect_err("pending");
    let rescued = eventually(Duration::from_secs(90), || async {
        let m = kms
            .describe_key()
            .key_id(&arn)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        (m.key_state().unwrap().as_str() == "Disabled").then_some(())
    })
    .await;
    assert!(rescued.is_some(), "a key in ap-south-1 is rescued:\n{}", g.logs());
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}
