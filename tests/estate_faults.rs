//! Where trailguard acts when resolving it fails once: an account whose regions could not be
//! listed at start (`regions = ["all"]`) is still guarded, its events from the queue sources
//! acted on.

mod common;

use std::time::Duration;

use common::*;
use trailguard_sandbox::wire::Service;
use trailguard_sandbox::{DEFAULT_ACCOUNT, Fault};

/// `[accounts]`, `regions = ["all"]`, and `account:ListRegions` refused once at start (a
/// member role not yet deployed, an SCP being rolled out): the account's key is still rescued
/// from the EventBridge queue, which needs no region list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_regions_failed_once_at_start_is_still_guarded() {
    let world = World::new().await;
    let url = world
        .sqs
        .create_queue()
        .queue_name("kms-events")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    forward_kms_events(&world, &url).await;
    world.sb.state().set_fault(
        Service::Account,
        Fault {
            operations: vec!["ListRegions".into()],
            fail_next: 1,
            status: 403,
            code: Some("AccessDeniedException".into()),
            ..Default::default()
        },
    );
    let port = free_port();
    let path = world.config(
        &format!(
            "[[sources]]\nkind = \"eventbridge_sqs\"\nqueue_url = \"{url}\"\nregion = \"us-east-1\"\n\
             wait_time = \"1s\"\nvisibility_timeout = \"10s\"\n[accounts]\nids = [\"{DEFAULT_ACCOUNT}\"]\n"
        ),
        port,
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("regions = [\"us-east-1\"]", "regions = [\"all\"]");
    std::fs::write(&path, text).unwrap();
    let mut g = Guard::start(&world, &path, port, &[]);
    g.wait_ready().await;
    assert!(
        g.logs().contains("ListRegions"),
        "the fault was met at start:\n{}",
        g.logs()
    );
    let (arn, ct) = world.doomed_key("alias/ledger").await;
    let _ = world
        .app_kms
        .decrypt()
        .ciphertext_blob(ct)
        .send()
        .await
        .expect_err("pending deletion");
    let rescued = eventually(Duration::from_secs(60), || async {
        (world.key_state(&arn).await.0 == "Disabled").then_some(())
    })
    .await;
    assert!(
        rescued.is_some(),
        "the key of a guarded account is rescued:\n{}",
        g.logs()
    );
    assert!(g.terminate(Duration::from_secs(30)).await.success());
}
