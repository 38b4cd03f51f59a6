//! What a KMS notification says about the key's aliases and its recent use (see
//! [`crate::usage`]). Pure: rendering only; every principal taken from an event is cleaned.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::message::{MAX_FIELD, clean};
use crate::job::{AliasLookup, Job, Outcome};
use crate::usage::{DELETION_REMINDER, Usage, Verdict, human};

/// Callers listed by name; the rest are counted.
const MAX_CALLERS: usize = 10;

/// The "Alias" line: the alias the event named, or those KMS reported, or why unknown.
pub fn alias_line(job: &Job) -> String {
    let named = job.finding.key_alias.as_deref().map(|a| clean(a, MAX_FIELD));
    match (&job.aliases, named) {
        (Some(AliasLookup::Found { aliases }), _) if aliases.is_empty() => "- (the key has no alias)".into(),
        (Some(AliasLookup::Found { aliases }), _) => {
            let all: Vec<String> = aliases.iter().take(10).map(|a| clean(a, MAX_FIELD)).collect();
            all.join(", ")
        }
        (Some(AliasLookup::Unknown { error_type }), _) => format!("unknown ({})", clean(error_type, 64)),
        (None, Some(a)) => a,
        (None, None) => "-".into(),
    }
}

/// The aliases for the JSON document (`key_aliases`), when KMS was asked.
pub fn aliases_json(job: &Job) -> Value {
    match &job.aliases {
        Some(AliasLookup::Found { aliases }) => {
            json!(aliases.iter().map(|a| clean(a, MAX_FIELD)).collect::<Vec<_>>())
        }
        _ => Value::Null,
    }
}

fn window_text(job: &Job, u: &Usage) -> String {
    if job.finding.rule_id == DELETION_REMINDER {
        "since it was scheduled for deletion".into()
    } else {
        format!(
            "within the last {}",
            human((u.to - u.from).to_std().unwrap_or_default())
        )
    }
}

/// The KEY USE section of the text, if the key's use was looked up.
pub fn section(job: &Job) -> String {
    let Some(u) = &job.usage else {
        return String::new();
    };
    let mut s = format!(
        "\nKEY USE (event history, {} to {})\n  {:<14} {}\n",
        u.from.to_rfc3339(),
        u.to.to_rfc3339(),
        "Summary",
        clean(&u.summary(&window_text(job, u)), 4 * MAX_FIELD)
    );
    if !u.operations.is_empty() {
        let ops: Vec<String> = u
            .operations
            .iter()
            .map(|(op, n)| format!("{} {n}", clean(op, 64)))
            .collect();
        s.push_str(&format!("  {:<14} {}\n", "Operations", ops.join(", ")));
    }
    for (i, c) in u.callers.iter().take(MAX_CALLERS).enumerate() {
        s.push_str(&format!(
            "  {:<14} {}: {} call{}, last {}\n",
            if i == 0 { "Callers" } else { "" },
            clean(&c.principal, MAX_FIELD),
            c.calls,
            if c.calls == 1 { "" } else { "s" },
            c.last_use.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
        ));
    }
    if u.callers.len() > MAX_CALLERS {
        s.push_str(&format!(
            "  {:<14} and {} more\n",
            "",
            u.callers.len() - MAX_CALLERS
        ));
    }
    s
}

/// The key's use for the JSON document, with callers cleaned and capped.
pub fn usage_json(job: &Job) -> Value {
    let Some(u) = &job.usage else {
        return Value::Null;
    };
    let verdict = match u.verdict() {
        Verdict::Used => "used",
        Verdict::Unused => "unused",
        Verdict::Unknown => "unknown",
    };
    json!({
        "verdict": verdict,
        "from": u.from,
        "to": u.to,
        "calls": u.calls,
        "at_least": u.incomplete.is_some(),
        "callers": u.callers.iter().take(MAX_CALLERS * 5).map(|c| json!({
            "principal": clean(&c.principal, MAX_FIELD), "calls": c.calls, "last_use": c.last_use,
        })).collect::<Vec<_>>(),
        "distinct_callers": u.callers.len(),
        "last_use": u.last_use,
        "by_scheduler": u.by_scheduler,
        "operations": u.operations,
        "events_read": u.events_read,
        "pages": u.pages,
        "incomplete": u.incomplete.as_deref().map(|s| clean(s, MAX_FIELD)),
        "summary": clean(&u.summary(&window_text(job, u)), 4 * MAX_FIELD),
    })
}

/// A subject that says what the key's use changes, for a scheduled deletion or a reminder.
pub fn subject(job: &Job, sev: &str, key: &str, who: &str) -> Option<String> {
    let rule = job.finding.rule_id.as_str();
    if rule != DELETION_REMINDER && rule != crate::rules::KEY_DELETION_SCHEDULED {
        return None;
    }
    let u = job.usage.as_ref()?;
    let outcome = job.remediation.as_ref().map(|r| r.outcome);
    let verdict = u.verdict();
    let use_text = match verdict {
        Verdict::Used => "still in use",
        Verdict::Unknown => "use unknown",
        Verdict::Unused => "not used",
    };
    if job.finding.rule_id == DELETION_REMINDER {
        let left = deletion_in(job).unwrap_or_else(|| "soon".into());
        return Some(match outcome {
            Some(Outcome::Applied) => format!("[{sev}] Key {key} used since scheduled: deletion cancelled"),
            Some(Outcome::DryRun) => format!("[{sev}] Key {key} used since scheduled: would cancel deletion"),
            _ if verdict == Verdict::Used => {
                format!("[{sev}] Key {key} deleted in {left}, used since scheduled")
            }
            _ => format!("[{sev}] Reminder: key {key} deleted in {left}"),
        });
    }
    Some(match outcome {
        Some(Outcome::Applied) => format!("[{sev}] Key {key} scheduled for deletion, {use_text}: cancelled"),
        Some(Outcome::DryRun) => {
            format!("[{sev}] Key {key} scheduled for deletion, {use_text}: would cancel")
        }
        Some(Outcome::Failed) => {
            format!("[{sev}] Key {key} scheduled for deletion, {use_text}: cancel FAILED")
        }
        // The use first: a long key id and caller are what a cut subject loses.
        _ => format!("[{sev}] Key {key} {use_text}, scheduled for deletion by {who}"),
    })
}

/// "6days 23h": how long from the reminder to the deletion date.
fn deletion_in(job: &Job) -> Option<String> {
    let d = job
        .finding
        .deletion_date
        .as_deref()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())?
        .with_timezone(&Utc);
    let left = (d - job.created).to_std().ok()?;
    Some(human(std::time::Duration::from_secs(
        left.as_secs() / 3600 * 3600,
    )))
}
