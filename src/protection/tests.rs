use chrono::TimeZone;

use super::*;

const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn change(at: i64, edit: Edit, who: &str) -> Change {
    Change {
        key_arn: KEY.into(),
        time: t(at),
        event_id: format!("e{at}"),
        edit,
        principal: Some(format!("arn:aws:sts::111122223333:assumed-role/{who}/s")),
        session_issuer: None,
        moved: false,
    }
}

fn facts(aliases: &[&str]) -> KeyFacts {
    KeyFacts {
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        tags: vec![],
    }
}

#[test]
fn facts_are_replayed_forward_and_backward_from_the_nearest_snapshot() {
    let h = History {
        snapshots: vec![(t(100), facts(&[]))],
        changes: vec![change(50, Edit::RemoveAlias("alias/prod-db".into()), "intruder")],
    };
    // The snapshot came after the alias was deleted: before the deletion, the key had it.
    assert_eq!(h.facts_at(t(40)).unwrap().aliases, ["alias/prod-db"]);
    assert!(h.facts_at(t(60)).unwrap().aliases.is_empty());
    let h = History {
        snapshots: vec![(t(0), facts(&["alias/prod-db"]))],
        changes: vec![change(50, Edit::RemoveAlias("alias/prod-db".into()), "intruder")],
    };
    assert_eq!(h.facts_at(t(40)).unwrap().aliases, ["alias/prod-db"]);
    assert!(h.facts_at(t(60)).unwrap().aliases.is_empty());
    assert!(History::default().facts_at(t(0)).is_none());
}

#[test]
fn only_allowed_principals_can_unprotect_a_key() {
    let allowed = vec!["arn:aws:iam::111122223333:role/KeyAdmin".to_owned()];
    let ok = |c: &Change| by_allowed(c, &allowed);
    let h = History {
        snapshots: vec![(t(0), facts(&["alias/prod-db"]))],
        changes: vec![change(50, Edit::RemoveAlias("alias/prod-db".into()), "intruder")],
    };
    assert_eq!(h.effective_at(t(500), &ok).unwrap().aliases, ["alias/prod-db"]);
    let h = History {
        snapshots: vec![(t(0), facts(&["alias/prod-db"]))],
        changes: vec![change(50, Edit::RemoveAlias("alias/prod-db".into()), "KeyAdmin")],
    };
    assert!(h.effective_at(t(500), &ok).unwrap().aliases.is_empty());
}

#[test]
fn an_untag_keeps_the_tag_of_unknown_value_before_it() {
    let h = History {
        snapshots: vec![(t(100), KeyFacts::default())],
        changes: vec![change(
            50,
            Edit::RemoveTag("trailguard:protect".into()),
            "intruder",
        )],
    };
    assert_eq!(
        h.facts_at(t(10)).unwrap().tags,
        [("trailguard:protect".to_owned(), "*".to_owned())]
    );
}

#[test]
fn real_alias_and_tag_records_give_their_changes() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cloudtrail/awsdocs-examples/aws-kms-developer-guide.ndjson"
    ))
    .unwrap();
    let mut seen = Vec::new();
    for line in text.lines() {
        let Ok(r) = Record::parse(line) else { continue };
        for c in changes(&r) {
            seen.push((r.name().to_owned(), c.edit, c.key_arn));
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
    for n in [
        "CreateAlias",
        "DeleteAlias",
        "TagResource",
        "UntagResource",
        "UpdateAlias",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let delete = seen.iter().find(|(n, _, _)| n == "DeleteAlias").unwrap();
    assert_eq!(delete.1, Edit::RemoveAlias("alias/my_alias".into()));
    assert_eq!(
        delete.2, KEY,
        "the key is the record's key resource, not the alias"
    );
}

#[test]
fn a_protection_seen_later_counts_unless_a_recorded_change_added_it_after() {
    let none = |_: &Change| false;
    let h = History {
        snapshots: vec![(t(0), facts(&[])), (t(100), facts(&["alias/prod-db"]))],
        changes: vec![],
    };
    // The CreateAlias that added it has not been read (delivered late): assume it was there.
    assert_eq!(h.effective_at(t(50), &none).unwrap().aliases, ["alias/prod-db"]);
    let h = History {
        snapshots: h.snapshots.clone(),
        changes: vec![change(80, Edit::AddAlias("alias/prod-db".into()), "admin")],
    };
    assert!(
        h.effective_at(t(50), &none).unwrap().aliases.is_empty(),
        "added after the event"
    );
}

#[test]
fn changes_in_the_events_own_second_count_toward_protection() {
    // Created, scheduled and deleted within one second: the order is unknowable.
    let h = History {
        snapshots: vec![(t(100), facts(&[]))],
        changes: vec![
            change(10, Edit::AddAlias("alias/prod-db".into()), "admin"),
            change(10, Edit::RemoveAlias("alias/prod-db".into()), "intruder"),
        ],
    };
    assert_eq!(h.facts_at(t(10)).unwrap().aliases, ["alias/prod-db"]);
    let h = History {
        snapshots: vec![(t(0), facts(&[]))],
        changes: h.changes.clone(),
    };
    assert_eq!(h.facts_at(t(10)).unwrap().aliases, ["alias/prod-db"]);
    assert!(h.facts_at(t(11)).unwrap().aliases.is_empty());
}

#[test]
fn exemptions_see_only_what_no_stranger_gave_the_key() {
    let allowed = vec!["arn:aws:iam::111122223333:role/KeyAdmin".to_owned()];
    let ok = |c: &Change| by_allowed(c, &allowed);
    let retired = || Edit::AddAlias("alias/retired-x".into());
    // A stranger adds the exempt alias; KMS's next snapshot shows it too.
    let h = History {
        snapshots: vec![
            (t(0), facts(&["alias/prod-db"])),
            (t(100), facts(&["alias/prod-db", "alias/retired-x"])),
        ],
        changes: vec![change(50, retired(), "intruder")],
    };
    assert_eq!(
        h.effective_at(t(60), &ok).unwrap().aliases,
        ["alias/prod-db", "alias/retired-x"],
        "protection counts everything the key had"
    );
    assert_eq!(h.vouched_at(t(60), &ok).unwrap().aliases, ["alias/prod-db"]);
    assert_eq!(h.vouched_at(t(200), &ok).unwrap().aliases, ["alias/prod-db"]);
    // Added by an allowed caller: vouched for; later re-added by a stranger in the same second
    // as an allowed caller's: the order is unknowable, not vouched for.
    let h = History {
        snapshots: h.snapshots.clone(),
        changes: vec![change(50, retired(), "KeyAdmin")],
    };
    assert_eq!(h.vouched_at(t(60), &ok).unwrap().aliases.len(), 2);
    let mut both = h.clone();
    both.changes.push(change(50, retired(), "intruder"));
    assert_eq!(both.vouched_at(t(60), &ok).unwrap().aliases, ["alias/prod-db"]);
    // What effective_at adds (the latest facts, aliases a stranger removed) is not vouched for.
    let h = History {
        snapshots: vec![(t(0), facts(&["alias/retired-x"]))],
        changes: vec![change(
            50,
            Edit::RemoveAlias("alias/retired-x".into()),
            "intruder",
        )],
    };
    assert_eq!(h.effective_at(t(60), &ok).unwrap().aliases, ["alias/retired-x"]);
    assert!(h.vouched_at(t(60), &ok).unwrap().aliases.is_empty());
}

#[test]
fn an_alias_that_appeared_with_no_recorded_change_is_not_vouched_for() {
    let ok = |_: &Change| true;
    // Its CreateAlias is not delivered yet: who added it is unknown.
    let h = History {
        snapshots: vec![
            (t(0), facts(&["alias/prod-db"])),
            (t(100), facts(&["alias/prod-db", "alias/retired-x"])),
        ],
        changes: vec![],
    };
    assert_eq!(h.vouched_at(t(150), &ok).unwrap().aliases, ["alias/prod-db"]);
    // There since trailguard first looked (or only later snapshots exist): KMS's word stands.
    let h = History {
        snapshots: vec![(t(100), facts(&["alias/prod-db", "alias/retired-x"]))],
        changes: vec![],
    };
    assert_eq!(h.vouched_at(t(150), &ok).unwrap().aliases.len(), 2);
    assert_eq!(h.vouched_at(t(50), &ok).unwrap().aliases.len(), 2);
    // Removed by an allowed caller, then back in a snapshot with no record of who re-added it.
    let h = History {
        snapshots: vec![
            (t(0), facts(&["alias/retired-x"])),
            (t(100), facts(&[])),
            (t(200), facts(&["alias/retired-x"])),
        ],
        changes: vec![change(50, Edit::RemoveAlias("alias/retired-x".into()), "admin")],
    };
    assert!(h.vouched_at(t(250), &ok).unwrap().aliases.is_empty());
}

#[test]
fn a_tag_a_stranger_added_or_overwrote_is_not_vouched_for() {
    let allowed = vec!["arn:aws:iam::111122223333:role/KeyAdmin".to_owned()];
    let ok = |c: &Change| by_allowed(c, &allowed);
    let tag = |v: &str| KeyFacts {
        aliases: vec![],
        tags: vec![("lifecycle".into(), v.into())],
    };
    let h = History {
        snapshots: vec![(t(0), tag("active"))],
        changes: vec![change(
            50,
            Edit::AddTag("lifecycle".into(), "retired".into()),
            "intruder",
        )],
    };
    assert_eq!(h.facts_at(t(60)).unwrap().tags, tag("retired").tags);
    assert!(h.vouched_at(t(60), &ok).unwrap().tags.is_empty());
    assert_eq!(
        h.vouched_at(t(40), &ok).unwrap().tags,
        tag("active").tags,
        "before the stranger's change"
    );
    let h = History {
        snapshots: h.snapshots.clone(),
        changes: vec![change(
            50,
            Edit::AddTag("lifecycle".into(), "retired".into()),
            "KeyAdmin",
        )],
    };
    assert_eq!(h.vouched_at(t(60), &ok).unwrap().tags, tag("retired").tags);
}

#[test]
fn an_alias_moved_away_is_removed_from_the_key_that_held_it() {
    const DECOY: &str = "arn:aws:kms:us-west-2:111122223333:key/decoy";
    let mut moved = change(50, Edit::AddAlias("alias/prod-db".into()), "intruder");
    moved.key_arn = DECOY.into();
    moved.moved = true;
    let held = History {
        snapshots: vec![(t(0), facts(&["alias/prod-db", "alias/orders"]))],
        changes: vec![],
    };
    let other = History {
        snapshots: vec![(t(0), facts(&["alias/dev"]))],
        changes: vec![],
    };
    let known = vec![(KEY.to_owned(), held.clone()), ("other".to_owned(), other)];
    let removed = moved_from(&moved, &known);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].key_arn, KEY);
    assert_eq!(removed[0].edit, Edit::RemoveAlias("alias/prod-db".into()));
    assert_eq!(removed[0].principal, moved.principal, "by the same caller");
    assert_eq!(removed_from(&moved.event_id, &removed), Some(KEY));
    // Recorded on the key, it is a stranger's removal: the key stays protected.
    let h = History {
        snapshots: vec![
            (t(0), held.snapshots[0].1.clone()),
            (t(60), facts(&["alias/orders"])),
        ],
        changes: removed,
    };
    let none = |_: &Change| false;
    assert!(
        h.effective_at(t(100), &none)
            .unwrap()
            .aliases
            .contains(&"alias/prod-db".to_owned())
    );
    // A CreateAlias is not a move; a key that got the alias after the event did not lose it.
    moved.moved = false;
    assert!(moved_from(&moved, &known).is_empty());
    moved.moved = true;
    let later = History {
        snapshots: vec![(t(80), facts(&["alias/prod-db"]))],
        changes: vec![change(70, Edit::AddAlias("alias/prod-db".into()), "admin")],
    };
    assert!(moved_from(&moved, &[(KEY.to_owned(), later)]).is_empty());
}

#[test]
fn an_update_alias_record_gives_a_moved_addition() {
    let r = Record::parse(
        r#"{"eventID": "u-1", "eventTime": "2026-11-25T12:00:00Z", "eventSource": "kms.amazonaws.com",
        "eventName": "UpdateAlias", "awsRegion": "us-west-2", "recipientAccountId": "111122223333",
        "requestParameters": {"aliasName": "alias/prod-db", "targetKeyId": "decoy"},
        "resources": [{"ARN": "arn:aws:kms:us-west-2:111122223333:key/decoy"}]}"#,
    )
    .unwrap();
    let c = changes(&r);
    assert_eq!(c.len(), 1);
    assert!(c[0].moved);
    assert_eq!(c[0].edit, Edit::AddAlias("alias/prod-db".into()));
    assert_eq!(c[0].key_arn, "arn:aws:kms:us-west-2:111122223333:key/decoy");
}
