//! Deciding a finding again when a late change of its key's aliases or tags is read.
//!
//! A finding judged "not protected" (or exempt, or of unknown protection) may have been judged
//! on facts that CloudTrail had not finished delivering: a `DeleteAlias` delivered after the
//! `ScheduleKeyDeletion`, an alias created less than `kms.refresh_interval` before the attack,
//! an untag followed by a refresh and then a disable. Such a finding is kept ([`Kept`]); when
//! a poller records a change of the key, it makes a job that decides the finding again
//! ([`Kept::recheck`]). That job acts only if the new decision asks for a remediation (and then
//! says why in its own notification); otherwise it ends silently, the first message stands.

use tracing::{error, info};

use super::Worker;
use crate::actions::Remediator;
use crate::job::{Job, Kept};
use crate::rules;

impl<R: Remediator> Worker<R> {
    /// After the protection policy decided `job` (`before`: the job as it came): keeps a
    /// finding decided without action; for a re-decision, says whether there is anything to do
    /// (false: nothing to act on, nothing more to say).
    pub(super) fn settle_recheck(&self, before: &Job, job: &mut Job) -> bool {
        let Some(arn) = job.finding.key_arn.clone() else {
            return true;
        };
        let acts = job.pending_action().is_some();
        if let Some(first) = job.recheck_of.clone() {
            if !acts {
                info!(key_arn = %arn, event_id = %job.finding.event_id, "Decided again: still nothing to act on.");
                return false;
            }
            if let Err(e) = self.store.forget_kept(&arn, &first) {
                error!(error = %e, "Cannot forget a finding decided again.");
            }
            let policy = job.policy.take().unwrap_or_default();
            job.policy = Some(format!(
                "decided again once a change of the key's aliases or tags was read (first decided without action, in notification {first}): {policy}"
            ));
            return true;
        }
        let kept_rules = [
            rules::KEY_DISABLED,
            rules::KEY_DELETION_SCHEDULED,
            rules::PENDING_DELETION_USE,
        ];
        if !acts && kept_rules.contains(&job.finding.rule_id.as_str()) {
            let kept = Kept {
                job: before.clone(),
                decided: self.clock.now(),
            };
            if let Err(e) = self.store.keep(&arn, &kept) {
                error!(error = %e, "Cannot keep a finding for a second decision.");
            }
        }
        true
    }
}
