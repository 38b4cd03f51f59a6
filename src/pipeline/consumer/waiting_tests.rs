//! Messages waiting only on their notifications ([`crate::pipeline::acks::Progress::Queued`]):
//! kept and extended until published, bounded, never deleted early when SQS hands them out
//! again, and a source waiting for room stays alive. A scripted queue, paused time.
use std::sync::atomic::{AtomicUsize, Ordering as O};

use chrono::TimeZone;

use super::*;
use crate::aws::AwsError;

const KEY_A: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn failed_use(id: &str) -> String {
    let detail = serde_json::json!({
        "eventVersion": "1.08", "eventID": id, "eventName": "Decrypt",
        "eventSource": "kms.amazonaws.com", "eventTime": "2026-11-25T10:00:00Z",
        "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
        "errorCode": "KMSInvalidStateException",
        "errorMessage": format!("{KEY_A} is pending deletion."),
        "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "arn": "arn:aws:iam::111122223333:user/app"},
        "requestParameters": {"keyId": KEY_A}, "readOnly": true
    });
    serde_json::json!({"version": "0", "id": "x", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.kms", "account": "111122223333", "time": "2026-11-25T10:00:00Z",
        "region": "eu-west-1", "resources": [], "detail": detail})
    .to_string()
}

fn msg(id: &str, event: &str, rc: u32) -> QueueMessage {
    QueueMessage {
        message_id: id.into(),
        receipt_handle: format!("r-{id}-{rc}"),
        body: failed_use(event),
        receive_count: rc,
        sent: None,
    }
}

#[derive(Default, Clone)]
struct Log {
    deletes: Arc<Mutex<Vec<(String, String)>>>,
    extends: Arc<Mutex<Vec<String>>>,
    received: Arc<AtomicUsize>,
}

/// Scripted batches (popped from the end); `endless` then hands out fresh messages forever.
struct Q {
    batches: Mutex<Vec<(Duration, Vec<QueueMessage>)>>,
    endless: bool,
    n: AtomicUsize,
    log: Log,
    extend_fails: bool,
    start: Instant,
}

impl QueueApi for Q {
    async fn receive(&self, max: i32, wait: Duration, _: Duration) -> Result<Vec<QueueMessage>, AwsError> {
        let next = {
            let mut b = self.batches.lock().unwrap();
            match b.last() {
                Some((at, _)) if self.start.elapsed() >= *at => b.pop().map(|x| x.1),
                _ => None,
            }
        };
        let out = match next {
            Some(b) => b,
            None if self.endless => (0..max)
                .map(|_| {
                    let i = self.n.fetch_add(1, O::SeqCst);
                    msg(&format!("e{i}"), &format!("ev-{i}"), 1)
                })
                .collect(),
            None => {
                tokio::time::sleep(wait).await;
                Vec::new()
            }
        };
        self.log.received.fetch_add(out.len(), O::SeqCst);
        Ok(out)
    }
    async fn delete(&self, m: &[(String, String)]) -> Result<Vec<String>, AwsError> {
        self.log.deletes.lock().unwrap().extend(m.iter().cloned());
        Ok(Vec::new())
    }
    async fn extend(&self, m: &[(String, String)], _: Duration) -> Result<Vec<String>, AwsError> {
        if self.extend_fails {
            return Err(AwsError::local(
                crate::aws::Service::Sqs,
                "ChangeMessageVisibilityBatch",
                ErrorType::Server,
                "SQS is slow",
            ));
        }
        self.log
            .extends
            .lock()
            .unwrap()
            .extend(m.iter().map(|x| x.0.clone()));
        Ok(Vec::new())
    }
    async fn info(&self) -> Result<QueueInfo, AwsError> {
        Ok(QueueInfo::default())
    }
}

struct NoObjects;
impl ObjectApi for NoObjects {
    async fn get(&self, _: &str, _: &str, _: Option<&str>) -> Result<bytes::Bytes, AwsError> {
        unreachable!()
    }
}

fn source(max_in_flight: usize, receivers: usize) -> QueueSource {
    QueueSource {
        kind: SourceKind::EventBridgeSqs,
        name: "test".into(),
        queue_url: "https://sqs.eu-west-1.amazonaws.com/111122223333/q".into(),
        region: Some("eu-west-1".into()),
        receivers,
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
        max_in_flight,
    }
}

fn shared(dir: &tempfile::TempDir, tx: mpsc::UnboundedSender<Job>) -> Shared {
    Shared {
        rules: Arc::new(RuleSet::builtin()),
        store: Arc::new(Store::open(dir.path(), false).unwrap()),
        health: Health::new(&[], Duration::from_secs(60)),
        clock: Clock::starting_at(Utc.with_ymd_and_hms(2026, 11, 25, 10, 1, 0).unwrap()),
        jobs: tx,
        seen: Arc::default(),
        acks: Acks::default(),
        scope: Scope::default(),
    }
}

/// The waiting message is kept, extended, and deleted only once its notification is done.
#[tokio::test(start_paused = true)]
async fn a_waiting_message_is_extended_and_deleted_only_once_published() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut jobs) = mpsc::unbounded_channel();
    let sh = shared(&dir, tx);
    let acks = sh.acks.clone();
    let log = Log::default();
    let c = Consumer {
        source: source(10, 1),
        queue: Q {
            batches: Mutex::new(vec![(Duration::ZERO, vec![msg("m1", "e-1", 1)])]),
            endless: false,
            n: AtomicUsize::new(0),
            log: log.clone(),
            extend_fails: false,
            start: Instant::now(),
        },
        objects: NoObjects,
        shared: sh,
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(c.run(stop.clone()));
    let j = jobs.recv().await.unwrap();
    acks.moved(&j.id, &j.id);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        log.deletes.lock().unwrap().is_empty(),
        "deleted while waiting on SNS"
    );
    let ext = log.extends.lock().unwrap().iter().filter(|x| *x == "m1").count();
    assert!(ext >= 3, "extended while waiting: {ext}");
    acks.done(&j.id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        log.deletes.lock().unwrap().as_slice(),
        [("m1".to_string(), "r-m1-1".to_string())]
    );
    stop.cancel();
    run.await.unwrap();
}

/// SNS down for good: one source takes in its 10 slots and 100 waiting places' worth, then
/// waits; once the notifications are published, intake resumes (no permit leaked), with 1, 2
/// and 3 receive loops.
#[tokio::test(start_paused = true)]
async fn waiting_places_bound_intake_and_come_back_once_published() {
    for receivers in [1usize, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut jobs) = mpsc::unbounded_channel::<Job>();
        let sh = shared(&dir, tx);
        let acks = sh.acks.clone();
        let log = Log::default();
        let c = Consumer {
            source: source(10, receivers),
            queue: Q {
                batches: Mutex::new(vec![]),
                endless: true,
                n: AtomicUsize::new(0),
                log: log.clone(),
                extend_fails: false,
                start: Instant::now(),
            },
            objects: NoObjects,
            shared: sh,
        };
        let stop = CancellationToken::new();
        let run = tokio::spawn(c.run(stop.clone()));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (a2, ids2) = (acks.clone(), ids.clone());
        let worker = tokio::spawn(async move {
            while let Some(j) = jobs.recv().await {
                a2.moved(&j.id, &j.id); // queued; SNS down
                ids2.lock().unwrap().push(j.id);
            }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        let took = log.received.load(O::SeqCst);
        assert!(took <= 120, "bounded: {took}");
        assert!(took >= 100, "waits apart: {took}");
        for id in ids.lock().unwrap().drain(..) {
            acks.done(&id);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = log.received.load(O::SeqCst);
        assert!(after > took + 50, "intake resumed");
        stop.cancel();
        run.await.unwrap();
        worker.abort();
    }
}

/// A waiting message whose visibility could not be extended comes back to the same replica:
/// the copy (its events already seen, so no job) must not replace the held entry and be
/// deleted while the notification is still unpublished.
#[tokio::test(start_paused = true)]
async fn a_redelivered_waiting_message_is_not_deleted_before_its_notification() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut jobs) = mpsc::unbounded_channel();
    let sh = shared(&dir, tx);
    let acks = sh.acks.clone();
    let log = Log::default();
    let c = Consumer {
        source: source(10, 1),
        queue: Q {
            // m1 again after its visibility (30 s) lapsed
            batches: Mutex::new(vec![
                (Duration::from_secs(31), vec![msg("m1", "e-1", 2)]),
                (Duration::ZERO, vec![msg("m1", "e-1", 1)]),
            ]),
            endless: false,
            n: AtomicUsize::new(0),
            log: log.clone(),
            extend_fails: true,
            start: Instant::now(),
        },
        objects: NoObjects,
        shared: sh,
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(c.run(stop.clone()));
    let j = jobs.recv().await.unwrap();
    acks.moved(&j.id, &j.id);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(acks.waits_on(&j.id), "the notification is not published");
    let d = log.deletes.lock().unwrap().clone();
    stop.cancel();
    run.await.unwrap();
    assert!(
        d.is_empty(),
        "deleted before its notification was published: {d:?}"
    );
}

/// Once the waiting places are full (SNS still down), the receive loops wait for room: the
/// source stays alive (else ECS would replace the task, and its messages would fill the next
/// replica's places in turn).
#[tokio::test(start_paused = true)]
async fn a_source_waiting_for_room_stays_alive() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut jobs) = mpsc::unbounded_channel::<Job>();
    let mut sh = shared(&dir, tx);
    sh.health = Health::new(&[], Duration::from_secs(15));
    let health = sh.health.clone();
    let acks = sh.acks.clone();
    let log = Log::default();
    let c = Consumer {
        source: source(10, 2),
        queue: Q {
            batches: Mutex::new(vec![]),
            endless: true,
            n: AtomicUsize::new(0),
            log: log.clone(),
            extend_fails: false,
            start: Instant::now(),
        },
        objects: NoObjects,
        shared: sh,
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(c.run(stop.clone()));
    let a2 = acks.clone();
    let worker = tokio::spawn(async move {
        while let Some(j) = jobs.recv().await {
            a2.moved(&j.id, &j.id);
        }
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let h = health.healthy();
    stop.cancel();
    run.await.unwrap();
    worker.abort();
    assert!(h.is_ok(), "liveness failed while only waiting on SNS: {h:?}");
}
