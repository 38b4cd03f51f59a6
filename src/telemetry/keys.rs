//! Metrics of usage lookups and reminders (see [`crate::usage`]).

use metrics::{counter, gauge};

use super::{SweepOutcome, names};
use crate::usage::Usage;

/// How a usage lookup ended (a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// Every event of the window was read.
    Complete,
    /// Some were: the counts are lower bounds.
    Partial,
    /// None were: the use is unknown.
    Failed,
}

impl LookupOutcome {
    pub const ALL: &'static [LookupOutcome] = &[
        LookupOutcome::Complete,
        LookupOutcome::Partial,
        LookupOutcome::Failed,
    ];

    pub fn of(u: &Usage) -> Self {
        match (&u.incomplete, u.pages) {
            (None, _) => LookupOutcome::Complete,
            (Some(_), 0) => LookupOutcome::Failed,
            (Some(_), _) => LookupOutcome::Partial,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LookupOutcome::Complete => "complete",
            LookupOutcome::Partial => "partial",
            LookupOutcome::Failed => "failed",
        }
    }
}

/// Creates every series at zero.
pub(super) fn install() {
    for o in LookupOutcome::ALL {
        counter!(names::USAGE_LOOKUPS, "outcome" => o.as_str()).absolute(0);
    }
    for o in SweepOutcome::ALL {
        counter!(names::REMINDER_CHECKS, "outcome" => o.as_str()).absolute(0);
    }
    counter!(names::REMINDERS).absolute(0);
    gauge!(names::KEYS_PENDING).set(0.0);
}

pub fn usage_lookup(u: &Usage) {
    counter!(names::USAGE_LOOKUPS, "outcome" => LookupOutcome::of(u).as_str()).increment(1);
}

/// A check of the keys pending deletion ended; `pending`: how many are followed.
pub fn reminder_check(outcome: SweepOutcome, pending: usize) {
    counter!(names::REMINDER_CHECKS, "outcome" => outcome.as_str()).increment(1);
    gauge!(names::KEYS_PENDING).set(pending as f64);
}

pub fn reminder() {
    counter!(names::REMINDERS).increment(1);
}
