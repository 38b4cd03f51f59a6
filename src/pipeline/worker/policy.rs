//! The worker's policy side: trailguard's own calls, protection as of the event (snapshots and
//! alias/tag history, see [`crate::protection`]), and the audit every action passes before it
//! is taken.

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::Worker;
use crate::actions::Remediator;
use crate::arn::Arn;
use crate::aws::sts::Identity;
use crate::job::{ActionKind, Job, Outcome, Remediation};
use crate::plan::{self, KeyFacts};
use crate::protection::{self, Change};
use crate::rules::{self, Action, Finding};
use crate::telemetry;

/// trailguard's own identity, to recognise its calls in CloudTrail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Own {
    pub arn: String,
    /// For a role session: the role (any of its sessions is trailguard).
    pub role: Option<String>,
    pub access_key_id: Option<String>,
    /// In the other accounts it guards: the role it assumes there and its session name.
    pub member_role: Option<MemberRole>,
}

/// trailguard's sessions in the accounts it reaches through `accounts.role_arn_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    pub template: String,
    pub partition: String,
    pub session_name: String,
}

impl MemberRole {
    /// Whether `principal` is one of trailguard's sessions in its own account's role.
    fn is(&self, principal: &str) -> bool {
        let Some(a) = Arn::parse(principal) else {
            return false;
        };
        let session = a.resource.rsplit('/').next().unwrap_or_default();
        session == self.session_name
            && a.session_role().as_deref()
                == Some(crate::accounts::role_arn(&self.template, &self.partition, a.account).as_str())
    }
}

impl Own {
    pub fn new(id: &Identity) -> Self {
        Self {
            arn: id.arn.clone(),
            role: Arn::parse(&id.arn).and_then(|a| a.session_role()),
            access_key_id: id.access_key_id.clone(),
            member_role: None,
        }
    }

    /// Whether trailguard made the call a finding is about.
    pub fn made(&self, f: &Finding) -> bool {
        let key = self.access_key_id.is_some() && f.caller_access_key_id == self.access_key_id;
        let arn = !self.arn.is_empty() && f.principal_arn.as_deref() == Some(self.arn.as_str());
        let role = self.role.as_deref().is_some_and(|own| {
            f.session_issuer_arn.as_deref() == Some(own)
                || f.principal_arn
                    .as_deref()
                    .and_then(Arn::parse)
                    .and_then(|a| a.session_role())
                    .as_deref()
                    == Some(own)
        });
        let member = self
            .member_role
            .as_ref()
            .is_some_and(|m| f.principal_arn.as_deref().is_some_and(|p| m.is(p)));
        key || arn || role || member
    }
}

fn event_time(f: &Finding, fallback: DateTime<Utc>) -> DateTime<Utc> {
    f.event_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(fallback)
}

impl<R: Remediator> Worker<R> {
    /// Whether the change was made by one of `kms.allowed_principals`.
    fn allowed(&self) -> impl Fn(&Change) -> bool + '_ {
        |c| protection::by_allowed(c, &self.policy.allowed_principals)
    }

    /// Decides a job's actions: false if there is nothing to do or say.
    pub(super) async fn decide(&mut self, job: &mut Job) -> bool {
        if job.policy.is_some() {
            return true; // decided before a restart
        }
        let f = &job.finding;
        if self.own.made(f) {
            if f.rule_id == rules::PENDING_DELETION_USE {
                info!(event_id = %f.event_id, key_arn = f.key_arn.as_deref().unwrap_or("-"), "trailguard's own call failed while the key was pending deletion (KMS is eventually consistent after a cancel): not a use, ignored.");
                return false;
            }
            job.policy = Some(format!("made by trailguard itself ({}): no action", self.own.arn));
            job.finding.actions = vec![Action::Notify];
            job.remediated = true;
            return true;
        }
        let relevant = [
            rules::KEY_DISABLED,
            rules::KEY_DELETION_SCHEDULED,
            rules::PENDING_DELETION_USE,
            rules::PROTECTION_REMOVED,
        ];
        let Some(arn) = f
            .key_arn
            .clone()
            .filter(|_| relevant.contains(&f.rule_id.as_str()))
        else {
            return true;
        };
        if f.rule_id == rules::PENDING_DELETION_USE && self.policy.exemptions.is_empty() {
            return true;
        }
        if self.policy.is_empty() && self.policy.exemptions.is_empty() {
            return f.rule_id != rules::PROTECTION_REMOVED;
        }
        let at = event_time(f, self.clock.now());
        if f.rule_id == rules::PROTECTION_REMOVED {
            return self.protection_removed(job, &arn, at).await;
        }
        let before = job.clone();
        let facts = match self.facts_at(&arn, at).await {
            Ok(f) => f,
            // Named by its id or ARN in kms.protected_keys: protected whatever its aliases/tags.
            Err(why) if plan::protected_by(&self.policy, &arn, &KeyFacts::default()).is_some() => {
                warn!(key_arn = %arn, error = %why, "The key's aliases and tags are unknown; it is protected by its id.");
                KeyFacts::default()
            }
            Err(why) => {
                warn!(key_arn = %arn, error = %why, "The key's protection is unknown.");
                job.policy = Some(why);
                return self.settle_recheck(&before, job);
            }
        };
        let vouched = self.vouched_at(&arn, at);
        if let Some(d) = plan::decide_vouched(&self.policy, &job.finding, &facts, &vouched, at) {
            info!(rule_id = %job.finding.rule_id, key_arn = %arn, actions = ?d.actions, policy = %d.reason, "Protection policy decided.");
            job.remediated = !d.actions.iter().any(|a| a.remediates());
            job.finding.actions = d.actions;
            job.policy = Some(d.reason);
        }
        if !self.settle_recheck(&before, job) {
            return false;
        }
        if let Err(e) = self.store.put_job(job) {
            error!(error = %e, "Cannot record the policy decision.");
        }
        true
    }

    /// `kms_protection_removed`: reported only if the alias or tag protected the key.
    async fn protection_removed(&mut self, job: &mut Job, arn: &str, at: DateTime<Utc>) -> bool {
        let Ok(mut facts) = self.facts_at(arn, at).await else {
            return true; // unknown: say so rather than stay silent
        };
        if job.finding.event_name == "TagResource" {
            return self.tag_overwritten(job, arn, at, &facts);
        }
        // Just before the change, the key had what it removed.
        if let Some(alias) = &job.finding.key_alias
            && !facts.aliases.contains(alias)
        {
            facts.aliases.push(alias.clone());
        }
        for k in &job.finding.tag_keys {
            facts.tags.push((k.clone(), "*".into()));
        }
        let Some(line) = plan::protected_by(&self.policy, arn, &facts) else {
            return false;
        };
        self.removal_decided(job, &line);
        true
    }

    /// A `TagResource` removes protection only by replacing a protective tag's value with one
    /// that does not protect (`trailguard:protect=true` set to `false`): the values the key had
    /// before the event, and those a stranger's overwrite leaves standing (`facts`), are read
    /// against the values the event set.
    fn tag_overwritten(&self, job: &mut Job, arn: &str, at: DateTime<Utc>, facts: &KeyFacts) -> bool {
        let Ok(history) = self.store.history(arn) else {
            return true; // unknown: say so rather than stay silent
        };
        let before = history
            .facts_at(at - chrono::Duration::seconds(1))
            .unwrap_or_default();
        let protects = |k: &str, v: &str| {
            let tag = KeyFacts {
                aliases: vec![],
                tags: vec![(k.to_owned(), v.to_owned())],
            };
            plan::protected_by(&self.policy, "", &tag)
        };
        let line = history
            .changes
            .iter()
            .filter(|c| c.event_id == job.finding.event_id)
            .filter_map(|c| match &c.edit {
                protection::Edit::AddTag(k, new) if protects(k, new).is_none() => Some((k, new)),
                _ => None,
            })
            .find_map(|(k, new)| {
                (before.tags.iter().chain(&facts.tags))
                    .filter(|(ok, ov)| ok == k && ov != new)
                    .find_map(|(ok, ov)| protects(ok, ov))
            });
        let Some(line) = line else {
            return false;
        };
        self.removal_decided(job, &line);
        true
    }

    /// Records why a removal of protection (`line`) is reported, by who made it.
    fn removal_decided(&self, job: &mut Job, line: &str) {
        let f = &job.finding;
        let who = plan::principal_allowed(
            &self.policy.allowed_principals,
            f.principal_arn.as_deref(),
            f.session_issuer_arn.as_deref(),
        );
        job.policy = Some(match who {
            Some((i, g)) => format!(
                "{line} protected the key; the caller is allowed by kms.allowed_principals[{i}] ({g}): the key is no longer protected by it"
            ),
            None => format!(
                "{line} protected the key; the caller is not in kms.allowed_principals, so trailguard keeps treating the key as protected"
            ),
        });
    }

    /// The facts an exemption may match at `at` ([`protection::History::vouched_at`]); none
    /// when the key's history cannot be read.
    pub(super) fn vouched_at(&self, arn: &str, at: DateTime<Utc>) -> KeyFacts {
        let history = self.store.history(arn).ok();
        history
            .and_then(|h| h.vouched_at(at, &self.allowed()))
            .unwrap_or_default()
    }

    /// The facts that decide protection at `at`: from the history, else read now (and kept),
    /// else an error saying why the key's protection is unknown.
    async fn facts_at(&mut self, arn: &str, at: DateTime<Utc>) -> Result<KeyFacts, String> {
        let history = self.store.history(arn).map_err(|e| e.to_string())?;
        if let Some(f) = history.effective_at(at, &self.allowed()) {
            return Ok(f);
        }
        let (aliases, tags) = (self.policy.needs_aliases(), self.policy.needs_tags());
        match self.remediator.key_facts(arn, aliases, tags).await {
            Ok(facts) => {
                let now = self.clock.now();
                if let Err(e) = self.store.put_snapshot(arn, now, &facts) {
                    error!(error = %e, "Cannot record a key's aliases and tags.");
                }
                self.known.insert(arn.to_owned(), facts);
                let history = self.store.history(arn).map_err(|e| e.to_string())?;
                Ok(history.effective_at(at, &self.allowed()).unwrap_or_default())
            }
            Err(e) => Err(format!(
                "could not read the key's aliases/tags ({}) and trailguard has never seen this key: not treated as protected; nothing reverted",
                e.short()
            )),
        }
    }

    /// Snapshots every key's aliases (and tags) in every region, storing what changed.
    pub(super) async fn refresh_facts(&mut self) {
        if self.policy.is_empty() {
            return;
        }
        let tags = self.policy.needs_tags();
        let mut complete = true;
        for place in self.places.clone() {
            let region = &place.region;
            match self.remediator.region_facts(region, &place.account, tags).await {
                Ok(all) => {
                    let now = self.clock.now();
                    for (arn, facts) in all {
                        if self.known.get(&arn) == Some(&facts) {
                            continue;
                        }
                        if let Err(e) = self.store.put_snapshot(&arn, now, &facts) {
                            error!(error = %e, "Cannot record a key's aliases and tags.");
                        }
                        self.known.insert(arn, facts);
                    }
                }
                Err(e) => {
                    complete = false;
                    warn!(account = %place.account, region = %region, error = %e, "Cannot refresh the keys' aliases and tags; decisions use what was last known.")
                }
            }
        }
        if complete {
            telemetry::facts_refreshed(self.clock.host_now().timestamp() as f64);
        }
    }

    /// The independent check every action passes before it is taken: trailguard never acts on
    /// its own calls, nor against an exemption covering the key at the event's time (matched,
    /// as the decision is, on the aliases no stranger gave the key). A refusal
    /// here means a decision went wrong: it is counted in
    /// `trailguard_actions_outside_policy_total`, which must stay 0. Returns the refusal, if any.
    pub(super) fn audit(&self, job: &Job) -> Option<Remediation> {
        let f = &job.finding;
        let why = if self.own.made(f) {
            Some("the event was trailguard's own call".to_owned())
        } else if let Some(arn) = f.key_arn.as_deref() {
            let at = event_time(f, self.clock.now());
            let facts = self.vouched_at(arn, at);
            plan::exemption_for(&self.policy, arn, &facts, at)
                .map(|(i, e)| format!("kms.exemptions[{i}] ({}) covers the key", e.key))
        } else {
            None
        };
        let why = why?;
        telemetry::outside_policy();
        error!(rule_id = %f.rule_id, event_id = %f.event_id, reason = %why, "An action outside the policy was refused. This is a trailguard bug: please report it.");
        let action = match job.pending_action() {
            Some(Action::EnableKey) => ActionKind::EnableKey,
            _ => ActionKind::CancelKeyDeletion,
        };
        let mut r = Remediation::new(action);
        r.outcome = Outcome::NotActionable;
        r.detail = format!("refused by trailguard's own audit: {why}");
        Some(r)
    }
}
