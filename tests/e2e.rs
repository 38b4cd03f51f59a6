//! trailguard end to end: the binary as a subprocess against the sandbox.
// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String);
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String) {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed (tests/setup.sh installs Debian's prometheus package)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// One poll interval (5 s in these tests) plus slack for a debug build.
const ONE_POLL: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread")]
async fn rescues_a_key_pending_deletion_that_is_still_in_use() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/payments-prod").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;

    // The application still decrypts with the key: the call fails and lands in CloudTrail.
    let err = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_kms_invalid_state_exception());

    let rescued = eventually(ONE_POLL, || async {
        let (state, pending) = world.key_state(&arn).await;
        (state == "Disabled" && !pending).then_some(())
    })
    .await;
    assert!(
        rescued.is_some(),
        "key not rescued within one poll:\n{}",
        guard.logs()
    );

    // Both the rescue's and the schedule's messages arrive (in either order).
    let mut notes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let has = |n: &[(String, serde_json::Value, serde_json::Value)], r: &str| {
        n.iter().any(|(_, b, _)| b["rule_id"] == r)
    };
    while !(has(&notes, "kms_pending_deletion_use") && has(&notes, "kms_key_deletion_scheduled")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{notes:#?}\n{}",
            guard.logs()
        );
        notes.extend(world.notifications().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rescue: Vec<_> = notes
        .iter()
        .filter(|(_, b, _)| b["rule_id"] == "kms_pending_deletion_use")
        .collect();
    assert_eq!(rescue.len(), 1, "exactly one rescue notification: {notes:#?}");
    let (subject, body, attrs) = rescue[0];
    assert!(
        subject.chars().count() < 100 && subject.contains("deletion cancelled"),
        "{subject}"
    );
    assert!(
        !subject.ends_with('…'),
        "the subject fits without cutting: {subject}"
    );
    assert_eq!(body["finding"]["key_arn"], arn);
    assert_eq!(
        body["finding"]["principal_arn"],
        "arn:aws:sts::123456789012:assumed-role/billing-app/i-0abc123"
    );
    assert_eq!(body["finding"]["event_name"], "Decrypt");
    assert_eq!(body["remediation"]["outcome"], "applied");
    assert_eq!(body["remediation"]["state_after"], "Disabled");
    assert_eq!(attrs["rule_id"]["Value"], "kms_pending_deletion_use");
    assert_eq!(attrs["outcome"]["Value"], "applied");
    // The schedule itself was a finding too, named with who did it.
    let scheduled: Vec<_> = notes
        .iter()
        .filter(|(_, b, _)| b["rule_id"] == "kms_key_deletion_scheduled")
        .collect();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(
        scheduled[0].1["finding"]["principal_arn"],
        "arn:aws:iam::123456789012:user/ops-admin"
    );
    // Neither call named the alias (the schedule named the ARN, Decrypt no key at all): both
    // notifications name it, read through KMS.
    for (_, b, _) in [rescue[0], scheduled[0]] {
        assert_eq!(b["finding"]["key_alias"], "alias/payments-prod", "{b:#}");
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .contains("Alias          alias/payments-prod"),
            "{}",
            b["text"]
        );
    }
    // The schedule's notification says who still used the key.
    let usage = &scheduled[0].1["usage"];
    assert_eq!(usage["verdict"], "used", "{usage:#}");
    assert_eq!(
        usage["callers"][0]["principal"],
        "arn:aws:iam::123456789012:role/billing-app"
    );

    assert_eq!(
        guard
            .metric("trailguard_findings_total{rule_id=\"kms_pending_deletion_use\"}")
            .await,
        1.0
    );
    assert_eq!(
        guard
            .metric("trailguard_remediations_total{action=\"cancel_key_deletion\",outcome=\"applied\"}")
            .await,
        1.0
    );
    assert!(
        guard
            .metric("trailguard_notifications_total{outcome=\"sent\"}")
            .await
            >= 2.0
    );
    assert_eq!(world.sb.state().counter("kms.CancelKeyDeletion"), 1);

    // The exposition passes promtool's lint.
    let (_, metrics) = guard.get("/metrics").await.unwrap();
    for name in [
        "trailguard_build_info",
        "trailguard_cloudtrail_polls_total",
        "trailguard_cloudtrail_lag_seconds",
        "trailguard_cloudtrail_events_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(metrics.as_bytes());
    assert!(promtool.0.success(), "promtool check metrics: {}", promtool.1);

    let status = guard.terminate(Duration::from_secs(25)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing_and_says_what_it_would_do() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/reports").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &["--dry-run"]);
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    let notes = world
        .wait_notes("kms_pending_deletion_use", 1, ONE_POLL + Duration::from_secs(4))
        .await
        .unwrap_or_else(|| panic!("no dry-run notification:\n{}", guard.logs()));
    assert_eq!(notes[0].1["remediation"]["outcome"], "dry_run");
    assert_eq!(notes[0].1["dry_run"], true);
    assert!(notes[0].0.contains("would cancel"), "{}", notes[0].0);
    assert_eq!(world.key_state(&arn).await, ("PendingDeletion".to_owned(), true));
    assert_eq!(world.sb.state().counter("kms.CancelKeyDeletion"), 0);
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_does_not_repeat_the_rescue_or_the_message() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/ledger").await;
    let port = free_port();
    let config = world.config("", port);
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    eventually(ONE_POLL, || async {
        (world.key_state(&arn).await.0 == "Disabled").then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("not rescued:\n{}", guard.logs()));
    eventually(Duration::from_secs(5), || async {
        (world.sb.state().counter("sns.Publish") >= 2).then_some(())
    })
    .await
    .expect("notifications published");
    // The sender removes an entry from the outbox right after SNS answers (a kill between the
    // two sends it again, with the same notification_id: at least once, by design). That
    // moment passes before the kill, so that what is asserted is the restart's own doing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // kill -9: no chance to flush anything.
    guard.signal("KILL");
    let _ = guard.child.wait();
    let publishes = world.sb.state().counter("sns.Publish");

    let restarted = chrono::Utc::now();
    let mut again = Guard::start(&world, &config, port, &[]);
    again.wait_ready().await;
    // Wait until it has read past the restart and looked back over the same events.
    let head = "trailguard_cloudtrail_head_timestamp_seconds{region=\"us-east-1\"}";
    let dup = "trailguard_cloudtrail_duplicate_events_total{region=\"us-east-1\"}";
    eventually(Duration::from_secs(30), || async {
        (again.metric(head).await >= restarted.timestamp() as f64 && again.metric(dup).await >= 1.0)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never read past the restart:\n{}", again.logs()));
    assert_eq!(
        world.sb.state().counter("kms.CancelKeyDeletion"),
        1,
        "rescue not repeated:\n{}",
        again.logs()
    );
    assert_eq!(
        world.sb.state().counter("sns.Publish"),
        publishes,
        "no message repeated:\n{}",
        again.logs()
    );
    assert!(
        again
            .metric("trailguard_cloudtrail_duplicate_events_total{region=\"us-east-1\"}")
            .await
            >= 1.0
    );
    assert!(again.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_straggler_delivered_ten_minutes_late_is_still_caught() {
    let world = World::new().await;
    let (arn, _) = world.doomed_key("alias/archive").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    // The head is past the event's time: it arrives long after the poll that covered it.
    let event_time = chrono::Utc::now() - chrono::Duration::minutes(10);
    let head = "trailguard_cloudtrail_head_timestamp_seconds{region=\"us-east-1\"}";
    eventually(Duration::from_secs(20), || async {
        (guard.metric(head).await > event_time.timestamp() as f64).then_some(())
    })
    .await
    .expect("the head passes the event's time");
    let record = json!({
        "eventVersion": "1.08", "eventID": "straggler-1", "eventTime": event_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "awsRegion": "us-east-1",
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{arn} is pending deletion."),
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/batch/nightly", "accountId": "123456789012"},
        "readOnly": true, "recipientAccountId": "123456789012", "eventType": "AwsApiCall",
        "resources": [{"accountId": "123456789012", "type": "AWS::KMS::Key", "ARN": arn}]
    });
    world
        .sb
        .state()
        .inject_records(record.to_string().as_bytes(), Some(0.0), false)
        .unwrap();
    // Caught by the next lookback (every 10 s in this test's config).
    let rescued = eventually(Duration::from_secs(20), || async {
        let (state, pending) = world.key_state(&arn).await;
        (state == "Disabled" && !pending).then_some(())
    })
    .await;
    assert!(rescued.is_some(), "straggler missed:\n{}", guard.logs());
    let notes = world
        .wait_notes("kms_pending_deletion_use", 1, Duration::from_secs(5))
        .await
        .expect("notified");
    assert_eq!(notes[0].1["finding"]["event_id"], "straggler-1");
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_failures_make_one_message_and_a_count() {
    let world = World::new().await;
    let (arn, _) = world.doomed_key("alias/hot").await;
    // Many failed calls on the same key, as CloudTrail would record them.
    let now = chrono::Utc::now();
    let records: Vec<_> = (0..200)
        .map(|i| {
            json!({"eventVersion": "1.08", "eventID": format!("hot-{i}"),
                   "eventTime": (now - chrono::Duration::seconds(5 + i % 50)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                   "eventSource": "kms.amazonaws.com", "eventName": "GenerateDataKey", "awsRegion": "us-east-1",
                   "errorCode": "KMSInvalidStateException", "errorMessage": format!("{arn} is pending deletion."),
                   "recipientAccountId": "123456789012", "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/web/i-1", "accountId": "123456789012"}})
        })
        .collect();
    world
        .sb
        .state()
        .inject_records(
            serde_json::to_string(&records).unwrap().as_bytes(),
            Some(0.0),
            false,
        )
        .unwrap();
    let port = free_port();
    let config = world.config("", port);
    // A short aggregation window so the summary comes during the test.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("aggregation_window = \"30s\"", "aggregation_window = \"6s\"");
    std::fs::write(&config, text).unwrap();
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let notes = world
        .wait_notes("kms_pending_deletion_use", 2, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no summary:\n{}", guard.logs()));
    assert_eq!(
        notes.len(),
        2,
        "one message, then one summary: {:#?}\n{}",
        notes.iter().map(|n| &n.0).collect::<Vec<_>>(),
        guard.logs()
    );
    assert_eq!(notes[0].1["repeats"], 0);
    assert_eq!(notes[1].1["repeats"], 199);
    assert!(notes[1].0.contains("199 more GenerateDataKey"), "{}", notes[1].0);
    assert_eq!(
        world.sb.state().counter("kms.CancelKeyDeletion"),
        1,
        "one rescue for the key"
    );
    assert_eq!(
        guard
            .metric("trailguard_notifications_total{outcome=\"aggregated\"}")
            .await,
        199.0
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
    assert!(
        world
            .notifications()
            .await
            .iter()
            .all(|(_, b, _)| b["rule_id"] != "kms_pending_deletion_use"),
        "nothing more about the key after the summary"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_subcommand_answers_for_a_running_daemon_and_sigterm_stops_it_in_time() {
    let world = World::new().await;
    let port = free_port();
    let health = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trailguard"))
            .arg("health")
            .args(args)
            .env_remove("TRAILGUARD__SERVER__LISTEN")
            .output()
            .unwrap()
    };
    let listen = format!("127.0.0.1:{port}");
    assert!(
        !health(&["--listen", &listen]).status.success(),
        "nothing listens yet"
    );
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let out = health(&["--listen", &listen]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(health(&["--listen", &listen, "--live"]).status.success());
    // The container sets the listen address through the environment.
    let via_env = std::process::Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .arg("health")
        .env("TRAILGUARD__SERVER__LISTEN", format!("0.0.0.0:{port}"))
        .status()
        .unwrap();
    assert!(via_env.success());
    // ECS sends SIGTERM and waits stopTimeout (60 s in deploy/cloudformation) before SIGKILL.
    let started = std::time::Instant::now();
    let status = guard.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "well within the grace period"
    );
    assert!(
        !health(&["--listen", &listen]).status.success(),
        "a stopped daemon is not healthy"
    );
}
