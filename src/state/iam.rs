//! IAM deletions decided and waiting to be re-checked ([`crate::iam::confirm`]): kept across
//! restarts, so a restart neither loses the wait nor acts before it is over.

use std::collections::HashMap;

use redb::ReadableTable;

use super::{IAM_PENDING_DELETE, StateError, Store, db};
use crate::iam::confirm::Pending;

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
}
