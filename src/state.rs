//! Durable state in `state.dir`: per-region poll cursors, the event ids already handled within
//! the delivery-delay horizon, and the jobs (a remediation and its notification) not yet done.
//!
//! # Why redb
//!
//! The state is small (a cursor per region, ids for ~20 minutes of KMS events, a handful of
//! jobs) and written on every poll, so it wants an embedded store with crash-safe transactions
//! and no server: redb is pure Rust, writes one file, and commits atomically (copy-on-write
//! B-trees, checksummed, fsync on commit), so a `kill -9` at any point leaves either the old or
//! the new state. SQLite would add a C build for the same guarantees; a JSON file rewritten with
//! rename would rewrite every id on every poll; sled's on-disk format is not stable.
//!
//! # The protocol (exactly-once actions, at-least-once notifications)
//!
//! 1. A page of events is read. In **one** transaction, every new event id is marked seen and a
//!    job is stored for every finding. A crash before this commit re-reads the page (the cursor
//!    has not moved); after it, nothing is read twice.
//! 2. The job's remediation runs, and its outcome is written into the job before anything is
//!    sent. A crash in between re-runs the remediation at start-up, which first checks the key's
//!    state, so a key already rescued is reported as "nothing to do", not acted on twice.
//! 3. The notification is published, then the job is deleted. A crash in between republishes it
//!    once at start-up; each message carries a stable `notification_id` for de-duplication.
//! 4. After the last page, the cursor advances and ids past the horizon are pruned.

use std::path::Path;

use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::cursor::{Cursor, Seen};
use crate::rules::Finding;

const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Access keys trailguard deactivated: key id → unix time, to report reactivations.
const DEACTIVATED: TableDefinition<&str, i64> = TableDefinition::new("iam_deactivated");

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {dir}: {source}")]
    CreateDir { dir: String, source: std::io::Error },
    #[error("cannot open state database {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("state database: {0}")]
    Db(String),
}

macro_rules! db {
    ($e:expr) => {
        $e.map_err(|e| StateError::Db(e.to_string()))
    };
}

/// How a remediation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action was taken and verified.
    Applied,
    /// Nothing to do: the key was already in the wanted state.
    NotNeeded,
    /// Dry run: the action was not taken.
    DryRun,
    /// trailguard cannot act on this (another account's key, no key named).
    NotActionable,
    /// The action failed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NotNeeded => "not_needed",
            Outcome::DryRun => "dry_run",
            Outcome::NotActionable => "not_actionable",
            Outcome::Failed => "failed",
        }
    }
}

/// What a remediation did, for logs and notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    pub action: String,
    pub outcome: Outcome,
    /// One sentence a person can act on.
    pub detail: String,
    pub state_before: Option<String>,
    pub state_after: Option<String>,
    pub deletion_date: Option<String>,
    /// The AWS calls made, in order, with their result.
    pub steps: Vec<String>,
}

impl Remediation {
    /// A remediation of `action` that has not succeeded (yet).
    pub fn new(action: &str) -> Self {
        Self {
            action: action.to_owned(),
            outcome: Outcome::Failed,
            detail: String::new(),
            state_before: None,
            state_after: None,
            deletion_date: None,
            steps: Vec::new(),
        }
    }
}

/// A finding's work: remediation (if its rule asks for one) and notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub finding: Finding,
    pub created: DateTime<Utc>,
    /// Set once the remediation has run (or when there is none to run).
    pub remediation: Option<Remediation>,
    pub remediated: bool,
    /// How many further matches this notification stands for (aggregation).
    pub more: u64,
    pub notify_attempts: u32,
    /// The protection-policy decision, with the line that made it.
    #[serde(default)]
    pub policy: Option<String>,
}

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            dir: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("trailguard.redb");
        let db = Database::create(&path).map_err(|source| StateError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let tx = db!(db.begin_write())?;
        {
            db!(tx.open_table(CURSORS))?;
            db!(tx.open_table(SEEN))?;
            db!(tx.open_table(JOBS))?;
            db!(tx.open_table(DEACTIVATED))?;
        }
        db!(tx.commit())?;
        Ok(Self { db })
    }

    pub fn cursor(&self, region: &str) -> Result<Cursor, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(CURSORS))?;
        Ok(db!(t.get(region))?
            .and_then(|v| serde_json::from_slice(v.value()).ok())
            .unwrap_or_default())
    }

    pub fn seen(&self) -> Result<Seen, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(SEEN))?;
        let mut seen = Seen::default();
        for row in db!(t.iter())? {
            let (k, v) = db!(row)?;
            let time = DateTime::from_timestamp_millis(v.value()).unwrap_or_default();
            seen.insert(k.value(), time);
        }
        Ok(seen)
    }

    /// Step 1 of the protocol: marks events seen and stores their jobs, atomically.
    pub fn record_page(&self, seen: &[(String, DateTime<Utc>)], jobs: &[Job]) -> Result<(), StateError> {
        let tx = db!(self.db.begin_write())?;
        {
            let mut s = db!(tx.open_table(SEEN))?;
            for (id, t) in seen {
                db!(s.insert(id.as_str(), t.timestamp_millis()))?;
            }
            let mut j = db!(tx.open_table(JOBS))?;
            for job in jobs {
                let bytes = serde_json::to_vec(job).map_err(|e| StateError::Db(e.to_string()))?;
                db!(j.insert(job.id.as_str(), bytes.as_slice()))?;
            }
        }
        db!(tx.commit())
    }

    /// Step 4: advances a region's cursor and forgets ids that can no longer come back.
    pub fn advance(&self, region: &str, cursor: &Cursor, pruned: &[String]) -> Result<(), StateError> {
        let tx = db!(self.db.begin_write())?;
        {
            let mut c = db!(tx.open_table(CURSORS))?;
            let bytes = serde_json::to_vec(cursor).map_err(|e| StateError::Db(e.to_string()))?;
            db!(c.insert(region, bytes.as_slice()))?;
            let mut s = db!(tx.open_table(SEEN))?;
            for id in pruned {
                db!(s.remove(id.as_str()))?;
            }
        }
        db!(tx.commit())
    }

    pub fn put_job(&self, job: &Job) -> Result<(), StateError> {
        self.record_page(&[], std::slice::from_ref(job))
    }

    pub fn remove_job(&self, id: &str) -> Result<(), StateError> {
        let tx = db!(self.db.begin_write())?;
        {
            let mut j = db!(tx.open_table(JOBS))?;
            db!(j.remove(id))?;
        }
        db!(tx.commit())
    }

    /// Remembers that trailguard deactivated an access key.
    pub fn mark_deactivated(&self, key_id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        let tx = db!(self.db.begin_write())?;
        {
            let mut t = db!(tx.open_table(DEACTIVATED))?;
            db!(t.insert(key_id, at.timestamp()))?;
        }
        db!(tx.commit())
    }

    /// When trailguard deactivated this access key, if it did.
    pub fn deactivated(&self, key_id: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(DEACTIVATED))?;
        Ok(db!(t.get(key_id))?.and_then(|v| DateTime::from_timestamp(v.value(), 0)))
    }

    /// Jobs not finished, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(JOBS))?;
        let mut out = Vec::new();
        for row in db!(t.iter())? {
            let (_, v) = db!(row)?;
            if let Ok(job) = serde_json::from_slice::<Job>(v.value()) {
                out.push(job);
            }
        }
        out.sort_by_key(|j| j.created);
        Ok(out)
    }
}
