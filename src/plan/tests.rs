use super::*;
use chrono::TimeZone;

fn finding(rule: &str, principal: &str) -> Finding {
    let text = serde_json::json!({
        "eventID": "e", "eventSource": "kms.amazonaws.com",
        "eventName": if rule == rules::KEY_DISABLED { "DisableKey" } else { "ScheduleKeyDeletion" },
        "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "arn": principal},
        "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
    })
    .to_string();
    rules::evaluate_json(&text).remove(0)
}

fn policy() -> Policy {
    Policy {
        protected: vec![
            Protected::parse("alias/prod-*").unwrap(),
            Protected::parse("tag:trailguard:protect=true").unwrap(),
        ],
        on_disable: OnDisable::EnableKey,
        on_schedule_deletion: OnScheduleDeletion::CancelKeyDeletion,
        allowed_principals: vec!["arn:aws:sts::*:assumed-role/KeyAdmin/*".into()],
        exemptions: vec![KeyExemption {
            key: "alias/prod-legacy".into(),
            expires: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            reason: "decommissioning, CHG-42".into(),
        }],
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
}

fn facts(alias: &str) -> KeyFacts {
    KeyFacts {
        aliases: vec![alias.into()],
        tags: vec![],
    }
}

#[test]
fn protected_key_disabled_by_anyone_else_is_re_enabled() {
    let d = decide(
        &policy(),
        &finding(
            rules::KEY_DISABLED,
            "arn:aws:sts::111122223333:assumed-role/dev/alice",
        ),
        &facts("alias/prod-payments"),
        now(),
    )
    .unwrap();
    assert_eq!(d.actions, [Action::EnableKey, Action::Notify]);
    assert_eq!(
        d.reason,
        "kms.protected_keys[0] (alias/prod-*) protects the key and the caller is not allowed; kms.on_disable = \"enable_key\""
    );
}

#[test]
fn a_role_arn_covers_its_sessions_and_a_path_in_the_issuer() {
    let allowed = vec!["arn:aws:iam::111122223333:role/KeyAdmin".to_owned()];
    let session = Some("arn:aws:sts::111122223333:assumed-role/KeyAdmin/bob");
    assert!(principal_allowed(&allowed, session, None).is_some());
    let with_path = vec!["arn:aws:iam::111122223333:role/admins/KeyAdmin".to_owned()];
    assert!(
        principal_allowed(
            &with_path,
            session,
            Some("arn:aws:iam::111122223333:role/admins/KeyAdmin")
        )
        .is_some()
    );
    assert!(
        principal_allowed(
            &allowed,
            Some("arn:aws:sts::111122223333:assumed-role/KeyAdminX/bob"),
            None
        )
        .is_none()
    );
}

#[test]
fn an_exempt_keys_use_is_reported_not_rescued_judged_on_the_events_day() {
    let text = serde_json::json!({
        "eventID": "u", "eventTime": "2026-12-31T23:59:00Z", "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
        "awsRegion": "eu-west-1", "recipientAccountId": "111122223333", "errorCode": "KMSInvalidStateException",
        "errorMessage": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is pending deletion.",
    })
    .to_string();
    let f = rules::evaluate_json(&text).remove(0);
    let event_day = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap();
    let d = decide(&policy(), &f, &facts("alias/prod-legacy"), event_day).unwrap();
    assert_eq!(d.actions, [Action::Notify]);
    assert!(d.reason.contains("approves this key's deletion"), "{}", d.reason);
    assert!(
        decide(&policy(), &f, &facts("alias/prod-other"), event_day).is_none(),
        "not exempt: the rule's rescue"
    );
}

#[test]
fn allowed_principals_match_assumed_role_sessions_and_are_not_reverted() {
    let d = decide(
        &policy(),
        &finding(
            rules::KEY_DELETION_SCHEDULED,
            "arn:aws:sts::111122223333:assumed-role/KeyAdmin/bob",
        ),
        &facts("alias/prod-payments"),
        now(),
    )
    .unwrap();
    assert_eq!(d.actions, [Action::Notify]);
    assert!(
        d.reason
            .contains("kms.allowed_principals[0] (arn:aws:sts::*:assumed-role/KeyAdmin/*)"),
        "{}",
        d.reason
    );
}

#[test]
fn exemptions_hold_until_their_date() {
    let f = finding(
        rules::KEY_DELETION_SCHEDULED,
        "arn:aws:sts::111122223333:assumed-role/dev/alice",
    );
    let d = decide(&policy(), &f, &facts("alias/prod-legacy"), now()).unwrap();
    assert_eq!(d.actions, [Action::Notify]);
    assert!(
        d.reason
            .contains("kms.exemptions[0] (alias/prod-legacy, until 2026-12-31: decommissioning, CHG-42)"),
        "{}",
        d.reason
    );
    let later = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    let d = decide(&policy(), &f, &facts("alias/prod-legacy"), later).unwrap();
    assert_eq!(
        d.actions,
        [Action::CancelKeyDeletion, Action::Notify],
        "an expired exemption no longer applies"
    );
}

#[test]
fn tags_ids_and_unprotected_keys() {
    let f = finding(rules::KEY_DISABLED, "arn:aws:iam::111122223333:user/x");
    let tagged = KeyFacts {
        aliases: vec![],
        tags: vec![("trailguard:protect".into(), "true".into())],
    };
    assert!(
        decide(&policy(), &f, &tagged, now())
            .unwrap()
            .reason
            .starts_with("kms.protected_keys[1] (tag:trailguard:protect=true)")
    );
    let mut by_id = policy();
    by_id.protected = vec![Protected::parse("1234abcd-12ab-34cd-56ef-1234567890ab").unwrap()];
    assert!(
        decide(&by_id, &f, &KeyFacts::default(), now())
            .unwrap()
            .actions
            .contains(&Action::EnableKey)
    );
    let d = decide(&policy(), &f, &facts("alias/dev-sandbox"), now()).unwrap();
    assert_eq!(d.actions, [Action::Notify]);
    assert_eq!(d.reason, "the key is not protected by kms.protected_keys");
    assert!(Protected::parse("tag:novalue").is_err());
    assert!(
        Protected::parse("arn:aws:kms:eu-west-1:111122223333:alias/prod-db")
            .unwrap_err()
            .contains("write \"alias/prod-db\""),
        "an alias ARN never matches: rejected with the spelling that works"
    );
    assert!(Protected::parse("arn:aws:s3:::bucket").is_err());
    assert!(Protected::parse("prod-db").is_err(), "neither an id nor an alias");
    assert!(Protected::parse("mrk-1234abcd12ab34cd56ef1234567890ab").is_ok());
}

#[test]
fn exemptions_are_matched_on_the_vouched_facts_protection_on_all_of_them() {
    let f = finding(
        rules::KEY_DELETION_SCHEDULED,
        "arn:aws:sts::111122223333:assumed-role/dev/mallory",
    );
    let all = KeyFacts {
        aliases: vec!["alias/prod-db".into(), "alias/prod-legacy".into()],
        tags: vec![],
    };
    // A stranger added alias/prod-legacy (exempt): it is not vouched for.
    let d = decide_vouched(&policy(), &f, &all, &facts("alias/prod-db"), now()).unwrap();
    assert_eq!(d.actions, [Action::CancelKeyDeletion, Action::Notify]);
    let d = decide_vouched(&policy(), &f, &all, &all, now()).unwrap();
    assert_eq!(d.actions, [Action::Notify], "{}", d.reason);
    let mut used = f.clone();
    used.rule_id = rules::PENDING_DELETION_USE.into();
    assert!(
        decide_vouched(&policy(), &used, &all, &facts("alias/prod-db"), now()).is_none(),
        "the use of a key not exempt on vouched facts is rescued (the rule's own actions)"
    );
}
