//! What a sweep does about one finding: nothing but a message, or a change of the key
//! (`UpdateAccessKey` to `Inactive`, `DeleteAccessKey`), reported as soon as it is made and
//! then verified.

use chrono::{DateTime, Utc};

use super::{Step, SweepResult, Sweeper, planned_action};
use crate::event::Record;
use crate::iam::intent::KeyStatus;
use crate::iam::{IamApi, KeyFinding, Planned};
use crate::job::Outcome;
use crate::sources::LookupApi;
use crate::sources::find_latest;

impl<I: IamApi, L: LookupApi> Sweeper<I, L> {
    /// Whether the finding changes its key (not in a dry run).
    pub(super) fn changes(&self, f: &KeyFinding) -> bool {
        !self.dry_run && matches!(f.planned, Planned::Deactivate | Planned::Delete)
    }

    /// Makes the change a finding plans ([`Self::changes`]), once `made` has written it down
    /// ([`Step::Intend`]). Once the call has succeeded, `made` is given the result (`made`:
    /// true) before the change is verified, so that a sweep cut there has already said what it
    /// did; it returns whether that result's message was queued. The verified result follows
    /// (`notified` when `made` queued a message that still holds). A call that answers with an
    /// error may still have taken effect (a timeout after IAM applied it): the key's status
    /// decides.
    pub(super) async fn change(
        &self,
        finding: KeyFinding,
        made: &mut impl FnMut(Step<'_>) -> bool,
    ) -> SweepResult {
        let (user, key) = (finding.key.user_name.clone(), finding.key.access_key_id.clone());
        let deactivate = finding.planned == Planned::Deactivate;
        let op = if deactivate {
            "UpdateAccessKey"
        } else {
            "DeleteAccessKey"
        };
        let mut r = SweepResult {
            finding,
            outcome: Outcome::Failed,
            detail: String::new(),
            made: false,
            notified: false,
            keep_intent: false,
        };
        if !made(Step::Intend(&r.finding)) {
            r.outcome = Outcome::NotActionable;
            r.detail = "not changed: trailguard could not write the change down in its state before making it, or an earlier change of this key is not accounted for yet (see its log); it makes no change it could not account for after a crash".into();
            return r;
        }
        let call = if deactivate {
            self.iam.deactivate(&user, &key).await
        } else {
            self.iam.delete(&user, &key).await
        };
        if let Err(e) = call {
            self.after_error(&mut r, op, &e, deactivate, &user, &key).await;
            return r;
        }
        r.outcome = Outcome::Applied;
        r.made = true;
        r.detail = if deactivate {
            "deactivated (UpdateAccessKey to Inactive); reactivate it with aws iam update-access-key --status Active if this was a mistake".into()
        } else {
            "deleted (DeleteAccessKey; it had been inactive long enough)".into()
        };
        let notified = made(Step::Done(&r));
        r.made = false;
        let status = self.status(&user, &key).await;
        match (deactivate, status) {
            (true, Some(false)) => {
                r.notified = notified;
                r.detail = "deactivated (UpdateAccessKey to Inactive, verified); reactivate it with aws iam update-access-key --status Active if this was a mistake".into();
            }
            (false, None) => {
                r.notified = notified;
                r.detail = "deleted (it had been inactive long enough; verified gone)".into();
            }
            (true, other) => {
                r.outcome = Outcome::Failed;
                r.detail = format!(
                    "UpdateAccessKey succeeded but the key is {}",
                    describe_status(other)
                );
            }
            (false, other) => {
                r.outcome = Outcome::Failed;
                r.detail = format!(
                    "DeleteAccessKey succeeded but the key is still listed ({})",
                    describe_status(other)
                );
            }
        }
        r
    }

    /// A change whose call answered with an error: it may have taken effect all the same (a
    /// timeout, a 5xx, a connection lost after IAM applied it), so the key is read back. The
    /// change's note is kept ([`SweepResult::keep_intent`]) whenever the answer leaves the
    /// question open: the next sweep settles it from the key's status then.
    async fn after_error(
        &self,
        r: &mut SweepResult,
        op: &str,
        e: &crate::aws::AwsError,
        deactivate: bool,
        user: &str,
        key: &str,
    ) {
        let why = e.short();
        let gone_before = e.error_type == crate::aws::ErrorType::NotFound;
        match (deactivate, self.key_status(user, key).await) {
            (_, Ok(KeyStatus::Gone)) if gone_before => {
                r.outcome = Outcome::NotNeeded;
                r.detail = format!(
                    "{op} answered {why}: the key was already gone (deleted by someone else, or by an earlier attempt of this call whose answer was lost; event history shows who)"
                );
            }
            (true, Ok(KeyStatus::Inactive)) => {
                r.outcome = Outcome::Applied;
                r.detail = format!(
                    "deactivated: {op} answered with an error ({why}), but the key is Inactive now (verified); reactivate it with aws iam update-access-key --status Active if this was a mistake"
                );
            }
            (false, Ok(KeyStatus::Gone)) => {
                r.outcome = Outcome::Applied;
                r.detail = format!(
                    "deleted: {op} answered with an error ({why}), but the key is gone now (verified)"
                );
            }
            (_, Ok(status)) => {
                r.detail = format!("{op} failed: {why}");
                // A request IAM may still carry out (it timed out, or IAM failed on its side):
                // looked at again at the next sweep.
                if e.retryable() {
                    r.keep_intent = true;
                    r.detail.push_str(&format!("; the key reads {} now, and is checked again at the next sweep in case IAM carries the request out later", status.as_str()));
                }
            }
            (_, Err(read)) => {
                r.keep_intent = true;
                r.detail = format!(
                    "{op} answered with an error ({why}), and the key could not be read back ({}): whether it was changed is checked at the next sweep",
                    read.short()
                );
            }
        }
    }

    /// The latest successful `UpdateAccessKey` to `Inactive` of `key` in event history from
    /// `since` on (a minute of clock difference allowed): when, and by whom.
    pub async fn deactivation_since(
        &self,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, Option<String>)>, crate::aws::AwsError> {
        let from = since - chrono::Duration::minutes(1);
        find_latest(&self.lookup, &self.events, key, super::HISTORY_PAGES, |e| {
            let rec = Record::parse(&e.record).ok()?;
            let t = e.time.filter(|t| *t >= from)?;
            (rec.name() == "UpdateAccessKey"
                && rec.succeeded()
                && rec.request_str("accessKeyId") == Some(key)
                && rec.request_str("status") == Some("Inactive"))
            .then(|| (t, rec.principal_arn().map(str::to_owned)))
        })
        .await
    }

    pub(super) fn act(&self, f: &KeyFinding) -> (Outcome, String) {
        match f.planned {
            Planned::Notify => (
                Outcome::NotNeeded,
                "notified only (iam.action = \"notify\")".into(),
            ),
            Planned::Exempt => (
                Outcome::NotNeeded,
                format!("exempt by {}", f.exemption.as_deref().unwrap_or("an exemption")),
            ),
            Planned::BlastRadius => (
                Outcome::NotActionable,
                format!(
                    "not changed: this sweep would change more keys than iam.max_actions_per_sweep ({}); review and raise the limit, or act by hand",
                    self.policy.max_actions_per_sweep
                ),
            ),
            Planned::ConfirmDelete => (
                Outcome::NotNeeded,
                "due for deletion: the decision is re-checked once cloudtrail.max_delivery_delay has passed"
                    .into(),
            ),
            Planned::WaitBeforeDelete => (
                Outcome::NotNeeded,
                match f.key.inactive_since {
                    Some(t) => format!(
                        "inactive since {} ({}); deleted once inactive for iam.delete_after_inactive",
                        t.format("%Y-%m-%d"),
                        f.key.inactive_evidence.as_deref().unwrap_or("-")
                    ),
                    None => format!(
                        "inactive since unknown ({}); kept until there is evidence",
                        f.key.inactive_evidence.as_deref().unwrap_or("no evidence")
                    ),
                },
            ),
            _ if self.dry_run => (
                Outcome::DryRun,
                format!("dry run: would {}", planned_action(f.planned).as_str()),
            ),
            // Made by [`Self::change`]; never reached.
            Planned::Deactivate | Planned::Delete => (
                Outcome::NotActionable,
                "not changed here: changes are made and verified by the sweep's change step".into(),
            ),
        }
    }

    /// Whether the key is listed and active (`None`: not listed, or the list failed).
    async fn status(&self, user: &str, key: &str) -> Option<bool> {
        let keys = self.iam.list_access_keys(user).await.ok()?;
        keys.into_iter().find(|k| k.id == key).map(|k| k.active)
    }
}

pub(super) fn confirm_detail(f: &KeyFinding, due: DateTime<Utc>) -> String {
    format!(
        "due for deletion: inactive since {} ({}); CloudTrail may not have delivered a later change of the key yet, so the decision is re-checked at the first sweep from {} (cloudtrail.max_delivery_delay) and the key deleted only if the evidence still holds",
        f.key
            .inactive_since
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        f.key.inactive_evidence.as_deref().unwrap_or("-"),
        due.to_rfc3339()
    )
}

fn describe_status(s: Option<bool>) -> &'static str {
    match s {
        Some(true) => "Active",
        Some(false) => "Inactive",
        None => "not listed",
    }
}
