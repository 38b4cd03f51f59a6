//! Rescuing a KMS key scheduled for deletion, as the SSM runbook
//! `AWSConfigRemediation-CancelKeyDeletion` does, but for the exact key an event names:
//! `DescribeKey` in the key's own region; if it is `PendingDeletion` or
//! `PendingReplicaDeletion`, `CancelKeyDeletion`, then `DescribeKey` again to verify it is
//! `Disabled` (as AWS leaves it); optionally `EnableKey` and verify `Enabled`.
//!
//! Every step reads the key's state first, so running a remediation twice (after a crash, or
//! because two findings name the same key) is "nothing to do" the second time, never an action
//! repeated. Transient errors are retried by the AWS layer; `EnableKey` right after the cancel
//! may still see the old state (KMS is eventually consistent) and is retried a few times more.

mod resume;

use std::time::Duration;

use super::{ActionKind, KeyApi, KeyDescription, KeyState, Outcome, Remediation, Remediator};
use crate::accounts::Scope;
use crate::arn::KeyArn;
use crate::aws::{AwsError, ErrorType, RetryPolicy, Service, retry_if};
use crate::plan::KeyFacts;
use crate::rules::Action;

/// How long `EnableKey` keeps trying while KMS still reports the pre-cancel state.
const SETTLE: RetryPolicy = RetryPolicy {
    attempts: 3,
    first_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(2),
    deadline: Duration::from_secs(30),
};

/// Remediation of KMS keys through a [`KeyApi`].
pub struct KmsRemediator<K> {
    api: K,
    pub dry_run: bool,
    pub enable_after_cancel: bool,
    /// The accounts trailguard acts in (`[accounts]`); unset: the event's own account.
    pub scope: Scope,
}

fn rfc3339(d: &Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    d.map(|t| t.to_rfc3339())
}

impl<K: KeyApi> KmsRemediator<K> {
    pub fn new(api: K, dry_run: bool, enable_after_cancel: bool) -> Self {
        Self {
            api,
            dry_run,
            enable_after_cancel,
            scope: Scope::default(),
        }
    }

    /// `DescribeKey`, recorded as a step.
    async fn describe(&self, key: &KeyArn, steps: &mut Vec<String>) -> Result<KeyDescription, AwsError> {
        let r = self.api.describe_key(key).await;
        steps.push(match &r {
            Ok(d) => format!("DescribeKey: {}", d.state.as_str()),
            Err(e) => format!("DescribeKey: {}", e.short()),
        });
        r
    }

    /// The key to act on, or why there is none: the finding must name a key of an account
    /// trailguard guards (`[accounts]`), or, guarding only its own account, of the account the
    /// event was recorded in (`CancelKeyDeletion` only works in the owning account).
    fn target(&self, key_arn: Option<&str>, account: Option<&str>, r: &mut Remediation) -> Option<KeyArn> {
        let Some(text) = key_arn else {
            r.outcome = Outcome::NotActionable;
            r.detail = "the event names no key ARN, so there is no key to act on".into();
            return None;
        };
        let Some(key) = KeyArn::parse(text) else {
            r.outcome = Outcome::NotActionable;
            r.detail = format!("{text} is not a KMS key ARN");
            return None;
        };
        match self.scope.guards(&key.account) {
            Some(true) => return Some(key),
            Some(false) => {
                r.outcome = Outcome::NotActionable;
                r.detail = format!(
                    "the key belongs to account {}, which trailguard does not guard (accounts.ids, accounts.discover, accounts.exclude)",
                    key.account
                );
                return None;
            }
            None => {}
        }
        if let Some(acct) = account
            && acct != key.account
        {
            r.outcome = Outcome::NotActionable;
            r.detail = format!(
                "the key belongs to account {}, not {acct} where the event was recorded; KMS only lets its owning account change it: act there",
                key.account
            );
            return None;
        }
        Some(key)
    }

    /// Re-enables a disabled key (protection policy `kms.on_disable = "enable_key"`), verified.
    pub async fn enable(&self, key_arn: Option<&str>, account: Option<&str>) -> Remediation {
        let mut r = Remediation::new(ActionKind::EnableKey);
        let Some(key) = self.target(key_arn, account, &mut r) else {
            return r;
        };
        let before = match self.describe(&key, &mut r.steps).await {
            Ok(d) => d.state,
            Err(e) => {
                r.detail = format!("could not read the key's state: {}", e.short());
                return r;
            }
        };
        r.state_before = Some(before.as_str().to_owned());
        r.state_after = r.state_before.clone();
        match before {
            KeyState::Enabled => {
                r.outcome = Outcome::NotNeeded;
                r.detail = "the key is already Enabled: nothing to do".into();
                return r;
            }
            KeyState::Disabled => {}
            other => {
                r.outcome = Outcome::NotActionable;
                r.detail = format!(
                    "the key is {}, not Disabled: EnableKey cannot help",
                    other.as_str()
                );
                return r;
            }
        }
        if self.dry_run {
            r.outcome = Outcome::DryRun;
            r.detail = "dry run: would re-enable this key".into();
            return r;
        }
        if let Err(e) = self.api.enable_key(&key).await {
            r.steps.push(format!("EnableKey: {}", e.short()));
            r.detail = format!("EnableKey failed: {}; the key is still Disabled", e.short());
            return r;
        }
        r.steps.push("EnableKey: ok".into());
        match self.describe(&key, &mut r.steps).await {
            Ok(d) if d.state == KeyState::Enabled => {
                r.outcome = Outcome::Applied;
                r.state_after = Some("Enabled".into());
                r.detail = "re-enabled (EnableKey, verified)".into();
            }
            Ok(d) => {
                r.state_after = Some(d.state.as_str().to_owned());
                r.detail = format!("EnableKey succeeded but the key is {}", d.state.as_str());
            }
            Err(e) => r.detail = format!("EnableKey sent, but not verified: {}", e.short()),
        }
        r
    }

    /// Rescues a key pending deletion.
    pub async fn rescue(&self, key_arn: Option<&str>, account: Option<&str>) -> Remediation {
        let mut r = Remediation::new(ActionKind::CancelKeyDeletion);
        let Some(key) = self.target(key_arn, account, &mut r) else {
            return r;
        };
        let before = match self.describe(&key, &mut r.steps).await {
            Ok(d) => d,
            Err(e) => {
                r.detail = format!("could not read the key's state: {}", e.short());
                return r;
            }
        };
        r.state_before = Some(before.state.as_str().to_owned());
        r.deletion_date = rfc3339(&before.deletion_date);
        if !before.state.pending_deletion() {
            r.outcome = Outcome::NotNeeded;
            r.state_after = r.state_before.clone();
            r.detail = format!(
                "the key is {}, not pending deletion: nothing to do",
                before.state.as_str()
            );
            return r;
        }
        let when = r
            .deletion_date
            .as_deref()
            .map(|d| format!(" (deletion date {d})"))
            .unwrap_or_default();
        if self.dry_run {
            r.outcome = Outcome::DryRun;
            r.state_after = r.state_before.clone();
            r.detail = format!(
                "dry run: would cancel the deletion of this key{when}{}",
                if self.enable_after_cancel {
                    " and re-enable it"
                } else {
                    ", leaving it Disabled"
                }
            );
            return r;
        }
        if let Err(e) = self.api.cancel_key_deletion(&key).await {
            r.steps.push(format!("CancelKeyDeletion: {}", e.short()));
            // Refused because the key is no longer pending: someone (another trailguard
            // replica, an administrator) cancelled it since the DescribeKey. Read it again.
            if e.error_type == ErrorType::InvalidState
                && let Ok(now) = self.describe(&key, &mut r.steps).await
                && !now.state.pending_deletion()
            {
                r.outcome = Outcome::NotNeeded;
                r.state_after = Some(now.state.as_str().to_owned());
                r.detail = format!(
                    "the key is {}, no longer pending deletion: cancelled by someone else (another trailguard replica?) just before; nothing to do",
                    now.state.as_str()
                );
                return r;
            }
            r.detail = format!(
                "CancelKeyDeletion failed: {}; the key is still scheduled for deletion{when}",
                e.short()
            );
            return r;
        }
        r.steps.push("CancelKeyDeletion: ok".into());
        let after = match self.describe(&key, &mut r.steps).await {
            Ok(d) => d.state,
            Err(e) => {
                r.detail = format!(
                    "CancelKeyDeletion succeeded but the result could not be verified: {}",
                    e.short()
                );
                return r;
            }
        };
        r.state_after = Some(after.as_str().to_owned());
        if after != KeyState::Disabled {
            r.detail = format!(
                "CancelKeyDeletion succeeded but the key is {} (expected Disabled)",
                after.as_str()
            );
            return r;
        }
        if !self.enable_after_cancel {
            r.outcome = Outcome::Applied;
            r.detail = format!(
                "deletion cancelled{when}; the key is now Disabled, as AWS leaves it: re-enable it once its owner confirms"
            );
            return r;
        }
        let enabled = retry_if(
            &SETTLE,
            Service::Kms,
            "EnableKey",
            |e| e.error_type == ErrorType::InvalidState,
            || self.api.enable_key(&key),
        )
        .await;
        if let Err(e) = enabled {
            r.steps.push(format!("EnableKey: {}", e.short()));
            r.detail = format!(
                "deletion cancelled{when}, but EnableKey failed: {}; the key is Disabled",
                e.short()
            );
            return r;
        }
        r.steps.push("EnableKey: ok".into());
        match self.describe(&key, &mut r.steps).await {
            Ok(d) if d.state == KeyState::Enabled => {
                r.state_after = Some("Enabled".into());
                r.outcome = Outcome::Applied;
                r.detail = format!("deletion cancelled{when} and the key re-enabled");
            }
            Ok(d) => {
                r.state_after = Some(d.state.as_str().to_owned());
                r.detail = format!(
                    "deletion cancelled{when}, but after EnableKey the key is {}",
                    d.state.as_str()
                );
            }
            Err(e) => {
                r.detail = format!(
                    "deletion cancelled and EnableKey sent, but not verified: {}",
                    e.short()
                )
            }
        }
        r
    }
}

impl<K: KeyApi> Remediator for KmsRemediator<K> {
    async fn resume(&self, action: Action, key_arn: Option<&str>, account: Option<&str>) -> Remediation {
        self.resume_from(action, key_arn, account).await
    }

    async fn remediate(&self, action: Action, key_arn: Option<&str>, account: Option<&str>) -> Remediation {
        match action {
            Action::CancelKeyDeletion => self.rescue(key_arn, account).await,
            Action::EnableKey => self.enable(key_arn, account).await,
            Action::Notify => {
                let mut r = Remediation::new(ActionKind::Notify);
                r.outcome = Outcome::NotNeeded;
                r.detail = "notified only".into();
                r
            }
        }
    }

    async fn key_facts(&self, key_arn: &str, aliases: bool, tags: bool) -> Result<KeyFacts, AwsError> {
        let key = KeyArn::parse(key_arn).ok_or_else(|| {
            AwsError::local(
                Service::Kms,
                "ListAliases",
                ErrorType::Validation,
                format!("{key_arn} is not a KMS key ARN"),
            )
        })?;
        let mut facts = KeyFacts::default();
        if aliases {
            facts.aliases = self.api.list_aliases(&key).await?;
        }
        if tags {
            facts.tags = self.api.list_resource_tags(&key).await?;
        }
        Ok(facts)
    }

    async fn region_facts(
        &self,
        region: &str,
        account: &str,
        tags: bool,
    ) -> Result<Vec<(String, KeyFacts)>, AwsError> {
        let mut by_key: std::collections::BTreeMap<String, KeyFacts> = std::collections::BTreeMap::new();
        for (alias, target) in self.api.region_aliases(account, region).await? {
            if let Some(id) = target {
                by_key.entry(id).or_default().aliases.push(alias);
            }
        }
        if tags {
            for id in self.api.region_keys(account, region).await? {
                let key = KeyArn::from_id(region, account, &id);
                match self.api.list_resource_tags(&key).await {
                    Ok(tags) => by_key.entry(id).or_default().tags = tags,
                    // This key's own policy (or state) refuses: leave the key out, so its last
                    // known facts stand, and refresh the others.
                    Err(e) if matches!(e.error_type, ErrorType::AccessDenied | ErrorType::NotFound) => {
                        tracing::warn!(key_arn = %key.arn, error = %e, "Cannot read a key's tags; its last known aliases and tags are kept.");
                        by_key.remove(&id);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(by_key
            .into_iter()
            .map(|(id, f)| (KeyArn::from_id(region, account, &id).arn, f))
            .collect())
    }
}

#[cfg(test)]
mod tests;
