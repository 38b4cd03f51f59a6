use chrono::{TimeZone, Utc};
use serde_json::json;

use super::reminders::{PendingKey, due, job};
use super::*;
use crate::plan::{KeyExemption, Policy};

const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const APP: &str = "arn:aws:sts::111122223333:assumed-role/billing-app/i-0abc";
const APP_ROLE: &str = "arn:aws:iam::111122223333:role/billing-app";
const ADMIN: &str = "arn:aws:iam::111122223333:user/ops-admin";
const GUARD: &str = "arn:aws:sts::111122223333:assumed-role/trailguard/task-1";

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn rec(id: &str, name: &str, at: DateTime<Utc>, caller: &str, error: Option<&str>) -> Record {
    let mut identity = json!({"type": "IAMUser", "arn": caller, "accountId": "111122223333"});
    if let Some(role) = crate::arn::Arn::parse(caller).and_then(|a| a.session_role()) {
        identity = json!({"type": "AssumedRole", "arn": caller, "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role}}});
    }
    let mut r = json!({"eventID": id, "eventTime": at.to_rfc3339(), "eventSource": "kms.amazonaws.com",
        "eventName": name, "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
        "userIdentity": identity, "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        "resources": [{"type": "AWS::KMS::Key", "ARN": KEY}]});
    if let Some(code) = error {
        r["errorCode"] = json!(code);
        r["errorMessage"] = json!(format!("{KEY} is pending deletion."));
    }
    Record::parse(&r.to_string()).unwrap()
}

fn admin_scheduled() -> Who {
    Who {
        principal: Some(ADMIN.into()),
        session_issuer: None,
    }
}

fn tally(records: &[Record], scheduler: Who, complete: bool) -> Usage {
    let mut t = Tally::new(KEY, t(1, 0), t(25, 12), scheduler);
    let own = |r: &Record| r.principal_arn() == Some(GUARD);
    for r in records {
        t.add(r, &own);
    }
    t.finish((!complete).then(|| "the lookup stopped after 5 pages".into()))
}

#[test]
fn uses_are_crypto_calls_on_the_key_in_the_window_failed_ones_included() {
    let records = [
        rec("1", "Decrypt", t(20, 9), APP, None),
        rec("2", "Decrypt", t(21, 9), "arn:aws:sts::111122223333:assumed-role/billing-app/i-0def", None),
        rec("3", "GenerateDataKey", t(22, 9), ADMIN, None),
        // Refused because the key is pending deletion: still an application that needs it.
        rec("4", "Decrypt", t(25, 10), APP, Some("KMSInvalidStateException")),
        // Not uses: management calls, a denied caller, trailguard itself, before the window,
        // a repeat of an event already read.
        rec("5", "DescribeKey", t(20, 10), ADMIN, None),
        rec("6", "Decrypt", t(20, 11), "arn:aws:iam::444455556666:user/x", Some("AccessDeniedException")),
        rec("7", "Decrypt", t(20, 12), GUARD, None),
        Record::parse(
            &json!({"eventID": "8", "eventTime": Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap().to_rfc3339(),
                "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "userIdentity": {"arn": ADMIN},
                "resources": [{"ARN": KEY}]})
            .to_string(),
        )
        .unwrap(),
        rec("1", "Decrypt", t(20, 9), APP, None),
    ];
    let u = tally(&records, admin_scheduled(), true);
    assert_eq!(u.calls, 4);
    assert_eq!(u.events_read, 8, "the repeat is read once");
    assert_eq!(u.last_use, Some(t(25, 10)));
    assert_eq!(u.by_scheduler, 1);
    assert_eq!(u.operations["Decrypt"], 3);
    // Sessions of one role are one caller.
    assert_eq!(u.callers.len(), 2);
    assert_eq!(
        (u.callers[0].principal.as_str(), u.callers[0].calls),
        (APP_ROLE, 3)
    );
    assert_eq!((u.callers[1].principal.as_str(), u.callers[1].calls), (ADMIN, 1));
    assert_eq!(u.verdict(), Verdict::Used);
    assert_eq!(
        u.summary("within the last 30days"),
        format!(
            "4 calls by 2 callers within the last 30days, last at 2026-11-25T10:00:00+00:00; 1 of them by the caller this notification is about"
        )
    );
}

#[test]
fn a_short_or_failed_lookup_is_never_unused() {
    let used = tally(
        &[rec("1", "Decrypt", t(20, 9), APP, None)],
        admin_scheduled(),
        false,
    );
    assert_eq!(used.verdict(), Verdict::Used);
    assert!(
        used.summary("x")
            .starts_with("at least 1 call by at least 1 caller x"),
        "{}",
        used.summary("x")
    );

    let nothing_found = tally(
        &[rec("5", "DescribeKey", t(20, 10), ADMIN, None)],
        admin_scheduled(),
        false,
    );
    assert_eq!(nothing_found.verdict(), Verdict::Unknown);
    assert!(
        nothing_found
            .summary("x")
            .starts_with("usage unknown: the lookup stopped")
    );

    let failed = Usage::unknown(
        t(1, 0),
        t(25, 12),
        "LookupEvents failed: ThrottlingException: Rate exceeded",
    );
    assert_eq!(failed.verdict(), Verdict::Unknown);
    assert_eq!(
        failed.summary("x"),
        "usage unknown: LookupEvents failed: ThrottlingException: Rate exceeded (0 events read)"
    );

    let unused = tally(
        &[rec("5", "DescribeKey", t(20, 10), ADMIN, None)],
        admin_scheduled(),
        true,
    );
    assert_eq!(unused.verdict(), Verdict::Unused);
}

#[test]
fn the_scheduler_counts_when_it_is_the_only_user_of_the_key() {
    // The application role's own credentials schedule the deletion of the key it uses.
    let scheduler = Who {
        principal: Some("arn:aws:sts::111122223333:assumed-role/billing-app/attacker".into()),
        session_issuer: Some(APP_ROLE.into()),
    };
    let u = tally(&[rec("1", "Decrypt", t(20, 9), APP, None)], scheduler, true);
    assert_eq!((u.calls, u.by_scheduler, u.verdict()), (1, 1, Verdict::Used));
}

fn cancel_policy() -> UsagePolicy {
    UsagePolicy {
        on_used: OnUsedKey::CancelKeyDeletion,
        ..UsagePolicy::default()
    }
}

fn decide_with(p: &Policy, up: &UsagePolicy, rule: &str, principal: &str, u: &Usage) -> Decision {
    decide(
        p,
        up,
        rule,
        KEY,
        (Some(principal), None),
        &KeyFacts::default(),
        t(25, 12),
        u,
    )
    .unwrap()
}

#[test]
fn the_used_key_policy_judges_as_the_protection_policy_does() {
    let used = tally(
        &[rec("1", "Decrypt", t(20, 9), APP, None)],
        admin_scheduled(),
        true,
    );
    let unknown = Usage::unknown(
        t(1, 0),
        t(25, 12),
        "LookupEvents failed: AccessDeniedException: no",
    );
    let unused = tally(&[], admin_scheduled(), true);
    let none = Policy::default();
    let sched = rules::KEY_DELETION_SCHEDULED;

    let d = decide_with(&none, &cancel_policy(), sched, ADMIN, &used);
    assert_eq!(d.actions, [Action::CancelKeyDeletion, Action::Notify]);
    assert_eq!(
        d.reason,
        "the key was used within kms.usage_window (30days) and the caller is not allowed; kms.on_schedule_deletion_of_used_key = \"cancel_key_deletion\""
    );
    // Unknown is a use, and says so.
    let d = decide_with(&none, &cancel_policy(), sched, ADMIN, &unknown);
    assert_eq!(d.actions, [Action::CancelKeyDeletion, Action::Notify]);
    assert!(
        d.reason.contains(
            "is unknown (LookupEvents failed: AccessDeniedException: no), and an unknown use counts as a use"
        ),
        "{}",
        d.reason
    );
    // Unused goes ahead.
    let d = decide_with(&none, &cancel_policy(), sched, ADMIN, &unused);
    assert_eq!(d.actions, [Action::Notify]);
    assert!(d.reason.ends_with("the deletion goes ahead"), "{}", d.reason);
    // The default only reports.
    let d = decide_with(&none, &UsagePolicy::default(), sched, ADMIN, &used);
    assert_eq!(d.actions, [Action::Notify]);
    assert!(
        d.reason
            .ends_with("kms.on_schedule_deletion_of_used_key = \"notify\": reported, not cancelled")
    );

    // An exemption or an allowed principal lets it through, in the protection policy's words.
    let exempt = Policy {
        exemptions: vec![KeyExemption {
            key: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            expires: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            reason: "CHG-42".into(),
        }],
        ..Policy::default()
    };
    let d = decide_with(&exempt, &cancel_policy(), sched, ADMIN, &used);
    assert_eq!(d.actions, [Action::Notify]);
    assert_eq!(
        d.reason,
        "the key was used within kms.usage_window (30days), but kms.exemptions[0] (1234abcd-12ab-34cd-56ef-1234567890ab, until 2026-11-30: CHG-42) allows this change"
    );
    let allowed = Policy {
        allowed_principals: vec!["arn:aws:iam::111122223333:user/ops-*".into()],
        ..Policy::default()
    };
    let d = decide_with(&allowed, &cancel_policy(), sched, ADMIN, &unknown);
    assert_eq!(d.actions, [Action::Notify]);
    assert!(d.reason.ends_with("the caller is allowed by kms.allowed_principals[0] (arn:aws:iam::111122223333:user/ops-*): notified, not reverted"), "{}", d.reason);

    // Disables are reported, never decided here.
    assert!(
        decide(
            &none,
            &cancel_policy(),
            rules::KEY_DISABLED,
            KEY,
            (None, None),
            &KeyFacts::default(),
            t(25, 12),
            &used
        )
        .is_none()
    );
}

#[test]
fn at_a_reminder_only_a_use_seen_cancels() {
    let used = tally(
        &[rec("1", "Decrypt", t(20, 9), APP, None)],
        admin_scheduled(),
        true,
    );
    let unknown = Usage::unknown(t(1, 0), t(25, 12), "LookupEvents failed: timeout");
    let none = Policy::default();
    let d = decide_with(&none, &cancel_policy(), DELETION_REMINDER, ADMIN, &used);
    assert_eq!(d.actions, [Action::CancelKeyDeletion, Action::Notify]);
    assert!(
        d.reason
            .starts_with("the key was used since it was scheduled for deletion")
    );
    let d = decide_with(&none, &cancel_policy(), DELETION_REMINDER, ADMIN, &unknown);
    assert_eq!(d.actions, [Action::Notify]);
    assert!(
        d.reason.contains("reported, not acted on at a reminder"),
        "{}",
        d.reason
    );
}

const DAY: u64 = 86400;

fn points() -> Vec<Duration> {
    vec![Duration::from_secs(7 * DAY), Duration::from_secs(DAY)]
}

#[test]
fn a_reminder_is_due_once_per_point_and_missed_points_fold_into_the_latest() {
    let deletion = t(30, 12);
    // 10 days before: nothing yet.
    assert_eq!(due(&points(), deletion, t(20, 12), &[]), None);
    // 7 days before: the 7-day point.
    let d = due(&points(), deletion, t(23, 12), &[]).unwrap();
    assert_eq!((d.point.as_secs(), d.settles.clone()), (7 * DAY, vec![7 * DAY]));
    // Sent: not again.
    assert_eq!(due(&points(), deletion, t(24, 12), &[7 * DAY]), None);
    // Down from 6 days before until 12 hours before: one reminder, for the 1-day point,
    // settling both.
    let d = due(&points(), deletion, t(30, 0), &[]).unwrap();
    assert_eq!(d.point.as_secs(), DAY);
    assert_eq!(d.settles, vec![7 * DAY, DAY]);
    // Past the date: nothing.
    assert_eq!(due(&points(), deletion, t(30, 13), &[]), None);
}

#[test]
fn a_reminder_job_has_its_own_id_per_point_and_says_when() {
    let text =
        json!({"eventID": "sched-1", "eventTime": "2026-11-23T12:00:00Z", "eventSource": "kms.amazonaws.com",
        "eventName": "ScheduleKeyDeletion", "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
        "userIdentity": {"arn": ADMIN}, "requestParameters": {"keyId": KEY}})
        .to_string();
    let key = PendingKey {
        finding: rules::evaluate_json(&text).remove(0),
        scheduled_at: t(23, 12),
        reminded: Vec::new(),
    };
    let used = tally(
        &[rec(
            "1",
            "Decrypt",
            t(24, 9),
            APP,
            Some("KMSInvalidStateException"),
        )],
        admin_scheduled(),
        true,
    );
    let d7 = due(&points(), t(30, 12), t(23, 13), &[]).unwrap();
    let j7 = job(&key, &d7, t(30, 12), used.clone(), t(23, 13));
    let d1 = due(&points(), t(30, 12), t(29, 13), &[7 * DAY]).unwrap();
    let j1 = job(&key, &d1, t(30, 12), used, t(29, 13));
    assert_ne!(j7.id, j1.id);
    assert_eq!(
        j7.id,
        job(
            &key,
            &d7,
            t(30, 12),
            Usage::unknown(t(1, 0), t(2, 0), "x"),
            t(23, 14)
        )
        .id
    );
    assert_eq!(j1.finding.rule_id, DELETION_REMINDER);
    assert_eq!(
        j1.finding.severity,
        crate::rules::Severity::High,
        "used since scheduling"
    );
    assert_eq!(
        j1.finding.deletion_date.as_deref(),
        Some("2026-11-30T12:00:00+00:00")
    );
    assert!(
        j1.finding.description.contains("deleted in 23h"),
        "{}",
        j1.finding.description
    );
    assert_eq!(j1.finding.principal_arn.as_deref(), Some(ADMIN), "the scheduler");
}
