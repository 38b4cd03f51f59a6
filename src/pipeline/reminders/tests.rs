//! The reminders loop on paused time: due points, restarts, keys that go away, failures.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::actions::{KeyDescription, KeyState};
use crate::aws::{AwsError, Service};

const DAY: u64 = 86400;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

/// `DescribeKey` answers what `state` holds: a state and deletion date, or an error type.
#[derive(Clone, Default)]
struct FakeKeys {
    state: Arc<Mutex<Option<Result<KeyDescription, ErrorType>>>>,
    describes: Arc<Mutex<u32>>,
}

impl FakeKeys {
    fn pending(deletion: DateTime<Utc>) -> Self {
        let k = Self::default();
        k.set(Ok(KeyDescription {
            state: KeyState::PendingDeletion,
            deletion_date: Some(deletion),
        }));
        k
    }
    fn set(&self, s: Result<KeyDescription, ErrorType>) {
        *self.state.lock().unwrap() = Some(s);
    }
}

impl KeyApi for FakeKeys {
    async fn describe_key(&self, _: &KeyArn) -> Result<KeyDescription, AwsError> {
        *self.describes.lock().unwrap() += 1;
        self.state
            .lock()
            .unwrap()
            .clone()
            .unwrap()
            .map_err(|t| AwsError::local(Service::Kms, "DescribeKey", t, "fake"))
    }
    async fn cancel_key_deletion(&self, _: &KeyArn) -> Result<(), AwsError> {
        unreachable!("reminders never act on a key")
    }
    async fn enable_key(&self, _: &KeyArn) -> Result<(), AwsError> {
        unreachable!("reminders never act on a key")
    }
    async fn list_aliases(&self, _: &KeyArn) -> Result<Vec<String>, AwsError> {
        Ok(vec![])
    }
    async fn list_resource_tags(&self, _: &KeyArn) -> Result<Vec<(String, String)>, AwsError> {
        Ok(vec![])
    }
    async fn region_aliases(&self, _: &str, _: &str) -> Result<Vec<(String, Option<String>)>, AwsError> {
        Ok(vec![])
    }
    async fn region_keys(&self, _: &str, _: &str) -> Result<Vec<String>, AwsError> {
        Ok(vec![])
    }
}

/// Event history: `calls` uses of the key in every window asked; the windows are recorded.
#[derive(Default)]
struct FakeHistory {
    calls: u64,
    asked: Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
}

impl UsageLookup for FakeHistory {
    fn usage(&self, q: UsageQuery) -> Pin<Box<dyn Future<Output = Usage> + Send>> {
        self.asked.lock().unwrap().push((q.from, q.to));
        let calls = self.calls;
        Box::pin(async move {
            let mut u = Usage::unknown(q.from, q.to, "");
            u.incomplete = None;
            u.calls = calls;
            u.pages = 1;
            if calls > 0 {
                u.last_use = Some(q.to);
                u.callers = vec![crate::usage::Caller {
                    principal: "arn:aws:iam::111122223333:role/billing-app".into(),
                    calls,
                    last_use: Some(q.to),
                }];
                u.operations = BTreeMap::from([("Decrypt".into(), calls)]);
            }
            u
        })
    }
}

fn pending_key(scheduled_at: DateTime<Utc>) -> PendingKey {
    let text = serde_json::json!({"eventID": "s-1", "eventSource": "kms.amazonaws.com",
        "eventName": "ScheduleKeyDeletion", "eventTime": scheduled_at.to_rfc3339(), "awsRegion": "eu-west-1",
        "recipientAccountId": "111122223333", "requestParameters": {"keyId": "k-1"},
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/ops-admin"}})
    .to_string();
    PendingKey {
        finding: crate::rules::evaluate_json(&text).remove(0),
        scheduled_at,
        reminded: Vec::new(),
    }
}

struct Bench {
    store: Arc<Store>,
    keys: FakeKeys,
    history: Arc<FakeHistory>,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new(keys: FakeKeys, calls: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: Arc::new(Store::open(dir.path(), false).unwrap()),
            keys,
            history: Arc::new(FakeHistory {
                calls,
                ..Default::default()
            }),
            _dir: dir,
        }
    }

    /// A reminders loop whose clock reads `now` at start, every hour, for 7 and 1 days before.
    fn start(&self, now: DateTime<Utc>) -> (mpsc::UnboundedReceiver<Job>, CancellationToken) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let r = Reminders {
            keys: self.keys.clone(),
            lookups: self.history.clone(),
            store: self.store.clone(),
            clock: Clock::starting_at(now),
            usage: UsagePolicy {
                reminders: vec![Duration::from_secs(7 * DAY), Duration::from_secs(DAY)],
                reminder_interval: Duration::from_secs(3600),
                ..UsagePolicy::default()
            },
            accounts: vec!["111122223333".into()],
            jobs: tx,
        };
        tokio::spawn(r.run(shutdown.clone()));
        (rx, shutdown)
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

async fn hours(n: u64) {
    tokio::time::sleep(Duration::from_secs(n * 3600)).await;
}

#[tokio::test(start_paused = true)]
async fn each_point_is_reminded_once_with_the_use_since_scheduling_and_a_restart_resends_nothing() {
    // Scheduled at t0 with a 7-day window (+1 h): the 7-day point comes an hour later.
    let deletion = t0() + chrono::Duration::seconds((7 * DAY + 3600) as i64);
    let b = Bench::new(FakeKeys::pending(deletion), 3);
    b.store.track_pending(&pending_key(t0())).unwrap();
    let (mut rx, stop) = b.start(t0());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(drain(&mut rx).is_empty(), "nothing is due before the 7-day point");
    hours(1).await;
    let first = drain(&mut rx);
    assert_eq!(first.len(), 1, "the 7-day reminder");
    let j = &first[0];
    assert_eq!(j.finding.rule_id, crate::usage::DELETION_REMINDER);
    assert_eq!(
        j.finding.deletion_date.as_deref(),
        Some(deletion.to_rfc3339().as_str())
    );
    let u = j.usage.as_ref().unwrap();
    assert_eq!((u.calls, u.from), (3, t0()), "the use since scheduling");
    assert_eq!(b.history.asked.lock().unwrap()[0].0, t0());
    assert_eq!(
        b.store.jobs().unwrap().0.len(),
        1,
        "queued in the store with the points marked"
    );
    assert_eq!(b.store.pending_keys().unwrap().0[0].reminded, [7 * DAY]);
    hours(24).await;
    assert!(drain(&mut rx).is_empty(), "one reminder per point");
    // A restart (a new loop on the same store) a day before: only the 1-day point goes out.
    stop.cancel();
    let (mut rx, stop) = b.start(deletion - chrono::Duration::hours(23));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let second = drain(&mut rx);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].id, j.id, "each point has its own notification id");
    hours(12).await;
    assert!(drain(&mut rx).is_empty(), "the 7-day point is never sent again");
    assert_eq!(b.store.pending_keys().unwrap().0[0].reminded, [7 * DAY, DAY]);
    // The deletion date passes: the key is forgotten.
    hours(12).await;
    assert!(b.store.pending_keys().unwrap().0.is_empty());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn points_missed_while_down_fold_into_one_reminder() {
    let deletion = t0() + chrono::Duration::seconds((7 * DAY) as i64);
    let b = Bench::new(FakeKeys::pending(deletion), 0);
    b.store.track_pending(&pending_key(t0())).unwrap();
    // trailguard comes back 12 hours before the date: both points have come.
    let (mut rx, stop) = b.start(deletion - chrono::Duration::hours(12));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let jobs = drain(&mut rx);
    assert_eq!(jobs.len(), 1, "one reminder for the latest point");
    assert_eq!(jobs[0].usage.as_ref().unwrap().calls, 0);
    assert_eq!(jobs[0].finding.severity, crate::rules::Severity::Medium);
    let mut reminded = b.store.pending_keys().unwrap().0[0].reminded.clone();
    reminded.sort();
    assert_eq!(reminded, [DAY, 7 * DAY], "both points settled");
    hours(3).await;
    assert!(drain(&mut rx).is_empty());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_key_deleted_or_cancelled_between_checks_is_forgotten_and_a_failed_read_keeps_it() {
    let deletion = t0() + chrono::Duration::seconds((7 * DAY + 7200) as i64);
    let b = Bench::new(FakeKeys::pending(deletion), 0);
    b.store.track_pending(&pending_key(t0())).unwrap();
    // DescribeKey fails (throttled, an outage): the key stays followed, nothing is sent.
    b.keys.set(Err(ErrorType::Throttled));
    let (mut rx, stop) = b.start(t0() + chrono::Duration::hours(3));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(drain(&mut rx).is_empty());
    assert_eq!(
        b.store.pending_keys().unwrap().0.len(),
        1,
        "kept for the next check"
    );
    // The next check reads it: the reminder missed meanwhile goes out.
    b.keys.set(Ok(KeyDescription {
        state: KeyState::PendingDeletion,
        deletion_date: Some(deletion),
    }));
    hours(1).await;
    assert_eq!(drain(&mut rx).len(), 1);
    // Cancelled by someone: forgotten, and no more calls for it.
    b.keys.set(Ok(KeyDescription {
        state: KeyState::Disabled,
        deletion_date: None,
    }));
    hours(1).await;
    assert!(b.store.pending_keys().unwrap().0.is_empty());
    let describes = *b.keys.describes.lock().unwrap();
    hours(5).await;
    assert_eq!(*b.keys.describes.lock().unwrap(), describes);
    stop.cancel();
    // Deleted (NotFound) is forgotten the same way.
    let b = Bench::new(FakeKeys::default(), 0);
    b.keys.set(Err(ErrorType::NotFound));
    b.store.track_pending(&pending_key(t0())).unwrap();
    let (mut rx, stop) = b.start(t0());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(drain(&mut rx).is_empty());
    assert!(b.store.pending_keys().unwrap().0.is_empty());
    stop.cancel();
}
