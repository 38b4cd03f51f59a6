//! The store's operations, one transaction each (see the protocol in [`super`]).

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    CURSORS, DEACTIVATED, IAM_INTENTS, JOBS, OUTBOX, QUARANTINE, SEEN, StateError, Store, WINDOWS, db,
};
use crate::aggregate::Window;
use crate::cursor::{Cursor, Seen};
use crate::job::Job;
use crate::outbox::Entry;

pub(super) type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;

/// Rows that decoded (with their keys), and rows moved to quarantine.
pub type Loaded<T> = (Vec<(String, T)>, Vec<Quarantined>);

/// A row that did not decode and was moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub table: &'static str,
    pub key: String,
    pub error: String,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Db(e.to_string()))
}

fn seen_key(poller: &str, id: &str) -> String {
    format!("{poller}\u{0}{id}")
}

pub(super) fn put<T: Serialize>(
    tx: &WriteTransaction,
    table: JsonTable,
    key: &str,
    v: &T,
) -> Result<(), StateError> {
    let mut t = db!(tx.open_table(table))?;
    db!(t.insert(key, encode(v)?.as_slice()))?;
    Ok(())
}

pub(super) fn remove(tx: &WriteTransaction, table: JsonTable, key: &str) -> Result<(), StateError> {
    let mut t = db!(tx.open_table(table))?;
    db!(t.remove(key))?;
    Ok(())
}

impl Store {
    pub(super) fn write(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let tx = db!(self.db.begin_write())?;
        f(&tx)?;
        db!(tx.commit())
    }

    /// Every row of a JSON table that decodes; the others are moved to quarantine and returned.
    pub(super) fn load<T: DeserializeOwned>(
        &self,
        table: JsonTable,
        name: &'static str,
    ) -> Result<Loaded<T>, StateError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        {
            let tx = db!(self.db.begin_read())?;
            let t = db!(tx.open_table(table))?;
            for row in db!(t.iter())? {
                let (k, v) = db!(row)?;
                match serde_json::from_slice::<T>(v.value()) {
                    Ok(x) => good.push((k.value().to_owned(), x)),
                    Err(e) => bad.push((k.value().to_owned(), v.value().to_vec(), e.to_string())),
                }
            }
        }
        if bad.is_empty() {
            return Ok((good, Vec::new()));
        }
        let mut out = Vec::new();
        self.write(|tx| {
            let mut q = db!(tx.open_table(QUARANTINE))?;
            let mut t = db!(tx.open_table(table))?;
            for (k, bytes, error) in &bad {
                db!(q.insert(format!("{name}\u{0}{k}").as_str(), bytes.as_slice()))?;
                db!(t.remove(k.as_str()))?;
                out.push(Quarantined {
                    table: name,
                    key: k.clone(),
                    error: error.clone(),
                });
            }
            Ok(())
        })?;
        Ok((good, out))
    }

    /// A poller's cursor; `None` for a new poller. A cursor that does not decode is an error:
    /// guessing would skip or repeat events.
    pub fn cursor(&self, poller: &str) -> Result<Option<Cursor>, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(CURSORS))?;
        let Some(v) = db!(t.get(poller))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: self.path.display().to_string(),
                table: "cursors",
                key: poller.to_owned(),
                error: e.to_string(),
            })
    }

    /// The event ids a poller has handled (and those of a version-1 file, shared by all).
    pub fn seen(&self, poller: &str) -> Result<Seen, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(SEEN))?;
        let mut seen = Seen::default();
        for row in db!(t.iter())? {
            let (k, v) = db!(row)?;
            let key = k.value();
            let id = match key.split_once('\u{0}') {
                Some((p, id)) if p == poller => id,
                Some(_) => continue,
                None => key,
            };
            seen.insert(id, DateTime::from_timestamp_millis(v.value()).unwrap_or_default());
        }
        Ok(seen)
    }

    /// Step 1 of the protocol, for one slice: new ids seen, jobs stored, cursor advanced and old
    /// ids pruned, atomically. Records a read (a poller's slice, or a queue receive with no
    /// `cursor`) in one transaction: the new event ids, the pruned ones, the jobs and protection
    /// changes; with them, a job for every kept finding of a key whose aliases or tags the read
    /// changed, to decide it again ([`crate::job::Kept`]). Returns those jobs.
    pub fn record_slice(
        &self,
        poller: &str,
        cursor: Option<&Cursor>,
        new_ids: &[(String, DateTime<Utc>)],
        pruned: &[String],
        jobs: &[Job],
        changes: &[crate::protection::Change],
    ) -> Result<Vec<Job>, StateError> {
        let mut rechecks = Vec::new();
        self.write(|tx| {
            super::protection::put_changes(tx, changes)?;
            rechecks = super::recheck::rechecks(tx, changes)?;
            for job in &rechecks {
                put(tx, JOBS, &job.id, job)?;
            }
            {
                let mut s = db!(tx.open_table(SEEN))?;
                for (id, t) in new_ids {
                    db!(s.insert(seen_key(poller, id).as_str(), t.timestamp_millis()))?;
                }
                for id in pruned {
                    db!(s.remove(seen_key(poller, id).as_str()))?;
                    db!(s.remove(id.as_str()))?;
                }
            }
            for job in jobs {
                put(tx, JOBS, &job.id, job)?;
            }
            if let Some(c) = cursor {
                put(tx, CURSORS, poller, c)?;
            }
            Ok(())
        })?;
        Ok(rechecks)
    }

    pub fn put_job(&self, job: &Job) -> Result<(), StateError> {
        self.write(|tx| put(tx, JOBS, &job.id, job))
    }

    /// Jobs not finished, oldest first; those that do not decode are quarantined and returned.
    pub fn jobs(&self) -> Result<(Vec<Job>, Vec<Quarantined>), StateError> {
        let (rows, bad) = self.load::<Job>(JOBS, "jobs")?;
        let mut jobs: Vec<Job> = rows.into_iter().map(|(_, j)| j).collect();
        jobs.sort_by_key(|j| j.created);
        Ok((jobs, bad))
    }

    /// A job that ends with nothing to do or say.
    pub fn drop_job(&self, job_id: &str) -> Result<(), StateError> {
        self.write(|tx| remove(tx, JOBS, job_id))
    }

    /// Step 3, aggregated: the job is counted in its window and removed.
    pub fn fold(&self, job_id: &str, window_key: &str, window: &Window) -> Result<(), StateError> {
        self.write(|tx| {
            remove(tx, JOBS, job_id)?;
            put(tx, WINDOWS, window_key, window)
        })
    }

    /// Step 3: the job (if any) is removed and its message queued; the window is opened,
    /// replaced, or left alone (`None`).
    pub fn finish(
        &self,
        job_id: Option<&str>,
        entry: &Entry,
        window: Option<(&str, &Window)>,
    ) -> Result<(), StateError> {
        self.write(|tx| {
            if let Some(id) = job_id {
                remove(tx, JOBS, id)?;
            }
            put(tx, OUTBOX, entry.id(), entry)?;
            if let Some((k, w)) = window {
                put(tx, WINDOWS, k, w)?;
            }
            Ok(())
        })
    }

    /// Closes a window, queueing its summary (if it held anything back).
    pub fn close_window(&self, key: &str, summary: Option<&Entry>) -> Result<(), StateError> {
        self.write(|tx| {
            remove(tx, WINDOWS, key)?;
            if let Some(e) = summary {
                put(tx, OUTBOX, e.id(), e)?;
            }
            Ok(())
        })
    }

    pub fn windows(&self) -> Result<Loaded<Window>, StateError> {
        self.load(WINDOWS, "windows")
    }

    /// Messages waiting to be published.
    pub fn outbox(&self) -> Result<(Vec<Entry>, Vec<Quarantined>), StateError> {
        let (rows, bad) = self.load::<Entry>(OUTBOX, "outbox")?;
        Ok((rows.into_iter().map(|(_, e)| e).collect(), bad))
    }

    /// Queues messages that finish no job (the IAM sweep's), with the deactivations they report,
    /// and removes the intents ([`crate::iam::intent`]) they account for: (key, sweep), so an
    /// earlier sweep's intent for the same key stays until it is accounted for itself.
    pub fn enqueue(
        &self,
        entries: &[Entry],
        deactivated: &[(String, DateTime<Utc>)],
        settled: &[(String, String)],
    ) -> Result<(), StateError> {
        self.write(|tx| {
            for e in entries {
                put(tx, OUTBOX, e.id(), e)?;
            }
            for (k, sweep) in settled {
                if super::iam::intent_sweep(tx, k)?.as_deref() == Some(sweep.as_str()) {
                    remove(tx, IAM_INTENTS, k)?;
                }
            }
            let mut d = db!(tx.open_table(DEACTIVATED))?;
            for (key, at) in deactivated {
                db!(d.insert(key.as_str(), at.timestamp()))?;
            }
            Ok(())
        })
    }

    /// An attempt failed: the entry with its new schedule.
    pub fn update_entry(&self, entry: &Entry) -> Result<(), StateError> {
        self.write(|tx| put(tx, OUTBOX, entry.id(), entry))
    }

    /// SNS accepted the message.
    pub fn remove_entry(&self, id: &str) -> Result<(), StateError> {
        self.write(|tx| remove(tx, OUTBOX, id))
    }

    /// Every access key trailguard deactivated, with when.
    pub fn deactivations(&self) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(DEACTIVATED))?;
        let mut out = std::collections::HashMap::new();
        for row in db!(t.iter())? {
            let (k, v) = db!(row)?;
            if let Some(at) = DateTime::from_timestamp(v.value(), 0) {
                out.insert(k.value().to_owned(), at);
            }
        }
        Ok(out)
    }

    /// Forgets trailguard's deactivation of keys seen active since: it no longer says anything.
    pub fn forget_deactivations(&self, keys: &[String]) -> Result<(), StateError> {
        self.write(|tx| {
            let mut t = db!(tx.open_table(DEACTIVATED))?;
            for k in keys {
                db!(t.remove(k.as_str()))?;
            }
            Ok(())
        })
    }

    /// When trailguard deactivated this access key, if it did.
    pub fn deactivated(&self, key_id: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(DEACTIVATED))?;
        Ok(db!(t.get(key_id))?.and_then(|v| DateTime::from_timestamp(v.value(), 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    fn job(id: &str) -> Job {
        let text = serde_json::json!({"eventID": id, "eventSource": "kms.amazonaws.com", "eventName": "DisableKey",
            "awsRegion": "eu-west-1", "recipientAccountId": "111122223333", "requestParameters": {"keyId": "k"}})
        .to_string();
        Job::new(rules::evaluate_json(&text).remove(0), DateTime::UNIX_EPOCH)
    }

    #[test]
    fn undecodable_jobs_are_quarantined_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        store.put_job(&job("good")).unwrap();
        store
            .write(|tx| {
                let mut t = db!(tx.open_table(JOBS))?;
                db!(t.insert("bad", b"{\"not\": \"a job\"}".as_slice()))?;
                Ok(())
            })
            .unwrap();
        let (jobs, bad) = store.jobs().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].key, "bad");
        assert_eq!(store.quarantined().unwrap(), 1);
        assert!(
            store.jobs().unwrap().1.is_empty(),
            "moved aside, not reported twice"
        );
    }

    #[test]
    fn a_cursor_that_does_not_decode_is_an_error_not_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        store
            .write(|tx| put(tx, CURSORS, "eu-west-1", &"garbage"))
            .unwrap();
        assert!(matches!(
            store.cursor("eu-west-1"),
            Err(StateError::Corrupt { .. })
        ));
        assert!(store.cursor("us-east-1").unwrap().is_none());
    }

    #[test]
    fn seen_ids_belong_to_their_poller() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let now = DateTime::UNIX_EPOCH;
        store
            .record_slice(
                "eu-west-1",
                Some(&Cursor::default()),
                &[("a".into(), now)],
                &[],
                &[],
                &[],
            )
            .unwrap();
        store
            .record_slice(
                "us-east-1",
                Some(&Cursor::default()),
                &[("b".into(), now)],
                &[],
                &[],
                &[],
            )
            .unwrap();
        assert!(store.seen("eu-west-1").unwrap().contains("a"));
        assert!(!store.seen("eu-west-1").unwrap().contains("b"));
        store
            .record_slice(
                "eu-west-1",
                Some(&Cursor::default()),
                &[],
                &["a".into()],
                &[],
                &[],
            )
            .unwrap();
        assert!(store.seen("eu-west-1").unwrap().is_empty());
    }

    #[test]
    fn a_newer_schema_is_refused_and_reset_moves_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), false).unwrap();
            store
                .write(|tx| {
                    let mut m = db!(tx.open_table(super::super::META))?;
                    db!(m.insert("schema_version", b"99".as_slice()))?;
                    Ok(())
                })
                .unwrap();
        }
        assert!(matches!(
            Store::open(dir.path(), false),
            Err(StateError::Version { found: 99, .. })
        ));
        Store::open(dir.path(), true).unwrap();
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".bak")
            })
            .count();
        assert_eq!(moved, 1);
    }

    #[test]
    fn an_unreadable_schema_version_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), false).unwrap();
            store
                .write(|tx| {
                    let mut m = db!(tx.open_table(super::super::META))?;
                    db!(m.insert("schema_version", b"3.0-beta".as_slice()))?;
                    Ok(())
                })
                .unwrap();
        }
        let opened = Store::open(dir.path(), false);
        assert!(
            matches!(opened, Err(StateError::Corrupt { table: "meta", .. })),
            "a version this build cannot read was taken for an old file and overwritten: {:?}",
            opened.as_ref().err()
        );
    }
}
