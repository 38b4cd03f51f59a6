//! A poller: one per region for KMS (and one for IAM events in IAM's home region). Reads the
//! slices [`crate::cursor`] chooses through the [`LookupApi`], evaluates the rules, and records
//! each slice (seen ids, jobs, cursor) in one transaction before handing the jobs to the worker.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::aws::{ErrorType, Place};
use crate::clock::Clock;
use crate::cursor::{Cursor, Schedule, Seen, Slice};
use crate::event::Record;
use crate::job::Job;
use crate::rules::RuleSet;
use crate::sources::{LookupApi, SliceRead, read_slice};
use crate::state::Store;
use crate::telemetry::{self, Health, PollOutcome};

pub struct Poller<L> {
    /// Its name in metrics, health and the state (`eu-west-1`, `us-east-1/iam`).
    pub name: String,
    pub place: Place,
    pub event_source: &'static str,
    pub api: L,
    pub rules: Arc<RuleSet>,
    pub store: Arc<Store>,
    pub health: Arc<Health>,
    pub clock: Clock,
    pub schedule: Schedule,
    pub poll_interval: Duration,
    pub cursor: Cursor,
    pub seen: Seen,
    pub jobs: mpsc::UnboundedSender<Job>,
}

/// What one slice's records gave.
#[derive(Debug, Default)]
pub struct Batch {
    /// Records read (readable ones, duplicates included).
    pub read: u64,
    pub jobs: Vec<Job>,
    pub new_ids: Vec<(String, DateTime<Utc>)>,
    pub duplicates: u64,
    pub malformed: u64,
    /// Alias and tag changes, for the protection history.
    pub changes: Vec<crate::protection::Change>,
}

/// Evaluates records (newest first, as pages come) in the order they happened. Records already
/// in `seen` (or earlier in the batch) are duplicates; unreadable ones are counted and skipped.
/// `new_ids` lists every new record with `all_ids` (event history, whose reads overlap), else
/// only those that matched a rule or changed a key's protection (queues, which de-duplicate
/// only what they act on).
pub fn evaluate(
    poller: &str,
    rules: &RuleSet,
    seen: &Seen,
    records: &[String],
    now: DateTime<Utc>,
    all_ids: bool,
) -> Batch {
    let mut b = Batch::default();
    let mut batch_ids = std::collections::HashSet::new();
    for text in records.iter().rev() {
        let record = match Record::parse(text) {
            Ok(r) if !r.event_id().is_empty() => r,
            other => {
                b.malformed += 1;
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "no eventID".into(),
                };
                let head: String = text.chars().take(200).collect();
                warn!(poller, error = %why, record = %head, "Malformed event skipped.");
                continue;
            }
        };
        b.read += 1;
        let id = record.event_id();
        if seen.contains(id) || !batch_ids.insert(id.to_owned()) {
            b.duplicates += 1;
            continue;
        }
        let time = record
            .event_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        let changes = crate::protection::changes(&record);
        let findings = rules.findings(text).unwrap_or_default();
        if all_ids || !changes.is_empty() || !findings.is_empty() {
            b.new_ids.push((id.to_owned(), time));
        }
        b.changes.extend(changes);
        for finding in findings {
            telemetry::finding(&finding.rule_id);
            info!(
                rule_id = %finding.rule_id,
                event_id = %finding.event_id,
                key_arn = finding.key_arn.as_deref().unwrap_or("-"),
                principal = finding.principal_arn.as_deref().unwrap_or("-"),
                event_name = %finding.event_name,
                "Rule matched."
            );
            b.jobs.push(Job::new(finding, now));
        }
    }
    b
}

/// An `UpdateAlias` record names the key the alias was moved to: its `kms_protection_removed`
/// finding is about the key it was taken from, when trailguard knows which (see
/// [`crate::protection::moved_from`]).
pub(super) fn name_the_key_that_lost_it(jobs: &mut [Job], changes: &[crate::protection::Change]) {
    for job in jobs {
        let f = &mut job.finding;
        if f.rule_id == crate::rules::PROTECTION_REMOVED
            && f.event_name == "UpdateAlias"
            && let Some(key) = crate::protection::removed_from(&f.event_id, changes)
        {
            f.key_arn = Some(key.to_owned());
        }
    }
}

impl<L: LookupApi> Poller<L> {
    /// Runs until `shutdown`; a read in progress stops at the next page boundary.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let started = tokio::time::Instant::now();
            self.health.attempted(&self.name);
            self.poll(&shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(lag) = self.cursor.lag(self.clock.now()) {
                telemetry::lag(&self.name, lag);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(started + self.poll_interval) => {}
            }
        }
        info!(poller = %self.name, "Poller stopped.");
    }

    /// Reads slices until caught up (or a read fails: the next poll reads the same slice).
    async fn poll(&mut self, shutdown: &CancellationToken) {
        loop {
            let now = self.clock.now();
            let slice = self.cursor.next_slice(now, &self.schedule);
            let (name, health) = (self.name.clone(), self.health.clone());
            let read = read_slice(
                &self.api,
                &self.place,
                self.event_source,
                &slice,
                shutdown,
                || health.progressed(&name),
            )
            .await;
            match read {
                Ok(SliceRead::Complete(records)) => {
                    let mut next = self.cursor.clone();
                    next.complete(&slice, records.len(), now, &self.schedule);
                    if !self.record(&slice, &records, next, now) {
                        return;
                    }
                    if self.cursor.caught_up(now) {
                        return;
                    }
                }
                Ok(SliceRead::TooBig { records, oldest }) => {
                    // Keep what was read (de-duplication makes the re-read harmless) and read
                    // the slice again in smaller pieces.
                    let mut next = self.cursor.clone();
                    next.too_big(&slice, oldest, records.len());
                    debug!(poller = %self.name, start = %slice.start, end = %slice.end, "Slice too dense; reading it in smaller slices.");
                    if !self.record(&slice, &records, next, now) {
                        return;
                    }
                }
                Ok(SliceRead::Stopped) => return,
                Err(e) => {
                    let outcome = if e.error_type == ErrorType::Throttled {
                        PollOutcome::Throttled
                    } else {
                        PollOutcome::Failed
                    };
                    telemetry::poll(&self.name, outcome);
                    warn!(poller = %self.name, error = %e, start = %slice.start, end = %slice.end, "Read failed; the same slice is read again at the next poll.");
                    return;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Records a slice atomically, then hands its jobs to the worker. False if the store failed.
    fn record(&mut self, slice: &Slice, records: &[String], next: Cursor, now: DateTime<Utc>) -> bool {
        let mut batch = evaluate(&self.name, &self.rules, &self.seen, records, now, true);
        let pruned = self.seen.older_than(next.seen_horizon(now, &self.schedule));
        let recorded = self.store.with_moves(&batch.changes).and_then(|changes| {
            name_the_key_that_lost_it(&mut batch.jobs, &changes);
            self.store.record_slice(
                &self.name,
                Some(&next),
                &batch.new_ids,
                &pruned,
                &batch.jobs,
                &changes,
            )
        });
        let rechecks = match recorded {
            Ok(jobs) => jobs,
            Err(e) => {
                error!(poller = %self.name, error = %e, "Cannot record events; the slice will be read again.");
                telemetry::poll(&self.name, PollOutcome::Failed);
                return false;
            }
        };
        for (id, t) in &batch.new_ids {
            self.seen.insert(id, *t);
        }
        self.seen.forget(&pruned);
        self.cursor = next;
        telemetry::poll(&self.name, PollOutcome::Ok);
        let lag = self.cursor.lag(now).unwrap_or_default();
        telemetry::slice_read(
            &self.name,
            batch.new_ids.len() as u64,
            batch.duplicates,
            batch.malformed,
            self.cursor.head.map(|h| h.timestamp() as f64).unwrap_or_default(),
            lag,
            self.clock.host_now().timestamp() as f64,
        );
        debug!(poller = %self.name, read = records.len(), new = batch.new_ids.len(), kind = ?slice.kind, start = %slice.start, end = %slice.end, lag_s = lag.as_secs(), "Slice read.");
        // Findings a late alias or tag change may turn into rescues go first.
        for job in rechecks {
            info!(poller = %self.name, key_arn = job.finding.key_arn.as_deref().unwrap_or("-"), event_id = %job.finding.event_id, "A change of the key's aliases or tags was read: its finding is decided again.");
            let _ = self.jobs.send(job);
        }
        for job in batch.jobs {
            let _ = self.jobs.send(job);
        }
        let horizon = now - chrono::Duration::from_std(self.schedule.lookback_span()).unwrap_or_default();
        if let Err(e) = self.store.prune_kept(horizon) {
            warn!(poller = %self.name, error = %e, "Cannot prune the findings kept for a second decision.");
        }
        true
    }
}

/// Records evaluated at a time when a log file is streamed.
const CHUNK: usize = 2000;

pub(super) fn merge(into: &mut Batch, b: Batch) {
    into.jobs.extend(b.jobs);
    into.new_ids.extend(b.new_ids);
    into.duplicates += b.duplicates;
    into.malformed += b.malformed;
    into.read += b.read;
    into.changes.extend(b.changes);
}

/// Streams a log file's records (gzip'd or not, `{"Records":[...]}` or one per line) through
/// the rules, a chunk at a time. On a broken file, what was read before the break is returned
/// with the error.
pub fn read_log_file(
    source: &str,
    rules: &RuleSet,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<Batch, (Batch, String)> {
    let mut batch = Batch::default();
    let mut chunk: Vec<String> = Vec::with_capacity(CHUNK);
    let seen = Seen::default();
    let result = crate::scan::for_each_record(bytes, |record| {
        match std::str::from_utf8(record) {
            Ok(text) => chunk.push(text.to_owned()),
            Err(_) => batch.malformed += 1,
        }
        if chunk.len() == CHUNK {
            merge(&mut batch, evaluate(source, rules, &seen, &chunk, now, false));
            chunk.clear();
        }
        ControlFlow::Continue(())
    });
    merge(&mut batch, evaluate(source, rules, &seen, &chunk, now, false));
    match result {
        Ok(_) => Ok(batch),
        Err(e) => Err((batch, e.to_string())),
    }
}
