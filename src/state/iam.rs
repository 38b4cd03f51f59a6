//! IAM deletions decided and waiting to be re-checked ([`crate::iam::confirm`]): kept across
//! restarts, so a restart neither loses the wait nor acts before it is over. And the changes
//! begun and not yet accounted for ([`crate::iam::intent`]).

use std::collections::HashMap;

use redb::ReadableTable;

use super::{IAM_INTENTS, IAM_PENDING_DELETE, StateError, Store, db};
use crate::iam::confirm::Pending;
use crate::iam::intent::Intent;

impl Store {
    /// Every deletion decided and waiting, by access key id (rows that do not decode are left
    /// out: the deletion is decided again).
    pub fn pending_deletes(&self) -> Result<HashMap<String, Pending>, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(IAM_PENDING_DELETE))?;
        let mut out = HashMap::new();
        for row in db!(t.iter())? {
            let (k, v) = db!(row)?;
            if let Ok(p) = serde_json::from_slice::<Pending>(v.value()) {
                out.insert(k.value().to_owned(), p);
            }
        }
        Ok(out)
    }

    /// Records the decisions `waiting` and forgets those of the keys `settled`.
    pub fn update_pending_deletes(
        &self,
        waiting: &[(String, Pending)],
        settled: &[String],
    ) -> Result<(), StateError> {
        self.write(|tx| {
            {
                let mut t = db!(tx.open_table(IAM_PENDING_DELETE))?;
                for k in settled {
                    db!(t.remove(k.as_str()))?;
                }
            }
            for (k, p) in waiting {
                super::tables::put(tx, IAM_PENDING_DELETE, k, p)?;
            }
            Ok(())
        })
    }

    /// Writes down a change about to be made, before the call ([`crate::iam::intent`]).
    /// Returns false, writing nothing, while an earlier sweep's change of the same key is not
    /// accounted for: that one is settled first.
    pub fn intend(&self, intent: &Intent) -> Result<bool, StateError> {
        let mut written = false;
        self.write(|tx| {
            if intent_sweep(tx, &intent.key())?.is_some_and(|s| s != intent.sweep) {
                return Ok(());
            }
            written = true;
            super::tables::put(tx, IAM_INTENTS, &intent.key(), intent)
        })?;
        Ok(written)
    }

    /// The changes begun and not accounted for (rows that do not decode are quarantined).
    pub fn intents(&self) -> Result<(Vec<Intent>, Vec<super::Quarantined>), StateError> {
        let (rows, bad) = self.load::<Intent>(IAM_INTENTS, "iam_intents")?;
        Ok((rows.into_iter().map(|(_, i)| i).collect(), bad))
    }
}

/// The sweep of the intent stored under `key`, if there is one (one that does not decode
/// counts as another sweep's: it is left for the quarantine).
pub(super) fn intent_sweep(tx: &redb::WriteTransaction, key: &str) -> Result<Option<String>, StateError> {
    let t = db!(tx.open_table(IAM_INTENTS))?;
    let row = db!(t.get(key))?;
    Ok(row.map(|v| {
        serde_json::from_slice::<Intent>(v.value())
            .map(|i| i.sweep)
            .unwrap_or_default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ActionKind;

    #[test]
    fn an_intent_survives_a_reopen_until_the_message_that_accounts_for_it_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let intent = Intent {
            account: "111122223333".into(),
            user: "app".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            action: ActionKind::Deactivate,
            sweep: "s".into(),
            at: chrono::DateTime::UNIX_EPOCH,
            rule_ids: vec!["iam_access_key_unused".into()],
            finding: serde_json::json!({"key": {"access_key_id": "AKIAEXAMPLE"}}),
        };
        assert!(Store::open(dir.path(), false).unwrap().intend(&intent).unwrap());
        // A crash here: the reopened store still has it.
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(store.intents().unwrap().0, std::slice::from_ref(&intent));
        let (outcome, detail) = intent.settle(crate::iam::intent::KeyStatus::Inactive, None);
        let entry = crate::outbox::Entry::new(
            crate::notify::iam::interrupted(&intent, outcome, &detail),
            chrono::DateTime::UNIX_EPOCH,
        );
        // A later sweep neither overwrites it nor settles it.
        let mut later = intent.clone();
        later.sweep = "later".into();
        assert!(!store.intend(&later).unwrap());
        store
            .enqueue(&[], &[], &[(later.key(), later.sweep.clone())])
            .unwrap();
        assert_eq!(store.intents().unwrap().0, std::slice::from_ref(&intent));
        store
            .enqueue(
                std::slice::from_ref(&entry),
                &[],
                &[(intent.key(), intent.sweep.clone())],
            )
            .unwrap();
        assert!(store.intents().unwrap().0.is_empty());
        assert_eq!(store.outbox().unwrap().0, [entry]);
    }
}
