//! Reading CloudTrail event history with `LookupEvents`, one [`Slice`] at a time
//! (which slices, and why, is in [`crate::cursor`]).
//!
//! The [`LookupApi`] implementation ([`crate::aws::cloudtrail`]) takes a token from the shared
//! per-account-and-region rate limiter before every attempt and retries throttling and 5xx with
//! backoff; a page that still fails fails the slice, which the next poll reads again.

use std::future::Future;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsError, Place};
use crate::cursor::{MAX_PAGES, MIN_SLICE, OVERLAP, Slice, dur};

/// The lookup attribute of a query (event history allows one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKey {
    EventSource,
    ResourceName,
}

/// One `LookupEvents` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupQuery {
    pub key: LookupKey,
    pub value: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub next_token: Option<String>,
}

/// One event of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookedUp {
    pub time: Option<DateTime<Utc>>,
    /// The `CloudTrailEvent` JSON text.
    pub record: String,
}

/// One page of results, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupPage {
    pub events: Vec<LookedUp>,
    pub next_token: Option<String>,
}

/// CloudTrail event history, per account and region.
pub trait LookupApi: Send + Sync + 'static {
    fn lookup(
        &self,
        place: &Place,
        q: &LookupQuery,
    ) -> impl Future<Output = Result<LookupPage, AwsError>> + Send;

    /// As [`LookupApi::lookup`], at background priority: with only the rate-limiter tokens no
    /// foreground caller (a poller) is waiting for. For work that must never add to a poller's
    /// lag (usage lookups).
    fn lookup_background(
        &self,
        place: &Place,
        q: &LookupQuery,
    ) -> impl Future<Output = Result<LookupPage, AwsError>> + Send {
        self.lookup(place, q)
    }
}

/// What reading a slice gave.
#[derive(Debug)]
pub enum SliceRead {
    /// Every page: the records, newest first.
    Complete(Vec<String>),
    /// [`MAX_PAGES`] pages and more to come: the records read so far, and the oldest `eventTime`
    /// among them. The slice must be read again in smaller pieces.
    TooBig {
        records: Vec<String>,
        oldest: DateTime<Utc>,
    },
    /// Shutdown began between two pages.
    Stopped,
}

/// Reads every page of `slice` for `EventSource = event_source` in `place`. `on_page` runs after
/// every page (health and the systemd watchdog are fed per page, not per slice).
pub async fn read_slice<L: LookupApi>(
    api: &L,
    place: &Place,
    event_source: &str,
    slice: &Slice,
    shutdown: &CancellationToken,
    mut on_page: impl FnMut(),
) -> Result<SliceRead, AwsError> {
    let mut q = LookupQuery {
        key: LookupKey::EventSource,
        value: event_source.to_owned(),
        start: Some(slice.start),
        end: Some(slice.end),
        next_token: None,
    };
    let mut records = Vec::new();
    let mut oldest = slice.end;
    // The smallest slice cannot be cut smaller: it is read to its end, however dense (else a
    // burst of over MAX_PAGES pages in it would stop the cursor for good).
    let smallest = slice.end - slice.start <= dur(MIN_SLICE) + dur(OVERLAP);
    let mut pages = 0;
    while smallest || pages < MAX_PAGES {
        pages += 1;
        let page = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(SliceRead::Stopped),
            page = api.lookup(place, &q) => page?,
        };
        on_page();
        for e in page.events {
            if let Some(t) = e.time {
                oldest = oldest.min(t);
            }
            records.push(e.record);
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            None => return Ok(SliceRead::Complete(records)),
            Some(t) => q.next_token = Some(t),
        }
    }
    Ok(SliceRead::TooBig { records, oldest })
}

/// The newest event for `ResourceName = resource` in `place` that `pick` accepts, reading pages
/// newest first, at most `max_pages`.
pub async fn find_latest<L: LookupApi, T>(
    api: &L,
    place: &Place,
    resource: &str,
    max_pages: usize,
    mut pick: impl FnMut(&LookedUp) -> Option<T>,
) -> Result<Option<T>, AwsError> {
    let mut q = LookupQuery {
        key: LookupKey::ResourceName,
        value: resource.to_owned(),
        start: None,
        end: None,
        next_token: None,
    };
    for _ in 0..max_pages {
        let page = api.lookup(place, &q).await?;
        if let Some(found) = page.events.iter().find_map(&mut pick) {
            return Ok(Some(found));
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            None => return Ok(None),
            Some(t) => q.next_token = Some(t),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::{Cursor, Schedule, SliceKind};
    use chrono::TimeZone;
    use std::time::Duration;

    /// A burst: 1,500 events within two seconds (30 pages).
    struct Burst(DateTime<Utc>);

    impl LookupApi for Burst {
        async fn lookup(&self, _: &Place, q: &LookupQuery) -> Result<LookupPage, AwsError> {
            let page: usize = q.next_token.as_deref().map_or(0, |t| t.parse().unwrap());
            let events = (0..50)
                .map(|i| LookedUp {
                    time: Some(self.0),
                    record: format!("{{\"eventID\":\"e-{page}-{i}\"}}"),
                })
                .collect();
            Ok(LookupPage {
                events,
                next_token: (page + 1 < 30).then(|| (page + 1).to_string()),
            })
        }
    }

    #[tokio::test]
    async fn a_burst_denser_than_the_smallest_slice_is_still_read() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let s = Schedule {
            max_delivery_delay: Duration::from_secs(900),
            lookback_interval: Duration::from_secs(300),
            poll_interval: Duration::from_secs(15),
        };
        let mut cursor = Cursor {
            head: Some(now - chrono::Duration::hours(1)),
            ..Cursor::default()
        };
        let api = Burst(now - chrono::Duration::hours(1) + chrono::Duration::seconds(1));
        let place = Place::new("111122223333", "eu-west-1");
        let stop = CancellationToken::new();
        // Each cut-short read shrinks the slice; the smallest one must be read to its end, or
        // the region's cursor never moves again (pages read keep /readyz green meanwhile).
        for _ in 0..10 {
            let slice = cursor.next_slice(now, &s);
            assert_eq!(slice.kind, SliceKind::Head);
            match read_slice(&api, &place, "kms.amazonaws.com", &slice, &stop, || {})
                .await
                .unwrap()
            {
                SliceRead::Complete(records) => {
                    assert_eq!(records.len(), 1500);
                    return;
                }
                SliceRead::TooBig { records, oldest } => cursor.too_big(&slice, oldest, records.len()),
                SliceRead::Stopped => unreachable!(),
            }
        }
        panic!(
            "stuck: a {} s slice is cut short forever",
            (cursor.next_slice(now, &s).end - cursor.next_slice(now, &s).start).num_seconds()
        );
    }
}
