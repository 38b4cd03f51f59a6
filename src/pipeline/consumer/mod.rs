//! A queue source's consumer: SQS messages in, jobs out, messages deleted once handled.
//!
//! `receivers` loops long-poll the queue. The messages of a receive are read at once, each as its
//! source's kind says ([`crate::sources::envelope`]): one CloudTrail record (EventBridge) or log
//! files to stream from S3 with the reader `scan` uses. Records are evaluated as a poller's are; those that
//! match a rule or change a key's protection are de-duplicated by `eventID` across every queue
//! source of this process (EventBridge and S3 deliver the same event), and recorded with their
//! jobs in one transaction per receive before the jobs go to the worker. A message is deleted
//! once the work it carried is handled ([`super::acks`]): at once if it carried none, else when
//! its notifications are published. Until then its visibility is extended; a message whose work
//! failed is left to be received again, and after the queue's redrive count SQS moves it to the
//! dead-letter queue (counted as `dead_lettered`). At shutdown, unfinished messages are given
//! back at once for another replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::acks::{Acks, Tracker};
use super::poller::{Batch, evaluate, merge, name_the_key_that_lost_it, read_log_file};
use crate::accounts::Scope;
use crate::aws::ErrorType;
use crate::clock::Clock;
use crate::cursor::Seen;
use crate::job::Job;
use crate::rules::RuleSet;
use crate::sources::config::{QueueSource, SourceKind};
use crate::sources::envelope::{self, Body};
use crate::sources::{ObjectApi, QueueApi, QueueInfo, QueueMessage};
use crate::state::Store;
use crate::telemetry::{self, Health, PollOutcome, QueueOutcome};

/// The name under which queue sources keep the ids of the events they handled.
pub const SEEN: &str = "queues";
/// How long handled event ids are remembered: S3 delivers a log file within minutes of
/// EventBridge, and SQS redelivers within a message's retention.
const DEDUPE_WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// How long shutdown waits for held messages to be settled before giving them back.
const FINAL: Duration = Duration::from_secs(5);

/// Delete and visibility batches in flight at once per settle.
const BATCHES_AT_ONCE: usize = 8;
/// How often held messages are settled while the source has free `max_in_flight` slots:
/// deletes then go out in fuller batches (fewer SQS requests).
const SETTLE_EVERY: Duration = Duration::from_millis(200);
/// How often while the slots run short (fewer than a receive's worth free). A slot frees only
/// when its message's delete returns, so this wait is part of every message's turn once the
/// source is saturated: at 200 ms one replica's EventBridge source reached 0.75-0.90 of a plain
/// receive/delete loop (BENCHMARKS.md). A settle with nothing to do is a scan of at most
/// `max_in_flight` entries.
const SETTLE_EVERY_WHEN_FULL: Duration = Duration::from_millis(50);

/// Messages held apart while only their notifications are left to publish
/// ([`super::acks::Progress::Queued`]), per `max_in_flight` slot: an SNS outage or an
/// aggregation window holds them for minutes, and meanwhile the source goes on receiving.
/// Beyond this many (1,000 at the default), receiving waits again: what a replica holds stays
/// bounded, far below SQS's 120,000 in-flight messages per queue.
const WAITING_PER_SLOT: usize = 10;

/// How often a receive loop waiting for room says it is alive.
const STILL_WAITING: Duration = Duration::from_secs(10);

/// What every queue consumer of the process shares.
#[derive(Clone)]
pub struct Shared {
    pub rules: Arc<RuleSet>,
    pub store: Arc<Store>,
    pub health: Arc<Health>,
    pub clock: Clock,
    pub jobs: mpsc::UnboundedSender<Job>,
    pub seen: Arc<Mutex<Seen>>,
    pub acks: Acks,
    /// Events of accounts trailguard does not guard (an organization's bus carries them all)
    /// make no jobs.
    pub scope: Scope,
}

pub struct Consumer<Q, O> {
    pub source: QueueSource,
    pub queue: Q,
    pub objects: O,
    pub shared: Shared,
}

/// A message received and not yet deleted.
struct Held {
    receipt: String,
    tracker: Arc<Tracker>,
    sent: Option<DateTime<Utc>>,
    receive_count: u32,
    visible_until: Instant,
    /// Held by the permit while it lasts.
    slot: Slot,
}

/// Where a held message counts: a `max_in_flight` slot while its work goes on, a waiting place
/// ([`WAITING_PER_SLOT`]) once only its notifications are left to publish.
enum Slot {
    Working { _permit: OwnedSemaphorePermit },
    Waiting { _permit: OwnedSemaphorePermit },
}

/// What reading one message gave.
enum Read {
    /// Records evaluated (the message may still have failed part-way: `failure`).
    Evaluated { batch: Batch, failure: Option<String> },
    /// Nothing for trailguard in it.
    Skip(String),
    /// Unreadable, or its files could not be read.
    Failed(String),
}

type HeldMap = Arc<Mutex<HashMap<String, Held>>>;

/// One message of a receive, once recorded.
struct Outcome {
    tracker: Arc<Tracker>,
    jobs: Vec<Job>,
    failure: Option<String>,
    skipped: bool,
}

impl<Q: QueueApi, O: ObjectApi> Consumer<Q, O> {
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.source.name.clone();
        telemetry::queue_source(&name);
        let info = match self.queue.info().await {
            Ok(i) => i,
            Err(e) => {
                warn!(source = %name, error = %e, "Cannot read the queue's attributes; redrive counts are unknown.");
                QueueInfo::default()
            }
        };
        match info.max_receive_count {
            Some(n) => {
                info!(source = %name, queue = %self.source.queue_url, max_receive_count = n, dead_letter_queue = info.dead_letter_target.as_deref().unwrap_or("-"), "Consuming the queue.")
            }
            None => {
                warn!(source = %name, queue = %self.source.queue_url, "The queue has no redrive policy: a message whose work keeps failing is received again until it expires. Give it a dead-letter queue.")
            }
        }
        let this = Arc::new(self);
        let held: HeldMap = Arc::default();
        let permits = Arc::new(Semaphore::new(this.source.max_in_flight));
        let waiting = Arc::new(Semaphore::new(this.source.max_in_flight * WAITING_PER_SLOT));
        let receiving = shutdown.child_token();
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..this.source.receivers {
            loops.spawn(this.clone().receive_loop(
                held.clone(),
                permits.clone(),
                info.clone(),
                receiving.clone(),
            ));
        }
        let mut tick = tokio::time::interval(SETTLE_EVERY_WHEN_FULL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let full = permits.available_permits() < this.source.max_messages as usize;
                    if full || last.elapsed() >= SETTLE_EVERY {
                        this.settle(&held, &waiting, &info, false).await;
                        last = Instant::now();
                    }
                }
            }
        }
        while loops.join_next().await.is_some() {}
        let deadline = Instant::now() + FINAL;
        while !held.lock().unwrap_or_else(|e| e.into_inner()).is_empty() && Instant::now() < deadline {
            this.settle(&held, &waiting, &info, false).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        this.settle(&held, &waiting, &info, true).await;
        info!(source = %name, "Queue consumer stopped.");
    }

    async fn receive_loop(
        self: Arc<Self>,
        held: HeldMap,
        permits: Arc<Semaphore>,
        info: QueueInfo,
        shutdown: CancellationToken,
    ) {
        let s = &self.source;
        let mut failures = 0u32;
        loop {
            self.shared.health.attempted(&s.name);
            let want = s.max_messages as u32;
            // Waiting for room is the source working as designed (its messages wait on their
            // work or on SNS): it stays alive meanwhile.
            let acquire = permits.clone().acquire_many_owned(want);
            tokio::pin!(acquire);
            let mut permit = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = &mut acquire => match p {
                        Ok(p) => break p,
                        Err(_) => return,
                    },
                    _ = tokio::time::sleep(STILL_WAITING) => self.shared.health.attempted(&s.name),
                }
            };
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.queue.receive(s.max_messages, s.wait_time, s.visibility_timeout) => r,
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    failures += 1;
                    let outcome = if e.error_type == ErrorType::Throttled {
                        PollOutcome::Throttled
                    } else {
                        PollOutcome::Failed
                    };
                    telemetry::poll(&s.name, outcome);
                    let pause = Duration::from_secs(1 << failures.min(5));
                    warn!(source = %s.name, error = %e, retry_in_s = pause.as_secs(), "Cannot receive from the queue.");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            failures = 0;
            telemetry::poll(&s.name, PollOutcome::Ok);
            self.shared.health.progressed(&s.name);
            if messages.is_empty() {
                continue;
            }
            telemetry::queue_messages(&s.name, QueueOutcome::Received, messages.len());
            let received_at = Instant::now();
            // The messages of a receive are read together: an S3 message waits on its object
            // (one GET, then inflate and parse on a blocking thread), and one after another a
            // receiver would read a file at a time.
            let results = futures_util::future::join_all(messages.iter().map(|m| self.read(m))).await;
            let kept = self.record(&messages, results, &info);
            let mut all = held.lock().unwrap_or_else(|e| e.into_inner());
            for (m, tracker) in messages.into_iter().zip(kept) {
                let Some(tracker) = tracker else { continue };
                // Received again while held (its visibility could not be extended): the copy's
                // events are already seen, so its own tracker is empty. The held entry keeps its
                // work and its place, with the new receipt: deleted only once its work is done.
                if let Some(h) = all.get_mut(&m.message_id) {
                    h.receipt = m.receipt_handle;
                    h.receive_count = m.receive_count;
                    h.visible_until = received_at + s.visibility_timeout;
                    continue;
                }
                let Some(one) = permit.split(1) else { break };
                all.insert(
                    m.message_id,
                    Held {
                        receipt: m.receipt_handle,
                        tracker,
                        sent: m.sent,
                        receive_count: m.receive_count,
                        visible_until: received_at + s.visibility_timeout,
                        slot: Slot::Working { _permit: one },
                    },
                );
            }
        }
    }

    /// Reads one message into evaluated records.
    async fn read(&self, m: &QueueMessage) -> Read {
        let body = match self.source.kind {
            SourceKind::EventBridgeSqs => envelope::eventbridge(&m.body),
            _ => envelope::s3(&m.body),
        };
        let now = self.shared.clock.now();
        match body {
            Err(e) => Read::Failed(e.0),
            Ok(Body::Skip(why)) => Read::Skip(why),
            Ok(Body::Record { record, .. }) => Read::Evaluated {
                batch: evaluate(
                    &self.source.name,
                    &self.shared.rules,
                    &Seen::default(),
                    &[record],
                    now,
                    false,
                ),
                failure: None,
            },
            Ok(Body::Objects(objects)) => {
                let mut batch = Batch::default();
                let mut failure = None;
                for o in objects {
                    let bytes = match self.objects.get(&o.bucket, &o.key, o.region.as_deref()).await {
                        Ok(b) => b,
                        Err(e) => {
                            telemetry::queue_file(&self.source.name, false);
                            failure = Some(format!("s3://{}/{}: {e}", o.bucket, o.key));
                            continue;
                        }
                    };
                    let (name, rules) = (self.source.name.clone(), self.shared.rules.clone());
                    let read =
                        tokio::task::spawn_blocking(move || read_log_file(&name, &rules, &bytes, now)).await;
                    match read {
                        Ok(Ok(b)) => {
                            telemetry::queue_file(&self.source.name, true);
                            merge(&mut batch, b);
                        }
                        Ok(Err((b, e))) => {
                            telemetry::queue_file(&self.source.name, false);
                            merge(&mut batch, b);
                            failure = Some(format!("s3://{}/{}: {e}", o.bucket, o.key));
                        }
                        Err(e) => failure = Some(format!("s3://{}/{}: {e}", o.bucket, o.key)),
                    }
                }
                Read::Evaluated { batch, failure }
            }
        }
    }

    /// Records the new events and jobs of a receive in one transaction, hands the jobs to the
    /// worker, and returns each message's tracker (`None`: not held, already settled).
    fn record(
        &self,
        messages: &[QueueMessage],
        results: Vec<Read>,
        info: &QueueInfo,
    ) -> Vec<Option<Arc<Tracker>>> {
        let name = &self.source.name;
        let sh = &self.shared;
        let mut seen = sh.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Batch::default();
        let mut per_message: Vec<Outcome> = Vec::new();
        let mut in_receive = std::collections::HashSet::new();
        for (m, r) in messages.iter().zip(results) {
            let tracker = Tracker::new();
            match r {
                Read::Skip(why) => {
                    debug!(source = %name, message_id = %m.message_id, reason = %why, "Nothing to do in this message.");
                    per_message.push(Outcome {
                        tracker,
                        jobs: Vec::new(),
                        failure: None,
                        skipped: true,
                    });
                }
                Read::Failed(why) => per_message.push(Outcome {
                    tracker,
                    jobs: Vec::new(),
                    failure: Some(why),
                    skipped: false,
                }),
                Read::Evaluated { mut batch, failure } => {
                    // Drop what this process already handled, from any queue source.
                    let before = batch.new_ids.len();
                    batch
                        .new_ids
                        .retain(|(id, _)| !seen.contains(id) && in_receive.insert(id.clone()));
                    let fresh: std::collections::HashSet<&str> =
                        batch.new_ids.iter().map(|(id, _)| id.as_str()).collect();
                    batch.jobs.retain(|j| {
                        fresh.contains(j.finding.event_id.as_str())
                            && j.finding
                                .account
                                .as_deref()
                                .is_none_or(|a| sh.scope.guards(a) != Some(false))
                    });
                    batch.changes.retain(|c| fresh.contains(c.event_id.as_str()));
                    all.duplicates += batch.duplicates + (before - batch.new_ids.len()) as u64;
                    all.malformed += batch.malformed;
                    all.read += batch.read;
                    all.new_ids.extend(batch.new_ids);
                    all.changes.extend(batch.changes);
                    per_message.push(Outcome {
                        tracker,
                        jobs: batch.jobs.clone(),
                        failure,
                        skipped: false,
                    });
                    all.jobs.extend(batch.jobs);
                }
            }
        }
        let now = sh.clock.now();
        let pruned = seen.older_than(now - DEDUPE_WINDOW);
        // Findings a late alias or tag change calls to decide again ([`crate::job::Kept`]).
        let mut rechecks = Vec::new();
        let stored = all.new_ids.is_empty() && pruned.is_empty()
            || match sh.store.with_moves(&all.changes).and_then(|changes| {
                name_the_key_that_lost_it(&mut all.jobs, &changes);
                for o in &mut per_message {
                    name_the_key_that_lost_it(&mut o.jobs, &changes);
                }
                sh.store
                    .record_slice(SEEN, None, &all.new_ids, &pruned, &all.jobs, &changes)
            }) {
                Ok(jobs) => {
                    rechecks = jobs;
                    true
                }
                Err(e) => {
                    error!(source = %name, error = %e, "Cannot record events; the messages are received again.");
                    false
                }
            };
        if stored {
            for (id, t) in &all.new_ids {
                seen.insert(id, *t);
            }
            seen.forget(&pruned);
        }
        drop(seen);
        for job in rechecks {
            let _ = sh.jobs.send(job);
        }
        telemetry::queue_events(name, all.read, all.duplicates, all.malformed);
        let mut out = Vec::with_capacity(messages.len());
        for (m, o) in messages.iter().zip(per_message) {
            let Outcome {
                tracker,
                jobs,
                failure,
                skipped,
            } = o;
            if !stored {
                self.give_up(m, info, "the state store failed");
                out.push(None);
                continue;
            }
            if let Some(why) = failure {
                // What the message did yield is recorded (and its events marked seen): it is
                // handled now, while the message comes back for the rest.
                for job in jobs {
                    let _ = sh.jobs.send(job);
                }
                self.give_up(m, info, &why);
                out.push(None);
                continue;
            }
            if skipped {
                telemetry::queue_messages(name, QueueOutcome::Skipped, 1);
            }
            for job in jobs {
                sh.acks.register(&job.id, &tracker);
                let _ = sh.jobs.send(job);
            }
            out.push(Some(tracker));
        }
        out
    }

    /// A message whose work failed stays in the queue: received again after its visibility
    /// timeout, or moved to the dead-letter queue by SQS after the redrive count.
    pub(super) fn give_up(&self, m: &QueueMessage, info: &QueueInfo, why: &str) {
        let name = &self.source.name;
        let head: String = m.body.chars().take(300).collect();
        if info.max_receive_count.is_some_and(|max| m.receive_count >= max) {
            telemetry::queue_messages(name, QueueOutcome::DeadLettered, 1);
            error!(source = %name, message_id = %m.message_id, receive_count = m.receive_count, dead_letter_queue = info.dead_letter_target.as_deref().unwrap_or("-"), error = %why, body = %head, "A message failed on its last receive: the queue's redrive policy moves it to the dead-letter queue.");
        } else {
            telemetry::queue_messages(name, QueueOutcome::Retried, 1);
            warn!(source = %name, message_id = %m.message_id, receive_count = m.receive_count, error = %why, body = %head, "A message could not be handled; it is received again after its visibility timeout.");
        }
    }
}

mod settle;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod waiting_tests;
