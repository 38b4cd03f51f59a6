//! Keys end to end: the use of a key scheduled for deletion, the used-key policy, reminders
//! before the deletion date, and `trailguard keys audit`, against the sandbox.
// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A positive signal arrives well within this on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

/// Waits for a notification that `pred` accepts; `seen` keeps what arrived.
async fn wait_for(
    world: &World,
    guard: &Guard,
    seen: &mut Vec<Value>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        seen.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
        if let Some(found) = seen.iter().find(|b| pred(b)) {
            return found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what}: {seen:#?}\n{}",
            guard.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits for the notification of `rule` about `arn`.
async fn wait_note(world: &World, guard: &Guard, rule: &str, arn: &str, seen: &mut Vec<Value>) -> Value {
    wait_for(
        world,
        guard,
        seen,
        &format!("{rule} notification for {arn}"),
        |b| b["rule_id"] == rule && b["finding"]["key_arn"] == arn,
    )
    .await
}

async fn schedule(world: &World, arn: &str) {
    world
        .kms
        .schedule_key_deletion()
        .key_id(arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
}

async fn app_encrypts(world: &World, arn: &str) -> aws_smithy_types::Blob {
    world
        .app_kms
        .encrypt()
        .key_id(arn)
        .plaintext(b"ledger".as_slice().into())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

const APP_ROLE: &str = "arn:aws:iam::123456789012:role/billing-app";

#[tokio::test(flavor = "multi_thread")]
async fn a_used_keys_deletion_is_cancelled_and_an_unused_keys_goes_through_with_a_reminder() {
    let world = World::new().await;
    let port = free_port();
    let config = world.config(
        "[kms]\non_schedule_deletion_of_used_key = \"cancel_key_deletion\"\nusage_window = \"30d\"\n\
         reminders = [\"7d\", \"1d\"]\nreminder_interval = \"10s\"\n",
        port,
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let used = aliased_key(&world, "alias/billing-ledger").await;
    let unused = aliased_key(&world, "alias/old-reports").await;
    app_encrypts(&world, &used).await;
    app_encrypts(&world, &used).await;
    schedule(&world, &used).await;
    schedule(&world, &unused).await;

    let mut seen = Vec::new();
    let cancelled = wait_note(&world, &guard, "kms_key_deletion_scheduled", &used, &mut seen).await;
    assert_eq!(
        cancelled["remediation"]["action"], "cancel_key_deletion",
        "{cancelled:#}"
    );
    assert_eq!(cancelled["remediation"]["outcome"], "applied");
    let usage = &cancelled["usage"];
    assert_eq!(usage["verdict"], "used");
    assert_eq!(
        (usage["calls"].as_u64(), usage["at_least"].as_bool()),
        (Some(2), Some(false))
    );
    assert_eq!(usage["distinct_callers"], 1);
    assert_eq!(usage["callers"][0]["principal"], APP_ROLE);
    assert_eq!(usage["operations"]["Encrypt"], 2);
    assert_eq!(
        usage["pages"], 1,
        "BENCHMARKS.md: one LookupEvents page for a key with little history"
    );
    assert!(usage["last_use"].is_string());
    assert!(
        cancelled["usage_policy"]
            .as_str()
            .unwrap()
            .contains("the key was used within kms.usage_window (30days) and the caller is not allowed; kms.on_schedule_deletion_of_used_key = \"cancel_key_deletion\""),
        "{cancelled:#}"
    );
    assert_eq!(cancelled["finding"]["key_alias"], "alias/billing-ledger");
    let text = cancelled["text"].as_str().unwrap();
    assert!(text.contains("KEY USE") && text.contains(APP_ROLE), "{text}");
    assert_eq!(world.key_state(&used).await, ("Disabled".to_owned(), false));

    let through = wait_note(&world, &guard, "kms_key_deletion_scheduled", &unused, &mut seen).await;
    assert_eq!(through["remediation"], Value::Null, "{through:#}");
    assert_eq!(through["usage"]["verdict"], "unused");
    assert!(
        through["usage_policy"]
            .as_str()
            .unwrap()
            .contains("not used within kms.usage_window (30days): the deletion goes ahead")
    );
    // A 7-day window is inside the 7-day reminder point: it is due at the next check.
    let reminder = wait_note(&world, &guard, "kms_key_deletion_reminder", &unused, &mut seen).await;
    assert_eq!(reminder["usage"]["verdict"], "unused", "{reminder:#}");
    assert_eq!(reminder["usage"]["pages"], 1);
    assert_eq!(reminder["remediation"], Value::Null);
    assert!(reminder["finding"]["deletion_date"].is_string());
    assert_eq!(
        world.key_state(&unused).await,
        ("PendingDeletion".to_owned(), true)
    );
    // The cancelled key is not followed for reminders; the other gets one reminder, not one per check.
    tokio::time::sleep(Duration::from_secs(12)).await;
    seen.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
    let reminders = seen
        .iter()
        .filter(|b| b["rule_id"] == "kms_key_deletion_reminder")
        .count();
    assert_eq!(reminders, 1, "{seen:#?}");
    assert_eq!(guard.metric("trailguard_kms_reminders_total").await, 1.0);
    assert_eq!(
        guard
            .metric("trailguard_kms_usage_lookups_total{outcome=\"complete\"}")
            .await,
        3.0,
        "two schedulings and one reminder"
    );
    // Cost: one LookupEvents page per lookup for a key with little history.
    eprintln!(
        "cost: LookupEvents requests in total (polls included): {}",
        world.sb.state().counter("cloudtrail.LookupEvents")
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_notify_a_used_keys_deletion_is_reported_and_the_reminder_names_the_use_since() {
    let world = World::new().await;
    let port = free_port();
    // The rescue on use is turned off, to see the reminder catch the use instead.
    let config = world.config(
        "[kms]\nreminders = [\"7d\"]\nreminder_interval = \"10s\"\n\
         [[rules]]\nid = \"kms_pending_deletion_use\"\nactions = [\"notify\"]\n",
        port,
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let key = aliased_key(&world, "alias/invoices").await;
    let blob = app_encrypts(&world, &key).await;
    // Event times have one-second precision: the Encrypt must fall before the scheduling.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    schedule(&world, &key).await;
    // After the scheduling, the application still decrypts (and fails: the key is pending).
    let err = world
        .app_kms
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_kms_invalid_state_exception());
    let mut seen = Vec::new();
    let note = wait_note(&world, &guard, "kms_key_deletion_scheduled", &key, &mut seen).await;
    assert_eq!(note["remediation"], Value::Null, "{note:#}");
    assert_eq!(note["usage"]["verdict"], "used");
    assert_eq!(note["usage"]["callers"][0]["principal"], APP_ROLE);
    assert!(
        note["usage_policy"]
            .as_str()
            .unwrap()
            .contains("kms.on_schedule_deletion_of_used_key = \"notify\": reported, not cancelled")
    );
    assert!(
        note["subject"].as_str().unwrap().contains("still in use"),
        "{}",
        note["subject"]
    );
    let reminder = wait_for(&world, &guard, &mut seen, "reminder naming the Decrypt", |b| {
        b["rule_id"] == "kms_key_deletion_reminder"
            && b["finding"]["key_arn"] == key.as_str()
            && b["usage"]["operations"]["Decrypt"] == 1
    })
    .await;
    // Only the use since the scheduling counts (the Encrypt before it does not).
    assert_eq!(reminder["usage"]["calls"], 1, "{reminder:#}");
    assert_eq!(reminder["usage"]["callers"][0]["principal"], APP_ROLE);
    assert_eq!(reminder["finding"]["severity"], "high");
    assert!(
        reminder["subject"]
            .as_str()
            .unwrap()
            .contains("used since scheduled")
    );
    assert!(
        reminder["text"]
            .as_str()
            .unwrap()
            .contains("since it was scheduled for deletion")
    );
    assert_eq!(world.key_state(&key).await, ("PendingDeletion".to_owned(), true));
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

/// `trailguard keys audit` as a subprocess: (exit code, JSON lines, stderr).
fn audit(world: &World, args: &[&str]) -> (i32, Vec<Value>, String) {
    let bin = std::env::var("TRAILGUARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_trailguard").to_owned());
    let out = Command::new(bin)
        .args(["keys", "audit", "--region", "us-east-1"])
        .args(args)
        .env("AWS_ENDPOINT_URL", world.sb.endpoint_url())
        .env("AWS_ACCESS_KEY_ID", ADMIN)
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn crafted_key(world: &World, alias: Option<&str>, statements: Value, rotate: bool) -> String {
    let policy = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
    let k = world
        .kms
        .create_key()
        .policy(policy)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    if let Some(a) = alias {
        world
            .kms
            .create_alias()
            .alias_name(a)
            .target_key_id(k.key_id())
            .send()
            .await
            .unwrap();
    }
    if rotate {
        world
            .kms
            .enable_key_rotation()
            .key_id(k.key_id())
            .send()
            .await
            .unwrap();
    }
    k.arn().unwrap().to_owned()
}

fn root() -> Value {
    json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"})
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_audit_reports_each_case_with_its_severity_and_statement() {
    let world = World::new().await;
    // AWS's default key policy (a key created without one), rotation on, an alias: clean.
    let good = world.kms.create_key().send().await.unwrap().key_metadata.unwrap();
    world
        .kms
        .create_alias()
        .alias_name("alias/good")
        .target_key_id(good.key_id())
        .send()
        .await
        .unwrap();
    world
        .kms
        .enable_key_rotation()
        .key_id(good.key_id())
        .send()
        .await
        .unwrap();
    let (code, lines, stderr) = audit(&world, &[]);
    assert_eq!((code, lines.len()), (0, 0), "{lines:#?}\n{stderr}");
    assert!(stderr.contains("1 customer-managed key(s)"), "{stderr}");

    let no_root = crafted_key(
        &world,
        Some("alias/locked"),
        json!([{"Sid": "Users", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:role/KeyAdmin"}, "Action": "kms:*", "Resource": "*"}]),
        true,
    )
    .await;
    let public = crafted_key(
        &world,
        Some("alias/public"),
        json!([root(), {"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]),
        true,
    )
    .await;
    let foreign = crafted_key(
        &world,
        Some("alias/shared"),
        json!([root(), {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
            "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}]),
        true,
    )
    .await;
    let destructive = crafted_key(
        &world,
        Some("alias/app-can-delete"),
        json!([root(), {"Sid": "App", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/billing-app"},
            "Action": ["kms:Decrypt", "kms:ScheduleKeyDeletion"], "Resource": "*"}]),
        true,
    )
    .await;
    let unrotated = crafted_key(&world, Some("alias/unrotated"), json!([root()]), false).await;
    let nameless = crafted_key(&world, None, json!([root()]), true).await;
    let disabled = crafted_key(&world, Some("alias/off"), json!([root()]), true).await;
    world.kms.disable_key().key_id(&disabled).send().await.unwrap();
    let doomed = crafted_key(&world, Some("alias/doomed"), json!([root()]), true).await;
    app_encrypts(&world, &doomed).await;
    schedule(&world, &doomed).await;

    let (code, lines, stderr) = audit(&world, &[]);
    assert_eq!(code, 1, "findings at or above info: {stderr}");
    let got: Vec<(String, String, String, Value)> = lines
        .iter()
        .map(|l| {
            assert!(l["message"].as_str().is_some_and(|m| !m.is_empty()), "{l}");
            (
                l["id"].as_str().unwrap().to_owned(),
                l["severity"].as_str().unwrap().to_owned(),
                l["key_arn"].as_str().unwrap().to_owned(),
                l["statement"].clone(),
            )
        })
        .collect();
    let want =
        |id: &str, sev: &str, key: &str, st: Value| (id.to_owned(), sev.to_owned(), key.to_owned(), st);
    let mut expected = vec![
        want("kms_key_no_root_statement", "high", &no_root, Value::Null),
        want("kms_key_public_principal", "critical", &public, json!("Anyone")),
        want("kms_key_cross_account_unconditioned", "high", &foreign, json!(1)),
        want(
            "kms_key_destructive_actions_granted",
            "medium",
            &destructive,
            json!("App"),
        ),
        want("kms_key_rotation_disabled", "medium", &unrotated, Value::Null),
        want("kms_key_no_alias", "low", &nameless, Value::Null),
        want("kms_key_disabled", "low", &disabled, Value::Null),
        want("kms_key_pending_deletion", "critical", &doomed, Value::Null),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    expected.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(got_sorted, expected, "{lines:#?}");
    let doomed_line = lines
        .iter()
        .find(|l| l["id"] == "kms_key_pending_deletion")
        .unwrap();
    let m = doomed_line["message"].as_str().unwrap();
    assert!(
        m.contains("alias/doomed is scheduled for deletion on") && m.contains("1 call by 1 caller"),
        "{m}"
    );
    assert!(
        !lines.iter().any(|l| l["key_arn"] == good.arn().unwrap()),
        "nothing on the key with AWS's default policy and rotation on"
    );
    // --fail-on decides the exit status.
    assert_eq!(audit(&world, &["--fail-on", "critical"]).0, 1);
    let (code, _, _) = audit(&world, &["--fail-on", "critical", "--no-usage"]);
    assert_eq!(code, 1, "the public key stays critical");
    // A table when asked, with the statement column.
    let bin = std::env::var("TRAILGUARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_trailguard").to_owned());
    let out = Command::new(bin)
        .args(["keys", "audit", "--region", "us-east-1", "--format", "table"])
        .env("AWS_ENDPOINT_URL", world.sb.endpoint_url())
        .env("AWS_ACCESS_KEY_ID", ADMIN)
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("SEVERITY"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("critical") && l.contains("Anyone")),
        "{table}"
    );
}

/// BENCHMARKS.md: the audit's API calls and time for 1,000 keys (run on its own, `--ignored`).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn keys_audit_cost_for_1000_keys() {
    let world = World::new().await;
    let n: usize = std::env::var("TRAILGUARD_AUDIT_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for i in 0..n {
        let k = world.kms.create_key().send().await.unwrap().key_metadata.unwrap();
        world
            .kms
            .create_alias()
            .alias_name(format!("alias/bench-{i}"))
            .target_key_id(k.key_id())
            .send()
            .await
            .unwrap();
        if i % 100 == 0 {
            schedule(&world, k.arn().unwrap()).await;
        }
    }
    let ops = [
        "kms.ListKeys",
        "kms.ListAliases",
        "kms.DescribeKey",
        "kms.GetKeyPolicy",
        "kms.GetKeyRotationStatus",
        "cloudtrail.LookupEvents",
    ];
    let before: Vec<u64> = ops.iter().map(|o| world.sb.state().counter(o)).collect();
    let started = std::time::Instant::now();
    let (code, lines, stderr) = audit(&world, &[]);
    let took = started.elapsed();
    let calls: Vec<String> = ops
        .iter()
        .zip(before)
        .map(|(o, b)| format!("{o} {}", world.sb.state().counter(o) - b))
        .collect();
    eprintln!(
        "audit of {n} keys ({} pending deletion): exit {code}, {} findings, {:.1} s; calls: {}\n{stderr}",
        n.div_ceil(100),
        lines.len(),
        took.as_secs_f64(),
        calls.join(", ")
    );
}
