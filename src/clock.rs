//! AWS time, not host time.
//!
//! Poll windows, event ages and deadlines are all about CloudTrail's `eventTime`, which AWS's
//! clocks write. A host clock 30 minutes fast would otherwise ask for windows that end in the
//! future and then start every later window there, reading nothing, forever.
//!
//! [`Clock::now`] is the host's wall clock at start, advanced by tokio's monotonic clock (so a
//! clock step on the host does not jump it, and tests on paused time control it), plus the
//! offset to AWS estimated from the `Date` header of every AWS response
//! ([`Clock::observe_server_date`], fed by the AWS layer). `Date` has one-second precision; the
//! estimate keeps the smallest recent offset sample within that second, and poll windows overlap
//! by more than that.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Offsets beyond this are logged as a warning: signing fails past ~5 minutes of skew, and a
/// minute is already a misconfigured host.
pub const SKEW_WARNING: Duration = Duration::from_secs(60);

const UNSET: i64 = i64::MIN;

/// How many consecutive responses must agree on a large change before it is taken: one
/// wrong `Date` (a proxy with a wrong clock, a bad header) must not move every window and
/// make a standby take a held lease.
const CONFIRMATIONS: u32 = 3;

/// The daemon's clock (cheap to clone; every clone shares the estimate).
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin_utc: DateTime<Utc>,
    origin: Instant,
    /// AWS minus host, in milliseconds (UNSET until the first response).
    offset_ms: AtomicI64,
    warned: AtomicBool,
    /// A large change seen but not yet confirmed: its offset and how many samples agree.
    candidate: Mutex<Option<(i64, u32)>>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock starting at the host's current time.
    pub fn new() -> Self {
        // NOTE: the one read of the host's wall clock; everything after is monotonic.
        #[allow(clippy::disallowed_methods)]
        let now = Utc::now();
        Self::starting_at(now)
    }

    /// A clock that reads `origin` now (tests).
    pub fn starting_at(origin: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(Inner {
                origin_utc: origin,
                origin: Instant::now(),
                offset_ms: AtomicI64::new(UNSET),
                warned: AtomicBool::new(false),
                candidate: Mutex::new(None),
            }),
        }
    }

    /// The host's view of now (monotonic since start).
    pub fn host_now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.inner.origin);
        self.inner.origin_utc + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    /// AWS's view of now: the host's, corrected by the estimated offset.
    pub fn now(&self) -> DateTime<Utc> {
        self.host_now() + chrono::Duration::milliseconds(self.offset_ms())
    }

    /// The estimated offset to AWS (AWS minus host), in milliseconds; 0 until known.
    pub fn offset_ms(&self) -> i64 {
        match self.inner.offset_ms.load(Ordering::Relaxed) {
            UNSET => 0,
            v => v,
        }
    }

    /// Feeds one AWS response's `Date` header (second precision), received now.
    /// Returns the new offset estimate in seconds.
    pub fn observe_server_date(&self, server: DateTime<Utc>) -> f64 {
        // The server wrote `server` somewhere in [server, server + 1s): take the middle.
        let sample = (server + chrono::Duration::milliseconds(500) - self.host_now()).num_milliseconds();
        let old = self.inner.offset_ms.load(Ordering::Relaxed);
        let mut candidate = self.inner.candidate.lock().unwrap_or_else(|e| e.into_inner());
        // Small differences are the header's rounding and the network: smooth them. A large
        // change (a suspended host, a first sample) is taken once CONFIRMATIONS responses in a
        // row agree on it (a first sample at once).
        let new = if old == UNSET {
            sample
        } else if (sample - old).abs() <= 2_000 {
            *candidate = None;
            old + (sample - old) / 8
        } else {
            let agreeing = match *candidate {
                Some((c, n)) if (sample - c).abs() <= 2_000 => n + 1,
                _ => 1,
            };
            if agreeing >= CONFIRMATIONS {
                *candidate = None;
                sample
            } else {
                *candidate = Some((sample, agreeing));
                old
            }
        };
        drop(candidate);
        self.inner.offset_ms.store(new, Ordering::Relaxed);
        let secs = new as f64 / 1000.0;
        let large = new.unsigned_abs() > SKEW_WARNING.as_millis() as u64;
        if large && !self.inner.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                skew_seconds = secs,
                "The host clock differs from AWS's by over a minute; trailguard uses AWS time for its windows. Fix the host's time sync (chrony, systemd-timesyncd)."
            );
        } else if !large {
            self.inner.warned.store(false, Ordering::Relaxed);
        }
        secs
    }

    /// A monotonic deadline `d` from now (for timers).
    pub fn deadline(&self, d: Duration) -> Instant {
        Instant::now() + d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time_and_corrects_to_aws() {
        let c = Clock::starting_at(t0());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(c.now(), t0() + chrono::Duration::seconds(10));
        // AWS says it is 30 minutes earlier: the host is fast.
        c.observe_server_date(t0() + chrono::Duration::seconds(10) - chrono::Duration::minutes(30));
        let behind = (c.host_now() - c.now()).num_milliseconds();
        assert!((1_799_000..=1_800_000).contains(&behind), "{behind}");
        // Small jitter moves the estimate a little, not a whole second.
        c.observe_server_date(t0() + chrono::Duration::seconds(11) - chrono::Duration::minutes(30));
        let again = (c.host_now() - c.now()).num_milliseconds();
        assert!((again - behind).abs() < 200, "{behind} {again}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_wrong_date_header_does_not_move_aws_time() {
        let c = Clock::starting_at(t0());
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            c.observe_server_date(c.host_now() - chrono::Duration::milliseconds(500));
        }
        let before = c.offset_ms();
        assert!(before.abs() < 1_000, "{before}");
        // One response through a proxy with a wrong clock (or a bad header): an hour ahead.
        tokio::time::advance(Duration::from_secs(1)).await;
        c.observe_server_date(c.host_now() + chrono::Duration::hours(1));
        let after = c.offset_ms();
        assert!(
            (after - before).abs() < 2_000,
            "one outlying Date header moved AWS time by {} s (a standby would take a held lease, windows jump)",
            (after - before) / 1000
        );
        // A real step (every later response agrees) is still followed.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            c.observe_server_date(c.host_now() + chrono::Duration::minutes(10));
        }
        assert!((c.offset_ms() - 600_000).abs() < 2_000, "{}", c.offset_ms());
    }
}
