//! Review of issue 10: protection decisions an intruder or an outage can push on.

use super::*;

/// A store with `KEY`'s history: a snapshot at `snap` (with `facts`) and changes by role `who`.
fn seed_facts(store: &Store, snap: i64, facts: KeyFacts, changes: &[(i64, crate::protection::Edit, &str)]) {
    seed(
        store,
        snap,
        &facts.aliases.iter().map(String::as_str).collect::<Vec<_>>(),
        changes,
    );
    // `seed` wrote a snapshot with the aliases only: write the full facts over it.
    store
        .put_snapshot(KEY, t0() + chrono::Duration::seconds(snap), &facts)
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stranger_overwriting_a_protective_tags_value_does_not_unprotect_the_key() {
    // The intruder does not untag the key: TagResource sets trailguard:protect=false over the
    // "true" that protected it, then disables the key. KMS now says "false".
    let tag = |v: &str| KeyFacts {
        aliases: vec![],
        tags: vec![("trailguard:protect".into(), v.into())],
    };
    let fake = FakeRemediator {
        facts: Some(tag("false")),
        ..Default::default()
    };
    let mut policy = protected_policy();
    policy.protected = vec![Protected::parse("tag:trailguard:protect=true").unwrap()];
    let b = Bench::start(fake, policy);
    seed_facts(
        &b.store,
        -100,
        tag("true"),
        &[(
            -5,
            crate::protection::Edit::AddTag("trailguard:protect".into(), "false".into()),
            "intruder",
        )],
    );
    b.send(record(
        "d-1",
        "DisableKey",
        t0() - chrono::Duration::seconds(2),
        serde_json::json!({}),
    ));
    b.settle().await;
    assert_eq!(
        *b.calls.lock().unwrap(),
        [Action::EnableKey],
        "a caller not in kms.allowed_principals changed the protective tag's value: it must not unprotect the key"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stranger_cannot_exempt_a_protected_key_by_giving_it_an_exempt_alias() {
    // kms.exemptions[0] approves the deletion of keys aliased alias/retired-*. The intruder
    // (not in kms.allowed_principals) gives the protected alias/prod-db key a second alias,
    // alias/retired-x (CreateAlias), then schedules its deletion.
    let facts = |aliases: &[&str]| KeyFacts {
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        tags: vec![],
    };
    let fake = FakeRemediator {
        facts: Some(facts(&["alias/prod-db", "alias/retired-x"])),
        ..Default::default()
    };
    let mut policy = protected_policy();
    policy.exemptions = vec![crate::plan::KeyExemption {
        key: "alias/retired-*".into(),
        expires: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        reason: "decommissioning, CHG-42".into(),
    }];
    let b = Bench::start(fake, policy);
    seed(
        &b.store,
        -100,
        &["alias/prod-db"],
        &[(
            -5,
            crate::protection::Edit::AddAlias("alias/retired-x".into()),
            "intruder",
        )],
    );
    b.send(record(
        "s-1",
        "ScheduleKeyDeletion",
        t0() - chrono::Duration::seconds(2),
        serde_json::json!({}),
    ));
    b.settle().await;
    assert_eq!(
        *b.calls.lock().unwrap(),
        [Action::CancelKeyDeletion],
        "an alias added by a caller not in kms.allowed_principals must not bring the key under an exemption"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_protected_by_its_arn_is_rescued_when_its_aliases_cannot_be_read() {
    // kms.protected_keys names the key by ARN (no alias or tag needed to know it is
    // protected), next to an alias glob. ListAliases fails (facts: None) and trailguard has no
    // snapshot of the key yet (a refresh that failed, or a key first seen in this event).
    let mut policy = protected_policy();
    policy.protected.push(Protected::parse(KEY).unwrap());
    let b = Bench::start(FakeRemediator::default(), policy);
    b.send(record("s-1", "ScheduleKeyDeletion", t0(), serde_json::json!({})));
    b.settle().await;
    assert_eq!(
        *b.calls.lock().unwrap(),
        [Action::CancelKeyDeletion],
        "kms.protected_keys[1] protects the key whatever its aliases: a failed ListAliases must not unprotect it"
    );
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stranger_overwriting_a_protective_tags_value_is_reported_as_a_removal() {
    let tag = |k: &str, v: &str| KeyFacts {
        aliases: vec![],
        tags: vec![(k.into(), v.into())],
    };
    let fake = FakeRemediator {
        facts: Some(tag("trailguard:protect", "false")),
        ..Default::default()
    };
    let mut policy = protected_policy();
    policy.protected = vec![Protected::parse("tag:trailguard:protect=true").unwrap()];
    let b = Bench::start(fake, policy);
    let set = |k: &str, v: &str| crate::protection::Edit::AddTag(k.into(), v.into());
    seed_facts(
        &b.store,
        -100,
        tag("trailguard:protect", "true"),
        &[
            (-9, set("cost-center", "42"), "intruder"),
            (-5, set("trailguard:protect", "false"), "intruder"),
        ],
    );
    let tag_resource = |id: &str, at: i64, k: &str, v: &str| {
        record(
            id,
            "TagResource",
            t0() + chrono::Duration::seconds(at),
            serde_json::json!({"requestParameters": {"keyId": "k-1", "tags": [{"tagKey": k, "tagValue": v}]}}),
        )
    };
    // A tag that protects nothing changes nothing: not reported.
    b.send(tag_resource("c-9", -9, "cost-center", "42"));
    b.settle().await;
    assert!(
        b.store.outbox().unwrap().0.is_empty(),
        "an unrelated tag is not a removal"
    );
    b.send(tag_resource("c-5", -5, "trailguard:protect", "false"));
    b.settle().await;
    let entries = b.store.outbox().unwrap().0;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let j = &entries[0].message.json;
    assert_eq!(j["rule_id"], "kms_protection_removed", "{j:#}");
    assert!(
        j["policy"]
            .as_str()
            .unwrap()
            .contains("keeps treating the key as protected"),
        "{j:#}"
    );
    b.stop().await;
}
