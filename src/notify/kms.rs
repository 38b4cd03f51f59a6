//! What a KMS finding's notification says. Pure: rendering only.
//!
//! Every notification has a subject under 100 characters that says what happened, a text body a
//! person can act on, a JSON document for machines, and attributes (`rule_id`, `severity`,
//! `outcome`, `notification_id`) for subscription filters and de-duplication.

use serde_json::json;

use super::message::{MAX_FIELD, Message, clean, clean_subject};
use crate::job::{Job, Outcome};
use crate::rules::{self, Finding};
use crate::usage::DELETION_REMINDER;

/// Stay well inside SNS's 256 KB message limit.
const MAX_BODY: usize = 200 * 1024;

fn short_key(arn: Option<&str>) -> &str {
    arn.map(crate::arn::short_name).unwrap_or("(unknown key)")
}

fn short_principal(f: &Finding) -> String {
    match f.principal_arn.as_deref() {
        Some(a) => crate::arn::Arn::parse(a).map_or(a, |x| x.resource).to_owned(),
        None => f
            .principal_type
            .clone()
            .unwrap_or_else(|| "an unknown caller".into()),
    }
}

fn outcome(job: &Job) -> &'static str {
    job.remediation
        .as_ref()
        .map(|r| r.outcome.as_str())
        .unwrap_or("notified")
}

/// A copy of the finding with every string from the event made safe ([`clean`]).
fn sanitized(f: &Finding) -> Finding {
    let c = |v: &Option<String>| v.as_deref().map(|s| clean(s, MAX_FIELD));
    Finding {
        event_id: clean(&f.event_id, MAX_FIELD),
        event_name: clean(&f.event_name, MAX_FIELD),
        event_source: clean(&f.event_source, MAX_FIELD),
        event_time: c(&f.event_time),
        region: c(&f.region),
        account: c(&f.account),
        key_arn: c(&f.key_arn),
        key_alias: c(&f.key_alias),
        principal_arn: c(&f.principal_arn),
        principal_type: c(&f.principal_type),
        source_ip: c(&f.source_ip),
        user_agent: c(&f.user_agent),
        error_code: c(&f.error_code),
        error_message: c(&f.error_message),
        deletion_date: c(&f.deletion_date),
        key_state: c(&f.key_state),
        access_key_id: c(&f.access_key_id),
        user_name: c(&f.user_name),
        session_issuer_arn: c(&f.session_issuer_arn),
        caller_access_key_id: c(&f.caller_access_key_id),
        tag_keys: f.tag_keys.iter().take(50).map(|k| clean(k, 128)).collect(),
        ..f.clone()
    }
}

/// Renders a job (finding, remediation, count of aggregated matches) as a message. Every field
/// that comes from an event is made safe and bounded, so a message stays far below SNS's
/// 256 KB whatever the event held.
pub fn render(job: &Job, dry_run: bool) -> Message {
    let safe = sanitized(&job.finding);
    let f = &safe;
    let key = short_key(f.key_arn.as_deref());
    let region = f.region.as_deref().unwrap_or("?");
    let sev = f.severity.as_str().to_uppercase();
    let who = short_principal(f);
    let subject = if let Some(s) = super::usage::subject(job, &sev, key, &who).filter(|_| job.more == 0) {
        s
    } else if job.more > 0 {
        format!("[{sev}] Key {key}: {} more {} ({region})", job.more, f.event_name)
    } else {
        match (f.rule_id.as_str(), job.remediation.as_ref().map(|r| r.outcome)) {
            (rules::PENDING_DELETION_USE, Some(Outcome::Applied)) => {
                format!("[{sev}] Key {key} in use: deletion cancelled ({region})")
            }
            (rules::PENDING_DELETION_USE, Some(Outcome::DryRun)) => {
                format!("[{sev}] Key {key} in use: would cancel deletion ({region})")
            }
            (rules::PENDING_DELETION_USE, Some(Outcome::Failed)) => {
                format!("[{sev}] Key {key} in use: cancel FAILED ({region})")
            }
            (rules::PENDING_DELETION_USE, Some(Outcome::NotActionable)) => {
                format!("[{sev}] Key {key} in use, pending deletion, not actionable")
            }
            (rules::PENDING_DELETION_USE, _) => {
                format!("[{sev}] Key {key} used while pending deletion ({region})")
            }
            (rules::KEY_DISABLED, _) => format!("[{sev}] Key {key} disabled by {who}"),
            (rules::PROTECTION_REMOVED, _) => {
                format!(
                    "[{sev}] Protection removed from key {key} by {who} ({})",
                    f.event_name
                )
            }
            (rules::ACCESS_KEY_REACTIVATED, _) => format!(
                "[{sev}] IAM key {} of {} reactivated by {who}",
                f.access_key_id.as_deref().unwrap_or("?"),
                f.user_name.as_deref().unwrap_or("?")
            ),
            (rules::ROOT_ACCESS_KEY_CREATED, _) => {
                format!(
                    "[{sev}] Root access key {} created by {who}",
                    f.access_key_id.as_deref().unwrap_or("?")
                )
            }
            (rules::KEY_DELETION_SCHEDULED, _) => {
                format!("[{sev}] Key {key} scheduled for deletion by {who}")
            }
            (other, _) => format!("[{sev}] {other}: {} {key}", f.event_name),
        }
    };
    let subject = clean_subject(&subject);

    let dash = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    let mut text = String::new();
    let description = if f.description.is_empty() {
        f.rule_id.as_str()
    } else {
        f.description.as_str()
    };
    text.push_str(&format!("{description}.\n\nWHAT HAPPENED\n"));
    let lines: [(&str, String); 14] = [
        ("Rule", format!("{} ({})", f.rule_id, f.severity.as_str())),
        ("Key", dash(f.key_arn.as_deref())),
        ("Alias", super::usage::alias_line(job)),
        ("Operation", format!("{} {}", f.event_source, f.event_name)),
        (
            "Error",
            match (&f.error_code, &f.error_message) {
                (None, None) => "-".into(),
                (c, m) => format!("{}: {}", c.as_deref().unwrap_or("-"), m.as_deref().unwrap_or("-")),
            },
        ),
        (
            "Caller",
            format!(
                "{} ({})",
                dash(f.principal_arn.as_deref()),
                dash(f.principal_type.as_deref())
            ),
        ),
        ("Source IP", dash(f.source_ip.as_deref())),
        ("User agent", dash(f.user_agent.as_deref())),
        ("Event time", dash(f.event_time.as_deref())),
        ("Event id", f.event_id.clone()),
        ("Region", dash(f.region.as_deref())),
        ("Account", dash(f.account.as_deref())),
        ("Key state", dash(f.key_state.as_deref())),
        (
            "Deletion date",
            dash(
                job.remediation
                    .as_ref()
                    .and_then(|r| r.deletion_date.as_deref())
                    .or(f.deletion_date.as_deref()),
            ),
        ),
    ];
    for (k, v) in &lines {
        if f.key_arn.is_none() && matches!(*k, "Key" | "Alias" | "Key state" | "Deletion date") {
            continue;
        }
        text.push_str(&format!("  {k:<14} {v}\n"));
    }
    if let Some(id) = &f.access_key_id {
        text.push_str(&format!(
            "  {:<14} {id} (user {})\n",
            "Access key",
            f.user_name.as_deref().unwrap_or("-")
        ));
    }
    if job.more > 0 {
        text.push_str(&format!(
            "  {:<14} {} more matching events for this key in the aggregation window\n",
            "Repeats", job.more
        ));
    }
    text.push_str(&super::usage::section(job));
    text.push_str("\nWHAT TRAILGUARD DID\n");
    if let Some(policy) = &job.policy {
        text.push_str(&format!("  {:<14} {policy}\n", "Policy"));
    }
    if let Some(policy) = &job.usage_policy {
        text.push_str(&format!("  {:<14} {policy}\n", "Usage policy"));
    }
    match &job.remediation {
        Some(r) => {
            text.push_str(&format!(
                "  {:<14} {}\n  {:<14} {}\n  {:<14} {}\n",
                "Action",
                r.action.as_str(),
                "Outcome",
                r.outcome.as_str(),
                "Result",
                r.detail
            ));
            if !r.steps.is_empty() {
                text.push_str(&format!("  {:<14} {}\n", "Calls", r.steps.join(" -> ")));
            }
        }
        None => text.push_str("  Notified only: this rule takes no action.\n"),
    }
    if dry_run {
        text.push_str("  (trailguard is in dry-run mode: it changes nothing)\n");
    }
    text.push_str("\nNEXT STEPS\n");
    let next = match (f.rule_id.as_str(), job.remediation.as_ref().map(|r| r.outcome)) {
        (rules::PENDING_DELETION_USE, Some(Outcome::Applied)) => format!(
            "  The key is no longer scheduled for deletion. Find out why it was scheduled while still in use,\n  then re-enable it if it should serve traffic: aws kms enable-key --key-id {} --region {region}\n",
            dash(f.key_arn.as_deref())
        ),
        (rules::PENDING_DELETION_USE, Some(Outcome::Failed | Outcome::NotActionable | Outcome::DryRun)) => format!(
            "  The key is still scheduled for deletion. Cancel it now if it is needed:\n  aws kms cancel-key-deletion --key-id {} --region {region}\n",
            dash(f.key_arn.as_deref())
        ),
        (DELETION_REMINDER, Some(Outcome::Applied)) => format!(
            "  The key was used since it was scheduled, so its deletion was cancelled; it is Disabled.\n  Find out who still uses it before scheduling it again: aws kms enable-key --key-id {} --region {region}\n",
            dash(f.key_arn.as_deref())
        ),
        (DELETION_REMINDER, _) => format!(
            "  The key is deleted on {}; after that, data encrypted under it cannot be decrypted.\n  If anything still needs it, cancel now: aws kms cancel-key-deletion --key-id {} --region {region}\n",
            dash(f.deletion_date.as_deref()),
            dash(f.key_arn.as_deref())
        ),
        (rules::KEY_DELETION_SCHEDULED, Some(Outcome::Applied)) => "  trailguard cancelled the deletion; the key is Disabled, as AWS leaves it. If the deletion was intended,\n  move the callers above off the key first, or approve it with a kms.exemptions entry, then schedule it again.\n".into(),
        (rules::KEY_DELETION_SCHEDULED, _) => "  If this deletion was not approved, cancel it: aws kms cancel-key-deletion --key-id <key> --region <region>.\n  trailguard will rescue the key automatically if anything uses it meanwhile.\n".into(),
        (rules::KEY_DISABLED, _) => "  If this was not intended, re-enable the key: aws kms enable-key --key-id <key> --region <region>.\n".into(),
        (rules::PROTECTION_REMOVED, _) => "  Find out who removed the alias or tag and why; restore it if the key must stay protected.\n  Only kms.allowed_principals can unprotect a key: trailguard still protects it otherwise.\n".into(),
        _ => "  Review the event above.\n".into(),
    };
    text.push_str(&next);
    text.push_str(&format!("\nnotification id: {}\n", job.id));
    if text.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }

    let json = json!({
        "version": 1,
        "notification_id": job.id,
        "rule_id": f.rule_id,
        "severity": f.severity.as_str(),
        "outcome": outcome(job),
        "dry_run": dry_run,
        "repeats": job.more,
        "finding": f,
        "remediation": job.remediation,
        "policy": job.policy,
        "usage": super::usage::usage_json(job),
        "usage_policy": job.usage_policy,
        "key_aliases": super::usage::aliases_json(job),
        "subject": subject,
        "text": text,
    });
    Message::new(
        job.id.clone(),
        subject,
        text,
        json,
        &f.rule_id,
        f.severity.as_str(),
        outcome(job),
    )
}

#[cfg(test)]
mod tests {
    use super::super::message::MAX_SUBJECT;
    use super::*;
    use crate::job::{ActionKind, Remediation};

    fn job(rule_record: &str, remediation: Option<Remediation>) -> Job {
        let f = rules::evaluate_json(rule_record).remove(0);
        let mut j = Job::new(f, chrono::DateTime::UNIX_EPOCH);
        j.id = "n-1".into();
        j.remediated = true;
        j.remediation = remediation;
        j
    }

    const PENDING: &str = r#"{"eventID":"e-1","eventTime":"2026-11-23T10:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt",
        "awsRegion":"ap-southeast-2","recipientAccountId":"111122223333","errorCode":"KMSInvalidStateException",
        "errorMessage":"arn:aws:kms:ap-southeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is pending deletion.",
        "sourceIPAddress":"192.0.2.7","userAgent":"aws-sdk-java/2.20",
        "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/very-long-application-role-name-for-payments/i-0123456789abcdef0"},
        "requestParameters":{"keyId":"alias/payments-prod"}}"#;

    fn applied() -> Remediation {
        Remediation {
            action: ActionKind::CancelKeyDeletion,
            outcome: Outcome::Applied,
            detail: "deletion cancelled; the key is now Disabled".into(),
            state_before: Some("PendingDeletion".into()),
            state_after: Some("Disabled".into()),
            deletion_date: Some("2026-11-30T10:00:00+00:00".into()),
            steps: vec![
                "DescribeKey: PendingDeletion".into(),
                "CancelKeyDeletion: ok".into(),
                "DescribeKey: Disabled".into(),
            ],
        }
    }

    #[test]
    fn rescue_message_tells_the_whole_story() {
        let m = render(&job(PENDING, Some(applied())), false);
        assert!(m.subject.chars().count() < 100, "{}", m.subject);
        assert_eq!(
            m.subject,
            "[CRITICAL] Key 1234abcd-12ab-34cd-56ef-1234567890ab in use: deletion cancelled (ap-southeast-2)"
        );
        for needle in [
            "arn:aws:kms:ap-southeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/payments-prod",
            "kms.amazonaws.com Decrypt",
            "assumed-role/very-long-application-role-name-for-payments/i-0123456789abcdef0",
            "192.0.2.7",
            "aws-sdk-java/2.20",
            "2026-11-23T10:00:00Z",
            "e-1",
            "2026-11-30T10:00:00+00:00",
            "cancel_key_deletion",
            "applied",
            "CancelKeyDeletion: ok",
        ] {
            assert!(m.text.contains(needle), "missing {needle} in\n{}", m.text);
        }
        assert_eq!(m.json["finding"]["key_alias"], "alias/payments-prod");
        assert_eq!(m.json["remediation"]["outcome"], "applied");
        assert_eq!(m.attributes[2], ("outcome".to_owned(), "applied".to_owned()));
    }

    #[test]
    fn long_subjects_are_cut_below_100_characters() {
        let mut j = job(PENDING, Some(applied()));
        j.finding.region = Some("x".repeat(200));
        j.more = 12345;
        let m = render(&j, false);
        assert_eq!(m.subject.chars().count(), MAX_SUBJECT);
        assert!(!m.subject.contains('\n'));
    }

    #[test]
    fn dry_run_says_what_would_have_been_done() {
        let mut r = applied();
        r.outcome = Outcome::DryRun;
        r.detail = "dry run: would cancel the deletion of this key".into();
        let m = render(&job(PENDING, Some(r)), true);
        assert!(m.subject.contains("would cancel"), "{}", m.subject);
        assert!(m.text.contains("dry-run mode"));
        assert_eq!(m.json["dry_run"], true);
    }
}
