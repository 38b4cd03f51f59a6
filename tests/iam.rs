//! Stale IAM access keys, end to end: the binary against the sandbox, keys backdated through the
//! sandbox's controls.
// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use aws_sdk_iam::types::StatusType;
use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use trailguard_sandbox::state::{AccessKeyOverride, LastUsed};

struct Iam<'a> {
    world: &'a World,
    iam: aws_sdk_iam::Client,
}

impl<'a> Iam<'a> {
    async fn new(world: &'a World) -> Self {
        Self {
            world,
            iam: aws_sdk_iam::Client::new(&sdk(&world.sb, ADMIN).await),
        }
    }

    /// A user with one access key created `created_days` ago, last used `used_days` ago (None: never).
    async fn user(&self, name: &str, created_days: i64, used_days: Option<i64>) -> String {
        self.iam.create_user().user_name(name).send().await.unwrap();
        let key = self
            .iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        let id = key.access_key_id().to_owned();
        let now = Utc::now();
        self.world.sb.state().set_access_key(
            &id,
            AccessKeyOverride {
                create_date: Some(now - chrono::Duration::days(created_days)),
                last_used: Some(used_days.map(|d| LastUsed {
                    date: now - chrono::Duration::days(d),
                    service: "s3".into(),
                    region: "eu-west-1".into(),
                })),
            },
        );
        id
    }

    async fn status(&self, user: &str, key: &str) -> Option<String> {
        let l = self.iam.list_access_keys().user_name(user).send().await.unwrap();
        l.access_key_metadata()
            .iter()
            .find(|m| m.access_key_id() == Some(key))
            .map(|m| m.status().unwrap().as_str().to_owned())
    }
}

fn iam_config(world: &World, port: u16, iam: &str) -> std::path::PathBuf {
    world.config(&format!("[iam]\nenabled = true\n{iam}"), port)
}

/// IAM notifications received so far, by access key id.
async fn iam_notes(world: &World) -> Vec<(String, Value)> {
    world
        .notifications()
        .await
        .into_iter()
        .filter(|(_, b, _)| b["rule_id"].as_str().is_some_and(|r| r.starts_with("iam_")))
        .map(|(s, b, _)| (s, b))
        .collect()
}

/// Waits until at least `n` IAM notifications have arrived, keeping every one drained (each
/// drain deletes what it read: a batch split across two drains must still count).
async fn wait_iam_notes(world: &World, n: usize, limit: Duration) -> Option<Vec<(String, Value)>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut all = Vec::new();
    loop {
        all.extend(iam_notes(world).await);
        if all.len() >= n {
            return Some(all);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn for_key<'n>(notes: &'n [(String, Value)], key: &str) -> &'n (String, Value) {
    notes
        .iter()
        .find(|(_, b)| b["finding"]["key"]["access_key_id"] == key)
        .unwrap_or_else(|| panic!("no notification for {key}: {notes:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_deactivates_stale_keys_respects_exemptions_and_reports_reactivation() {
    let world = World::new().await;
    let iam = Iam::new(&world).await;
    let old = iam.user("old-app", 120, Some(100)).await;
    let rotated = iam.user("busy-app", 200, Some(1)).await;
    let never = iam.user("forgotten", 100, None).await;
    let exempt = iam.user("ci-deploy", 150, None).await;
    let fresh = iam.user("new-app", 10, Some(1)).await;
    let port = free_port();
    let config = iam_config(
        &world,
        port,
        "action = \"deactivate\"\n[[iam.exemptions]]\nuser = \"ci-*\"\nreason = \"CI keys rotate with the pipeline\"\n",
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    let notes = wait_iam_notes(&world, 4, Duration::from_secs(30))
        // old, busy, forgotten, ci-deploy; never the fresh key.
        .await
        .unwrap_or_else(|| panic!("sweep notifications missing:\n{}", guard.logs()));
    assert_eq!(notes.len(), 4, "{notes:#?}");

    assert_eq!(iam.status("old-app", &old).await.as_deref(), Some("Inactive"));
    let (subject, body) = for_key(&notes, &old);
    assert!(
        subject.contains("deactivated") && subject.contains(&old),
        "{subject}"
    );
    assert_eq!(body["outcome"], "applied");
    assert_eq!(body["finding"]["age_days"], 120);

    let (_, body) = for_key(&notes, &rotated);
    assert_eq!(
        body["rule_ids"],
        json!(["iam_access_key_unrotated"]),
        "used yesterday: rotation rule only"
    );

    let (subject, body) = for_key(&notes, &never);
    assert_eq!(
        body["rule_ids"],
        json!(["iam_access_key_unrotated", "iam_access_key_unused"])
    );
    assert_eq!(body["finding"]["never_used"], true);
    assert!(subject.contains("never used"), "{subject}");

    assert_eq!(
        iam.status("ci-deploy", &exempt).await.as_deref(),
        Some("Active"),
        "exempt key untouched"
    );
    let (_, body) = for_key(&notes, &exempt);
    assert_eq!(
        body["finding"]["exemption"],
        "iam.exemptions[0] (user=ci-*): CI keys rotate with the pipeline"
    );
    assert_eq!(iam.status("new-app", &fresh).await.as_deref(), Some("Active"));
    assert_eq!(guard.metric("trailguard_iam_access_keys").await, 5.0);
    assert!(guard.metric("trailguard_iam_last_sweep_timestamp_seconds").await > 0.0);

    // Someone turns the deactivated key back on: reported with who did it.
    iam.iam
        .update_access_key()
        .user_name("old-app")
        .access_key_id(&old)
        .status(StatusType::Active)
        .send()
        .await
        .unwrap();
    let back = eventually(Duration::from_secs(15), || async {
        let n: Vec<_> = world
            .notifications()
            .await
            .into_iter()
            .filter(|(_, b, _)| b["rule_id"] == "iam_access_key_reactivated")
            .collect();
        (!n.is_empty()).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("reactivation not reported:\n{}", guard.logs()));
    assert_eq!(
        back[0].1["finding"]["principal_arn"],
        "arn:aws:iam::123456789012:user/ops-admin"
    );
    assert_eq!(back[0].1["finding"]["access_key_id"], old);
    assert!(
        back[0].0.contains("reactivated by user/ops-admin"),
        "{}",
        back[0].0
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_only_keys_inactive_long_enough() {
    let world = World::new().await;
    let iam = Iam::new(&world).await;
    let long = iam.user("gone-long", 200, Some(150)).await;
    let short = iam.user("gone-lately", 200, Some(150)).await;
    let active = iam.user("still-on", 200, Some(150)).await;
    // Deactivate two keys behind CloudTrail's back, then write their history as it happened:
    // one 40 days ago, one 3 days ago.
    let moto = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&sdk(&world.sb, ADMIN).await)
            .endpoint_url(&world.sb.state().moto_url)
            .build(),
    );
    let mut records = Vec::new();
    for (user, key, days) in [("gone-long", &long, 40), ("gone-lately", &short, 3)] {
        moto.update_access_key()
            .user_name(user)
            .access_key_id(key.as_str())
            .status(StatusType::Inactive)
            .send()
            .await
            .unwrap();
        records.push(json!({"eventVersion": "1.08", "eventID": format!("deact-{user}"), "eventSource": "iam.amazonaws.com",
            "eventName": "UpdateAccessKey", "awsRegion": "us-east-1", "recipientAccountId": "123456789012",
            "eventTime": (Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/ops-admin", "accountId": "123456789012"},
            "requestParameters": {"userName": user, "accessKeyId": key, "status": "Inactive"}}));
    }
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
    // A deletion is decided, then re-checked once cloudtrail.max_delivery_delay has passed.
    let mut guard = Guard::start_with(
        &world,
        &iam_config(
            &world,
            port,
            "action = \"delete\"\ndelete_after_inactive = \"30d\"\n",
        ),
        port,
        &[],
        GUARD,
        &[("TRAILGUARD__CLOUDTRAIL__MAX_DELIVERY_DELAY", "60s")],
    );
    guard.wait_ready().await;
    let mut notes = wait_iam_notes(&world, 3, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("notifications missing:\n{}", guard.logs()));
    assert_eq!(
        for_key(&notes, &long).1["finding"]["planned"],
        "confirm_delete",
        "decided, not acted on yet"
    );
    assert_eq!(world.sb.state().counter("iam.DeleteAccessKey"), 0);
    // The re-check, a max_delivery_delay later: the evidence holds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while !notes
        .iter()
        .any(|(_, b)| b["finding"]["key"]["access_key_id"] == long.as_str() && b["action"] == "delete")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deletion after the re-check:\n{notes:#?}\n{}",
            guard.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        notes.extend(iam_notes(&world).await);
    }
    assert_eq!(
        iam.status("gone-long", &long).await,
        None,
        "inactive 40 days: deleted"
    );
    assert_eq!(
        iam.status("gone-lately", &short).await.as_deref(),
        Some("Inactive"),
        "inactive 3 days: kept"
    );
    assert_eq!(
        for_key(&notes, &short).1["finding"]["planned"],
        "wait_before_delete"
    );
    assert_eq!(
        iam.status("still-on", &active).await.as_deref(),
        Some("Inactive"),
        "active: deactivated, not deleted"
    );
    assert_eq!(world.sb.state().counter("iam.DeleteAccessKey"), 1);
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn blast_radius_stops_a_sweep_of_eleven_and_dry_run_changes_nothing() {
    let world = World::new().await;
    let iam = Iam::new(&world).await;
    let mut keys = Vec::new();
    for i in 0..11 {
        keys.push((
            format!("stale-{i}"),
            iam.user(&format!("stale-{i}"), 120, None).await,
        ));
    }
    let port = free_port();
    let mut guard = Guard::start(
        &world,
        &iam_config(&world, port, "action = \"deactivate\"\n"),
        port,
        &[],
    );
    guard.wait_ready().await;
    let notes = wait_iam_notes(&world, 11, Duration::from_secs(40))
        .await
        .unwrap_or_else(|| panic!("notifications missing:\n{}", guard.logs()));
    for (user, key) in &keys {
        assert_eq!(
            iam.status(user, key).await.as_deref(),
            Some("Active"),
            "{user} must not be touched"
        );
        let (subject, body) = for_key(&notes, key);
        assert_eq!(body["finding"]["planned"], "blast_radius");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("iam.max_actions_per_sweep (10)"),
            "{body}"
        );
        assert!(subject.contains("blast radius"), "{subject}");
    }
    assert_eq!(world.sb.state().counter("iam.UpdateAccessKey"), 0);
    assert!(guard.terminate(Duration::from_secs(25)).await.success());

    // Dry run with a limit that allows it: still nothing changes, and it says what it would do.
    let port = free_port();
    let config = iam_config(
        &world,
        port,
        "action = \"deactivate\"\nmax_actions_per_sweep = 50\n",
    );
    let mut guard = Guard::start(&world, &config, port, &["--dry-run"]);
    guard.wait_ready().await;
    let notes = wait_iam_notes(&world, 11, Duration::from_secs(40))
        .await
        .unwrap_or_else(|| panic!("dry-run notifications missing:\n{}", guard.logs()));
    assert!(notes.iter().all(|(_, b)| b["outcome"] == "dry_run"), "{notes:#?}");
    assert!(notes[0].0.contains("would deactivate"), "{}", notes[0].0);
    assert_eq!(world.sb.state().counter("iam.UpdateAccessKey"), 0);
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}
