//! The worker's key context: the key's recent use (looked up before a scheduled deletion or a
//! disable is decided, without holding up other jobs), the used-key policy, the alias every
//! notification names, and the keys pending deletion that reminders follow.
//!
//! A job that needs its key's use is parked while the lookup runs in its own task (at most
//! [`LOOKUPS`] at once, each at background priority on the region's `LookupEvents` quota), and
//! picked up again when the answer comes; a rescue behind it is not delayed. The job stays in
//! the store meanwhile, so after a crash it is looked up again at the next start.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tracing::{error, info, warn};

use super::{Own, Worker};
use crate::actions::Remediator;
use crate::arn::{Arn, KeyArn};
use crate::aws::Place;
use crate::event::Record;
use crate::job::{AliasLookup, Job, Outcome};
use crate::rules;
use crate::sources::usage::UsageQuery;
use crate::usage::reminders::PendingKey;
use crate::usage::{self, Usage, UsagePolicy, Who};

/// Usage lookups running at once.
pub const LOOKUPS: usize = 4;
/// A usage lookup gives up after this (waiting for the poller included).
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(120);
/// An alias lookup never delays a notification by more than this.
pub const ALIAS_DEADLINE: Duration = Duration::from_secs(3);
/// A failed alias lookup is not tried again for this long.
const ALIAS_RETRY: Duration = Duration::from_secs(60);

/// Looks up a key's use (the seam: event history in the daemon, a fake in tests).
pub trait UsageLookup: Send + Sync + 'static {
    fn usage(&self, q: UsageQuery) -> Pin<Box<dyn Future<Output = Usage> + Send>>;
}

/// [`UsageLookup`] over event history.
pub struct EventHistory<L> {
    pub api: L,
    pub own: Own,
}

impl<L: crate::sources::LookupApi + Clone> UsageLookup for EventHistory<L> {
    fn usage(&self, q: UsageQuery) -> Pin<Box<dyn Future<Output = Usage> + Send>> {
        let (api, own) = (self.api.clone(), self.own.clone());
        Box::pin(async move {
            let is_own = |r: &Record| own.made_record(r);
            crate::sources::usage::key_usage(&api, &q, &is_own).await
        })
    }
}

impl Own {
    /// Whether trailguard made the call a record is about.
    pub fn made_record(&self, r: &Record) -> bool {
        let id = r.user_identity.as_ref();
        let key = self.access_key_id.is_some()
            && id.and_then(|i| i.access_key_id.as_deref()) == self.access_key_id.as_deref();
        let arn = !self.arn.is_empty() && r.principal_arn() == Some(self.arn.as_str());
        let issuer = id
            .and_then(|i| i.session_context.as_ref())
            .and_then(|c| c.session_issuer.as_ref())
            .and_then(|s| s.arn.as_deref());
        let role = self.role.as_deref().is_some_and(|own| {
            issuer == Some(own)
                || r.principal_arn()
                    .and_then(Arn::parse)
                    .and_then(|a| a.session_role())
                    .as_deref()
                    == Some(own)
        });
        key || arn || role
    }
}

/// A key's aliases as last read (when, and what: the aliases or the error type).
type Cached = (DateTime<Utc>, Result<Vec<String>, String>);

/// The worker's key context (see the module docs).
pub struct Keys {
    pub usage: UsagePolicy,
    /// None: no usage lookups (tests of other things).
    pub lookups: Option<Arc<dyn UsageLookup>>,
    permits: Arc<Semaphore>,
    parked: HashMap<String, Job>,
    done_tx: mpsc::UnboundedSender<(String, Usage)>,
    done_rx: Option<mpsc::UnboundedReceiver<(String, Usage)>>,
    aliases: HashMap<String, Cached>,
}

impl Keys {
    pub fn new(usage: UsagePolicy, lookups: Option<Arc<dyn UsageLookup>>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            usage,
            lookups,
            permits: Arc::new(Semaphore::new(LOOKUPS)),
            parked: HashMap::new(),
            done_tx,
            done_rx: Some(done_rx),
            aliases: HashMap::new(),
        }
    }

    /// The finished lookups, for the worker's loop (taken once).
    pub fn results(&mut self) -> mpsc::UnboundedReceiver<(String, Usage)> {
        self.done_rx.take().unwrap_or_else(|| mpsc::unbounded_channel().1)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(UsagePolicy::default(), None)
    }
}

fn event_time(job: &Job, fallback: DateTime<Utc>) -> DateTime<Utc> {
    job.finding
        .event_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(fallback)
}

impl<R: Remediator> Worker<R> {
    /// Parks `job` while its key's use is looked up, if it needs that first; true if parked.
    pub(super) fn park(&mut self, job: &Job) -> bool {
        let f = &job.finding;
        let wants = [rules::KEY_DELETION_SCHEDULED, rules::KEY_DISABLED].contains(&f.rule_id.as_str());
        let Some(lookups) = self.keys.lookups.clone() else {
            return false;
        };
        if !wants || job.usage.is_some() || !self.keys.usage.enabled() || self.own.made(f) {
            return false;
        }
        let Some(key) = f.key_arn.as_deref().and_then(KeyArn::parse) else {
            return false;
        };
        if self.keys.parked.contains_key(&job.id) {
            return true;
        }
        let now = self.clock.now();
        let at = event_time(job, now);
        let from = at - chrono::Duration::from_std(self.keys.usage.window).unwrap_or_default();
        let (id, tx, permits) = (
            job.id.clone(),
            self.keys.done_tx.clone(),
            self.keys.permits.clone(),
        );
        if !self.places.iter().any(|p| p.account == key.account) {
            // NOTE: event history is per account; reading another account's would say "unused"
            // wrongly.
            let why = format!(
                "the key is in account {}, which trailguard does not guard: its event history is not read",
                key.account
            );
            let _ = tx.send((id, Usage::unknown(from, now, why)));
        } else {
            let q = UsageQuery {
                place: Place::new(&key.account, &key.region),
                key_arn: key.arn.clone(),
                from,
                to: now,
                scheduler: Who {
                    principal: f.principal_arn.clone(),
                    session_issuer: f.session_issuer_arn.clone(),
                },
                pages: self.keys.usage.pages,
                deadline: LOOKUP_DEADLINE,
            };
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let u = lookups.usage(q).await;
                let _ = tx.send((id, u));
            });
        }
        info!(rule_id = %f.rule_id, key_arn = %key.arn, "Looking up the key's recent use.");
        self.keys.parked.insert(job.id.clone(), job.clone());
        true
    }

    /// A parked job's lookup finished: record the use and go on with the job.
    pub(super) async fn resume(&mut self, id: String, usage: Usage) {
        let Some(mut job) = self.keys.parked.remove(&id) else {
            return;
        };
        crate::telemetry::keys::usage_lookup(&usage);
        info!(key_arn = job.finding.key_arn.as_deref().unwrap_or("-"), usage = %usage.summary(""), "Key use looked up.");
        job.usage = Some(usage);
        if let Err(e) = self.store.put_job(&job) {
            error!(error = %e, "Cannot record a key's use.");
        }
        self.process(job).await;
    }

    /// Applies `kms.on_schedule_deletion_of_used_key` to a scheduled deletion (or a reminder)
    /// whose key's use is known, unless the protection policy already reverts it.
    pub(super) async fn decide_usage(&mut self, job: &mut Job) {
        let f = &job.finding;
        if job.usage_policy.is_some() || self.own.made(f) {
            return;
        }
        let (Some(usage), Some(arn)) = (job.usage.clone(), f.key_arn.clone()) else {
            return;
        };
        if job.remediation.is_some() || job.pending_action().is_some() {
            return; // the protection policy reverts (or reverted) it already
        }
        let at = event_time(job, self.clock.now());
        // Exemptions match only what no caller outside kms.allowed_principals changed.
        let facts = self.vouched_at(&arn, at);
        let who = (f.principal_arn.as_deref(), f.session_issuer_arn.as_deref());
        let Some(d) = usage::decide(
            &self.policy,
            &self.keys.usage,
            &f.rule_id,
            &arn,
            who,
            &facts,
            at,
            &usage,
        ) else {
            return;
        };
        info!(rule_id = %f.rule_id, key_arn = %arn, actions = ?d.actions, policy = %d.reason, "Usage policy decided.");
        if d.actions.iter().any(|a| a.remediates()) {
            job.finding.actions = d.actions;
            job.remediated = false;
        }
        job.usage_policy = Some(d.reason);
        if let Err(e) = self.store.put_job(job) {
            error!(error = %e, "Cannot record the usage policy's decision.");
        }
    }

    /// An alias created, moved or deleted: every cached alias may now name another key (or
    /// none), so the cache is dropped rather than name a moved alias for its old key.
    pub(super) fn alias_event(&mut self, job: &Job) {
        let f = &job.finding;
        if f.event_source == "kms.amazonaws.com"
            && ["CreateAlias", "UpdateAlias", "DeleteAlias"].contains(&f.event_name.as_str())
            && f.error_code.is_none()
        {
            self.keys.aliases.clear();
        }
    }

    /// Names the key's aliases in the notification when the event named none: through KMS,
    /// cached for `kms.refresh_interval`, within [`ALIAS_DEADLINE`].
    pub(super) async fn resolve_alias(&mut self, job: &mut Job) {
        let f = &job.finding;
        let Some(arn) = f.key_arn.clone() else {
            return;
        };
        if f.key_alias.is_some() || job.aliases.is_some() {
            return;
        }
        let now = self.clock.now();
        let fresh = |at: &DateTime<Utc>, ok: bool| {
            let ttl = if ok { self.refresh } else { ALIAS_RETRY };
            now - *at < chrono::Duration::from_std(ttl).unwrap_or_default()
        };
        let cached = self
            .keys
            .aliases
            .get(&arn)
            .filter(|(at, r)| fresh(at, r.is_ok()))
            .map(|(_, r)| r.clone());
        let result = match cached {
            Some(r) => r,
            None => {
                let r =
                    match tokio::time::timeout(ALIAS_DEADLINE, self.remediator.key_facts(&arn, true, false))
                        .await
                    {
                        Ok(Ok(facts)) => Ok(facts.aliases),
                        Ok(Err(e)) => Err(e.error_type.as_str().to_owned()),
                        Err(_) => Err("timeout".to_owned()),
                    };
                if self.keys.aliases.len() > 10_000 {
                    self.keys.aliases.clear();
                }
                self.keys.aliases.insert(arn.clone(), (now, r.clone()));
                r
            }
        };
        job.aliases = Some(match result {
            Ok(mut aliases) => {
                aliases.sort();
                job.finding.key_alias = aliases.first().cloned();
                AliasLookup::Found { aliases }
            }
            Err(error_type) => {
                warn!(key_arn = %arn, error_type = %error_type, "Cannot name the key's alias in the notification.");
                AliasLookup::Unknown { error_type }
            }
        });
    }

    /// Remembers a key scheduled for deletion (and not rescued) for the reminders.
    pub(super) fn track(&self, job: &Job) {
        let f = &job.finding;
        if f.rule_id != rules::KEY_DELETION_SCHEDULED
            || self.keys.usage.reminders.is_empty()
            || f.key_arn.is_none()
            || job
                .remediation
                .as_ref()
                .is_some_and(|r| r.outcome == Outcome::Applied)
        {
            return;
        }
        let key = PendingKey {
            finding: f.clone(),
            scheduled_at: event_time(job, self.clock.now()),
            reminded: Vec::new(),
        };
        if let Err(e) = self.store.track_pending(&key) {
            error!(error = %e, "Cannot remember a key pending deletion for its reminders.");
        }
    }
}
