//! `[cloudtrail]`: how event history is polled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cursor::Schedule;
use crate::validate::{Field, Problems, duration, number};

/// systemd's `WatchdogSec` in the shipped unit: a poll loop must ping well within it.
pub const WATCHDOG: Duration = Duration::from_secs(300);

crate::validated!(RawCloudTrail => CloudTrailConfig, CloudTrailConfig::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawCloudTrail {
    pub poll_interval: Field<String>,
    pub max_delivery_delay: Field<String>,
    pub lookback_interval: Field<String>,
    pub max_requests_per_second: Field<f64>,
    pub start_from: Field<String>,
}

/// Where a poller with no cursor yet starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// An absolute time.
    At(DateTime<Utc>),
    /// This long before the first poll.
    Ago(Duration),
}

impl StartFrom {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            StartFrom::At(t) => t,
            StartFrom::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudTrailConfig {
    pub poll_interval: Duration,
    pub schedule: Schedule,
    pub max_requests_per_second: f64,
    pub start_from: Option<StartFrom>,
}

impl CloudTrailConfig {
    /// Validates `[cloudtrail]`, reporting problems under `cloudtrail.*`.
    pub fn from_raw(raw: RawCloudTrail, p: &mut Problems) -> Self {
        let secs = Duration::from_secs;
        let poll_interval = duration(
            p,
            "cloudtrail.poll_interval",
            raw.poll_interval,
            "15s",
            (secs(5), WATCHDOG / 2),
            " (LookupEvents allows 2 requests/s per account and region; above 2m30s systemd's 5-minute watchdog could fire between two polls)",
        );
        let max_delivery_delay = duration(
            p,
            "cloudtrail.max_delivery_delay",
            raw.max_delivery_delay,
            "15m",
            (secs(60), secs(24 * 3600)),
            "",
        );
        let lookback_interval = duration(
            p,
            "cloudtrail.lookback_interval",
            raw.lookback_interval,
            "5m",
            (secs(5), secs(24 * 3600)),
            "",
        );
        if lookback_interval < poll_interval {
            p.push(
                "cloudtrail.lookback_interval",
                format!(
                    "must not be shorter than cloudtrail.poll_interval ({}), got {}",
                    humantime::format_duration(poll_interval),
                    humantime::format_duration(lookback_interval)
                ),
            );
        }
        let max_requests_per_second = number(
            p,
            "cloudtrail.max_requests_per_second",
            raw.max_requests_per_second,
            1.0,
            (0.05, 2.0),
            " (the LookupEvents quota is 2 per second per account and region, shared with everyone)",
        );
        let start_from = raw.start_from.get("cloudtrail.start_from", p).and_then(|text| {
            let text = text.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                return Some(StartFrom::At(t.with_timezone(&Utc)));
            }
            match humantime::parse_duration(text) {
                Ok(d) if d <= crate::cursor::RETENTION => Some(StartFrom::Ago(d)),
                Ok(_) => {
                    p.push("cloudtrail.start_from", format!("{text:?} reaches past event history's 90 days"));
                    None
                }
                Err(_) => {
                    p.push(
                        "cloudtrail.start_from",
                        format!("{text:?} is neither an RFC 3339 time (\"2026-11-25T08:00:00Z\") nor a duration (\"2h\")"),
                    );
                    None
                }
            }
        });
        Self {
            poll_interval,
            schedule: Schedule {
                max_delivery_delay,
                lookback_interval,
                poll_interval,
            },
            max_requests_per_second,
            start_from,
        }
    }
}
