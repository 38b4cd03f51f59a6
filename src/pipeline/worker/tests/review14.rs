//! Review of issue 14: reminders and aliases an intruder or an outage can push on.

use super::*;

fn json_of(store: &Store, rule: &str) -> Vec<serde_json::Value> {
    store
        .outbox()
        .unwrap()
        .0
        .iter()
        .map(|e| e.message.json.clone())
        .filter(|j| j["finding"]["rule_id"] == rule)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_rescheduling_folded_into_the_window_is_still_followed_for_reminders() {
    // Scheduled (s-1), cancelled by an admin, and the reminders check forgets the key (no
    // longer pending); two minutes later an intruder schedules it again (s-2), inside the
    // aggregation window of s-1's message. The new deletion must be followed for reminders.
    let b = Bench::start(FakeRemediator::default(), Policy::default());
    b.send(record("s-1", "ScheduleKeyDeletion", t0(), serde_json::json!({})));
    b.settle().await;
    let followed = |s: &Store| -> Vec<String> {
        s.pending_keys()
            .unwrap()
            .0
            .iter()
            .map(|k| k.finding.event_id.clone())
            .collect()
    };
    assert_eq!(followed(&b.store), ["s-1"]);
    b.store.forget_pending(KEY).unwrap();
    let again = t0() + chrono::Duration::seconds(120);
    b.send(record("s-2", "ScheduleKeyDeletion", again, serde_json::json!({})));
    b.settle().await;
    assert_eq!(
        followed(&b.store),
        ["s-2"],
        "a deletion scheduled again must be followed for reminders, even if its message is folded"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_moved_alias_is_not_named_for_its_old_key() {
    // alias/payments-prod named the key; then UpdateAlias moved it to another key. The next
    // notification about the old key must not name alias/payments-prod (a reader would look at
    // the wrong application).
    let fake = FakeRemediator {
        facts: Some(KeyFacts {
            aliases: vec!["alias/payments-prod".into()],
            tags: vec![],
        }),
        ..Default::default()
    };
    let changed = fake.changed.clone();
    let b = Bench::start(fake, Policy::default());
    b.send(record("d-1", "DisableKey", t0(), serde_json::json!({})));
    b.settle().await;
    let disabled = json_of(&b.store, crate::rules::KEY_DISABLED);
    assert_eq!(disabled[0]["finding"]["key_alias"], "alias/payments-prod");
    *changed.lock().unwrap() = Some(KeyFacts::default());
    let other = "arn:aws:kms:eu-west-1:111122223333:key/k-2";
    b.send(record(
        "u-1",
        "UpdateAlias",
        t0() + chrono::Duration::seconds(30),
        serde_json::json!({
            "requestParameters": {"aliasName": "alias/payments-prod", "targetKeyId": "k-2"},
            "resources": [
                {"ARN": "arn:aws:kms:eu-west-1:111122223333:alias/payments-prod", "type": "AWS::KMS::Alias"},
                {"ARN": KEY, "type": "AWS::KMS::Key"},
                {"ARN": other, "type": "AWS::KMS::Key"}]}),
    ));
    b.send(record(
        "s-1",
        "ScheduleKeyDeletion",
        t0() + chrono::Duration::seconds(60),
        serde_json::json!({}),
    ));
    b.settle().await;
    let scheduled = json_of(&b.store, crate::rules::KEY_DELETION_SCHEDULED);
    assert_eq!(scheduled.len(), 1);
    assert_ne!(
        scheduled[0]["finding"]["key_alias"], "alias/payments-prod",
        "the alias was moved to another key: naming it for this key misleads the reader"
    );
    b.stop().await;
}
