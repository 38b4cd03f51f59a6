//! The protection history: alias and tag changes (written with the slice that read them) and
//! snapshots of keys' facts (written by the worker's refresh). Append-only rows keyed by key
//! ARN and time, so the pollers and the worker never rewrite each other's rows.

use chrono::{DateTime, Utc};
use redb::WriteTransaction;

use super::{PROTECTION_CHANGES, PROTECTION_SNAPSHOTS, StateError, Store, db};
use crate::plan::KeyFacts;
use crate::protection::{Change, History};

fn ms(t: DateTime<Utc>) -> String {
    format!("{:020}", t.timestamp_millis().max(0))
}

pub(super) fn put_changes(tx: &WriteTransaction, changes: &[Change]) -> Result<(), StateError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut t = db!(tx.open_table(PROTECTION_CHANGES))?;
    for (n, c) in changes.iter().enumerate() {
        let key = format!("{}\u{0}{}\u{0}{}\u{0}{n}", c.key_arn, ms(c.time), c.event_id);
        let bytes = serde_json::to_vec(c).map_err(|e| StateError::Db(e.to_string()))?;
        db!(t.insert(key.as_str(), bytes.as_slice()))?;
    }
    Ok(())
}

impl Store {
    /// Everything known of a key's aliases and tags over time.
    pub fn history(&self, key_arn: &str) -> Result<History, StateError> {
        let tx = db!(self.db.begin_read())?;
        let start = format!("{key_arn}\u{0}");
        let end = format!("{key_arn}\u{1}");
        let mut h = History::default();
        let snaps = db!(tx.open_table(PROTECTION_SNAPSHOTS))?;
        for row in db!(snaps.range(start.as_str()..end.as_str()))? {
            let (k, v) = db!(row)?;
            let Some(millis) = k
                .value()
                .rsplit('\u{0}')
                .next()
                .and_then(|m| m.parse::<i64>().ok())
            else {
                continue;
            };
            if let (Some(t), Ok(f)) = (
                DateTime::from_timestamp_millis(millis),
                serde_json::from_slice::<KeyFacts>(v.value()),
            ) {
                h.snapshots.push((t, f));
            }
        }
        let changes = db!(tx.open_table(PROTECTION_CHANGES))?;
        for row in db!(changes.range(start.as_str()..end.as_str()))? {
            let (_, v) = db!(row)?;
            if let Ok(c) = serde_json::from_slice::<Change>(v.value()) {
                h.changes.push(c);
            }
        }
        Ok(h)
    }

    /// Records what KMS said of a key at `at`.
    pub fn put_snapshot(&self, key_arn: &str, at: DateTime<Utc>, facts: &KeyFacts) -> Result<(), StateError> {
        self.write(|tx| {
            super::tables::put(
                tx,
                PROTECTION_SNAPSHOTS,
                &format!("{key_arn}\u{0}{}", ms(at)),
                facts,
            )
        })
    }
}
