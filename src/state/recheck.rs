//! Findings decided without action, kept for a while to be decided again ([`Kept`]): written
//! by the worker after its decision, read in the transaction that records a slice's alias and
//! tag changes (so a crash cannot lose the re-decision a change calls for), pruned by the
//! pollers once no late change can concern them.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};

use super::{RECHECK, StateError, Store, db};
use crate::job::{Job, Kept};
use crate::protection::Change;

fn row(key_arn: &str, job_id: &str) -> String {
    format!("{key_arn}\u{0}{job_id}")
}

/// The jobs that decide again the kept findings of every key `changes` touch.
pub(super) fn rechecks(tx: &WriteTransaction, changes: &[Change]) -> Result<Vec<Job>, StateError> {
    let mut keys: Vec<&str> = changes.iter().map(|c| c.key_arn.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    let t = db!(tx.open_table(RECHECK))?;
    for key in keys {
        let (start, end) = (format!("{key}\u{0}"), format!("{key}\u{1}"));
        for r in db!(t.range(start.as_str()..end.as_str()))? {
            let (_, v) = db!(r)?;
            if let Ok(kept) = serde_json::from_slice::<Kept>(v.value()) {
                out.push(kept.recheck(kept.decided));
            }
        }
    }
    Ok(out)
}

impl Store {
    /// Keeps a finding decided without action (see [`Kept`]).
    pub fn keep(&self, key_arn: &str, kept: &Kept) -> Result<(), StateError> {
        self.write(|tx| super::tables::put(tx, RECHECK, &row(key_arn, &kept.job.id), kept))
    }

    /// A kept finding was decided again and acted on: no further change calls for it.
    pub fn forget_kept(&self, key_arn: &str, job_id: &str) -> Result<(), StateError> {
        self.write(|tx| {
            let mut t = db!(tx.open_table(RECHECK))?;
            db!(t.remove(row(key_arn, job_id).as_str()))?;
            Ok(())
        })
    }

    /// Forgets the kept findings no change read from now on can concern ([`Kept::expired`]),
    /// and any that does not decode.
    pub fn prune_kept(&self, horizon: DateTime<Utc>) -> Result<(), StateError> {
        let stale: Vec<String> = {
            let tx = db!(self.db.begin_read())?;
            let t = db!(tx.open_table(RECHECK))?;
            let mut stale = Vec::new();
            for r in db!(t.iter())? {
                let (k, v) = db!(r)?;
                let expired =
                    serde_json::from_slice::<Kept>(v.value()).map_or(true, |kept| kept.expired(horizon));
                if expired {
                    stale.push(k.value().to_owned());
                }
            }
            stale
        };
        if stale.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut t = db!(tx.open_table(RECHECK))?;
            for k in &stale {
                db!(t.remove(k.as_str()))?;
            }
            Ok(())
        })
    }
}
