//! Messages waiting only on their notifications ([`crate::pipeline::acks::Progress::Queued`]):
//! kept and extended until published, bounded, never deleted early when SQS hands them out
//! again, and a source waiting for room stays alive. A scripted queue, paused time.
use std::sync::atomic::{AtomicUsize, Ordering as O};

use super::tests::{self, KEY_A, Objects, eventbridge_event, failed_use, message};
use super::*;
use crate::aws::AwsError;

/// A failed use of a key pending deletion, as EventBridge delivers it.
fn msg(id: &str, event: &str, receive_count: u32) -> QueueMessage {
    let account = "111122223333";
    let body = eventbridge_event("aws.kms", account, failed_use(event, account, KEY_A));
    message(id, body, receive_count)
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

/// A consumer of `queue`'s messages with 10 slots and `receivers` receive loops, running, and
/// what a test sees of it.
struct Running {
    jobs: mpsc::UnboundedReceiver<Job>,
    acks: Acks,
    log: Log,
    health: Arc<Health>,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// The queue hands out `batches` (each from its time on, last first), then, when `endless`,
/// fresh messages forever; `extend_fails`: every visibility extension fails.
fn start(
    batches: Vec<(Duration, Vec<QueueMessage>)>,
    endless: bool,
    extend_fails: bool,
    receivers: usize,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (tx, jobs) = mpsc::unbounded_channel();
    let mut shared = tests::shared(&dir, tx, Scope::default());
    shared.health = Health::new(&[], Duration::from_secs(15));
    let (log, acks, health) = (Log::default(), shared.acks.clone(), shared.health.clone());
    let consumer = Consumer {
        source: QueueSource {
            receivers,
            ..tests::source(SourceKind::EventBridgeSqs, 10)
        },
        queue: Q {
            batches: Mutex::new(batches),
            endless,
            n: AtomicUsize::new(0),
            log: log.clone(),
            extend_fails,
            start: Instant::now(),
        },
        objects: Objects(HashMap::new()),
        shared,
    };
    let stop = CancellationToken::new();
    Running {
        run: tokio::spawn(consumer.run(stop.clone())),
        jobs,
        acks,
        log,
        health,
        stop,
        _dir: dir,
    }
}

impl Running {
    /// A worker that writes every job's outcome and queues its notification, which SNS (down)
    /// never takes; the jobs' ids, to publish later.
    fn queue_every_job(&mut self) -> Arc<Mutex<Vec<String>>> {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (acks, seen) = (self.acks.clone(), ids.clone());
        let mut jobs = std::mem::replace(&mut self.jobs, mpsc::unbounded_channel().1);
        tokio::spawn(async move {
            while let Some(j) = jobs.recv().await {
                acks.moved(&j.id, &j.id);
                seen.lock().unwrap().push(j.id);
            }
        });
        ids
    }

    async fn stop(self) {
        self.stop.cancel();
        self.run.await.unwrap();
    }
}

/// The waiting message is kept, extended, and deleted only once its notification is done.
#[tokio::test(start_paused = true)]
async fn a_waiting_message_is_extended_and_deleted_only_once_published() {
    let mut c = start(vec![(Duration::ZERO, vec![msg("m1", "e-1", 1)])], false, false, 1);
    let j = c.jobs.recv().await.unwrap();
    c.acks.moved(&j.id, &j.id);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        c.log.deletes.lock().unwrap().is_empty(),
        "deleted while waiting on SNS"
    );
    let extended = c
        .log
        .extends
        .lock()
        .unwrap()
        .iter()
        .filter(|x| *x == "m1")
        .count();
    assert!(extended >= 3, "extended while waiting: {extended}");
    c.acks.done(&j.id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        c.log.deletes.lock().unwrap().as_slice(),
        [("m1".to_string(), "r-m1-1".to_string())]
    );
    c.stop().await;
}

/// SNS down for good: one source takes in its 10 slots and 100 waiting places' worth, then
/// waits; once the notifications are published, intake resumes (no permit leaked), with 1, 2
/// and 3 receive loops.
#[tokio::test(start_paused = true)]
async fn waiting_places_bound_intake_and_come_back_once_published() {
    for receivers in [1usize, 2, 3] {
        let mut c = start(Vec::new(), true, false, receivers);
        let ids = c.queue_every_job();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let took = c.log.received.load(O::SeqCst);
        assert!(took <= 120, "bounded: {took}");
        assert!(took >= 100, "waits apart: {took}");
        for id in ids.lock().unwrap().drain(..) {
            c.acks.done(&id);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = c.log.received.load(O::SeqCst);
        assert!(after > took + 50, "intake resumed");
        c.stop().await;
    }
}

/// A waiting message whose visibility could not be extended comes back to the same replica:
/// the copy (its events already seen, so no job) must not replace the held entry and be
/// deleted while the notification is still unpublished.
#[tokio::test(start_paused = true)]
async fn a_redelivered_waiting_message_is_not_deleted_before_its_notification() {
    // m1 again after its visibility (30 s) lapsed.
    let batches = vec![
        (Duration::from_secs(31), vec![msg("m1", "e-1", 2)]),
        (Duration::ZERO, vec![msg("m1", "e-1", 1)]),
    ];
    let mut c = start(batches, false, true, 1);
    let j = c.jobs.recv().await.unwrap();
    c.acks.moved(&j.id, &j.id);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(c.acks.waits_on(&j.id), "the notification is not published");
    let deleted = c.log.deletes.lock().unwrap().clone();
    c.stop().await;
    assert!(
        deleted.is_empty(),
        "deleted before its notification was published: {deleted:?}"
    );
}

/// Once the waiting places are full (SNS still down), the receive loops wait for room: the
/// source stays alive (else ECS would replace the task, and its messages would fill the next
/// replica's places in turn).
#[tokio::test(start_paused = true)]
async fn a_source_waiting_for_room_stays_alive() {
    let mut c = start(Vec::new(), true, false, 2);
    c.queue_every_job();
    tokio::time::sleep(Duration::from_secs(90)).await;
    let alive = c.health.healthy();
    c.stop().await;
    assert!(
        alive.is_ok(),
        "liveness failed while only waiting on SNS: {alive:?}"
    );
}
