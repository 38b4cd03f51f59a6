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

/// Where a `[[sources]]` entry reads events from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// CloudTrail event history, polled (`[cloudtrail]`): no set-up, minutes behind, 2 req/s.
    LookupEvents,
    /// An SQS queue fed by EventBridge rules on "AWS API Call via CloudTrail": seconds, best
    /// effort.
    EventBridgeSqs,
    /// An SQS queue of S3 notifications for an organization trail's log files: complete,
    /// minutes late.
    S3Sqs,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::LookupEvents => "lookup_events",
            SourceKind::EventBridgeSqs => "eventbridge_sqs",
            SourceKind::S3Sqs => "s3_sqs",
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSource {
    pub kind: Field<String>,
    pub name: Field<String>,
    pub queue_url: Field<String>,
    pub region: Field<String>,
    pub receivers: Field<u64>,
    pub max_messages: Field<u64>,
    pub wait_time: Field<String>,
    pub visibility_timeout: Field<String>,
    pub max_in_flight: Field<u64>,
}

/// One queue source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSource {
    pub kind: SourceKind,
    /// Its name in metrics, health and logs (`eventbridge:NAME` from the queue's name).
    pub name: String,
    pub queue_url: String,
    /// The queue's region (from its URL, `region`, or the first of `aws.regions`).
    pub region: Option<String>,
    /// Receive loops running at once.
    pub receivers: usize,
    /// Messages per receive (SQS: 1 to 10).
    pub max_messages: i32,
    /// Long-poll wait (SQS: up to 20 s).
    pub wait_time: Duration,
    /// How long a message trailguard holds is hidden from other consumers, renewed while its
    /// work is in progress.
    pub visibility_timeout: Duration,
    /// Messages held (received, not yet deleted) at most, per source.
    pub max_in_flight: usize,
}

/// `[[sources]]`: LookupEvents polling unless queues are listed (and then only if listed too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub lookup_events: bool,
    pub queues: Vec<QueueSource>,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            lookup_events: true,
            queues: Vec::new(),
        }
    }
}

/// `(region, account, name)` of an SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`;
/// any host, for endpoints such as a local sandbox, with the region then unknown).
pub fn parse_queue_url(url: &str) -> Option<(Option<String>, String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let mut parts = path.trim_end_matches('/').split('/');
    let (account, name) = (parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !crate::accounts::is_account_id(account)
        || name.is_empty()
        || name.len() > 80
    {
        return None;
    }
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .filter(|r| crate::arn::is_region(r))
        .map(str::to_owned);
    Some((region, account.to_owned(), name.to_owned()))
}

impl Sources {
    /// Queues whose region neither their URL nor `region` names are in `default`.
    pub fn with_region(mut self, default: Option<&String>) -> Self {
        for q in &mut self.queues {
            if q.region.is_none() {
                q.region = default.cloned();
            }
        }
        self
    }

    /// Validates `[[sources]]` (problems under `sources[i].key`).
    pub fn from_raw(raw: Vec<RawSource>, p: &mut Problems) -> Self {
        if raw.is_empty() {
            return Self::default();
        }
        let mut out = Sources {
            lookup_events: false,
            queues: Vec::new(),
        };
        let mut urls = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            let kind = match r.kind.get(&key("kind"), p).as_deref() {
                Some("lookup_events") => SourceKind::LookupEvents,
                Some("eventbridge_sqs") => SourceKind::EventBridgeSqs,
                Some("s3_sqs") => SourceKind::S3Sqs,
                Some(other) => {
                    p.push(
                        key("kind"),
                        format!(
                            "must be \"lookup_events\", \"eventbridge_sqs\" or \"s3_sqs\", got {other:?}"
                        ),
                    );
                    continue;
                }
                None => {
                    p.push(
                        key("kind"),
                        "missing: \"lookup_events\", \"eventbridge_sqs\" or \"s3_sqs\"",
                    );
                    continue;
                }
            };
            let url = r.queue_url.get(&key("queue_url"), p);
            if kind == SourceKind::LookupEvents {
                if url.is_some() {
                    p.push(key("queue_url"), "lookup_events reads event history, not a queue: remove queue_url ([cloudtrail] configures it)");
                }
                if out.lookup_events {
                    p.push(key("kind"), "lookup_events is listed twice");
                }
                out.lookup_events = true;
                continue;
            }
            let Some(url) = url else {
                p.push(
                    key("queue_url"),
                    format!("{} needs the SQS queue's URL", kind.as_str()),
                );
                continue;
            };
            let Some((url_region, _account, queue)) = parse_queue_url(&url) else {
                p.push(
                    key("queue_url"),
                    format!("{url:?} is not an SQS queue URL like https://sqs.us-east-1.amazonaws.com/111122223333/NAME"),
                );
                continue;
            };
            if queue.ends_with(".fifo") {
                p.push(key("queue_url"), "a FIFO queue cannot receive S3 notifications, and trailguard needs no ordering: use a standard queue");
            }
            if !urls.insert(url.clone()) {
                p.push(key("queue_url"), "the same queue is listed twice");
            }
            let region = r.region.get(&key("region"), p).or(url_region);
            if let Some(reg) = &region
                && !crate::arn::is_region(reg)
            {
                p.push(key("region"), format!("{reg:?} is not an AWS region name"));
            }
            let prefix = match kind {
                SourceKind::EventBridgeSqs => "eventbridge",
                _ => "s3",
            };
            let name = r
                .name
                .get(&key("name"), p)
                .unwrap_or_else(|| format!("{prefix}:{queue}"));
            if !names.insert(name.clone()) {
                p.push(key("name"), format!("{name:?} names two sources"));
            }
            let receivers = number(p, &key("receivers"), r.receivers, 2, (1, 32), "");
            let max_messages = number(
                p,
                &key("max_messages"),
                r.max_messages,
                10,
                (1, 10),
                " (SQS receives at most 10 at a time)",
            );
            let wait_time = duration(
                p,
                &key("wait_time"),
                r.wait_time,
                "20s",
                (Duration::ZERO, Duration::from_secs(20)),
                " (SQS long polls wait at most 20s)",
            );
            let visibility_timeout = duration(
                p,
                &key("visibility_timeout"),
                r.visibility_timeout,
                "60s",
                (Duration::from_secs(10), Duration::from_secs(12 * 3600)),
                "",
            );
            let max_in_flight = number(p, &key("max_in_flight"), r.max_in_flight, 2000, (10, 100_000), "");
            out.queues.push(QueueSource {
                kind,
                name,
                queue_url: url,
                region,
                receivers: receivers as usize,
                max_messages: max_messages as i32,
                wait_time,
                visibility_timeout,
                max_in_flight: max_in_flight as usize,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(text: &str) -> (Sources, Vec<String>) {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            sources: Vec<RawSource>,
        }
        let doc: Doc = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let s = Sources::from_raw(doc.sources, &mut p);
        (s, p.0.into_iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn no_sources_is_lookup_events_alone() {
        let (s, p) = sources("");
        assert!(p.is_empty());
        assert_eq!(s, Sources::default());
        assert!(s.lookup_events && s.queues.is_empty());
    }

    #[test]
    fn queues_take_their_region_and_name_from_the_url() {
        let (s, p) = sources(
            "[[sources]]\nkind = \"eventbridge_sqs\"\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/111122223333/tg-events\"\n[[sources]]\nkind = \"s3_sqs\"\nqueue_url = \"http://127.0.0.1:4566/111122223333/tg-logs\"\nregion = \"us-east-1\"\nreceivers = 4",
        );
        assert!(p.is_empty(), "{p:?}");
        assert!(!s.lookup_events);
        assert_eq!(s.queues[0].name, "eventbridge:tg-events");
        assert_eq!(s.queues[0].region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.queues[1].name, "s3:tg-logs");
        assert_eq!(s.queues[1].region.as_deref(), Some("us-east-1"));
        assert_eq!(s.queues[1].receivers, 4);
    }

    #[test]
    fn every_problem_is_listed_with_its_entry() {
        let (_, p) = sources(
            "[[sources]]\nkind = \"kinesis\"\n[[sources]]\nkind = \"s3_sqs\"\n[[sources]]\nkind = \"eventbridge_sqs\"\nqueue_url = \"not a url\"\n[[sources]]\nkind = \"lookup_events\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/q\"\n[[sources]]\nkind = \"eventbridge_sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/q.fifo\"\nmax_messages = 11",
        );
        let keys: Vec<&str> = p
            .iter()
            .map(|p| p.split_once(": ").map_or(p.as_str(), |(k, _)| k))
            .collect();
        assert_eq!(
            keys,
            [
                "sources[0].kind",
                "sources[1].queue_url",
                "sources[2].queue_url",
                "sources[3].queue_url",
                "sources[4].queue_url",
                "sources[4].max_messages"
            ],
            "{p:#?}"
        );
    }
}
