//! Deleting a key in two phases. CloudTrail delivers events up to
//! `cloudtrail.max_delivery_delay` late, so the event history a deletion is decided on may miss
//! a reactivation (or a later deactivation) made minutes ago. A sweep that finds a key due for
//! deletion only records the decision ([`Pending`], kept in the state so a restart keeps it);
//! the first sweep once `max_delivery_delay` has passed deletes the key only if the evidence
//! still holds: the key is still due, on the same deactivation. Pure: no I/O, `now` is an
//! argument.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{KeyFinding, Planned};

/// How long a recorded decision stays good past its re-check: a decision older than that (no
/// sweep saw the key since) is made again.
const STALE_AFTER: chrono::Duration = chrono::Duration::days(7);

/// A deletion decided, waiting out `cloudtrail.max_delivery_delay` before it is re-checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// When the deletion was decided.
    pub decided: DateTime<Utc>,
    /// The deactivation it was decided on.
    pub inactive_since: DateTime<Utc>,
}

impl Pending {
    /// When the decision may be acted on.
    pub fn due(&self, wait: Duration) -> DateTime<Utc> {
        self.decided + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
    }
}

/// Lets through the deletions whose decision, recorded in `pending`, has waited `wait` on the
/// same evidence; turns every other [`Planned::Delete`] into [`Planned::ConfirmDelete`].
/// Returns the decisions to keep (the keys now waiting), by access key id.
pub fn gate(
    findings: &mut [KeyFinding],
    pending: &HashMap<String, Pending>,
    now: DateTime<Utc>,
    wait: Duration,
) -> Vec<(String, Pending)> {
    let mut waiting = Vec::new();
    for f in findings.iter_mut().filter(|f| f.planned == Planned::Delete) {
        let Some(since) = f.key.inactive_since else {
            f.planned = Planned::WaitBeforeDelete;
            continue;
        };
        let id = &f.key.access_key_id;
        let earlier = pending
            .get(id)
            .filter(|p| p.inactive_since == since && p.decided <= now && now - p.due(wait) <= STALE_AFTER);
        match earlier {
            Some(p) if p.due(wait) <= now => {} // re-checked: the evidence holds
            Some(p) => {
                f.planned = Planned::ConfirmDelete;
                waiting.push((id.clone(), p.clone()));
            }
            None => {
                f.planned = Planned::ConfirmDelete;
                waiting.push((
                    id.clone(),
                    Pending {
                        decided: now,
                        inactive_since: since,
                    },
                ));
            }
        }
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::{KeyInfo, UNUSED};
    use chrono::TimeZone;

    const WAIT: Duration = Duration::from_secs(900);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn due(since_days: i64) -> KeyFinding {
        KeyFinding {
            rule_ids: vec![UNUSED],
            key: KeyInfo {
                user_name: "u".into(),
                user_arn: "arn:aws:iam::111122223333:user/u".into(),
                user_path: "/".into(),
                user_tags: vec![],
                access_key_id: "AKIA1".into(),
                active: false,
                created: now() - chrono::Duration::days(200),
                last_used: None,
                inactive_since: Some(now() - chrono::Duration::days(since_days)),
                inactive_evidence: None,
                own: false,
            },
            age_days: 200,
            unused_days: 200,
            never_used: true,
            exemption: None,
            planned: Planned::Delete,
        }
    }

    fn minutes(m: i64) -> chrono::Duration {
        chrono::Duration::minutes(m)
    }

    #[test]
    fn a_first_decision_is_recorded_not_acted_on() {
        let mut f = [due(40)];
        let kept = gate(&mut f, &HashMap::new(), now(), WAIT);
        assert_eq!(f[0].planned, Planned::ConfirmDelete);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1.decided, now());
    }

    #[test]
    fn the_deletion_goes_ahead_once_the_delay_has_passed_on_the_same_evidence() {
        let mut f = [due(40)];
        let kept = gate(&mut f, &HashMap::new(), now(), WAIT);
        let pending: HashMap<_, _> = kept.into_iter().collect();
        let mut early = [due(40)];
        let again = gate(&mut early, &pending, now() + minutes(10), WAIT);
        assert_eq!(early[0].planned, Planned::ConfirmDelete, "not before the delay");
        assert_eq!(again[0].1.decided, now(), "the first decision stands");
        let mut late = [due(40)];
        assert!(gate(&mut late, &pending, now() + minutes(15), WAIT).is_empty());
        assert_eq!(late[0].planned, Planned::Delete);
    }

    #[test]
    fn new_evidence_or_a_stale_decision_starts_the_wait_again() {
        let mut f = [due(40)];
        let pending: HashMap<_, _> = gate(&mut f, &HashMap::new(), now(), WAIT).into_iter().collect();
        // A later deactivation (still long ago) was delivered meanwhile: decided again.
        let mut other = [due(35)];
        let kept = gate(&mut other, &pending, now() + minutes(20), WAIT);
        assert_eq!(other[0].planned, Planned::ConfirmDelete);
        assert_eq!(kept[0].1.decided, now() + minutes(20));
        // No sweep saw the key for weeks: the old decision is not acted on.
        let mut old = [due(40)];
        let kept = gate(&mut old, &pending, now() + chrono::Duration::days(30), WAIT);
        assert_eq!(old[0].planned, Planned::ConfirmDelete);
        assert_eq!(kept[0].1.decided, now() + chrono::Duration::days(30));
    }
}
