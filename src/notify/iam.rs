//! What an IAM access-key finding's notification says. Pure: rendering only.

use std::collections::BTreeMap;

use serde_json::json;

use super::message::{Message, clean, clean_subject};

/// How many skipped users or keys a message lists (the log has them all): with each entry cut,
/// the message stays far below SNS's 256 KB however many were skipped.
const MAX_LISTED: usize = 50;
use crate::iam::intent::Intent;
use crate::iam::sweep::planned_action;
use crate::iam::{KeyFinding, Planned, UNUSED};
use crate::job::{ActionKind, Outcome};

/// The notification for one key finding of the sweep that began at `sweep` (its id is derived
/// from the key, what was done and the sweep, so a resend after a crash carries the same id).
pub fn render(f: &KeyFinding, outcome: Outcome, detail: &str, dry_run: bool, sweep: &str) -> Message {
    let k = &f.key;
    let rules = f.rule_ids.join(", ");
    let action = planned_action(f.planned).as_str();
    let what = match (f.planned, outcome) {
        (_, Outcome::DryRun) => format!("would {action}"),
        (Planned::Deactivate, Outcome::Applied) => "deactivated".into(),
        (Planned::Delete, Outcome::Applied) => "deleted".into(),
        (_, Outcome::Failed) => format!("{action} FAILED"),
        (Planned::Exempt, _) => "exempt".into(),
        (Planned::BlastRadius, _) => "NOT changed (blast radius)".into(),
        (Planned::ConfirmDelete, _) => "due for deletion, re-checked first".into(),
        _ => "stale".into(),
    };
    let reason = if f.rule_ids.contains(&UNUSED) {
        if f.never_used {
            format!("never used, created {}d ago", f.age_days)
        } else {
            format!("unused {}d", f.unused_days)
        }
    } else {
        format!("{}d old", f.age_days)
    };
    let subject = clean_subject(&format!(
        "[MEDIUM] IAM key {} of {}: {what}, {reason}",
        k.access_key_id, k.user_name
    ));
    let last_use = match &k.last_used {
        Some(u) => format!("{} ({} in {})", u.date.to_rfc3339(), u.service, u.region),
        None => "never used (counted from its creation)".into(),
    };
    let mut fields = BTreeMap::new();
    fields.insert("1 Rules", rules);
    fields.insert("2 User", format!("{} ({})", k.user_name, k.user_arn));
    fields.insert(
        "3 Access key",
        format!(
            "{} ({})",
            k.access_key_id,
            if k.active { "Active" } else { "Inactive" }
        ),
    );
    fields.insert(
        "4 Age",
        format!("{} days (created {})", f.age_days, k.created.to_rfc3339()),
    );
    fields.insert("5 Last use", last_use);
    fields.insert(
        "6 Exemption",
        f.exemption.clone().unwrap_or_else(|| "none".into()),
    );
    fields.insert("7 Action", action.into());
    fields.insert("8 Outcome", format!("{}: {detail}", outcome.as_str()));
    let mut text = String::from("An IAM access key breaks the CIS rotation/usage rules.\n\n");
    for (k, v) in &fields {
        text.push_str(&format!("  {:<13} {v}\n", &k[2..]));
    }
    if dry_run {
        text.push_str("\n(trailguard is in dry-run mode: it changes nothing)\n");
    }
    let id = crate::outbox::notification_id(&["iam", &k.access_key_id, action, outcome.as_str(), sweep]);
    text.push_str(&format!("\nnotification id: {id}\n"));
    let rule_id = f.rule_ids.first().copied().unwrap_or_default();
    let json = json!({
        "version": 1, "notification_id": id, "rule_id": rule_id, "rule_ids": f.rule_ids,
        "severity": "medium", "outcome": outcome.as_str(), "dry_run": dry_run, "finding": f,
        "action": action, "detail": detail, "subject": subject, "text": text,
    });
    Message::new(id, subject, text, json, rule_id, "medium", outcome.as_str())
}

/// The notification of a change a sweep began before an interruption, as its key's status
/// shows it now ([`Intent::settle`]). Its `notification_id` is the one the uninterrupted
/// sweep's message would have had for that outcome.
pub fn interrupted(i: &Intent, outcome: Outcome, detail: &str) -> Message {
    let action = i.action.as_str();
    let what = match (i.action, outcome) {
        (ActionKind::Delete, Outcome::Applied) => "deleted".to_owned(),
        (_, Outcome::Applied) => "deactivated".to_owned(),
        (_, Outcome::Failed) => format!("{action} FAILED"),
        _ => "gone".to_owned(),
    };
    let user = clean(&i.user, 128);
    let subject = clean_subject(&format!(
        "[MEDIUM] IAM key {} of {user}: {what}, after an interruption",
        i.access_key_id
    ));
    let rules = i.rule_ids.join(", ");
    let mut text = String::from(
        "trailguard was interrupted while it changed an IAM access key, before it recorded the result. This is what the key shows now.\n\n",
    );
    for (k, v) in [
        ("Rules", rules.as_str()),
        ("User", user.as_str()),
        ("Access key", i.access_key_id.as_str()),
        ("Action", action),
        ("Begun", &i.at.to_rfc3339()),
        ("Outcome", &format!("{}: {detail}", outcome.as_str())),
    ] {
        text.push_str(&format!("  {k:<13} {v}\n"));
    }
    let id = crate::outbox::notification_id(&["iam", &i.access_key_id, action, outcome.as_str(), &i.sweep]);
    text.push_str(&format!("\nnotification id: {id}\n"));
    let rule_id = i.rule_ids.first().cloned().unwrap_or_default();
    let json = json!({
        "version": 1, "notification_id": id, "rule_id": rule_id, "rule_ids": i.rule_ids,
        "severity": "medium", "outcome": outcome.as_str(), "dry_run": false, "finding": i.finding,
        "action": action, "detail": detail, "interrupted": true, "begun": i.at.to_rfc3339(),
        "subject": subject, "text": text,
    });
    Message::new(id, subject, text, json, &rule_id, "medium", outcome.as_str())
}

/// The notification that a sweep left users (or keys) unchecked, and why.
pub fn skipped(skipped: &[(String, String)], sweep: &str, _now: chrono::DateTime<chrono::Utc>) -> Message {
    let id = crate::outbox::notification_id(&["iam", "skipped", sweep]);
    let subject = clean_subject(&format!(
        "[MEDIUM] IAM sweep skipped {} user(s) or key(s): nothing changed for them",
        skipped.len()
    ));
    let mut text = String::from(
        "The IAM access-key sweep could not check some users or keys. It changed nothing for them (failing toward keeping keys); the next sweep tries again.\n\n",
    );
    let listed: Vec<(String, String)> = skipped
        .iter()
        .take(MAX_LISTED)
        .map(|(w, why)| (clean(w, 128), clean(why, 300)))
        .collect();
    for (who, why) in &listed {
        text.push_str(&format!("  {who:<28} {why}\n"));
    }
    if skipped.len() > listed.len() {
        text.push_str(&format!(
            "  ... and {} more (see trailguard's log)\n",
            skipped.len() - listed.len()
        ));
    }
    text.push_str(&format!("\nnotification id: {id}\n"));
    let json = json!({
        "version": 1, "notification_id": id, "rule_id": INCOMPLETE, "severity": "medium",
        "outcome": "not_actionable", "skipped_total": skipped.len(),
        "skipped": listed.iter().map(|(w, why)| json!({"who": w, "why": why})).collect::<Vec<_>>(),
        "subject": subject, "text": text,
    });
    Message::new(id, subject, text, json, INCOMPLETE, "medium", "not_actionable")
}

/// The rule id of a sweep that left users unchecked.
pub const INCOMPLETE: &str = "iam_sweep_incomplete";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::SNS_LIMIT;

    #[test]
    fn a_sweep_that_skips_thousands_of_users_still_sends_a_whole_json_document() {
        // trailguard's role lacks iam:ListUserTags: every stale user of a large account is skipped.
        let why = "its tags could not be read, so exemptions cannot be checked: AccessDenied: User: arn:aws:sts::111122223333:assumed-role/trailguard/i-0abc is not authorized to perform: iam:ListUserTags";
        let all: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("service-account-{i:05}"), why.to_owned()))
            .collect();
        let m = skipped(&all, "2026-11-25T12:00:00+00:00", chrono::DateTime::UNIX_EPOCH);
        assert!(m.size() < SNS_LIMIT, "{} bytes", m.size());
        let body = crate::aws::sns::body(&m, crate::notify::config::MessageFormat::Json);
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
            "the JSON body was cut to {} of {} bytes: subscribers get a document that does not parse",
            body.len(),
            m.json.to_string().len()
        );
    }
}
