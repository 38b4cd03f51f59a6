//! Reading a key's recent use from event history: `LookupEvents` with `ResourceName` = the key
//! ARN (event history indexes a KMS event under the key ARNs of its `resources`, which name the
//! key even for a `Decrypt` without `KeyId`), from the start of the window, newest first, at
//! most `pages` pages of 50 events, within `deadline`. What the events mean is decided in
//! [`crate::usage`].
//!
//! # Cost, and the poller first
//!
//! One lookup costs at most `pages` requests (default 5); a key with little history costs one.
//! Every request takes a token from the region's shared `LookupEvents` limiter at **background**
//! priority ([`LookupApi::lookup_background`]): only tokens no poller is waiting for, so a
//! lookup never adds to a poller's lag; while a poller catches up, lookups wait (and give up at
//! `deadline`, reporting what they read as a lower bound, or the use as unknown).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{LookupApi, LookupKey, LookupQuery};
use crate::aws::Place;
use crate::event::Record;
use crate::usage::{Tally, Usage, Who};

/// What one usage lookup asks.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub place: Place,
    pub key_arn: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Who the finding is about (their calls are counted, and said to be theirs).
    pub scheduler: Who,
    pub pages: usize,
    pub deadline: Duration,
}

/// Reads the key's use for `q`; `own` tells trailguard's own calls. Never fails: a failure is
/// a [`Usage`] that says what it could not read.
pub async fn key_usage<L: LookupApi>(
    api: &L,
    q: &UsageQuery,
    own: &(dyn Fn(&Record) -> bool + Sync),
) -> Usage {
    let mut tally = Tally::new(&q.key_arn, q.from, q.to, q.scheduler.clone());
    let walk = async {
        let mut query = LookupQuery {
            key: LookupKey::ResourceName,
            value: q.key_arn.clone(),
            start: Some(q.from),
            end: Some(q.to),
            next_token: None,
        };
        for n in 0..q.pages {
            let page = match api.lookup_background(&q.place, &query).await {
                Ok(p) => p,
                Err(e) if n == 0 => return Some(format!("LookupEvents failed: {}", e.short())),
                Err(e) => {
                    return Some(format!(
                        "LookupEvents failed after {n} page{}: {}",
                        if n == 1 { "" } else { "s" },
                        e.short()
                    ));
                }
            };
            tally.page();
            for e in &page.events {
                if let Ok(r) = Record::parse(&e.record) {
                    tally.add(&r, own);
                }
            }
            match page.next_token.filter(|t| !t.is_empty()) {
                None => return None,
                Some(t) => query.next_token = Some(t),
            }
        }
        Some(format!(
            "the lookup stopped after kms.usage_lookup_pages = {} pages of 50 events",
            q.pages
        ))
    };
    let incomplete = match tokio::time::timeout(q.deadline, walk).await {
        Ok(r) => r,
        Err(_) => Some(format!(
            "the lookup gave up after {}s, the region's LookupEvents quota being taken by polling",
            q.deadline.as_secs()
        )),
    };
    tally.finish(incomplete)
}
