//! One writer per account: a lease that works across hosts, so two trailguards watching the
//! same account's event history never both act (duplicate notifications, a second
//! `CancelKeyDeletion` failing and raising a false alarm).
//!
//! The lease is one item per guarded account in a DynamoDB table (`lease.table`), taken and
//! renewed with conditional writes ([`crate::aws::lease`]): whoever holds an unexpired lease
//! keeps it; anyone may take an expired one. The holder renews it every third of
//! `lease.duration` and stops acting if it cannot renew before it expires; it releases the
//! lease on SIGTERM, so a deploy hands over at once, and a holder that dies loses it after
//! `lease.duration`. Without `lease.table`, two processes sharing a state directory are still
//! kept apart by the state file's own lock. A trailguard that does not hold the lease stands by:
//! it reports so in its log, in `trailguard_lease_held` and in `/readyz`, and keeps trying.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::AwsError;
use crate::validate::{Field, Problems, duration};

crate::validated!(RawLease => LeaseConfig, LeaseConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLease {
    pub table: Field<String>,
    pub duration: Field<String>,
    pub holder: Field<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The DynamoDB table; `None`: no lease across hosts.
    pub table: Option<String>,
    pub duration: Duration,
    /// Who this instance is, in the lease and in the other instances' logs.
    pub holder: String,
}

impl LeaseConfig {
    pub fn from_raw(raw: RawLease, p: &mut Problems) -> Self {
        let table = raw.table.get("lease.table", p).filter(|t| !t.trim().is_empty());
        if let Some(t) = &table
            && !(3..=255).contains(&t.len())
        {
            p.push(
                "lease.table",
                format!("{t:?} is not a DynamoDB table name (3 to 255 characters)"),
            );
        }
        let duration = duration(
            p,
            "lease.duration",
            raw.duration,
            "30s",
            (Duration::from_secs(10), Duration::from_secs(600)),
            " (a dead holder is replaced after this long)",
        );
        let holder = raw
            .holder
            .get("lease.holder", p)
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(default_holder);
        Self {
            table,
            duration,
            holder,
        }
    }
}

/// The host name (on ECS, the task's), with a random suffix so two processes on one host differ.
fn default_holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "trailguard".into());
    format!("{host}/{}", &uuid::Uuid::new_v4().to_string()[..8])
}

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    pub expires_at: DateTime<Utc>,
    pub version: u64,
}

/// What taking or renewing the lease gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This instance holds it (at this version) until then.
    Held(Holder),
    /// Someone else does.
    Taken(Holder),
}

/// The lease store (DynamoDB in [`crate::aws::lease`]).
pub trait LeaseApi: Send + Sync + 'static {
    /// Takes the lease of `account` if it is free, expired or already ours; renews it if ours
    /// at `version`.
    fn claim(
        &self,
        account: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, AwsError>> + Send;
    /// Gives it up, if ours.
    fn release(&self, account: &str, holder: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}
