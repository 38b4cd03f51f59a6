//! The sender's schedule, with a fake notifier, on paused time.

use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::aws::{AwsError, ErrorType, Service};
use crate::notify::Message;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

/// Fails every publish until `down_until` (on the shared clock); records what got through.
struct FlakySns {
    clock: Clock,
    down_until: DateTime<Utc>,
    attempts: Mutex<u32>,
    published: Mutex<Vec<String>>,
}

impl Notifier for FlakySns {
    async fn publish(&self, m: &Message) -> Result<String, AwsError> {
        *self.attempts.lock().unwrap() += 1;
        if self.clock.now() < self.down_until {
            return Err(AwsError::local(
                Service::Sns,
                "Publish",
                ErrorType::Server,
                "InternalError",
            ));
        }
        self.published.lock().unwrap().push(m.id.clone());
        Ok(format!("m-{}", m.id))
    }
}

fn message(id: &str) -> Message {
    Message {
        id: id.into(),
        subject: "s".into(),
        text: "t".into(),
        json: serde_json::json!({}),
        attributes: vec![],
    }
}

#[tokio::test(start_paused = true)]
async fn a_ten_minute_outage_loses_nothing_repeats_nothing_and_costs_few_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), false).unwrap());
    let clock = Clock::starting_at(t0());
    let sns = Arc::new(FlakySns {
        clock: clock.clone(),
        down_until: t0() + chrono::Duration::minutes(10),
        attempts: Mutex::new(0),
        published: Mutex::new(Vec::new()),
    });
    let entries: Vec<Entry> = (0..20)
        .map(|i| Entry::new(message(&format!("n-{i}")), t0()))
        .collect();
    store.enqueue(&entries, &[], &[]).unwrap();
    let wake = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let sender = Sender {
        notifier: sns.clone(),
        store: store.clone(),
        clock: clock.clone(),
        wake,
        topic: true,
        acks: Default::default(),
    };
    let wake = sender.wake.clone();
    let task = tokio::spawn(sender.run(shutdown.clone()));
    // More messages arrive during the outage, each waking the sender.
    for e in &entries[10..] {
        tokio::time::sleep(Duration::from_secs(20)).await;
        store.enqueue(std::slice::from_ref(e), &[], &[]).unwrap();
        wake.notify_one();
    }
    tokio::time::sleep(Duration::from_secs(10 * 60 + 5 * 60 + 10)).await;
    let published = sns.published.lock().unwrap().clone();
    let mut unique = published.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        20,
        "every message went out within 5 minutes of the outage's end"
    );
    assert_eq!(published.len(), 20, "none twice");
    let attempts = *sns.attempts.lock().unwrap();
    assert!(
        attempts <= 20 + 12,
        "the sender pauses during an outage: {attempts} attempts"
    );
    assert!(store.outbox().unwrap().0.is_empty());
    shutdown.cancel();
    task.await.unwrap();
}
