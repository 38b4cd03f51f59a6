//! Continuing a rescue a restart cut short. With `kms.enable_after_cancel`, a rescue is two
//! changes (`CancelKeyDeletion`, then `EnableKey`); a run stopped between them leaves the key
//! Disabled, which a rescue started afresh would read as "not pending deletion: nothing to do".

use super::{KeyApi, KmsRemediator};
use crate::actions::{ActionKind, Remediation, Remediator};
use crate::rules::Action;

impl<K: KeyApi> KmsRemediator<K> {
    /// A remediation the job records as started by a previous run: a rescue whose key is
    /// Disabled (no longer pending deletion) had its deletion cancelled and is re-enabled
    /// (`EnableKey`, verified); a key still pending deletion is rescued; anything else is
    /// remediated as new.
    pub(super) async fn resume_from(
        &self,
        action: Action,
        key_arn: Option<&str>,
        account: Option<&str>,
    ) -> Remediation {
        if action != Action::CancelKeyDeletion || !self.enable_after_cancel || self.dry_run {
            return self.remediate(action, key_arn, account).await;
        }
        let enabled = self.enable(key_arn, account).await;
        if enabled.state_before.as_deref() != Some("Disabled") {
            return self.rescue(key_arn, account).await;
        }
        Remediation {
            action: ActionKind::CancelKeyDeletion,
            detail: format!(
                "a restart cut the rescue after CancelKeyDeletion, leaving the key Disabled (kms.enable_after_cancel): {}",
                enabled.detail
            ),
            ..enabled
        }
    }
}
