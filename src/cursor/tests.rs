use super::*;
use chrono::TimeZone;

const S: Schedule = Schedule {
    max_delivery_delay: Duration::from_secs(15 * 60),
    lookback_interval: Duration::from_secs(5 * 60),
    poll_interval: Duration::from_secs(15),
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

/// A poller simulated against events at `event_times` each visible `delay(t)` after its time.
/// Returns every slice read, with when it was read.
struct Sim {
    cursor: Cursor,
    reads: Vec<(DateTime<Utc>, Slice)>,
}

impl Sim {
    fn new(now: i64) -> Self {
        Self {
            cursor: Cursor::fresh(t(now), &S, None),
            reads: Vec::new(),
        }
    }

    /// One poll at `now`: slices until caught up. `visible` counts the events in a slice.
    fn poll(&mut self, now: i64, visible: &dyn Fn(&Slice, DateTime<Utc>) -> usize) {
        for _ in 0..10_000 {
            let s = self.cursor.next_slice(t(now), &S);
            let n = visible(&s, t(now));
            self.cursor.complete(&s, n, t(now), &S);
            self.reads.push((t(now), s));
            if self.cursor.caught_up(t(now)) {
                return;
            }
        }
        panic!("never caught up");
    }
}

fn none(_: &Slice, _: DateTime<Utc>) -> usize {
    0
}

#[test]
fn idle_polls_cost_one_request_each_with_the_lookback_merged() {
    let mut sim = Sim::new(0);
    sim.poll(0, &none);
    let first = sim.reads.len();
    assert!(
        first <= 3,
        "a fresh start reads the last 15 minutes in a few slices: {first}"
    );
    let mut now = 0;
    while now < 3600 {
        now += 15;
        sim.poll(now, &none);
    }
    let hour = sim.reads.len() - first;
    assert_eq!(hour, 240, "one request per poll, lookbacks included");
    let lookbacks = sim.reads[first..]
        .iter()
        .filter(|(_, s)| s.kind == SliceKind::HeadAndLookback)
        .count();
    assert_eq!(lookbacks, 12, "every 5 minutes");
}

#[test]
fn every_straggler_within_the_delay_bound_is_read_after_it_becomes_visible() {
    let mut sim = Sim::new(0);
    let mut now = 0;
    sim.poll(now, &none);
    while now < 2 * 3600 {
        now += 15;
        sim.poll(now, &none);
    }
    for event_time in (300..3600).step_by(7) {
        for delay in (0..=900).step_by(60) {
            let visible = event_time + delay;
            let caught = sim
                .reads
                .iter()
                .filter(|(read_at, _)| *read_at >= t(visible))
                .find(|(_, s)| s.start <= t(event_time) && t(event_time) <= s.end);
            let (read_at, _) =
                caught.unwrap_or_else(|| panic!("event at {event_time} delayed {delay}s was never read"));
            let wait = (*read_at - t(visible)).num_seconds();
            assert!(wait <= 300 + 15, "caught {wait}s after it became visible");
        }
    }
}

#[test]
fn a_long_outage_is_read_in_bounded_slices_oldest_first() {
    // 2 hours down, 5 events per second throughout.
    let rate = 5.0;
    let count = |s: &Slice, _: DateTime<Utc>| ((s.end - s.start).num_seconds().max(0) as f64 * rate) as usize;
    let mut sim = Sim::new(0);
    sim.poll(0, &count);
    let before = sim.reads.len();
    sim.poll(7200, &count);
    let slices: Vec<Slice> = sim.reads[before..].iter().map(|(_, s)| *s).collect();
    let mut prev_end = t(0) - dur(OVERLAP);
    for s in slices.iter().filter(|s| s.kind == SliceKind::Head) {
        assert!(
            s.start <= prev_end + dur(OVERLAP),
            "no gap: {s:?} after {prev_end}"
        );
        assert!(s.end >= prev_end, "oldest first");
        prev_end = s.end;
        let events = ((s.end - s.start).num_seconds() as f64 * rate) as usize;
        assert!(
            events <= MAX_PAGES * 50,
            "bounded slice: {events} events in {s:?}"
        );
    }
    assert_eq!(sim.cursor.head, Some(t(7200)));
    // The backlog is read in about as many requests as it has pages, not many more.
    let pages: usize = slices
        .iter()
        .map(|s| {
            (((s.end - s.start).num_seconds() as f64 * rate) as usize)
                .div_ceil(50)
                .max(1)
        })
        .sum();
    assert!(
        pages < 36_000 / 50 * 2,
        "{pages} pages for 36,000 events and a lookback"
    );
}

#[test]
fn a_slice_that_overflows_makes_the_next_one_smaller() {
    let mut c = Cursor::fresh(t(0), &S, None);
    c.density = Some(0.0);
    let now = t(30_000);
    let s = c.next_slice(now, &S);
    assert_eq!(s.kind, SliceKind::Head);
    assert_eq!(s.end - s.start, dur(MAX_SLICE + OVERLAP));
    c.too_big(&s, s.end - chrono::Duration::seconds(100), MAX_PAGES * 50);
    let smaller = c.next_slice(now, &S);
    assert_eq!(smaller.start, s.start, "nothing was checkpointed");
    assert!(
        smaller.end - smaller.start <= chrono::Duration::seconds(60),
        "{smaller:?}"
    );
}

#[test]
fn a_lookback_too_long_for_one_slice_is_read_in_slices_after_the_head() {
    let mut c = Cursor::fresh(t(0), &S, None);
    c.density = Some(2.0); // 250 s slices: a 20-minute lookback does not fit
    c.head = Some(t(290));
    let s = c.next_slice(t(300), &S);
    assert_eq!(s.kind, SliceKind::Head);
    c.complete(&s, 20, t(300), &S);
    assert!(c.lookback.is_some() && !c.caught_up(t(300)));
    let mut starts = vec![];
    while !c.caught_up(t(300)) {
        let s = c.next_slice(t(300), &S);
        assert_eq!(s.kind, SliceKind::Lookback);
        starts.push(s.start);
        c.complete(&s, 500, t(300), &S);
    }
    assert_eq!(starts[0], t(300) - dur(S.lookback_span()) - dur(OVERLAP));
    assert_eq!(c.last_lookback, Some(t(300)));
}

#[test]
fn start_from_and_retention() {
    let c = Cursor::fresh(t(0), &S, Some(t(-2 * 3600)));
    assert_eq!(c.head, Some(t(-2 * 3600)));
    let c = Cursor::fresh(t(0), &S, Some(t(-200 * 86400)));
    assert_eq!(c.head, Some(t(0) - dur(RETENTION)));
    assert_eq!(Cursor::fresh(t(0), &S, None).head, Some(t(-900)));
}

#[test]
fn a_head_in_the_future_does_not_stall_reading() {
    // The cursor was written by a host whose clock ran 30 minutes fast.
    let mut c = Cursor::fresh(t(0), &S, None);
    c.head = Some(t(1800));
    let s = c.next_slice(t(10), &S);
    assert!(s.start <= t(10) && s.end == t(10), "{s:?}");
}

#[test]
fn seen_ids_are_kept_as_long_as_they_can_be_read_again() {
    let mut c = Cursor::fresh(t(0), &S, None);
    while !c.caught_up(t(0)) {
        let s = c.next_slice(t(0), &S);
        c.complete(&s, 0, t(0), &S);
    }
    let horizon = c.seen_horizon(t(0), &S);
    assert!(
        horizon < t(0) - dur(S.lookback_span()) - dur(OVERLAP),
        "an id inside any future read is never pruned"
    );
    let mut seen = Seen::default();
    assert!(seen.insert("a", t(-30 * 60)));
    assert!(seen.insert("b", t(-10)));
    assert!(!seen.insert("b", t(-10)));
    assert_eq!(seen.prune(horizon), vec!["a".to_owned()]);
    assert!(seen.contains("b"));
}
