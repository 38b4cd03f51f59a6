//! One `LookupEvents` rate limiter per account and region, shared by every caller: the KMS
//! poller, the IAM event poller and the IAM sweep's lookups all draw from the same budget.
//!
//! AWS allows 2 requests per second per account and region, for all callers together (people
//! and other tools included); trailguard takes `cloudtrail.max_requests_per_second` of it
//! (default 1). Every attempt, retries included, takes a token first. The limiter runs on
//! tokio's clock, so tests on paused time control it.
//!
//! Background callers (usage lookups) take only tokens no foreground caller (a poller) is
//! waiting for: while a poller waits for a place's token, background callers of that place
//! wait behind it, so background work never adds to a poller's lag.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// Where a quota applies: an account and a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub account: String,
    pub region: String,
}

impl Place {
    pub fn new(account: &str, region: &str) -> Self {
        Self {
            account: account.to_owned(),
            region: region.to_owned(),
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// Nanoseconds since the limiter was made, on tokio's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(u64);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, d: Nanos) -> Self {
        Self(self.0.saturating_add(d.as_u64()))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_sub(earlier.0))
    }

    fn saturating_sub(&self, d: Nanos) -> Self {
        Self(self.0.saturating_sub(d.as_u64()))
    }
}

#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now().saturating_duration_since(self.origin).as_nanos() as u64)
    }
}

type Keyed = RateLimiter<Place, HashMapStateStore<Place>, TokioClock, NoOpMiddleware<TokioInstant>>;

/// A keyed rate limiter: the shared `LookupEvents` limiter (per account and region), and the
/// IAM sweep's pacing.
#[derive(Debug)]
pub struct Limiter {
    limiter: Keyed,
    clock: TokioClock,
    /// Foreground callers waiting for a token, per place.
    waiting: Mutex<HashMap<Place, usize>>,
}

/// Counts a foreground caller as waiting while it lives.
struct Waiting<'a>(&'a Limiter, &'a Place);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut w = self.0.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = w.get_mut(self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.remove(self.1);
            }
        }
    }
}

impl Limiter {
    /// `rate` requests per second per place, no bursts.
    pub fn new(rate: f64) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::MIN);
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Self {
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            clock,
            waiting: Mutex::default(),
        }
    }

    /// Waits for a token for `place`.
    pub async fn acquire(&self, place: &Place) {
        if self.limiter.check_key(place).is_ok() {
            return;
        }
        *self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(place.clone())
            .or_default() += 1;
        let _waiting = Waiting(self, place);
        while let Err(not_until) = self.limiter.check_key(place) {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }

    fn foreground_waiting(&self, place: &Place) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(place)
            .is_some_and(|n| *n > 0)
    }

    /// Waits for a token for `place` that no foreground caller is waiting for.
    pub async fn acquire_background(&self, place: &Place) {
        loop {
            if !self.foreground_waiting(place) {
                match self.limiter.check_key(place) {
                    Ok(()) => return,
                    Err(not_until) => {
                        tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
                        continue;
                    }
                }
            }
            // Behind a foreground caller: look again once it has had its token.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn callers_of_one_place_share_its_budget_other_places_do_not() {
        let l = std::sync::Arc::new(Limiter::new(1.0));
        let east = Place::new("111122223333", "us-east-1");
        let west = Place::new("111122223333", "eu-west-1");
        let started = Instant::now();
        // Two pollers and a sweep in us-east-1, one poller in eu-west-1, 4 requests each.
        let mut tasks = Vec::new();
        for place in [east.clone(), east.clone(), east.clone(), west.clone()] {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..4 {
                    l.acquire(&place).await;
                }
                Instant::now()
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap() - started);
        }
        // 12 requests in us-east-1 at 1/s: the last one waits 11 s; eu-west-1's 4 take 3 s.
        assert_eq!(done[..3].iter().max().unwrap().as_secs(), 11);
        assert_eq!(done[3].as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn background_callers_take_only_tokens_no_poller_waits_for() {
        let l = std::sync::Arc::new(Limiter::new(1.0));
        let east = Place::new("111122223333", "us-east-1");
        let started = Instant::now();
        // A usage lookup wants 5 pages while a poller catches up with 10.
        let bg = {
            let (l, place) = (l.clone(), east.clone());
            tokio::spawn(async move {
                let mut at = Vec::new();
                for _ in 0..5 {
                    l.acquire_background(&place).await;
                    at.push(Instant::now() - started);
                }
                at
            })
        };
        tokio::task::yield_now().await;
        let mut poller = Vec::new();
        for _ in 0..10 {
            l.acquire(&east).await;
            poller.push(Instant::now() - started);
        }
        // The poller is never slowed: one token a second from its first wait on.
        let last = poller.last().unwrap().as_secs();
        assert!(last <= 10, "the poller waited behind background work: {poller:?}");
        let bg = bg.await.unwrap();
        // The lookup got its first token before the poller arrived, the rest only after the
        // poller stopped asking.
        assert!(bg[1..].iter().all(|t| t.as_secs() >= last), "{bg:?} {poller:?}");
    }
}
