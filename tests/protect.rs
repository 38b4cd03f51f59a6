//! The KMS protection policy end to end: the daemon against the sandbox.
// NOTE: end-to-end tests run on real time, against a sandbox that keeps real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use trailguard_sandbox::IdentitySpec;

const KEY_ADMIN: &str = "AKIAKEYADMINROLE";

#[tokio::test(flavor = "multi_thread")]
async fn protected_keys_are_restored_unless_an_allowed_principal_or_exemption_says_otherwise() {
    let world = World::new().await;
    world.sb.state().set_identity(
        KEY_ADMIN,
        IdentitySpec::AssumedRole {
            role_name: "KeyAdmin".into(),
            session_name: "bob".into(),
            account_id: None,
        },
    );
    let key_admin = aws_sdk_kms::Client::new(&sdk(&world.sb, KEY_ADMIN).await);
    let payments = aliased_key(&world, "alias/prod-payments").await;
    let ledger = aliased_key(&world, "alias/prod-ledger").await;
    // The exemption's alias was given by a key admin: an alias a stranger gives a protected
    // key never brings it under an exemption.
    let legacy = world.kms.create_key().send().await.unwrap().key_metadata.unwrap();
    key_admin
        .create_alias()
        .alias_name("alias/prod-legacy")
        .target_key_id(legacy.key_id())
        .send()
        .await
        .unwrap();
    let legacy = legacy.arn().unwrap().to_owned();
    let scratch = aliased_key(&world, "alias/dev-scratch").await;
    let port = free_port();
    let config = world.config(
        "[kms]\nprotected_keys = [\"alias/prod-*\"]\non_disable = \"enable_key\"\non_schedule_deletion = \"cancel_key_deletion\"\n\
         allowed_principals = [\"arn:aws:sts::*:assumed-role/KeyAdmin/*\"]\n\
         [[kms.exemptions]]\nkey = \"alias/prod-legacy\"\nexpires = \"2099-12-31\"\nreason = \"decommissioning, CHG-42\"\n",
        port,
    );
    let mut guard = Guard::start(&world, &config, port, &[]);
    guard.wait_ready().await;

    // An unknown principal (the IAM user ops-admin) disables a protected key: re-enabled.
    world.kms.disable_key().key_id(&payments).send().await.unwrap();
    // An allowed principal (an assumed-role session of KeyAdmin) disables one: notified only.
    key_admin.disable_key().key_id(&ledger).send().await.unwrap();
    // An exempt key may be scheduled for deletion; an unprotected key may be disabled.
    world
        .kms
        .schedule_key_deletion()
        .key_id(&legacy)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    world.kms.disable_key().key_id(&scratch).send().await.unwrap();

    let mut seen = Vec::new();
    let restored = note_for(&world, "kms_key_disabled", &payments, &mut seen).await;
    assert_eq!(restored["remediation"]["action"], "enable_key", "{restored:#}");
    assert_eq!(restored["remediation"]["outcome"], "applied");
    assert!(
        restored["policy"].as_str().unwrap().starts_with(
            "kms.protected_keys[0] (alias/prod-*) protects the key and the caller is not allowed"
        )
    );
    assert_eq!(world.key_state(&payments).await.0, "Enabled");
    // Disabled again within the aggregation window: a new change, reverted again.
    world.kms.disable_key().key_id(&payments).send().await.unwrap();
    let again = eventually(Duration::from_secs(15), || async {
        (guard
            .metric("trailguard_remediations_total{action=\"enable_key\",outcome=\"applied\"}")
            .await
            == 2.0)
            .then_some(())
    })
    .await;
    assert!(
        again.is_some(),
        "the second disable was not reverted:\n{}",
        guard.logs()
    );
    assert_eq!(world.key_state(&payments).await.0, "Enabled");

    let allowed = note_for(&world, "kms_key_disabled", &ledger, &mut seen).await;
    assert_eq!(
        allowed["remediation"],
        Value::Null,
        "an allowed change is never reverted"
    );
    assert!(
        allowed["policy"]
            .as_str()
            .unwrap()
            .contains("kms.allowed_principals[0] (arn:aws:sts::*:assumed-role/KeyAdmin/*)")
    );
    assert_eq!(
        allowed["finding"]["principal_arn"],
        "arn:aws:sts::123456789012:assumed-role/KeyAdmin/bob"
    );

    let exempt = note_for(&world, "kms_key_deletion_scheduled", &legacy, &mut seen).await;
    assert!(
        exempt["policy"]
            .as_str()
            .unwrap()
            .contains("kms.exemptions[0] (alias/prod-legacy, until 2099-12-31: decommissioning, CHG-42)")
    );
    let unprotected = note_for(&world, "kms_key_disabled", &scratch, &mut seen).await;
    assert_eq!(
        unprotected["policy"],
        "the key is not protected by kms.protected_keys"
    );

    assert_eq!(world.key_state(&ledger).await.0, "Disabled");
    assert_eq!(world.key_state(&legacy).await.0, "PendingDeletion");
    assert_eq!(world.key_state(&scratch).await.0, "Disabled");

    // A protected key scheduled for deletion by someone else: the deletion is cancelled.
    world
        .kms
        .schedule_key_deletion()
        .key_id(&payments)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let cancelled = note_for(&world, "kms_key_deletion_scheduled", &payments, &mut seen).await;
    assert_eq!(cancelled["remediation"]["action"], "cancel_key_deletion");
    assert_eq!(cancelled["remediation"]["outcome"], "applied");
    assert_eq!(world.key_state(&payments).await, ("Disabled".to_owned(), false));
    assert_eq!(
        guard
            .metric("trailguard_remediations_total{action=\"enable_key\",outcome=\"applied\"}")
            .await,
        2.0
    );
    assert!(guard.terminate(Duration::from_secs(25)).await.success());
}
