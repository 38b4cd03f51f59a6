//! One writer per account: two trailguards against one sandbox account, exactly one acts.

// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

const LEASED: &str = "[lease]\ntable = \"trailguard-lease\"\nduration = \"10s\"\n";

async fn lease_table(world: &World) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let db = aws_sdk_dynamodb::Client::new(&sdk(&world.sb, ADMIN).await);
    db.create_table()
        .table_name("trailguard-lease")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("lease_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("lease_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    db
}

/// A second daemon: its own state directory (another host) and port.
fn second(world: &World, port: u16) -> std::path::PathBuf {
    let path = world.config(LEASED, port);
    let text = std::fs::read_to_string(&path).unwrap();
    let other = world.dir.join("other.toml");
    std::fs::write(
        &other,
        text.replace(
            &world.dir.join("state").display().to_string(),
            &world.dir.join("state-b").display().to_string(),
        ),
    )
    .unwrap();
    other
}

async fn ready(g: &Guard) -> bool {
    matches!(g.get("/readyz").await, Some((200, _)))
}

/// Waits until exactly one of the two holds the lease; returns its index.
async fn one_holder(a: &Guard, b: &Guard) -> usize {
    eventually(Duration::from_secs(30), || async {
        a.get("/metrics").await?;
        b.get("/metrics").await?;
        let held = (
            a.metric("trailguard_lease_held").await,
            b.metric("trailguard_lease_held").await,
        );
        match held {
            (1.0, 0.0) if ready(a).await && !ready(b).await => Some(0),
            (0.0, 1.0) if ready(b).await && !ready(a).await => Some(1),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|| panic!("not exactly one holder:\n{}\n---\n{}", a.logs(), b.logs()))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_one_acts_and_a_dead_holder_is_replaced_within_the_lease_time() {
    let world = World::new().await;
    let db = lease_table(&world).await;
    let (port_a, port_b) = (free_port(), free_port());
    // Both configurations are written before either daemon reads its own.
    let config_b = second(&world, port_b);
    let config_a = world.config(LEASED, port_a);
    let mut guards = [
        Guard::start(&world, &config_a, port_a, &[]),
        Guard::start(&world, &config_b, port_b, &[]),
    ];
    let holder = one_holder(&guards[0], &guards[1]).await;
    let standby = 1 - holder;
    let (_, body) = guards[standby].get("/readyz").await.unwrap();
    assert!(body.starts_with("standby: "), "{body}");

    // A key in use while pending deletion: rescued once, by the holder.
    let (first, ct1) = world.doomed_key("alias/first").await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ct1)
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(20), || async {
        (!world.key_state(&first).await.1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("not rescued:\n{}", guards[holder].logs()));

    // The holder dies without releasing: the other takes over within the lease time.
    guards[holder].signal("KILL");
    let _ = guards[holder].child.wait();
    let died = std::time::Instant::now();
    eventually(Duration::from_secs(20), || async {
        (guards[standby].metric("trailguard_lease_held").await == 1.0 && ready(&guards[standby]).await)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no takeover:\n{}", guards[standby].logs()));
    let handover = died.elapsed();
    assert!(
        handover < Duration::from_secs(10 + 5),
        "within the lease time (10 s) and a retry: {handover:?}"
    );

    // During and after the handover: nothing missed, no rescue repeated.
    let (second_key, ct2) = world.doomed_key("alias/second").await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ct2)
        .send()
        .await
        .unwrap_err();
    eventually(Duration::from_secs(20), || async {
        (!world.key_state(&second_key).await.1).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("missed after the handover:\n{}", guards[standby].logs()));
    assert_eq!(
        world.sb.state().counter("kms.CancelKeyDeletion"),
        2,
        "each key rescued once"
    );
    // The new holder re-reads the old key's use (another host, another state): nothing to do,
    // and any repeated message carries the original's notification_id.
    let mut by_id: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for (_, b, _) in world.notifications().await {
        by_id
            .entry(b["notification_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(b);
    }
    for (id, notes) in &by_id {
        let events: std::collections::HashSet<_> =
            notes.iter().map(|b| b["finding"]["event_id"].clone()).collect();
        assert_eq!(events.len(), 1, "{id} names one event: {notes:#?}");
    }

    // SIGTERM releases the lease at once.
    assert!(
        guards[standby]
            .terminate_ref(Duration::from_secs(25))
            .await
            .success()
    );
    let item = db
        .get_item()
        .table_name("trailguard-lease")
        .key(
            "lease_id",
            aws_sdk_dynamodb::types::AttributeValue::S("123456789012".into()),
        )
        .send()
        .await
        .unwrap();
    assert!(item.item.is_none(), "released: {item:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_on_the_same_state_file_stands_by() {
    let world = World::new().await;
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = Guard::start(&world, &world.config("", port_a), port_a, &[]);
    a.wait_ready().await;
    // Without lease.table the only process acts: it must say so, or TrailguardNoLeaseHolder
    // (sum of trailguard_lease_held == 0) fires on every install without a lease, and
    // TrailguardLeaseHeldTwice never sees two lease-less instances acting at once.
    assert_eq!(a.metric("trailguard_lease_held").await, 1.0, "{}", a.logs());
    let config_b = world.dir.join("b.toml");
    std::fs::copy(world.config("", port_b), &config_b).unwrap();
    let b = Guard::start(&world, &config_b, port_b, &[]);
    let standing = eventually(Duration::from_secs(15), || async {
        match b.get("/readyz").await {
            Some((503, body)) if body.contains("another trailguard process uses the state file") => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(standing.is_some(), "{}", b.logs());
    assert_eq!(b.metric("trailguard_lease_held").await, 0.0);
    assert!(
        matches!(b.get("/healthz").await, Some((200, _))),
        "alive while standing by"
    );
    // The first one stops: the second opens the state and acts.
    assert!(a.terminate(Duration::from_secs(25)).await.success());
    eventually(Duration::from_secs(20), || async {
        ready(&b).await.then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never took over:\n{}", b.logs()));
    assert!(b.terminate(Duration::from_secs(25)).await.success());
}
