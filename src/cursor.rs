//! Which part of CloudTrail event history to read next, and de-duplication. Pure: `now` is an
//! argument (AWS time, see [`crate::clock`]).
//!
//! # The problem
//!
//! `LookupEvents` filters on `eventTime`, but a record becomes visible only after CloudTrail
//! delivers it: about 5 minutes on average, not guaranteed. A poller that asks only for
//! "events since my last poll" misses every straggler whose `eventTime` is older than that poll.
//! Re-reading the whole delivery-delay horizon on every poll catches them, but multiplies the
//! reads by `max_delivery_delay / poll_interval`, and the API allows 2 requests per second per
//! account and region, 50 events per request. After an outage the backlog can be hours long.
//!
//! # The strategy
//!
//! Reading is done in **slices**: time ranges sized so that each holds about
//! [`TARGET_EVENTS`] events at the rate recently seen ([`Cursor::density`]), read page by page
//! (newest first, as the API returns them), then processed and checkpointed as a unit. Slices
//! are read oldest first, so the cursor's `head` (every event with `eventTime ≤ head` has been
//! read) only moves forward, and a crash or a failed page re-reads at most one slice. Memory is
//! one slice, however long the outage.
//!
//! - **catch-up**: while `head` is more than a slice behind `now`, read the next slice after it.
//! - **head**: once caught up, every `poll_interval`, read from `head` (less [`OVERLAP`], since
//!   `eventTime` has second precision and bounds are inclusive) to `now`.
//! - **lookback**: every `lookback_interval` (S), at the first poll (every P) after it is due,
//!   re-read from `now - max_delivery_delay - S - P` to `head`. An event delivered d ≤ D after
//!   its `eventTime` t becomes visible at t + d; lookbacks begin at most S + P apart, so the
//!   first one at or after that begins before t + d + S + P ≤ t + D + S + P, and reads back to
//!   its begin time minus D + S + P, which is ≤ t: it is caught within S + P (plus the
//!   lookback's own reading time) of becoming visible. When the lookback span fits in one slice
//!   it is merged into the head read (one request when idle); otherwise it is read in slices
//!   after the head read, with its progress checkpointed like the head's. No lookback runs during
//!   catch-up: the catch-up itself reads everything after `head`.
//!
//! Everything read is de-duplicated by `eventID` ([`Seen`], one per poller), which holds the ids
//! of the last D + S (+ margin) of `eventTime`: nothing older can be read again.
//!
//! # API cost
//!
//! Idle (every read fits one page): `3600/poll_interval` requests an hour, the due lookback
//! being merged into that poll's read: **240 requests/hour** at the default 15 s.
//! With R KMS events per second: about `3600·R/50 · (1 + (D + S)/S)` requests an hour, 5× the
//! bare event volume with the defaults; one request per second (the default share) keeps up
//! with about 10 events/s steadily. A backlog is read at the full share: at 1 request/s and R
//! events/s, the lag shrinks by `50/R - 1` seconds per second.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest a read may reach back: event history keeps 90 days.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Slack for inclusive second-precision bounds and the estimate of AWS's clock.
pub const OVERLAP: Duration = Duration::from_secs(2);

/// How many events a slice should hold (10 pages).
pub const TARGET_EVENTS: f64 = 500.0;
/// A slice that reaches this many pages is cut short and read again in smaller slices.
pub const MAX_PAGES: usize = 20;
/// Bounds on a slice's span.
pub const MIN_SLICE: Duration = Duration::from_secs(5);
pub const MAX_SLICE: Duration = Duration::from_secs(6 * 3600);
/// The span of the first slices, before any rate has been seen.
pub const FIRST_SLICE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub max_delivery_delay: Duration,
    pub lookback_interval: Duration,
    /// Lookbacks start at polls, so one can begin up to a poll interval after it is due.
    pub poll_interval: Duration,
}

impl Schedule {
    /// How far back a lookback reads: D + S + P (P: a lookback begins at the first poll after it
    /// is due, so lookbacks begin at most S + P apart).
    pub fn lookback_span(&self) -> Duration {
        self.max_delivery_delay + self.lookback_interval + self.poll_interval
    }
}

/// A lookback being read in slices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookback {
    /// Where the next lookback slice starts.
    pub next: DateTime<Utc>,
    /// Where the lookback ends (the head when it began).
    pub until: DateTime<Utc>,
    /// When it began: it catches what was visible then.
    pub began: DateTime<Utc>,
}

/// Where a poller's reading stands; persisted after each slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every event with `eventTime` up to here has been read.
    pub head: Option<DateTime<Utc>>,
    /// When the last complete lookback began.
    pub last_lookback: Option<DateTime<Utc>>,
    /// A lookback in progress.
    #[serde(default)]
    pub lookback: Option<Lookback>,
    /// Events per second of `eventTime`, as recently read (sizes the slices).
    #[serde(default)]
    pub density: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SliceKind {
    /// After the head (catch-up, or the regular poll).
    Head,
    /// Part of a lookback in progress.
    Lookback,
    /// The regular poll with the lookback merged in.
    HeadAndLookback,
}

/// One `LookupEvents` time range to read, every page of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub kind: SliceKind,
}

pub(crate) fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Cursor {
    /// A new poller's cursor: reading starts at `start_from`, or `max_delivery_delay` ago.
    pub fn fresh(now: DateTime<Utc>, s: &Schedule, start_from: Option<DateTime<Utc>>) -> Self {
        let head = start_from.unwrap_or(now - dur(s.max_delivery_delay));
        Self {
            head: Some(head.max(now - dur(RETENTION)).min(now)),
            last_lookback: Some(now),
            lookback: None,
            density: None,
        }
    }

    /// The span a slice should have at the rate seen.
    pub fn slice_span(&self) -> Duration {
        match self.density {
            None => FIRST_SLICE,
            Some(d) if d <= 0.0 => MAX_SLICE,
            Some(d) => Duration::from_secs_f64(
                (TARGET_EVENTS / d).clamp(MIN_SLICE.as_secs_f64(), MAX_SLICE.as_secs_f64()),
            ),
        }
    }

    fn head_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.head.unwrap_or(now).min(now).max(now - dur(RETENTION))
    }

    /// The slice to read at `now`.
    pub fn next_slice(&self, now: DateTime<Utc>, s: &Schedule) -> Slice {
        let span = dur(self.slice_span());
        let oldest = now - dur(RETENTION);
        let o = dur(OVERLAP);
        if let Some(lb) = &self.lookback {
            let start = (lb.next - o).max(oldest);
            return Slice {
                start,
                end: (lb.next + span).min(lb.until).max(start),
                kind: SliceKind::Lookback,
            };
        }
        let head = self.head_at(now);
        if now - head > span {
            return Slice {
                start: head - o,
                end: head + span,
                kind: SliceKind::Head,
            };
        }
        let lookback_start = (now - dur(s.lookback_span())).max(oldest);
        let due = self
            .last_lookback
            .is_none_or(|t| now - t >= dur(s.lookback_interval) || t > now);
        if due && now - lookback_start <= span {
            return Slice {
                start: (head - o).min(lookback_start),
                end: now,
                kind: SliceKind::HeadAndLookback,
            };
        }
        Slice {
            start: head - o,
            end: now,
            kind: SliceKind::Head,
        }
    }

    /// Records that `slice` was read completely at `now`, holding `events` events.
    pub fn complete(&mut self, slice: &Slice, events: usize, now: DateTime<Utc>, s: &Schedule) {
        let secs = (slice.end - slice.start).num_milliseconds().max(1000) as f64 / 1000.0;
        self.observe_density(events as f64 / secs);
        match slice.kind {
            SliceKind::Lookback => {
                if let Some(lb) = &mut self.lookback {
                    lb.next = slice.end;
                    if lb.next >= lb.until {
                        self.last_lookback = Some(lb.began);
                        self.lookback = None;
                    }
                }
            }
            SliceKind::HeadAndLookback => {
                self.head = Some(slice.end);
                self.last_lookback = Some(now);
            }
            SliceKind::Head => {
                let caught_up = slice.end >= now;
                let before = self.head_at(now);
                self.head = Some(slice.end.max(before));
                let due = self
                    .last_lookback
                    .is_none_or(|t| now - t >= dur(s.lookback_interval) || t > now);
                if caught_up && due {
                    // The lookback did not fit the head read: read it in slices, now.
                    let from = (now - dur(s.lookback_span())).max(now - dur(RETENTION));
                    self.lookback = Some(Lookback {
                        next: from,
                        until: slice.end,
                        began: now,
                    });
                }
            }
        }
    }

    /// A slice was cut short after [`MAX_PAGES`] pages reaching back to `oldest_read`: the
    /// events are denser than thought. Nothing is checkpointed; the next slice is smaller.
    pub fn too_big(&mut self, slice: &Slice, oldest_read: DateTime<Utc>, events: usize) {
        let covered = (slice.end - oldest_read).num_milliseconds().max(1000) as f64 / 1000.0;
        let rate = events as f64 / covered;
        self.density = Some(self.density.unwrap_or(0.0).max(rate));
    }

    fn observe_density(&mut self, rate: f64) {
        self.density = Some(match self.density {
            None => rate,
            // Rises at once (a burst must not overflow the next slice), falls slowly.
            Some(d) if rate > d => rate,
            Some(d) => d * 0.7 + rate * 0.3,
        });
    }

    /// Nothing left to read before the next poll.
    pub fn caught_up(&self, now: DateTime<Utc>) -> bool {
        self.lookback.is_none() && self.head.is_some_and(|h| h >= now - dur(OVERLAP))
    }

    /// How far behind `now` the head is.
    pub fn lag(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.head.map(|h| (now - h).to_std().unwrap_or_default())
    }

    /// Event ids with an `eventTime` before this can no longer be read again.
    pub fn seen_horizon(&self, now: DateTime<Utc>, s: &Schedule) -> DateTime<Utc> {
        self.head_at(now) - dur(s.lookback_span()) - dur(OVERLAP) - chrono::Duration::minutes(1)
    }
}

/// Event ids already handled by one poller, with their `eventTime`, for de-duplication.
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

    /// The ids older than `horizon` (to delete from the store, then [`Seen::forget`]).
    pub fn older_than(&self, horizon: DateTime<Utc>) -> Vec<String> {
        self.ids
            .iter()
            .filter(|(_, t)| **t < horizon)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn forget(&mut self, ids: &[String]) {
        for id in ids {
            self.ids.remove(id);
        }
    }

    /// Forgets ids older than `horizon`; returns them.
    pub fn prune(&mut self, horizon: DateTime<Utc>) -> Vec<String> {
        let old = self.older_than(horizon);
        self.forget(&old);
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
mod tests;
