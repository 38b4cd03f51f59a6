//! Everything the sandbox remembers between requests. One mutex guards it; no lock is held
//! across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cloudtrail::EventStore;
use crate::wire::Service;

/// Knobs a test can turn with `POST /_sandbox/settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A record becomes visible in `LookupEvents` this many seconds after its `eventTime`.
    pub visibility_delay_seconds: f64,
    /// `LookupEvents` requests allowed per second per account and region (AWS: 2). 0 disables.
    pub lookup_events_rate: f64,
    /// Probability that a `LookupEvents` request is throttled regardless of rate.
    pub throttle_probability: f64,
    /// `sourceIPAddress` written into records (default: the caller's address).
    pub source_ip: Option<String>,
    /// Shifts the sandbox's "now" (the AWS side: `eventTime`, event history windows, retention,
    /// throttling, credential reports, org-trail files, and the `Date` header of every
    /// response). -1800 stands for a host clock 30 minutes fast.
    pub clock_offset_seconds: f64,
    /// How long CloudTrail takes to hand a record to EventBridge, in milliseconds.
    pub eventbridge_delay_ms: u64,
    /// Probability that CloudTrail drops a record on its way to EventBridge (best effort).
    pub eventbridge_loss_probability: f64,
    /// The regions `account:ListRegions` reports enabled in every account (the rest of the
    /// partition's regions are reported `DISABLED`).
    pub enabled_regions: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            visibility_delay_seconds: 0.0,
            lookup_events_rate: 2.0,
            throttle_probability: 0.0,
            source_ip: None,
            clock_offset_seconds: 0.0,
            eventbridge_delay_ms: 200,
            eventbridge_loss_probability: 0.0,
            enabled_regions: crate::account::DEFAULT_ENABLED
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
        }
    }
}

/// An injected fault for one service (`POST /_sandbox/faults/<service>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// Only these operations (empty: every operation of the service).
    pub operations: Vec<String>,
    /// Fail exactly the next N matching requests.
    pub fail_next: u32,
    /// Fail each matching request with this probability (1.0: an outage).
    pub error_rate: f64,
    /// HTTP status of the injected error.
    pub status: u16,
    /// Error code (default `InternalFailure` for 5xx, `Throttling` for 4xx).
    pub code: Option<String>,
    /// Added latency for every matching request, failed or not.
    pub latency_ms: u64,
    /// Instead of an error, accept the request and never answer, until the fault is cleared
    /// (then the connection is closed without an answer). On its own it hangs every matching
    /// request; with `fail_next` or `error_rate` only the requests those select.
    pub hang: bool,
    /// Serve the request first (the change is made and recorded), then fail or hang its
    /// answer: the answer is lost, as when a call times out after AWS applied it.
    pub after: bool,
    /// Whether `hang` applies only to the requests `fail_next`/`error_rate` select (fixed when
    /// the fault is set, so an exhausted `fail_next` stops hanging). Set by `set_fault`.
    #[serde(skip)]
    pub selective: bool,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            operations: Vec::new(),
            fail_next: 0,
            error_rate: 0.0,
            status: 500,
            code: None,
            latency_ms: 0,
            hang: false,
            after: false,
            selective: false,
        }
    }
}

/// Who a caller is, by the access key id it signs with (`POST /_sandbox/identities`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum IdentitySpec {
    IAMUser {
        user_name: String,
        #[serde(default)]
        account_id: Option<String>,
    },
    AssumedRole {
        role_name: String,
        session_name: String,
        #[serde(default)]
        account_id: Option<String>,
    },
    Root {
        #[serde(default)]
        account_id: Option<String>,
    },
}

/// Backdated facts about one IAM access key (`POST /_sandbox/iam/access-keys/<id>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyOverride {
    #[serde(default)]
    pub create_date: Option<DateTime<Utc>>,
    /// `Some(None)` means "never used"; `None` leaves moto's value.
    #[serde(default, with = "double_option")]
    pub last_used: Option<Option<LastUsed>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastUsed {
    pub date: DateTime<Utc>,
    pub service: String,
    pub region: String,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Default)]
pub struct State {
    pub settings: Settings,
    pub events: EventStore,
    pub faults: HashMap<Service, Fault>,
    pub identities: HashMap<String, IdentitySpec>,
    pub key_overrides: HashMap<String, AccessKeyOverride>,
    pub counters: BTreeMap<String, u64>,
    /// Token buckets for `LookupEvents`, per (account, region): (tokens, last refill).
    pub lookup_buckets: HashMap<(String, String), (f64, DateTime<Utc>)>,
    /// When the current credential report was generated (moto hard-codes 2015).
    pub report_generated: Option<DateTime<Utc>>,
    /// EventBridge rules read from moto, per (account, region, bus); cleared by any `events`
    /// call.
    pub eventbridge: crate::eventbridge::RuleCache,
    /// The organization trail writing to S3, if one is configured.
    pub org_trail: Option<crate::orgtrail::OrgTrail>,
}

/// What a request does about an injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Serve it.
    Pass,
    /// Answer with this status and error code.
    Fail(u16, String),
    /// Never answer.
    Hang,
    /// Serve it, then answer with this status and error code instead of its answer.
    FailAfter(u16, String),
    /// Serve it, then never answer.
    HangAfter,
}

pub struct Shared {
    pub moto_url: String,
    pub default_account: String,
    pub state: Mutex<State>,
    /// `clock_offset_seconds` in milliseconds, readable without the state lock.
    clock_offset_ms: AtomicI64,
    /// Woken whenever faults change, so hung requests can let go.
    pub(crate) faults_changed: tokio::sync::Notify,
    /// Records on their way to EventBridge.
    pub(crate) eventbridge_tx: tokio::sync::mpsc::UnboundedSender<crate::eventbridge::Offer>,
    pub(crate) eventbridge_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::eventbridge::Offer>>>,
    /// Woken when the org trail is configured or changed.
    pub(crate) org_trail_changed: tokio::sync::Notify,
    /// Serializes writes to one S3 object or DynamoDB item so moto's check-then-write is atomic.
    pub(crate) write_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    pub fn new(moto_url: String, default_account: String) -> Self {
        let (eventbridge_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            moto_url,
            default_account,
            state: Mutex::new(State::default()),
            clock_offset_ms: AtomicI64::new(0),
            faults_changed: tokio::sync::Notify::new(),
            eventbridge_tx,
            eventbridge_rx: Mutex::new(Some(rx)),
            org_trail_changed: tokio::sync::Notify::new(),
            write_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The lock that serializes writes to one object (an S3 key, a DynamoDB item).
    pub(crate) fn write_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.write_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(name.to_owned()).or_default().clone()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The AWS side's "now": the host clock plus `clock_offset_seconds`.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// The clock offset in seconds (`clock_offset_seconds`).
    pub fn clock_offset(&self) -> f64 {
        self.clock_offset_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn count(&self, service: Service, operation: &str) {
        *self
            .lock()
            .counters
            .entry(format!("{}.{operation}", service.name()))
            .or_default() += 1;
    }

    /// Requests served so far for `service.Operation` (e.g. `cloudtrail.LookupEvents`).
    pub fn counter(&self, name: &str) -> u64 {
        self.lock().counters.get(name).copied().unwrap_or(0)
    }

    pub fn set_settings(&self, settings: Settings) {
        self.clock_offset_ms.store(
            (settings.clock_offset_seconds * 1000.0).round() as i64,
            Ordering::Relaxed,
        );
        self.lock().settings = settings;
    }

    pub fn set_identity(&self, access_key_id: &str, spec: IdentitySpec) {
        self.lock().identities.insert(access_key_id.to_owned(), spec);
    }

    pub fn set_fault(&self, service: Service, mut fault: Fault) {
        fault.selective = fault.fail_next > 0 || fault.error_rate > 0.0;
        self.lock().faults.insert(service, fault);
        self.faults_changed.notify_waiters();
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
        self.faults_changed.notify_waiters();
    }

    pub fn clear_fault(&self, service: Service) {
        self.lock().faults.remove(&service);
        self.faults_changed.notify_waiters();
    }

    /// Whether a hang fault still holds requests to this operation.
    // NOTE: a request selected by `fail_next` keeps hanging while the fault stays set, even once
    // `fail_next` is spent: it was never answered and never will be.
    pub(crate) fn still_hangs(&self, service: Service, operation: &str) -> bool {
        self.lock().faults.get(&service).is_some_and(|f| {
            f.hang && (f.operations.is_empty() || f.operations.iter().any(|o| o == operation))
        })
    }

    /// Decides whether this request gets an injected fault: (latency, what to do).
    pub fn fault_for(&self, service: Service, operation: &str) -> (u64, FaultAction) {
        let mut st = self.lock();
        let Some(f) = st.faults.get_mut(&service) else {
            return (0, FaultAction::Pass);
        };
        if !f.operations.is_empty() && !f.operations.iter().any(|o| o == operation) {
            return (0, FaultAction::Pass);
        }
        let selective = f.selective;
        let fail = if f.fail_next > 0 {
            f.fail_next -= 1;
            true
        } else {
            f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate
        };
        if f.hang && (fail || !selective) {
            let hang = if f.after {
                FaultAction::HangAfter
            } else {
                FaultAction::Hang
            };
            return (f.latency_ms, hang);
        }
        let code = f.code.clone().unwrap_or_else(|| {
            if f.status >= 500 {
                match service {
                    Service::Sns | Service::Iam | Service::Sts => "InternalError".into(),
                    _ => "InternalFailure".into(),
                }
            } else {
                "Throttling".into()
            }
        });
        let action = if fail && f.after {
            FaultAction::FailAfter(f.status, code)
        } else if fail {
            FaultAction::Fail(f.status, code)
        } else {
            FaultAction::Pass
        };
        (f.latency_ms, action)
    }

    /// Clears everything, as a fresh sandbox (moto is reset separately).
    pub fn reset(&self) {
        *self.lock() = State::default();
        self.clock_offset_ms.store(0, Ordering::Relaxed);
        self.faults_changed.notify_waiters();
        self.org_trail_changed.notify_waiters();
    }
}
