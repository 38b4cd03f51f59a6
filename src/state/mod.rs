//! Durable state in `state.dir`: per-poller cursors and the event ids already handled within
//! the delivery-delay horizon, the jobs not yet done, the notification outbox, the open
//! aggregation windows, and the access keys trailguard deactivated.
//!
//! # Why redb
//!
//! The state is small (a cursor per poller, ids for ~20 minutes of events, a handful of jobs
//! and messages) and written on every slice, so it wants an embedded store with crash-safe
//! transactions and no server: redb is pure Rust, writes one file, and commits atomically
//! (copy-on-write B-trees, checksummed, fsync on commit), so a `kill -9` at any point leaves
//! either the old or the new state.
//!
//! # The protocol (exactly-once actions, at-least-once notifications)
//!
//! 1. A slice of events is read. In **one** transaction its new event ids are marked seen, a job
//!    is stored for every finding, the cursor advances past the slice and ids past the horizon
//!    are pruned. A crash before this commit re-reads the slice; after it, nothing is read twice.
//! 2. The job's remediation runs and its outcome is written into the job before anything is
//!    sent. A crash in between re-runs the remediation at start-up, which first reads the key's
//!    state, so a key already rescued is "nothing to do", not acted on twice.
//! 3. In one transaction the job is removed and its message put in the outbox (or, when
//!    aggregated, the job is removed and its window's count raised). The sender publishes
//!    outbox entries and deletes each after SNS accepted it ([`crate::outbox`]).
//!
//! # Trust
//!
//! The file carries a schema version. A file written by a newer trailguard, or a cursor that
//! does not decode, stops the daemon with exit status 73 and says what to do (`--reset-state`
//! moves the file aside and starts fresh); nothing is silently reset. A job, message or window
//! that does not decode is moved to a quarantine table, reported, and the rest goes on.

pub mod config;
mod iam;
mod pending;
mod protection;
mod recheck;
mod tables;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

pub use tables::Quarantined;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
/// `poller \0 event id` → eventTime (ms). Version 1 keys (no poller) are shared by every poller.
pub(crate) const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen");
pub(crate) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
pub(crate) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
pub(crate) const WINDOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("windows");
/// Access keys trailguard deactivated: key id → unix time.
pub(crate) const DEACTIVATED: TableDefinition<&str, i64> = TableDefinition::new("iam_deactivated");
/// IAM deletions decided and waiting to be re-checked: key id → [`crate::iam::confirm::Pending`].
pub(crate) const IAM_PENDING_DELETE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("iam_pending_delete");
/// IAM changes begun and not yet accounted for ([`crate::iam::intent`]): `account \0 access
/// key id` → JSON. Added without a schema bump, like [`PENDING_KEYS`].
pub(crate) const IAM_INTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("iam_intents");
/// Alias and tag changes from event history: `key ARN \0 time (ms, 20 digits) \0 event id \0 n`.
pub(crate) const PROTECTION_CHANGES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("protection_changes");
/// A key's aliases and tags as KMS reported them: `key ARN \0 time (ms, 20 digits)`.
pub(crate) const PROTECTION_SNAPSHOTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("protection_snapshots");
/// Keys trailguard saw scheduled for deletion, with the reminders sent: key ARN → JSON
/// ([`crate::usage::reminders::PendingKey`]). A table added without a schema bump: a build
/// that does not know it leaves it alone, and one that does creates it empty.
pub(crate) const PENDING_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("kms_pending_keys");
/// Findings decided without action, kept to be decided again if a late change of their key's
/// aliases or tags is read: `key ARN \0 job id` → [`crate::job::Kept`].
pub(crate) const RECHECK: TableDefinition<&str, &[u8]> = TableDefinition::new("recheck");
/// Rows that did not decode: `table \0 key` → the bytes as found.
pub(crate) const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");

/// The schema this build writes. 1: seen ids without poller; 2: per-poller seen ids, outbox,
/// windows, meta.
pub const SCHEMA_VERSION: u32 = 2;

pub const FILE_NAME: &str = "trailguard.redb";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {dir}: {source}")]
    CreateDir { dir: String, source: std::io::Error },
    #[error(
        "cannot open state database {path}: {source}; if it is damaged, start with --reset-state to move it aside and begin afresh (events since the last checkpoint up to cloudtrail.start_from or max_delivery_delay are read again)"
    )]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error(
        "state database {path} has schema version {found}, newer than this trailguard's {supported}: run the newer trailguard, or start with --reset-state to move it aside"
    )]
    Version {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "state database {path}: {table} entry {key:?} does not decode ({error}); start with --reset-state to move the file aside"
    )]
    Corrupt {
        path: String,
        table: &'static str,
        key: String,
        error: String,
    },
    #[error("cannot move the state database aside: {0}")]
    Reset(std::io::Error),
    #[error("state database: {0}")]
    Db(String),
}

macro_rules! db {
    ($e:expr) => {
        $e.map_err(|e| $crate::state::StateError::Db(e.to_string()))
    };
}
pub(crate) use db;

pub struct Store {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir`. With `reset`, an existing file is renamed to
    /// `trailguard.redb.<unix time>.bak` first.
    pub fn open(dir: &Path, reset: bool) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            dir: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        if reset && path.exists() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let aside = dir.join(format!("{FILE_NAME}.{secs}.bak"));
            std::fs::rename(&path, &aside).map_err(StateError::Reset)?;
            tracing::warn!(moved_to = %aside.display(), "State reset: the old state file was moved aside.");
        }
        let db = Database::create(&path).map_err(|source| StateError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let store = Self { db, path };
        store.check_version()?;
        Ok(store)
    }

    fn check_version(&self) -> Result<(), StateError> {
        let tx = db!(self.db.begin_write())?;
        {
            let mut meta = db!(tx.open_table(META))?;
            let found = match db!(meta.get("schema_version"))? {
                None => None,
                Some(v) => {
                    let text = String::from_utf8_lossy(v.value()).into_owned();
                    match text.parse::<u32>() {
                        Ok(n) => Some(n),
                        Err(e) => {
                            return Err(StateError::Corrupt {
                                path: self.path.display().to_string(),
                                table: "meta",
                                key: format!("schema_version = {text:?}"),
                                error: e.to_string(),
                            });
                        }
                    }
                }
            };
            if let Some(found) = found
                && found > SCHEMA_VERSION
            {
                return Err(StateError::Version {
                    path: self.path.display().to_string(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            db!(meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes()))?;
            for t in [
                CURSORS,
                JOBS,
                OUTBOX,
                WINDOWS,
                QUARANTINE,
                PROTECTION_CHANGES,
                PROTECTION_SNAPSHOTS,
                PENDING_KEYS,
                RECHECK,
                IAM_PENDING_DELETE,
                IAM_INTENTS,
            ] {
                db!(tx.open_table(t))?;
            }
            db!(tx.open_table(SEEN))?;
            db!(tx.open_table(DEACTIVATED))?;
        }
        db!(tx.commit())
    }

    /// Rows moved to quarantine so far.
    pub fn quarantined(&self) -> Result<usize, StateError> {
        let tx = db!(self.db.begin_read())?;
        let t = db!(tx.open_table(QUARANTINE))?;
        Ok(db!(t.len())? as usize)
    }
}
