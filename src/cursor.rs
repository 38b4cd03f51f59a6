//! Poll windows and de-duplication for CloudTrail event history. Pure: `now` is an argument.
//!
//! # The problem
//!
//! `LookupEvents` filters on `eventTime`, but a record becomes visible only after CloudTrail
//! delivers it: about 5 minutes on average, not guaranteed. A poller that asks only for
//! "events since my last poll" misses every straggler whose `eventTime` is older than that poll.
//! Re-reading the whole delivery-delay horizon on every poll catches them, but on a busy account
//! it multiplies the reads by `max_delivery_delay / poll_interval` (60× for 15 min / 15 s), and
//! the API allows 2 requests per second per account and region, 50 events per request.
//!
//! # The strategy
//!
//! Two kinds of window, both ending at `now`, merged into one read when they are due together:
//!
//! - **head**: every `poll_interval`, from the previous head's end (less one second, since
//!   `eventTime` has second precision and bounds are inclusive) to `now`. Catches events that
//!   are delivered before the next poll, i.e. most of them, within one poll.
//! - **lookback**: every `lookback_interval` (S), from `now - max_delivery_delay - S` (D + S)
//!   to `now`. An event delivered d ≤ D after its `eventTime` t becomes visible at t + d; the
//!   first lookback at or after that runs before t + d + S ≤ t + D + S, and reads back to
//!   `now - D - S` ≤ t, so it is caught within S of becoming visible.
//!
//! Everything read is de-duplicated by `eventID` ([`Seen`]), which holds the ids of the last
//! D + S (+ margin) of `eventTime`: nothing older can be read again. Both the cursor and the seen
//! ids are persisted, so after a restart the head window starts where the last one ended (the
//! whole downtime is read, up to the 90-day retention) and nothing is handled twice.
//!
//! # API cost
//!
//! On an idle region (every read fits one page): `3600/poll_interval` requests an hour, since a
//! due lookback is merged into that poll's single read; with the default 15 s, **240
//! requests/hour** (0.07/s; measured in BENCHMARKS.md).
//! With R KMS events per second in the region, reads cost about
//! `3600·R/50 · (1 + (D + S)/S)` requests an hour on top: with the defaults (D = 15 min) 5× the
//! bare event volume, so one request per second (the default share) keeps up with about
//! 10 events/s. On busier regions raise `lookback_interval` (the cost factor falls towards 1 and
//! stragglers wait longer) and watch `trailguard_cloudtrail_lag_seconds`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest a window may reach back: event history keeps 90 days.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Slack for inclusive second-precision bounds.
const OVERLAP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub max_delivery_delay: Duration,
    pub lookback_interval: Duration,
}

impl Schedule {
    /// How far back a lookback reads: D + S.
    pub fn lookback_span(&self) -> Duration {
        self.max_delivery_delay + self.lookback_interval
    }
}

/// Where a region's polling stands; persisted after each successful poll.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// End of the last head window read completely.
    pub head: Option<DateTime<Utc>>,
    /// When the last lookback read completed.
    pub last_lookback: Option<DateTime<Utc>>,
}

/// One `LookupEvents` time range to read, every page of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Whether this read also serves as the lookback.
    pub lookback: bool,
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Cursor {
    /// The window to read at `now`.
    pub fn next_window(&self, now: DateTime<Utc>, s: &Schedule) -> Window {
        let oldest = now - dur(RETENTION);
        let lookback_start = now - dur(s.lookback_span());
        let lookback_due = self
            .last_lookback
            .is_none_or(|t| now - t >= dur(s.lookback_interval));
        let head_start = self.head.map(|h| h - dur(OVERLAP)).unwrap_or(lookback_start);
        let start = if lookback_due {
            head_start.min(lookback_start)
        } else {
            head_start.min(now)
        };
        Window {
            start: start.max(oldest),
            end: now,
            lookback: lookback_due,
        }
    }

    /// Records that `window` was read completely.
    pub fn complete(&mut self, window: &Window) {
        self.head = Some(self.head.map_or(window.end, |h| h.max(window.end)));
        if window.lookback {
            self.last_lookback = Some(window.end);
        }
    }

    /// How far behind real time the poller is.
    pub fn lag(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.head.map(|h| (now - h).to_std().unwrap_or_default())
    }

    /// Event ids with an `eventTime` before this can no longer be read again.
    pub fn seen_horizon(&self, now: DateTime<Utc>, s: &Schedule) -> DateTime<Utc> {
        let anchor = self.head.unwrap_or(now).min(now);
        anchor - dur(s.lookback_span()) - chrono::Duration::minutes(1)
    }
}

/// Event ids already handled, with their `eventTime`, for de-duplication.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    ids: HashMap<String, DateTime<Utc>>,
}

impl Seen {
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Returns false if the id was already there.
    pub fn insert(&mut self, id: &str, time: DateTime<Utc>) -> bool {
        self.ids.insert(id.to_owned(), time).is_none()
    }

    /// Forgets ids older than `horizon`; returns them (to delete from the store).
    pub fn prune(&mut self, horizon: DateTime<Utc>) -> Vec<String> {
        let old: Vec<String> = self
            .ids
            .iter()
            .filter(|(_, t)| **t < horizon)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            self.ids.remove(id);
        }
        old
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const S: Schedule = Schedule {
        max_delivery_delay: Duration::from_secs(15 * 60),
        lookback_interval: Duration::from_secs(5 * 60),
    };

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    /// Simulates a poller at `interval` for `total` and returns every window read.
    fn run(interval: i64, total: i64) -> Vec<Window> {
        let mut c = Cursor::default();
        let mut out = Vec::new();
        let mut now = 0;
        while now <= total {
            let w = c.next_window(t(now), &S);
            c.complete(&w);
            out.push(w);
            now += interval;
        }
        out
    }

    #[test]
    fn first_poll_reads_the_whole_lookback_span() {
        let w = Cursor::default().next_window(t(0), &S);
        assert_eq!(
            w,
            Window {
                start: t(-20 * 60),
                end: t(0),
                lookback: true
            }
        );
    }

    #[test]
    fn head_polls_read_only_since_the_last_poll() {
        let ws = run(15, 60);
        // The first poll (a lookback) ended at 0; the next reads from there, less a second.
        assert_eq!(
            ws[1],
            Window {
                start: t(-1),
                end: t(15),
                lookback: false
            }
        );
        assert_eq!(
            ws[2],
            Window {
                start: t(14),
                end: t(30),
                lookback: false
            }
        );
    }

    #[test]
    fn lookback_runs_once_per_interval_not_every_poll() {
        let ws = run(15, 3600);
        let lookbacks = ws.iter().filter(|w| w.lookback).count();
        assert_eq!(ws.len(), 241);
        assert_eq!(lookbacks, 13, "one at start, then every 5 minutes");
    }

    #[test]
    fn every_straggler_within_the_delay_bound_is_read_after_it_becomes_visible() {
        // An event at every second of an hour, delivered after every delay from 0 to D.
        let ws = run(15, 2 * 3600);
        for event_time in (300..3600).step_by(7) {
            for delay in (0..=900).step_by(60) {
                let visible = event_time + delay;
                let caught = ws
                    .iter()
                    .filter(|w| w.end >= t(visible))
                    .find(|w| w.start <= t(event_time) && t(event_time) <= w.end);
                let w =
                    caught.unwrap_or_else(|| panic!("event at {event_time} delayed {delay}s was never read"));
                let wait = (w.end - t(visible)).num_seconds();
                assert!(wait <= 300 + 15, "caught {wait}s after it became visible");
            }
        }
    }

    #[test]
    fn restart_reads_the_whole_downtime() {
        let mut c = Cursor::default();
        let w = c.next_window(t(0), &S);
        c.complete(&w);
        let w = c.next_window(t(7200), &S);
        assert_eq!(w.start, t(-1));
        assert!(w.lookback);
    }

    #[test]
    fn windows_never_reach_past_retention() {
        let c = Cursor {
            head: Some(t(-200 * 24 * 3600)),
            last_lookback: None,
        };
        let w = c.next_window(t(0), &S);
        assert_eq!(w.start, t(0) - dur(RETENTION));
    }

    #[test]
    fn seen_ids_are_kept_as_long_as_they_can_be_read_again() {
        let mut c = Cursor::default();
        let w = c.next_window(t(0), &S);
        c.complete(&w);
        let horizon = c.seen_horizon(t(0), &S);
        assert!(
            horizon < w.start,
            "an id inside any future window is never pruned"
        );
        let mut seen = Seen::default();
        assert!(seen.insert("a", t(-30 * 60)));
        assert!(seen.insert("b", t(-10)));
        assert!(!seen.insert("b", t(-10)));
        assert_eq!(seen.prune(horizon), vec!["a".to_owned()]);
        assert!(seen.contains("b"));
    }

    #[test]
    fn lag_is_time_since_the_head() {
        let c = Cursor {
            head: Some(t(0)),
            last_lookback: None,
        };
        assert_eq!(c.lag(t(42)), Some(Duration::from_secs(42)));
    }
}
