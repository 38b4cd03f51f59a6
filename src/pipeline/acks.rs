//! When a queue message may be deleted: once everything it carried has been handled.
//!
//! Each received message has a [`Tracker`]. Every job made from the message is registered
//! under the job's id; the worker and the sender move the registration along as the work goes
//! (job → its notification, or job → the aggregation window it was folded into → the window's
//! summary) and settle it when the work is done (the notification published, or nothing to
//! say) or failed. The consumer deletes the message when its tracker has nothing outstanding
//! and nothing failed; a message whose work failed is left in the queue, to be received again
//! (and, after the queue's redrive count, to go to its dead-letter queue).
//!
//! A message whose jobs have all reached their notification (put in the outbox with the job's
//! outcome, in one transaction whose failure fails the message) or been folded into an
//! aggregation window is [`Progress::Queued`]: what is left is
//! publishing, which an SNS outage or an aggregation window can hold for minutes. The consumer
//! then frees its work slot, so that such a wait never stops it from receiving the next
//! events (rescues never wait for notifications); the message itself is still deleted only
//! once published.
//!
//! Registrations live in memory only: a replica that dies loses them with the messages it held,
//! which SQS then hands to another replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One message's outstanding work.
#[derive(Debug, Default)]
pub struct Tracker {
    outstanding: AtomicUsize,
    /// Of the outstanding work, what is not yet written to the state (jobs).
    acting: AtomicUsize,
    failed: AtomicBool,
}

/// How a message's work ended, so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Working,
    /// Only publishing is left: every job's outcome is in the state.
    Queued,
    Done,
    Failed,
}

impl Tracker {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn progress(&self) -> Progress {
        if self.failed.load(Ordering::SeqCst) {
            Progress::Failed
        } else if self.outstanding.load(Ordering::SeqCst) == 0 {
            Progress::Done
        } else if self.acting.load(Ordering::SeqCst) == 0 {
            Progress::Queued
        } else {
            Progress::Working
        }
    }

    fn settle(&self, ok: bool, acting: bool) {
        if !ok {
            self.failed.store(true, Ordering::SeqCst);
        }
        if acting {
            self.acting.fetch_sub(1, Ordering::SeqCst);
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One registration: the message's tracker, and whether it is still a job's (not yet written
/// to the state).
#[derive(Debug)]
struct Waiting {
    tracker: Arc<Tracker>,
    acting: bool,
}

/// The registrations, by handle (a job id, a notification id, a window's key).
#[derive(Debug, Clone, Default)]
pub struct Acks(Arc<Mutex<HashMap<String, Vec<Waiting>>>>);

/// The handle of an aggregation window's pending summary.
pub fn window_handle(key: &str) -> String {
    format!("window\u{0}{key}")
}

impl Acks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Waiting>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `tracker` waits for the job `handle`.
    pub fn register(&self, handle: &str, tracker: &Arc<Tracker>) {
        tracker.outstanding.fetch_add(1, Ordering::SeqCst);
        tracker.acting.fetch_add(1, Ordering::SeqCst);
        self.lock().entry(handle.to_owned()).or_default().push(Waiting {
            tracker: tracker.clone(),
            acting: true,
        });
    }

    /// The work under `from` continues under `to`: a job's outcome written to the state with
    /// its notification (or folded into a window), or a window's summary queued.
    /// A job's notification has the job's id: `from` and `to` are then the same handle.
    pub fn moved(&self, from: &str, to: &str) {
        let mut all = self.lock();
        if let Some(mut waiting) = all.remove(from) {
            for w in &mut waiting {
                if std::mem::take(&mut w.acting) {
                    w.tracker.acting.fetch_sub(1, Ordering::SeqCst);
                }
            }
            all.entry(to.to_owned()).or_default().extend(waiting);
        }
    }

    /// The work under `handle` is done.
    pub fn done(&self, handle: &str) {
        if let Some(waiting) = self.lock().remove(handle) {
            waiting.iter().for_each(|w| w.tracker.settle(true, w.acting));
        }
    }

    /// The work under `handle` failed: its messages are received again.
    pub fn failed(&self, handle: &str) {
        if let Some(waiting) = self.lock().remove(handle) {
            waiting.iter().for_each(|w| w.tracker.settle(false, w.acting));
        }
    }

    /// Whether anything waits on `handle` (tests).
    pub fn waits_on(&self, handle: &str) -> bool {
        self.lock().contains_key(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_done_when_all_its_work_is() {
        let acks = Acks::default();
        let (a, b) = (Tracker::new(), Tracker::new());
        acks.register("job1", &a);
        acks.register("job2", &a);
        acks.register("job2", &b);
        assert_eq!(a.progress(), Progress::Working);
        acks.moved("job1", "note1");
        acks.done("job1");
        assert_eq!(a.progress(), Progress::Working, "moved, not done");
        acks.done("note1");
        assert_eq!(a.progress(), Progress::Working);
        acks.moved("job2", &window_handle("k"));
        assert_eq!(
            a.progress(),
            Progress::Queued,
            "only the window's summary is left"
        );
        assert_eq!(b.progress(), Progress::Queued);
        acks.moved(&window_handle("k"), "summary");
        assert_eq!(a.progress(), Progress::Queued);
        acks.done("summary");
        assert_eq!(a.progress(), Progress::Done);
        assert_eq!(b.progress(), Progress::Done);
        assert!(!acks.waits_on("job2"));
    }

    #[test]
    fn a_message_is_queued_once_every_job_of_it_is_written_to_the_state() {
        let acks = Acks::default();
        let t = Tracker::new();
        acks.register("j1", &t);
        acks.register("j2", &t);
        acks.moved("j1", "n1");
        assert_eq!(t.progress(), Progress::Working, "j2 is still acting");
        // A job's notification carries the job's id.
        acks.moved("j2", "j2");
        assert_eq!(t.progress(), Progress::Queued, "only publishing is left");
        acks.done("j2");
        assert_eq!(t.progress(), Progress::Queued, "n1 is not published yet");
        acks.failed("n1");
        assert_eq!(t.progress(), Progress::Failed);
    }

    #[test]
    fn a_failure_anywhere_keeps_the_message() {
        let acks = Acks::default();
        let t = Tracker::new();
        acks.register("j1", &t);
        acks.register("j2", &t);
        acks.done("j1");
        acks.failed("j2");
        assert_eq!(t.progress(), Progress::Failed);
        // Settling an unknown handle (a job from event history) does nothing.
        acks.done("nobody");
    }
}
