//! Keys pending deletion and the reminders sent about them (see [`crate::usage::reminders`]).
//! A reminder's job is stored in the same transaction that marks its points sent, so a crash
//! between the two can neither lose the reminder nor send it twice.

use redb::ReadableTable;

use super::{JOBS, PENDING_KEYS, StateError, Store, db, tables::put};
use crate::job::Job;
use crate::usage::reminders::PendingKey;

impl Store {
    /// Remembers a key scheduled for deletion. The same scheduling seen again keeps the
    /// reminders already sent; a new scheduling (after a cancel) starts afresh.
    pub fn track_pending(&self, key: &PendingKey) -> Result<(), StateError> {
        self.write(|tx| {
            let arn = key.key_arn();
            let known = {
                let t = db!(tx.open_table(PENDING_KEYS))?;
                let v = db!(t.get(arn))?;
                v.and_then(|v| serde_json::from_slice::<PendingKey>(v.value()).ok())
            };
            if known.is_some_and(|k| k.finding.event_id == key.finding.event_id) {
                return Ok(());
            }
            put(tx, PENDING_KEYS, arn, key)
        })
    }

    /// Every key pending deletion trailguard knows of; rows that do not decode are quarantined
    /// and returned.
    pub fn pending_keys(&self) -> Result<(Vec<PendingKey>, Vec<super::Quarantined>), StateError> {
        let (rows, bad) = self.load::<PendingKey>(PENDING_KEYS, "kms_pending_keys")?;
        Ok((rows.into_iter().map(|(_, k)| k).collect(), bad))
    }

    /// Forgets a key (no longer pending deletion).
    pub fn forget_pending(&self, key_arn: &str) -> Result<(), StateError> {
        self.write(|tx| {
            let mut t = db!(tx.open_table(PENDING_KEYS))?;
            db!(t.remove(key_arn))?;
            Ok(())
        })
    }

    /// A reminder: its job stored (for the worker) and the key's points marked sent, at once.
    pub fn remind(&self, job: &Job, key: &PendingKey) -> Result<(), StateError> {
        self.write(|tx| {
            put(tx, JOBS, &job.id, job)?;
            put(tx, PENDING_KEYS, key.key_arn(), key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    fn scheduled(event_id: &str) -> PendingKey {
        let text = serde_json::json!({"eventID": event_id, "eventSource": "kms.amazonaws.com",
            "eventName": "ScheduleKeyDeletion", "eventTime": "2026-11-25T12:00:00Z", "awsRegion": "eu-west-1",
            "recipientAccountId": "111122223333", "requestParameters": {"keyId": "k-1"}})
        .to_string();
        PendingKey {
            finding: rules::evaluate_json(&text).remove(0),
            scheduled_at: chrono::DateTime::UNIX_EPOCH,
            reminded: Vec::new(),
        }
    }

    #[test]
    fn the_same_scheduling_keeps_its_reminders_and_a_new_one_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut k = scheduled("e-1");
        store.track_pending(&k).unwrap();
        k.reminded = vec![604800];
        let job = Job::new(k.finding.clone(), chrono::DateTime::UNIX_EPOCH);
        store.remind(&job, &k).unwrap();
        assert_eq!(
            store.jobs().unwrap().0.len(),
            1,
            "the reminder's job is stored with it"
        );
        store.track_pending(&scheduled("e-1")).unwrap();
        assert_eq!(store.pending_keys().unwrap().0[0].reminded, [604800]);
        store.track_pending(&scheduled("e-2")).unwrap();
        let keys = store.pending_keys().unwrap().0;
        assert_eq!((keys.len(), keys[0].reminded.len()), (1, 0));
        store.forget_pending(k.key_arn()).unwrap();
        assert!(store.pending_keys().unwrap().0.is_empty());
    }

    #[test]
    fn a_pending_key_that_does_not_decode_is_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        store.track_pending(&scheduled("e-1")).unwrap();
        store
            .write(|tx| {
                let mut t = db!(tx.open_table(PENDING_KEYS))?;
                db!(t.insert("arn:bad", b"{}".as_slice()))?;
                Ok(())
            })
            .unwrap();
        let (keys, bad) = store.pending_keys().unwrap();
        assert_eq!((keys.len(), bad.len()), (1, 1));
        assert_eq!(bad[0].table, "kms_pending_keys");
    }
}
