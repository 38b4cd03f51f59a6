//! An organization trail delivering log files to S3 (in moto), as CloudTrail does.
//!
//! Once configured (`POST /_sandbox/org-trail`), every record the sandbox writes or injects is
//! held for the next delivery. Every `interval_seconds`, or on `POST /_sandbox/org-trail/flush`,
//! the held records are grouped by account and region and each group is written as one gzip
//! `{"Records":[...]}` object, owned by the trail's `account`, at CloudTrail's key:
//!
//! `[prefix/]AWSLogs/<o-id>/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<16 alphanumerics>.json.gz`
//!
//! The timestamp is the delivery time (the sandbox's clock, offset included); a file may hold
//! older records. With `digests`, each delivery also writes, per account and region delivered,
//! a digest file under `CloudTrail-Digest/` (SHA-256 of each log file, chained to the previous
//! digest) that readers must skip. The objects are written to moto, so the bucket's event
//! notifications (set by the test with `PutBucketNotificationConfiguration`) fire as for any
//! `PutObject`. A failed delivery (no such bucket) keeps the records for the next one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::cloudtrail::StoredEvent;
use crate::record::iso;
use crate::state::Shared;

/// `POST /_sandbox/org-trail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgTrailConfig {
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    /// The organization id in the key (`o-...`).
    pub org_id: String,
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
    /// The account that owns the bucket (default: the sandbox's default account).
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub digests: bool,
    #[serde(default = "default_trail")]
    pub trail_name: String,
    /// The trail's home region, used in digest names and to reach the bucket.
    #[serde(default = "default_region")]
    pub home_region: String,
}

fn default_interval() -> f64 {
    300.0
}
fn default_trail() -> String {
    "org-trail".into()
}
fn default_region() -> String {
    "us-east-1".into()
}

/// One held record.
#[derive(Debug, Clone)]
struct Held {
    account: String,
    region: String,
    event_time: DateTime<Utc>,
    json: String,
}

/// A configured trail and what it holds.
#[derive(Debug)]
pub struct OrgTrail {
    pub config: OrgTrailConfig,
    held: Vec<Held>,
    pub files_written: u64,
    pub last_error: Option<String>,
    /// The previous digest of each (account, region): key and SHA-256.
    previous_digest: HashMap<(String, String), (String, String)>,
}

impl OrgTrail {
    pub fn new(config: OrgTrailConfig) -> Self {
        Self {
            config,
            held: Vec::new(),
            files_written: 0,
            last_error: None,
            previous_digest: HashMap::new(),
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Holds freshly stored records for the next delivery.
pub fn offer(shared: &Shared, stored: &[StoredEvent]) {
    let mut st = shared.lock();
    let Some(trail) = st.org_trail.as_mut() else {
        return;
    };
    trail.held.extend(stored.iter().map(|e| Held {
        account: e.account.clone(),
        region: e.region.clone(),
        event_time: e.event_time,
        json: e.json.clone(),
    }));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// `[prefix/]AWSLogs/<o-id>/<account>/`
fn base(config: &OrgTrailConfig, account: &str) -> String {
    let prefix = config
        .prefix
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/"))
        .unwrap_or_default();
    format!("{prefix}AWSLogs/{}/{account}/", config.org_id)
}

/// The key of a log file delivered at `at`.
pub fn log_key(config: &OrgTrailConfig, account: &str, region: &str, at: DateTime<Utc>) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    format!(
        "{}CloudTrail/{region}/{}/{account}_CloudTrail_{region}_{}_{suffix}.json.gz",
        base(config, account),
        at.format("%Y/%m/%d"),
        at.format("%Y%m%dT%H%MZ"),
    )
}

fn digest_key(config: &OrgTrailConfig, account: &str, region: &str, at: DateTime<Utc>) -> String {
    format!(
        "{}CloudTrail-Digest/{region}/{}/{account}_CloudTrail-Digest_{region}_{}_{}_{}.json.gz",
        base(config, account),
        at.format("%Y/%m/%d"),
        config.trail_name,
        config.home_region,
        at.format("%Y%m%dT%H%M%SZ"),
    )
}

async fn put(
    shared: &Shared,
    config: &OrgTrailConfig,
    owner: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let path = format!("/{}/{}", config.bucket, crate::wire::percent_encode(key, true));
    let who = crate::moto::As {
        account: owner,
        region: &config.home_region,
        service: "s3",
    };
    let up = crate::moto::call(
        shared,
        who,
        http::Method::PUT,
        &path,
        &[("content-type", "application/json")],
        Bytes::from(body),
    )
    .await?;
    if up.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "PutObject s3://{}/{key}: {} {}",
            config.bucket,
            up.status,
            String::from_utf8_lossy(&up.body)
        ))
    }
}

/// Delivers what the trail holds now; returns the keys written (log files, then digests).
pub async fn flush(shared: &Shared) -> Result<Vec<String>, String> {
    let (config, held) = {
        let mut st = shared.lock();
        let Some(trail) = st.org_trail.as_mut() else {
            return Err("no org trail is configured".into());
        };
        (trail.config.clone(), std::mem::take(&mut trail.held))
    };
    let owner = config
        .account
        .clone()
        .unwrap_or_else(|| shared.default_account.clone());
    let at = shared.now();
    let mut groups: BTreeMap<(String, String), Vec<Held>> = BTreeMap::new();
    for h in held {
        groups
            .entry((h.account.clone(), h.region.clone()))
            .or_default()
            .push(h);
    }
    let mut written = Vec::new();
    let mut failed: Vec<Held> = Vec::new();
    let mut error = None;
    for ((account, region), records) in groups {
        let parsed: Vec<Value> = records
            .iter()
            .filter_map(|h| serde_json::from_str(&h.json).ok())
            .collect();
        let body = gzip(json!({ "Records": parsed }).to_string().as_bytes());
        let key = log_key(&config, &account, &region, at);
        let hash = hex(&sha2::Sha256::digest(&body));
        if let Err(e) = put(shared, &config, &owner, &key, body).await {
            error = Some(e);
            failed.extend(records);
            continue;
        }
        written.push(key.clone());
        if config.digests {
            let oldest = records.iter().map(|h| h.event_time).min().unwrap_or(at);
            let newest = records.iter().map(|h| h.event_time).max().unwrap_or(at);
            let dkey = digest_key(&config, &account, &region, at);
            let previous = shared
                .lock()
                .org_trail
                .as_ref()
                .and_then(|t| t.previous_digest.get(&(account.clone(), region.clone())).cloned());
            let digest = json!({
                "awsAccountId": account,
                "digestStartTime": iso(oldest),
                "digestEndTime": iso(at),
                "digestS3Bucket": config.bucket,
                "digestS3Object": dkey,
                "digestPublicKeyFingerprint": "00000000000000000000000000000000",
                "digestSignatureAlgorithm": "SHA256withRSA",
                "newestEventTime": iso(newest),
                "oldestEventTime": iso(oldest),
                "previousDigestS3Bucket": previous.as_ref().map(|_| config.bucket.clone()),
                "previousDigestS3Object": previous.as_ref().map(|p| p.0.clone()),
                "previousDigestHashValue": previous.as_ref().map(|p| p.1.clone()),
                "previousDigestHashAlgorithm": previous.as_ref().map(|_| "SHA-256"),
                "previousDigestSignature": previous.as_ref().map(|_| ""),
                "logFiles": [{"s3Bucket": config.bucket, "s3Object": key, "hashValue": hash, "hashAlgorithm": "SHA-256",
                              "newestEventTime": iso(newest), "oldestEventTime": iso(oldest)}],
            });
            let dbody = gzip(digest.to_string().as_bytes());
            let dhash = hex(&sha2::Sha256::digest(&dbody));
            match put(shared, &config, &owner, &dkey, dbody).await {
                Ok(()) => {
                    if let Some(t) = shared.lock().org_trail.as_mut() {
                        t.previous_digest.insert((account, region), (dkey.clone(), dhash));
                    }
                    written.push(dkey);
                }
                Err(e) => error = Some(e),
            }
        }
    }
    let mut st = shared.lock();
    if let Some(t) = st.org_trail.as_mut() {
        t.files_written += written.len() as u64;
        failed.append(&mut t.held);
        t.held = failed;
        t.last_error = error.clone();
    }
    match error {
        Some(e) if written.is_empty() => Err(e),
        _ => Ok(written),
    }
}

/// Delivers every `interval_seconds` while a trail is configured.
pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let changed = shared.org_trail_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let interval = shared
            .lock()
            .org_trail
            .as_ref()
            .map(|t| t.config.interval_seconds);
        match interval {
            None => changed.await,
            Some(secs) => {
                let period = std::time::Duration::from_secs_f64(secs.max(0.05));
                tokio::select! {
                    _ = tokio::time::sleep(period) => {
                        let _ = flush(&shared).await;
                    }
                    _ = &mut changed => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_follow_cloudtrail_layout() {
        let config: OrgTrailConfig = serde_json::from_value(json!({
            "bucket": "b", "prefix": "logs/", "org_id": "o-abc123", "interval_seconds": 1}))
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let key = log_key(&config, "111122223333", "eu-west-1", at);
        let (head, tail) = key.split_at(key.len() - "XXXXXXXXXXXXXXXX.json.gz".len());
        assert_eq!(
            head,
            "logs/AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2026/03/04/111122223333_CloudTrail_eu-west-1_20260304T0506Z_"
        );
        assert!(tail[..16].bytes().all(|b| b.is_ascii_alphanumeric()), "{tail}");
        assert!(tail.ends_with(".json.gz"));
        let d = digest_key(&config, "111122223333", "eu-west-1", at);
        assert_eq!(
            d,
            "logs/AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2026/03/04/111122223333_CloudTrail-Digest_eu-west-1_org-trail_us-east-1_20260304T050607Z.json.gz"
        );
    }
}
