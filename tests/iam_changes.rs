//! IAM key changes that AWS answers badly, or that an outage or a person cuts short: each is
//! reported as what it came to, never lost and never claimed when it was not made
//! ([`trailguard::iam::intent`]). End to end against the sandbox, with its `after` faults
//! (a call carried out, then its answer failed or held).
// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_iam::types::StatusType;
use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use trailguard_sandbox::Fault;
use trailguard_sandbox::wire::Service;

const DEACTIVATE: &str = "[iam]\nenabled = true\naction = \"deactivate\"\n";

/// Every notification about `key` so far (each read drains the subscriber's queue: `all`
/// keeps what was read).
async fn about(world: &World, key: &str, all: &mut Vec<Value>) -> Vec<Value> {
    all.extend(world.notifications().await.into_iter().map(|(_, b, _)| b));
    all.iter()
        .filter(|b| b["finding"]["key"]["access_key_id"] == key)
        .cloned()
        .collect()
}

fn iam_fault(world: &World, operations: &[&str], fault: Fault) {
    let operations = operations.iter().map(|o| (*o).to_owned()).collect();
    world
        .sb
        .state()
        .set_fault(Service::Iam, Fault { operations, ..fault });
}

/// A trailguard that deactivates stale keys, ready.
async fn guard(world: &World, config: &Path, port: u16) -> Guard {
    let mut g = Guard::start(world, config, port, &[]);
    g.wait_ready().await;
    g
}

/// Waits for a completed sweep, then a few seconds for its messages.
async fn swept(g: &Guard) {
    eventually(Duration::from_secs(40), || async {
        (g.metric("trailguard_iam_sweeps_total{outcome=\"ok\"}").await >= 1.0).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no sweep:\n{}", g.logs()));
    tokio::time::sleep(Duration::from_secs(5)).await;
}

/// IAM deactivates `user`'s `key` and its answer never arrives; trailguard is killed with
/// `kill -9` while it waits for it: the moment between IAM's change and the outbox write,
/// stretched. Returns the config to restart with (same state).
async fn killed_while_the_answer_is_held(
    world: &World,
    iam: &aws_sdk_iam::Client,
    user: &str,
    key: &str,
) -> (PathBuf, u16) {
    iam_fault(
        world,
        &["UpdateAccessKey"],
        Fault {
            hang: true,
            after: true,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config(DEACTIVATE, port);
    let mut g = guard(world, &config, port).await;
    eventually(Duration::from_secs(30), || async {
        (key_status(iam, user, key).await.as_deref() == Some("Inactive")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the key was never deactivated:\n{}", g.logs()));
    g.signal("KILL");
    let _ = g.child.wait();
    world.sb.state().clear_faults();
    (config, port)
}

async fn reactivate(iam: &aws_sdk_iam::Client, user: &str, key: &str) {
    iam.update_access_key()
        .user_name(user)
        .access_key_id(key)
        .status(StatusType::Active)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_whose_answer_never_came_is_reported_after_a_kill_and_restart() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    let (config, port) = killed_while_the_answer_is_held(&world, &iam, "a-stale", &key).await;
    let mut all = Vec::new();
    assert!(
        about(&world, &key, &mut all).await.is_empty(),
        "reported before the kill"
    );
    // Restarted with the same state: the change begun is accounted for and reported.
    let g = guard(&world, &config, port).await;
    swept(&g).await;
    eventually(Duration::from_secs(20), || async {
        (g.metric("trailguard_notifications_pending").await == 0.0).then_some(())
    })
    .await
    .expect("outbox drained");
    let seen = about(&world, &key, &mut all).await;
    assert_eq!(seen.len(), 1, "one message about the change: {seen:#?}");
    let note = &seen[0];
    assert_eq!(note["outcome"], "applied", "{note:#}");
    assert_eq!(note["action"], "deactivate");
    assert_eq!(note["interrupted"], true);
    let detail = note["detail"].as_str().unwrap();
    assert!(detail.contains("the key is Inactive now"), "{detail}");
    assert_eq!(
        world.sb.state().counter("iam.UpdateAccessKey"),
        1,
        "the key was not changed again"
    );
    assert!(g.terminate(Duration::from_secs(25)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_iam_made_but_answered_with_errors_is_reported_as_made() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    // Every UpdateAccessKey is carried out, and answered with a 500 (the retries too).
    iam_fault(
        &world,
        &["UpdateAccessKey"],
        Fault {
            error_rate: 1.0,
            after: true,
            ..Default::default()
        },
    );
    let port = free_port();
    let g = guard(&world, &world.config(DEACTIVATE, port), port).await;
    swept(&g).await;
    let notes = about(&world, &key, &mut Vec::new()).await;
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(notes[0]["outcome"], "applied", "{:#}", notes[0]);
    let detail = notes[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("answered with an error") && detail.contains("the key is Inactive now"),
        "{detail}"
    );
    world.sb.state().clear_faults();
    assert!(g.terminate(Duration::from_secs(25)).await.success());
}

/// UpdateAccessKey is carried out and answered with 500s; the read-back ListAccessKeys fails
/// too (IAM degraded). The change was made: it is reported, if not at once then at the next
/// sweep.
#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_whose_read_back_fails_is_still_reported_as_made() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    // Hold the sweep at ListUserTags (just before it acts) so the faults can be swapped.
    iam_fault(
        &world,
        &["ListUserTags"],
        Fault {
            latency_ms: 4000,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config(DEACTIVATE, port);
    let g = guard(&world, &config, port).await;
    eventually(Duration::from_secs(30), || async {
        (world.sb.state().counter("iam.ListUserTags") >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no ListUserTags:\n{}", g.logs()));
    iam_fault(
        &world,
        &["UpdateAccessKey", "ListAccessKeys"],
        Fault {
            error_rate: 1.0,
            after: true,
            ..Default::default()
        },
    );
    let mut all = Vec::new();
    eventually(Duration::from_secs(60), || async {
        (!about(&world, &key, &mut Vec::new()).await.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no message:\n{}", g.logs()));
    world.sb.state().clear_faults();
    assert_eq!(
        key_status(&iam, "a-stale", &key).await.as_deref(),
        Some("Inactive")
    );
    // A restart (a fresh sweep, the same state): what was left open is reported.
    assert!(g.terminate(Duration::from_secs(25)).await.success());
    let g = guard(&world, &config, port).await;
    swept(&g).await;
    let notes = about(&world, &key, &mut all).await;
    assert!(
        notes.iter().any(|b| b["outcome"] == "applied"),
        "trailguard deactivated the key (it is Inactive), but no message says so: {notes:#?}\n{}",
        g.logs()
    );
    assert!(g.terminate(Duration::from_secs(25)).await.success());
}

/// Someone else deletes the key while trailguard's DeleteAccessKey is on its way (after the
/// sweep listed it): IAM answers NoSuchEntity. trailguard did not delete it.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_someone_else_deleted_is_not_reported_as_deleted_by_trailguard() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "gone-long", 200, Some(150)).await;
    // Straight to moto: no record of it in event history but the one injected below.
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
    iam_fault(
        &world,
        &["DeleteAccessKey"],
        Fault {
            latency_ms: 3000,
            ..Default::default()
        },
    );
    let port = free_port();
    let config = world.config(
        "[iam]\nenabled = true\naction = \"delete\"\ndelete_after_inactive = \"30d\"\n",
        port,
    );
    let mut g = Guard::start_with(
        &world,
        &config,
        port,
        &[],
        GUARD,
        &[("TRAILGUARD__CLOUDTRAIL__MAX_DELIVERY_DELAY", "60s")],
    );
    g.wait_ready().await;
    eventually(Duration::from_secs(150), || async {
        (world.sb.state().counter("iam.DeleteAccessKey") >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no DeleteAccessKey:\n{}", g.logs()));
    moto.delete_access_key()
        .user_name("gone-long")
        .access_key_id(key.as_str())
        .send()
        .await
        .unwrap();
    let notes = eventually(Duration::from_secs(30), || async {
        let n: Vec<Value> = about(&world, &key, &mut Vec::new())
            .await
            .into_iter()
            .filter(|b| b["action"] == "delete")
            .collect();
        (!n.is_empty()).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("no delete message:\n{}", g.logs()));
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(
        notes[0]["outcome"], "not_needed",
        "IAM answered NoSuchEntity to trailguard's only call: {notes:#?}"
    );
    assert!(g.terminate(Duration::from_secs(25)).await.success());
}

/// trailguard's UpdateAccessKey is carried out, its answer never comes, trailguard is killed;
/// the key's owner reactivates it (their application broke) before trailguard is back. The key
/// reads Active at the restart: event history shows the deactivation was made.
#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_undone_by_its_owner_before_the_restart_is_not_reported_failed() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    let (config, port) = killed_while_the_answer_is_held(&world, &iam, "a-stale", &key).await;
    reactivate(&iam, "a-stale", &key).await;
    let g = guard(&world, &config, port).await;
    swept(&g).await;
    let notes = about(&world, &key, &mut Vec::new()).await;
    let interrupted: Vec<&Value> = notes.iter().filter(|b| b["interrupted"] == true).collect();
    assert_eq!(interrupted.len(), 1, "{notes:#?}");
    assert_eq!(interrupted[0]["outcome"], "applied", "{:#}", interrupted[0]);
    let detail = interrupted[0]["detail"].as_str().unwrap();
    assert!(detail.contains("reactivated since"), "{detail}");
    assert!(g.terminate(Duration::from_secs(25)).await.success());
}

/// As above, but the restart's first read of the key fails (IAM refusing ListAccessKeys): the
/// note is kept, and the sweep must not decide the (reactivated) key again over it. The next
/// start settles it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unaccounted_intent_is_not_overwritten_by_the_next_sweep() {
    let world = World::new().await;
    let iam = iam_client(&world).await;
    let key = iam_user(&world, &iam, "a-stale", 200, None).await;
    let (config, port) = killed_while_the_answer_is_held(&world, &iam, "a-stale", &key).await;
    reactivate(&iam, "a-stale", &key).await;
    iam_fault(
        &world,
        &["ListAccessKeys"],
        Fault {
            fail_next: 4,
            status: 400,
            ..Default::default()
        },
    );
    let changes = world.sb.state().counter("iam.UpdateAccessKey");
    let g = guard(&world, &config, port).await;
    swept(&g).await;
    assert_eq!(
        world.sb.state().counter("iam.UpdateAccessKey"),
        changes,
        "the key was changed again over a change not accounted for"
    );
    assert!(g.terminate(Duration::from_secs(25)).await.success());
    let mut all = Vec::new();
    about(&world, &key, &mut all).await;
    // A second start: what is still noted is accounted for now.
    let g = guard(&world, &config, port).await;
    swept(&g).await;
    let notes = about(&world, &key, &mut all).await;
    assert!(
        notes
            .iter()
            .any(|b| b["interrupted"] == true && b["outcome"] == "applied"),
        "the first deactivation is never reported: {notes:#?}"
    );
    assert!(g.terminate(Duration::from_secs(25)).await.success());
}
