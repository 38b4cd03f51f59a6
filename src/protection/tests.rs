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
