//! The consumer's reading and recording of messages, with a fake queue and fake S3.

use std::io::Write;

use bytes::Bytes;
use chrono::TimeZone;

use super::*;
use crate::aws::{AwsError, Service};

pub(super) const KEY_A: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const LOG: &str = "o/AWSLogs/o-1/111122223333/CloudTrail/eu-west-1/2026/11/25/111122223333_CloudTrail_eu-west-1_20261125T1005Z_a.json.gz";
const LOG2: &str = "o/AWSLogs/o-1/111122223333/CloudTrail/eu-west-1/2026/11/25/111122223333_CloudTrail_eu-west-1_20261125T1010Z_b.json.gz";

/// A failed use of a key pending deletion, recorded in `account`.
pub(super) fn failed_use(id: &str, account: &str, key: &str) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "1.08", "eventID": id, "eventName": "Decrypt",
        "eventSource": "kms.amazonaws.com", "eventTime": "2026-11-25T10:00:00Z",
        "awsRegion": "eu-west-1", "recipientAccountId": account,
        "errorCode": "KMSInvalidStateException",
        "errorMessage": format!("{key} is pending deletion."),
        "userIdentity": {"type": "IAMUser", "accountId": account, "arn": format!("arn:aws:iam::{account}:user/app")},
        "requestParameters": {"keyId": key}, "readOnly": true
    })
}

fn gzip(records: &[serde_json::Value]) -> Bytes {
    let body = serde_json::json!({ "Records": records }).to_string();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(body.as_bytes()).unwrap();
    e.finish().unwrap().into()
}

struct NoQueue;

impl QueueApi for NoQueue {
    async fn receive(&self, _: i32, _: Duration, _: Duration) -> Result<Vec<QueueMessage>, AwsError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &[(String, String)]) -> Result<Vec<String>, AwsError> {
        Ok(Vec::new())
    }
    async fn extend(&self, _: &[(String, String)], _: Duration) -> Result<Vec<String>, AwsError> {
        Ok(Vec::new())
    }
    async fn info(&self) -> Result<QueueInfo, AwsError> {
        Ok(QueueInfo::default())
    }
}

/// Objects by key; any other key fails as S3 would in an outage.
pub(super) struct Objects(pub(super) HashMap<String, Bytes>);

impl ObjectApi for Objects {
    async fn get(&self, _: &str, key: &str, _: Option<&str>) -> Result<Bytes, AwsError> {
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| AwsError::local(Service::S3, "GetObject", ErrorType::Server, "S3 is down"))
    }
}

struct Bench {
    consumer: Consumer<NoQueue, Objects>,
    jobs: mpsc::UnboundedReceiver<Job>,
    _dir: tempfile::TempDir,
}

pub(super) fn source(kind: SourceKind, max_in_flight: usize) -> QueueSource {
    QueueSource {
        kind,
        name: "test".into(),
        queue_url: "https://sqs.eu-west-1.amazonaws.com/111122223333/q".into(),
        region: Some("eu-west-1".into()),
        receivers: 1,
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
        max_in_flight,
    }
}

/// What the consumers share, with the state in `dir` and the jobs to `tx`.
pub(super) fn shared(dir: &tempfile::TempDir, tx: mpsc::UnboundedSender<Job>, scope: Scope) -> Shared {
    Shared {
        rules: Arc::new(RuleSet::builtin()),
        store: Arc::new(Store::open(dir.path(), false).unwrap()),
        health: Health::new(&[], Duration::from_secs(60)),
        clock: Clock::starting_at(Utc.with_ymd_and_hms(2026, 11, 25, 10, 1, 0).unwrap()),
        jobs: tx,
        seen: Arc::default(),
        acks: Acks::default(),
        scope,
    }
}

fn bench(kind: SourceKind, objects: Objects, scope: Scope) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let (tx, jobs) = mpsc::unbounded_channel();
    let source = source(kind, 100);
    let shared = shared(&dir, tx, scope);
    Bench {
        consumer: Consumer {
            source,
            queue: NoQueue,
            objects,
            shared,
        },
        jobs,
        _dir: dir,
    }
}

pub(super) fn message(id: &str, body: String, receive_count: u32) -> QueueMessage {
    QueueMessage {
        message_id: id.into(),
        receipt_handle: format!("r-{id}-{receive_count}"),
        body,
        receive_count,
        sent: None,
    }
}

impl Bench {
    /// One receive of `messages`: read, recorded; the jobs handed to the worker.
    async fn receive(&mut self, messages: Vec<QueueMessage>) -> Vec<Job> {
        let mut results = Vec::new();
        for m in &messages {
            results.push(self.consumer.read(m).await);
        }
        self.consumer.record(&messages, results, &QueueInfo::default());
        let mut out = Vec::new();
        while let Ok(j) = self.jobs.try_recv() {
            out.push(j);
        }
        out
    }
}

fn s3_notification(keys: &[&str]) -> String {
    let records: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"eventName": "ObjectCreated:Put", "awsRegion": "eu-west-1",
            "s3": {"bucket": {"name": "org-trail"}, "object": {"key": k}}})
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

/// A message naming two log files, one readable and one not (S3 failing for it): the message
/// is received again, and the readable file's finding must still be acted on, now or then.
#[tokio::test]
async fn a_log_file_failing_beside_a_readable_one_loses_no_finding() {
    let objects = Objects([(LOG.to_owned(), gzip(&[failed_use("e-1", "111122223333", KEY_A)]))].into());
    let mut b = bench(SourceKind::S3Sqs, objects, Scope::default());
    let body = s3_notification(&[LOG, LOG2]);
    let first = b.receive(vec![message("m1", body.clone(), 1)]).await;
    // S3 recovers for the second file (it has nothing in it): the message comes back.
    b.consumer.objects.0.insert(LOG2.to_owned(), gzip(&[]));
    let again = b.receive(vec![message("m1", body, 2)]).await;
    let handled: Vec<&str> = first
        .iter()
        .chain(&again)
        .map(|j| j.finding.event_id.as_str())
        .collect();
    assert_eq!(
        handled,
        ["e-1"],
        "the finding of the readable file was recorded as seen but never handed to the worker"
    );
}

pub(super) fn eventbridge_event(source: &str, account: &str, detail: serde_json::Value) -> String {
    serde_json::json!({"version": "0", "id": "x", "detail-type": "AWS API Call via CloudTrail",
        "source": source, "account": account, "region": "eu-west-1", "resources": [], "detail": detail})
    .to_string()
}

/// EventBridge sets `account` to the sender and refuses `aws.*` sources from `PutEvents`; the
/// detail is whatever the sender wrote. An event put by a member account (a custom source, or
/// naming another account in its record) must not make trailguard act in a guarded account.
#[tokio::test]
async fn a_forged_eventbridge_event_makes_no_job() {
    let scope = Scope::default();
    scope.set(["111122223333".to_owned()]);
    let mut b = bench(SourceKind::EventBridgeSqs, Objects(HashMap::new()), scope);
    let forged_source = eventbridge_event(
        "attacker.kms",
        "111122223333",
        failed_use("f-1", "111122223333", KEY_A),
    );
    let other_account = eventbridge_event(
        "aws.kms",
        "444455556666",
        failed_use("f-2", "111122223333", KEY_A),
    );
    let genuine = eventbridge_event(
        "aws.kms",
        "111122223333",
        failed_use("g-1", "111122223333", KEY_A),
    );
    let jobs = b
        .receive(vec![
            message("m1", forged_source, 1),
            message("m2", other_account, 1),
            message("m3", genuine, 1),
        ])
        .await;
    let ids: Vec<&str> = jobs.iter().map(|j| j.finding.event_id.as_str()).collect();
    assert_eq!(ids, ["g-1"], "only the genuine event makes a job");
}

/// A queue that hands out its batches in turn, then long-polls empty; it records when each
/// delete call came.
struct Scripted {
    batches: Mutex<Vec<Vec<QueueMessage>>>,
    deletes: Arc<Mutex<Vec<Duration>>>,
    start: Instant,
}

impl QueueApi for Scripted {
    async fn receive(&self, _: i32, wait: Duration, _: Duration) -> Result<Vec<QueueMessage>, AwsError> {
        let next = self.batches.lock().unwrap().pop();
        match next {
            Some(b) => Ok(b),
            None => {
                tokio::time::sleep(wait).await;
                Ok(Vec::new())
            }
        }
    }
    async fn delete(&self, _: &[(String, String)]) -> Result<Vec<String>, AwsError> {
        self.deletes.lock().unwrap().push(self.start.elapsed());
        Ok(Vec::new())
    }
    async fn extend(&self, _: &[(String, String)], _: Duration) -> Result<Vec<String>, AwsError> {
        Ok(Vec::new())
    }
    async fn info(&self) -> Result<QueueInfo, AwsError> {
        Ok(QueueInfo::default())
    }
}

/// When the first delete of one receive of 10 messages (events for no one: nothing to do)
/// goes out, with `max_in_flight` slots.
async fn first_delete(max_in_flight: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _jobs) = mpsc::unbounded_channel();
    let nothing = eventbridge_event("custom.app", "111122223333", serde_json::json!({}));
    let deletes = Arc::new(Mutex::new(Vec::new()));
    let consumer = Consumer {
        source: source(SourceKind::EventBridgeSqs, max_in_flight),
        queue: Scripted {
            batches: Mutex::new(vec![
                (0..10)
                    .map(|i| message(&format!("m{i}"), nothing.clone(), 1))
                    .collect(),
            ]),
            deletes: deletes.clone(),
            start: Instant::now(),
        },
        objects: Objects(HashMap::new()),
        shared: shared(&dir, tx, Scope::default()),
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(consumer.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    run.await.unwrap();
    let first = deletes.lock().unwrap().first().copied();
    first.expect("the messages were deleted")
}

/// Held messages are settled (deleted) in fuller batches every 200 ms while the source has
/// free slots, and every 50 ms once its slots run short: a slot frees only when its message's
/// delete returns, so a saturated source would otherwise wait up to 200 ms per turn.
#[tokio::test(start_paused = true)]
async fn held_messages_are_settled_sooner_when_the_slots_run_short() {
    let free = first_delete(100).await;
    assert!(
        free >= Duration::from_millis(150) && free <= Duration::from_millis(250),
        "with free slots, settled on the 200 ms turn: {free:?}"
    );
    let short = first_delete(10).await;
    assert!(
        short <= Duration::from_millis(60),
        "with no slot free, settled on the next 50 ms tick: {short:?}"
    );
}

/// A message whose job is done and whose notification waits (SNS is down) leaves its work
/// slot: the source receives the next message at once, although every slot was needed for a
/// receive (`max_in_flight` = `max_messages`).
#[tokio::test(start_paused = true)]
async fn a_message_waiting_only_on_its_notification_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut jobs) = mpsc::unbounded_channel();
    let use_of =
        |id: &str| eventbridge_event("aws.kms", "111122223333", failed_use(id, "111122223333", KEY_A));
    let shared = shared(&dir, tx, Scope::default());
    let acks = shared.acks.clone();
    let consumer = Consumer {
        source: source(SourceKind::EventBridgeSqs, 10),
        queue: Scripted {
            // Handed out last first.
            batches: Mutex::new(vec![
                vec![message("m2", use_of("e-2"), 1)],
                vec![message("m1", use_of("e-1"), 1)],
            ]),
            deletes: Arc::new(Mutex::new(Vec::new())),
            start: Instant::now(),
        },
        objects: Objects(HashMap::new()),
        shared,
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(consumer.run(stop.clone()));
    let first = tokio::time::timeout(Duration::from_secs(5), jobs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.finding.event_id, "e-1");
    // Still acting: the slot is taken, and nothing else is received.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), jobs.recv())
            .await
            .is_err(),
        "received while the first message's work was in progress"
    );
    // The worker has written the outcome and queued the notification (it carries the job's
    // id); SNS is down.
    acks.moved(&first.id, &first.id);
    let second = tokio::time::timeout(Duration::from_secs(1), jobs.recv())
        .await
        .expect("the next message is received while the first waits on SNS")
        .unwrap();
    assert_eq!(second.finding.event_id, "e-2");
    stop.cancel();
    run.await.unwrap();
}
