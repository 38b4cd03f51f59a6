//! The fault suite: trailguard against the sandbox under the failures a guard must survive.
//! Each scenario counts what matters (events read, events missed, repeated actions, duplicate
//! notifications) and prints one `RELIABILITY |` row; `scripts/reliability.sh` runs the same
//! scenarios at full length (`TRAILGUARD_FAULT_SCALE=1`) for RELIABILITY.md. In `cargo test` the
//! durations are scaled down (default 0.03: a 10-minute outage lasts 18 s).

// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use trailguard_sandbox::wire::Service;
use trailguard_sandbox::{Fault, Settings};

fn scale() -> f64 {
    std::env::var("TRAILGUARD_FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.03)
}

/// A duration of the real scenario, scaled (never below `floor`).
fn scaled(real: Duration, floor: Duration) -> Duration {
    real.mul_f64(scale()).max(floor)
}

fn row(scenario: &str, injected: &str, events: u64, missed: u64, repeated: u64, dup: &str) {
    println!("RELIABILITY | {scenario} | {injected} | {events} | {missed} | {repeated} | {dup} |");
}

/// `n` keys scheduled for deletion.
async fn doomed(world: &World, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let k = world.kms.create_key().send().await.unwrap().key_metadata.unwrap();
        let arn = k.arn().unwrap().to_owned();
        world
            .kms
            .schedule_key_deletion()
            .key_id(&arn)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
        out.push(arn);
    }
    out
}

fn use_record(id: &str, arn: &str, at: chrono::DateTime<Utc>) -> Value {
    json!({"eventVersion": "1.08", "eventID": id, "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com", "eventName": "GenerateDataKey", "awsRegion": "us-east-1",
        "recipientAccountId": "123456789012", "readOnly": true,
        "errorCode": "KMSInvalidStateException", "errorMessage": format!("{arn} is pending deletion."),
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/web/i-1", "accountId": "123456789012"}})
}

fn benign_record(id: &str, at: chrono::DateTime<Utc>) -> Value {
    json!({"eventVersion": "1.08", "eventID": id, "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com", "eventName": "Encrypt", "awsRegion": "us-east-1",
        "recipientAccountId": "123456789012", "readOnly": true,
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/web/i-1", "accountId": "123456789012"},
        "requestParameters": {"keyId": "alias/app", "encryptionContext": {"n": id}}})
}

fn inject(world: &World, records: &[Value]) {
    for chunk in records.chunks(2000) {
        world
            .sb
            .state()
            .inject_records(serde_json::to_string(chunk).unwrap().as_bytes(), Some(0.0), false)
            .unwrap();
    }
}

/// Every notification on the alerts queue: (notification_id, body).
async fn all_notes(world: &World) -> Vec<(String, Value)> {
    world
        .notifications()
        .await
        .into_iter()
        .map(|(_, b, _)| (b["notification_id"].as_str().unwrap_or_default().to_owned(), b))
        .collect()
}

/// Duplicates: messages beyond the first with the same id; as "n (x%)".
fn duplicates(notes: &[(String, Value)]) -> (u64, String) {
    let mut by_id: HashMap<&str, u64> = HashMap::new();
    for (id, _) in notes {
        *by_id.entry(id.as_str()).or_default() += 1;
    }
    let dup: u64 = by_id.values().map(|n| n - 1).sum();
    let pct = if notes.is_empty() {
        0.0
    } else {
        dup as f64 * 100.0 / notes.len() as f64
    };
    (dup, format!("{dup} ({pct:.1}%)"))
}

/// Uses accounted for per key: a message stands for its use, a summary for its repeats.
fn uses_reported(notes: &[(String, Value)]) -> HashMap<String, u64> {
    let mut seen = std::collections::HashSet::new();
    let mut per_key: HashMap<String, u64> = HashMap::new();
    for (id, b) in notes {
        if b["rule_id"] != "kms_pending_deletion_use" || !seen.insert(id.clone()) {
            continue;
        }
        let key = b["finding"]["key_arn"].as_str().unwrap_or_default().to_owned();
        *per_key.entry(key).or_default() += b["repeats"].as_u64().filter(|r| *r > 0).unwrap_or(1);
    }
    per_key
}

fn rescued(world: &World) -> u64 {
    world.sb.state().counter("kms.CancelKeyDeletion")
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_twenty_points_of_a_burst_misses_nothing_and_repeats_no_rescue() {
    let world = World::new().await;
    let keys = doomed(&world, 25).await;
    let now = Utc::now() - chrono::Duration::seconds(30);
    let burst: Vec<Value> = (0..500)
        .map(|i| {
            use_record(
                &format!("burst-{i}"),
                &keys[i % keys.len()],
                now + chrono::Duration::milliseconds(i as i64 * 40),
            )
        })
        .collect();
    inject(&world, &burst);
    let port = free_port();
    let config = world.config("", port);
    let mut guard = Guard::start(&world, &config, port, &[]);
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(100 + rng % 900)).await;
        guard.signal("KILL");
        let _ = guard.child.wait();
        guard = Guard::start(&world, &config, port, &[]);
    }
    guard.wait_ready().await;
    // Every key rescued once; then every use accounted for after the last summaries.
    eventually(Duration::from_secs(60), || async {
        (rescued(&world) >= keys.len() as u64).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{} of {} rescued:\n{}", rescued(&world), keys.len(), guard.logs()));
    let head = "trailguard_cloudtrail_head_timestamp_seconds{region=\"us-east-1\"}";
    let settled = Utc::now().timestamp() as f64;
    eventually(Duration::from_secs(30), || async {
        (guard.metric(head).await > settled).then_some(())
    })
    .await;
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
    let mut notes = all_notes(&world).await;
    // The last run's summaries were queued at shutdown; a short run sends them.
    let mut last = Guard::start(&world, &config, port, &[]);
    last.wait_ready().await;
    eventually(Duration::from_secs(15), || async {
        (last.metric("trailguard_notifications_pending").await == 0.0).then_some(())
    })
    .await;
    assert!(last.terminate(Duration::from_secs(25)).await.success());
    notes.extend(all_notes(&world).await);
    let per_key = uses_reported(&notes);
    let reported: u64 = per_key.values().sum();
    let (dup, dup_text) = duplicates(&notes);
    let repeated = rescued(&world) - keys.len() as u64;
    row(
        "kill -9 at 20 points during a 500-event burst",
        "20 × SIGKILL",
        500,
        500 - reported.min(500),
        repeated,
        &dup_text,
    );
    assert_eq!(
        reported, 500,
        "every use accounted for (message or summary count)"
    );
    assert_eq!(repeated, 0, "no rescue repeated");
    assert!(dup * 100 <= notes.len() as u64, "duplicates ≤ 1%: {dup_text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn half_of_all_lookups_throttled_loses_nothing_and_never_exceeds_the_quota_share() {
    let world = World::new().await;
    let outage = scaled(Duration::from_secs(600), Duration::from_secs(15));
    let keys = doomed(&world, 5).await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    world.sb.state().set_settings(Settings {
        throttle_probability: 0.5,
        ..Default::default()
    });
    // Events keep coming through the throttling: one a second, a few of them failed uses.
    let started = tokio::time::Instant::now();
    let mut injected = 0u64;
    let mut max_per_second = 0u64;
    let mut last = world.sb.state().counter("cloudtrail.LookupEvents");
    while started.elapsed() < outage {
        let i = injected as usize;
        let r = if i.is_multiple_of(3) {
            use_record(&format!("t-{i}"), &keys[(i / 3) % keys.len()], Utc::now())
        } else {
            benign_record(&format!("t-{i}"), Utc::now())
        };
        inject(&world, &[r]);
        injected += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = world.sb.state().counter("cloudtrail.LookupEvents");
        max_per_second = max_per_second.max(now - last);
        last = now;
    }
    world.sb.state().set_settings(Settings::default());
    let events = "trailguard_cloudtrail_events_total{region=\"us-east-1\"}";
    let read = eventually(Duration::from_secs(60), || async {
        let n = guard.metric(events).await as u64;
        (n >= injected).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("events missed:\n{}", guard.logs()));
    eventually(Duration::from_secs(20), || async {
        (rescued(&world) >= keys.len() as u64).then_some(())
    })
    .await
    .expect("every key rescued");
    let repeated = rescued(&world) - keys.len() as u64;
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
    let notes = all_notes(&world).await;
    let (_, dup) = duplicates(&notes);
    row(
        &format!("50% ThrottlingException for {}s", outage.as_secs()),
        &format!("{injected} events, at most {max_per_second} requests in any second (share: 1/s)"),
        read,
        injected.saturating_sub(read),
        repeated,
        &dup,
    );
    assert_eq!(repeated, 0);
    assert!(
        max_per_second <= 2,
        "never above the configured share (1/s, sampled per second): {max_per_second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sns_outage_delays_messages_never_rescues_and_loses_none() {
    let world = World::new().await;
    let outage = scaled(Duration::from_secs(600), Duration::from_secs(15));
    let keys = doomed(&world, 10).await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    world.sb.state().set_fault(
        Service::Sns,
        Fault {
            operations: vec!["Publish".into()],
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let records: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| use_record(&format!("o-{i}"), k, Utc::now()))
        .collect();
    inject(&world, &records);
    // Rescues do not wait for SNS.
    eventually(Duration::from_secs(20), || async {
        (rescued(&world) >= keys.len() as u64).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("rescues waited on SNS:\n{}", guard.logs()));
    tokio::time::sleep(outage.saturating_sub(Duration::from_secs(5))).await;
    world.sb.state().clear_fault(Service::Sns);
    // Everything goes out once SNS is back (the sender's backoff is at most 5 minutes).
    let pending = "trailguard_notifications_pending";
    eventually(Duration::from_secs(330), || async {
        (guard.metric(pending).await == 0.0).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("messages still pending:\n{}", guard.logs()));
    let notes = all_notes(&world).await;
    let reported = uses_reported(&notes);
    let lost = keys.iter().filter(|k| !reported.contains_key(*k)).count() as u64;
    let (dup, dup_text) = duplicates(&notes);
    row(
        &format!("SNS outage of {}s", outage.as_secs()),
        "Publish fails 100%",
        keys.len() as u64,
        lost,
        rescued(&world) - keys.len() as u64,
        &dup_text,
    );
    assert_eq!(lost, 0, "no message lost");
    assert!(dup * 100 <= notes.len() as u64);
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_straggler_fifteen_minutes_late_is_caught_by_the_lookback() {
    let world = World::new().await;
    let keys = doomed(&world, 1).await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let event_time = Utc::now() - chrono::Duration::minutes(15) + chrono::Duration::seconds(5);
    inject(&world, &[use_record("late-15", &keys[0], event_time)]);
    eventually(Duration::from_secs(30), || async {
        (rescued(&world) == 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("straggler missed:\n{}", guard.logs()));
    row(
        "a straggler 15 minutes late",
        "visible 15 min after its eventTime",
        1,
        0,
        rescued(&world) - 1,
        "0 (0.0%)",
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_clock_thirty_minutes_fast_still_reads_every_event() {
    let world = World::new().await;
    // AWS's clock (the sandbox's) is 30 minutes behind the host's.
    world.sb.state().set_settings(Settings {
        clock_offset_seconds: -1800.0,
        ..Default::default()
    });
    let (arn, ciphertext) = world.doomed_key("alias/skewed").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    let skew = guard.metric("trailguard_clock_skew_seconds").await;
    assert!((-1802.0..=-1798.0).contains(&skew), "skew {skew}");
    // Two polls in, a use happens: read and rescued within a poll or two.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(15), || async {
        (!world.key_state(&arn).await.1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("nothing read with the host's clock fast:\n{}", guard.logs()));
    row(
        "the host clock 30 minutes fast",
        "sandbox clock offset -1800 s",
        1,
        0,
        rescued(&world) - 1,
        "0 (0.0%)",
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_file_stops_the_daemon_until_reset_and_then_nothing_is_missed() {
    let world = World::new().await;
    let keys = doomed(&world, 1).await;
    let port = free_port();
    let config = world.config("", port);
    std::fs::create_dir_all(world.dir.join("state")).unwrap();
    std::fs::write(
        world.dir.join("state/trailguard.redb"),
        b"this is not a redb file",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("AWS_ENDPOINT_URL", world.sb.endpoint_url())
        .env("AWS_ACCESS_KEY_ID", GUARD)
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(73),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--reset-state"), "says what to do: {stderr}");
    // A use happened while it was down; the operator resets, reading back far enough.
    inject(
        &world,
        &[use_record(
            "while-down",
            &keys[0],
            Utc::now() - chrono::Duration::minutes(20),
        )],
    );
    let mut guard = Guard::start_with(
        &world,
        &config,
        port,
        &["--reset-state"],
        GUARD,
        &[("TRAILGUARD__CLOUDTRAIL__START_FROM", "1h")],
    );
    guard.wait_ready().await;
    eventually(Duration::from_secs(20), || async {
        (rescued(&world) == 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("missed after the reset:\n{}", guard.logs()));
    let aside = std::fs::read_dir(world.dir.join("state"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bak")
        })
        .count();
    assert_eq!(aside, 1, "the corrupt file is kept aside");
    row(
        "a corrupt state file",
        "garbage in trailguard.redb; exit 73, then --reset-state",
        1,
        0,
        0,
        "0 (0.0%)",
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_sns_endpoint_does_not_delay_a_rescue() {
    let world = World::new().await;
    let (arn, ciphertext) = world.doomed_key("alias/hung").await;
    let port = free_port();
    let mut guard = Guard::start(&world, &world.config("", port), port, &[]);
    guard.wait_ready().await;
    world.sb.state().set_fault(
        Service::Sns,
        Fault {
            operations: vec!["Publish".into()],
            hang: true,
            ..Default::default()
        },
    );
    // Something to publish first, so the sender is stuck on a hung connection.
    world
        .kms
        .disable_key()
        .key_id(
            world
                .kms
                .create_key()
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .key_id(),
        )
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let started = tokio::time::Instant::now();
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(15), || async {
        (!world.key_state(&arn).await.1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the rescue waited on SNS:\n{}", guard.logs()));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "within one 5 s poll and the rescue: {took:?}"
    );
    world.sb.state().clear_fault(Service::Sns);
    world
        .wait_notes("kms_pending_deletion_use", 1, Duration::from_secs(60))
        .await
        .expect("sent once SNS answers");
    row(
        "a hung SNS endpoint while a key needs rescue",
        "Publish never answers",
        1,
        0,
        rescued(&world) - 1,
        "0 (0.0%)",
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hours_of_downtime_are_caught_up_at_the_quota_share_while_ready_and_small() {
    let world = World::new().await;
    let downtime = scaled(Duration::from_secs(7200), Duration::from_secs(300));
    let rate = 5.0;
    let keys = doomed(&world, 20).await;
    let now = Utc::now();
    let backlog = (downtime.as_secs_f64() * rate) as usize;
    let records: Vec<Value> = (0..backlog)
        .map(|i| {
            let at = now
                - chrono::Duration::milliseconds(
                    (downtime.as_millis() as f64 * (1.0 - i as f64 / backlog as f64)) as i64,
                );
            if i.is_multiple_of((backlog / keys.len()).max(1)) {
                use_record(
                    &format!("d-{i}"),
                    &keys[(i / (backlog / keys.len()).max(1)) % keys.len()],
                    at,
                )
            } else {
                benign_record(&format!("d-{i}"), at)
            }
        })
        .collect();
    inject(&world, &records);
    let port = free_port();
    let config = world.config("[kms]\n", port);
    let from = format!("{}s", downtime.as_secs() + 5);
    let started = tokio::time::Instant::now();
    let mut guard = Guard::start_with(
        &world,
        &config,
        port,
        &[],
        GUARD,
        &[("TRAILGUARD__CLOUDTRAIL__START_FROM", &from)],
    );
    guard.wait_ready().await;
    let ready_after = started.elapsed();
    // New events keep coming at the same rate while it catches up.
    let lag = "trailguard_cloudtrail_lag_seconds{region=\"us-east-1\"}";
    let events = "trailguard_cloudtrail_events_total{region=\"us-east-1\"}";
    let requests_at_start = world.sb.state().counter("cloudtrail.LookupEvents");
    let mut live = 0usize;
    let mut peak_rss_kb = 0u64;
    let caught_up = loop {
        let batch: Vec<Value> = (0..rate as usize)
            .map(|j| benign_record(&format!("live-{live}-{j}"), Utc::now()))
            .collect();
        inject(&world, &batch);
        live += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", guard.child.id())) {
            let hwm = status
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok());
            peak_rss_kb = peak_rss_kb.max(hwm.unwrap_or(0));
        }
        // The lag gauge starts at 0 before the first read: caught up means the backlog read
        // too, and the head within 30 s of now.
        if guard.metric(lag).await < 30.0
            && guard.metric(events).await >= backlog as f64
            && started.elapsed() > Duration::from_secs(5)
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < downtime,
            "not caught up after as long as the downtime:\n{}",
            guard.logs()
        );
    };
    let requests = world.sb.state().counter("cloudtrail.LookupEvents") - requests_at_start;
    let share = requests as f64 / (caught_up - ready_after).as_secs_f64();
    let total = backlog + live * rate as usize;
    let read = eventually(Duration::from_secs(30), || async {
        let n = guard.metric(events).await as u64;
        (n >= total as u64).then_some(n)
    })
    .await
    .unwrap_or(0);
    eventually(Duration::from_secs(20), || async {
        (rescued(&world) >= keys.len() as u64).then_some(())
    })
    .await;
    let repeated = rescued(&world).saturating_sub(keys.len() as u64);
    let ideal = backlog as f64 / (50.0 - rate);
    row(
        &format!(
            "{}s of downtime at {rate} KMS events/s, then restart",
            downtime.as_secs()
        ),
        &format!(
            "ready in {:.1}s; caught up in {:.0}s (ideal at 1 request/s: {ideal:.0}s); {share:.2} requests/s; peak RSS {:.1} MiB",
            ready_after.as_secs_f64(),
            caught_up.as_secs_f64(),
            peak_rss_kb as f64 / 1024.0
        ),
        read,
        (total as u64).saturating_sub(read),
        repeated,
        "-",
    );
    assert!(
        ready_after < Duration::from_secs(10),
        "ready while catching up: {ready_after:?}"
    );
    assert!(share >= 0.9, "catch-up at the quota share: {share:.2} requests/s");
    assert!(
        read as usize >= total,
        "every event read (and trailguard's own calls): {read} < {total}"
    );
    assert_eq!(repeated, 0);
    assert!(peak_rss_kb < 50 * 1024, "peak RSS {peak_rss_kb} KiB");
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}
