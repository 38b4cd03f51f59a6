//! Settling held messages: delete what is done, extend what is in progress, move what only
//! waits on its notifications out of the work slots, let go of what failed, and at shutdown
//! give back the rest.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::warn;

use super::{BATCHES_AT_ONCE, Consumer, HeldMap, Slot};
use crate::pipeline::acks::Progress;
use crate::sources::{ObjectApi, QueueApi, QueueInfo, QueueMessage};
use crate::telemetry::{self, QueueOutcome};

impl<Q: QueueApi, O: ObjectApi> Consumer<Q, O> {
    /// Deletes the held messages whose work is done, lets go of failed ones, extends the others
    /// before they become visible again, and moves those that only wait on their notifications
    /// from their work slot to a `waiting` place while there is one; at `last`, gives back the
    /// unfinished ones.
    pub(super) async fn settle(
        &self,
        held: &HeldMap,
        waiting: &Arc<Semaphore>,
        info: &QueueInfo,
        last: bool,
    ) {
        let name = &self.source.name;
        let now = Instant::now();
        let aws_now = self.shared.clock.now();
        let (mut delete, mut extend, mut release) = (Vec::new(), Vec::new(), Vec::new());
        let mut oldest = Duration::ZERO;
        {
            let mut all = held.lock().unwrap_or_else(|e| e.into_inner());
            let mut failed = Vec::new();
            for (id, h) in all.iter_mut() {
                let progress = h.tracker.progress();
                if progress == Progress::Queued
                    && matches!(h.slot, Slot::Working { .. })
                    && let Ok(place) = waiting.clone().try_acquire_owned()
                {
                    // The work slot frees as its permit drops.
                    h.slot = Slot::Waiting { _permit: place };
                }
                match progress {
                    Progress::Done => delete.push((id.clone(), h.receipt.clone())),
                    Progress::Failed => failed.push(id.clone()),
                    Progress::Working | Progress::Queued if last => {
                        release.push((id.clone(), h.receipt.clone()))
                    }
                    Progress::Working | Progress::Queued => {
                        if let Some(sent) = h.sent {
                            oldest = oldest.max((aws_now - sent).to_std().unwrap_or_default());
                        }
                        if h.visible_until.saturating_duration_since(now) < self.source.visibility_timeout / 2
                        {
                            extend.push((id.clone(), h.receipt.clone()));
                        }
                    }
                }
            }
            for id in failed {
                if let Some(h) = all.remove(&id) {
                    let m = QueueMessage {
                        message_id: id,
                        receipt_handle: h.receipt,
                        body: String::new(),
                        receive_count: h.receive_count,
                        sent: h.sent,
                    };
                    self.give_up(&m, info, "its work failed (see the errors above)");
                }
            }
            telemetry::queue_held(name, all.len(), oldest);
        }
        // Batches go out together (a few at a time): a slow endpoint must not delay the
        // extensions of one settle past the messages' visibility.
        let visibility = self.source.visibility_timeout;
        let asked = Instant::now();
        let queue = &self.queue;
        let deletes = stream::iter(batches(&delete))
            .map(|chunk| async move {
                let r = queue.delete(&chunk).await;
                (chunk, r)
            })
            .buffer_unordered(BATCHES_AT_ONCE)
            .collect::<Vec<_>>();
        let extends = stream::iter(batches(&extend))
            .map(|chunk| async move {
                let r = queue.extend(&chunk, visibility).await;
                (chunk, r)
            })
            .buffer_unordered(BATCHES_AT_ONCE)
            .collect::<Vec<_>>();
        let (deleted, extended) = tokio::join!(deletes, extends);
        {
            let mut all = held.lock().unwrap_or_else(|e| e.into_inner());
            for (chunk, result) in deleted {
                let failed = match result {
                    Ok(f) => f,
                    Err(e) => {
                        warn!(source = %name, error = %e, "Cannot delete handled messages; trying again.");
                        continue;
                    }
                };
                for (id, _) in &chunk {
                    if !failed.contains(id) {
                        all.remove(id);
                    }
                }
                telemetry::queue_messages(name, QueueOutcome::Deleted, chunk.len() - failed.len());
            }
            for (chunk, result) in extended {
                match result {
                    Ok(failed) => {
                        for (id, _) in &chunk {
                            if let Some(h) = all.get_mut(id).filter(|_| !failed.contains(id)) {
                                h.visible_until = asked + visibility;
                            }
                        }
                        if !failed.is_empty() {
                            warn!(source = %name, messages = failed.len(), "The visibility of messages in progress could not be extended (their receipt is no longer valid); another consumer may receive them too.");
                        }
                    }
                    Err(e) => {
                        warn!(source = %name, error = %e, "Cannot extend the visibility of messages in progress; another consumer may receive them too.")
                    }
                }
            }
        }
        if last {
            for chunk in release.chunks(10) {
                if let Err(e) = self.queue.extend(chunk, Duration::ZERO).await {
                    warn!(source = %name, error = %e, "Cannot give back unfinished messages; they return after their visibility timeout.");
                }
            }
            telemetry::queue_messages(name, QueueOutcome::Released, release.len());
            held.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Messages in batches of 10, SQS's most per batch call.
fn batches(messages: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    messages.chunks(10).map(<[_]>::to_vec).collect()
}
