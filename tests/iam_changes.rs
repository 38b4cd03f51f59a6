//! IAM key changes that AWS answers badly, or that an outage or a person cuts short: each is
//! reported as what it came to, never lost and never claimed when it was not made
//! ([`trailguard::iam::intent`]). End to end against the sandbox, with its `after` faults
//! (a call carried out, then its answer failed or held).
// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use aws_sdk_iam::types::StatusType;
use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use trailguard_sandbox::Fault;
use trailguard_sandbox::wire::Service;

async fn iam_client(world: &World) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk(&world.sb, ADMIN).await)
}

async fn about(world: &World, key: &str, all: &mut Vec<Value>) -> Vec<Value> {
    all.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
    all.iter()
        .filter(|b| b["finding"]["key"]["access_key_id"] == key)
        .cloned()
        .collect()
}

/// UpdateAccessKey is carried out and answered with 500s; the read-back ListAccessKeys fails
/// too (IAM degraded). The change was made; the promise says it is reported, if not now then
/// at the next sweep.
#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_whose_read_back_fails_is_still_reported_as_made() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    // Hold the sweep at ListUserTags (just before it acts) so the faults can be swapped.
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["ListUserTags".into()],
            latency_ms: 4000,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config("[iam]\nenabled = true\naction = \"deactivate\"\n", port);
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(30), || async {
        (world.sb.state().counter("iam.ListUserTags") >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no ListUserTags:\n{}", guard.logs()));
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["UpdateAccessKey".into(), "ListAccessKeys".into()],
            error_rate: 1.0,
            after: true,
            ..Default::default()
        },
    );
    let mut all = Vec::new();
    let first = eventually(Duration::from_secs(60), || {
        let world = &world;
        let key = key.clone();
        async move {
            let n = about(world, &key, &mut Vec::new()).await;
            (!n.is_empty()).then_some(n)
        }
    })
    .await
    .unwrap_or_else(|| panic!("no message:\n{}", guard.logs()));
    all.extend(first.clone());
    world.sb.state().clear_faults();
    eprintln!("first message(s): {first:#?}");
    assert_eq!(
        key_status(&iam, "a-stale", &key).await.as_deref(),
        Some("Inactive")
    );
    // A restart (a fresh sweep, the same state): anything left to account for is reported.
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(40), || async {
        (guard.metric("trailguard_iam_sweeps_total{outcome=\"ok\"}").await >= 1.0).then_some(())
    })
    .await
    .expect("a sweep");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut sink = Vec::new();
    let mut notes = about(&world, &key, &mut sink).await;
    notes.extend(all);
    eprintln!("all messages about the key: {notes:#?}");
    assert!(
        notes.iter().any(|b| b["outcome"] == "applied"),
        "trailguard deactivated the key (it is Inactive, and UpdateAccessKey was served {} times), but no message says so: {notes:#?}\n{}",
        world.sb.state().counter("iam.UpdateAccessKey"),
        guard.logs()
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

/// Someone else deletes the key while trailguard's DeleteAccessKey is on its way (after the
/// sweep listed it): IAM answers NoSuchEntity on the first attempt. trailguard did not delete it.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_someone_else_deleted_is_not_reported_as_deleted_by_trailguard() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "gone-long", 200, Some(150)).await;
    let moto = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&sdk(&world.sb, ADMIN).await)
            .endpoint_url(&world.sb.state().moto_url)
            .build(),
    );
    moto.update_access_key()
        .user_name("gone-long")
        .access_key_id(key.as_str())
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let records = vec![
        json!({"eventVersion": "1.08", "eventID": "deact-gone-long", "eventSource": "iam.amazonaws.com",
        "eventName": "UpdateAccessKey", "awsRegion": "us-east-1", "recipientAccountId": "123456789012",
        "eventTime": (Utc::now() - chrono::Duration::days(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/ops-admin", "accountId": "123456789012"},
        "requestParameters": {"userName": "gone-long", "accessKeyId": key, "status": "Inactive"}}),
    ];
    world
        .sb
        .state()
        .inject_records(
            serde_json::to_string(&records).unwrap().as_bytes(),
            Some(0.0),
            false,
        )
        .unwrap();
    // DeleteAccessKey is slow to arrive: the key is deleted by someone else meanwhile.
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["DeleteAccessKey".into()],
            latency_ms: 3000,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config(
        "[iam]\nenabled = true\naction = \"delete\"\ndelete_after_inactive = \"30d\"\n",
        port,
    );
    let mut guard = Guard::start_with(
        &world,
        &config,
        port,
        &[],
        GUARD,
        &[("TRAILGUARD__CLOUDTRAIL__MAX_DELIVERY_DELAY", "60s")],
    );
    guard.wait_ready().await;
    eventually(Duration::from_secs(150), || async {
        (world.sb.state().counter("iam.DeleteAccessKey") >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no DeleteAccessKey:\n{}", guard.logs()));
    moto.delete_access_key()
        .user_name("gone-long")
        .access_key_id(key.as_str())
        .send()
        .await
        .unwrap();
    let mut all = Vec::new();
    let notes = eventually(Duration::from_secs(30), || {
        let world = &world;
        let key = key.clone();
        async move {
            let n: Vec<Value> = about(world, &key, &mut Vec::new())
                .await
                .into_iter()
                .filter(|b| b["action"] == "delete")
                .collect();
            (!n.is_empty()).then_some(n)
        }
    })
    .await
    .unwrap_or_else(|| panic!("no delete message:\n{}", guard.logs()));
    all.extend(notes.clone());
    eprintln!("{notes:#?}");
    assert!(
        notes.iter().all(|b| b["outcome"] != "applied"),
        "reported as trailguard's deletion, though IAM answered NoSuchEntity to its only call: {notes:#?}"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

/// trailguard's UpdateAccessKey is carried out, its answer never comes, trailguard is killed;
/// the key's owner reactivates it (their application broke) before trailguard is back. The
/// restart reads the key (Active) and reports the change it made as FAILED.
#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_undone_by_its_owner_before_the_restart_is_not_reported_failed() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["UpdateAccessKey".into()],
            hang: true,
            after: true,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config("[iam]\nenabled = true\naction = \"deactivate\"\n", port);
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(30), || async {
        (key_status(&iam, "a-stale", &key).await.as_deref() == Some("Inactive")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never deactivated:\n{}", guard.logs()));
    guard.signal("KILL");
    let _ = guard.child.wait();
    drop(guard);
    world.sb.state().clear_faults();
    // The owner turns it back on.
    iam.update_access_key()
        .user_name("a-stale")
        .access_key_id(key.as_str())
        .status(StatusType::Active)
        .send()
        .await
        .unwrap();
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(40), || async {
        (guard.metric("trailguard_iam_sweeps_total{outcome=\"ok\"}").await >= 1.0).then_some(())
    })
    .await
    .expect("a sweep");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let notes = about(&world, &key, &mut Vec::new()).await;
    eprintln!("{notes:#?}");
    let interrupted: Vec<&Value> = notes.iter().filter(|b| b["interrupted"] == true).collect();
    assert!(
        interrupted.iter().all(|b| b["outcome"] != "failed"),
        "the deactivation trailguard made (UpdateAccessKey served {} times before the kill) is reported failed: {interrupted:#?}",
        world.sb.state().counter("iam.UpdateAccessKey")
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}

/// As above, but the restart's first read of the key fails (4 attempts, IAM throttling): the
/// intent is kept, the sweep goes on, decides the (reactivated) key again and overwrites the
/// intent with its own. The first deactivation is never reported at all.
#[tokio::test(flavor = "multi_thread")]
async fn an_unaccounted_intent_is_not_overwritten_by_the_next_sweep() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["UpdateAccessKey".into()],
            hang: true,
            after: true,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config("[iam]\nenabled = true\naction = \"deactivate\"\n", port);
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(30), || async {
        (key_status(&iam, "a-stale", &key).await.as_deref() == Some("Inactive")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never deactivated:\n{}", guard.logs()));
    guard.signal("KILL");
    let _ = guard.child.wait();
    drop(guard);
    world.sb.state().clear_faults();
    iam.update_access_key()
        .user_name("a-stale")
        .access_key_id(key.as_str())
        .status(StatusType::Active)
        .send()
        .await
        .unwrap();
    world.sb.state().set_fault(
        Service::Iam,
        Fault {
            operations: vec!["ListAccessKeys".into()],
            fail_next: 4,
            status: 400,
            ..Default::default()
        },
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(40), || async {
        (guard.metric("trailguard_iam_sweeps_total{outcome=\"ok\"}").await >= 1.0).then_some(())
    })
    .await
    .expect("a sweep");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A second restart: whatever is still noted is accounted for now.
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
    let mut notes = about(&world, &key, &mut Vec::new()).await;
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;
    eventually(Duration::from_secs(40), || async {
        (guard.metric("trailguard_iam_sweeps_total{outcome=\"ok\"}").await >= 1.0).then_some(())
    })
    .await
    .expect("a sweep");
    tokio::time::sleep(Duration::from_secs(5)).await;
    notes.extend(about(&world, &key, &mut Vec::new()).await);
    eprintln!("{notes:#?}\n{}", guard.logs());
    eprintln!(
        "UpdateAccessKey served: {}",
        world.sb.state().counter("iam.UpdateAccessKey")
    );
    assert!(
        notes.iter().any(|b| b["interrupted"] == true),
        "the first deactivation is never reported: {notes:#?}"
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}
